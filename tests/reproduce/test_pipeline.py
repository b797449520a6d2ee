"""``autorec reproduce`` end to end: the quick pipeline, resume after an interruption, several
processes on one folder, and the exit code when the report is incomplete."""

from __future__ import annotations

import itertools
import json
import os

import pytest

from autorec.cli import main
from autorec.data import load_dataset
from autorec.evaluation import mean_ci95
from autorec.protocol import run_protocol
from autorec.reproduce import (
    DEFAULT_TABLES,
    LOCK_GRACE_SECONDS,
    TABLES,
    CellStore,
    Plan,
    report_cells,
    reproduce,
)

from .helpers import fake_cell, fake_runner, write_lock

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic:tiny").ratings


def test_quick_end_to_end_report_json_and_figures_agree(tmp_path, capsys) -> None:
    out = tmp_path / "quick"
    code = main(["reproduce", "--dataset", "synthetic:tiny", "--quick", "--out", str(out), "-q"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    # A plain reproduce runs the paper's tables only; "beyond" (issue 18) runs when named.
    assert results["tables"] == list(DEFAULT_TABLES) and "beyond" not in DEFAULT_TABLES
    assert results["quick"] is True and results["runs"] == 2
    for table in DEFAULT_TABLES:
        assert results[table], table
        for entry in results[table]:
            assert {"model", "test_rmse_mean", "test_rmse_ci95", "n_runs", "paper"} <= set(entry)
            assert entry["n_runs"] == 2
            # The summary is the mean of the stored cells, and the report prints that number.
            rmses = [r["test_rmse"] for r in entry["runs"]]
            mean, ci = mean_ci95(rmses)
            assert entry["test_rmse_mean"] == pytest.approx(mean)
            assert entry["test_rmse_ci95"] == pytest.approx(ci)
            assert f"{mean:.4f} +- {ci:.4f}" in report
            # A synthetic set has no paper column.
            assert entry["paper"] is None
    assert [e["hidden_units"] for e in results["figure_2"]] == [10, 40, 100]
    for name in ("figure_2.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in report
    assert results["figures"] == {
        "figure_2": "figure_2.png",
        "learning_curves": "learning_curves.png",
    }
    assert "How to read this" in report and "Quick mode" in report
    # I-AutoRec is in four tables but runs once per seed.
    cells = sorted(p.relative_to(out / "cells").as_posix() for p in out.glob("cells/*/*.json"))
    assert len(cells) == len(set(cells))
    assert "i-autorec/seed0.json" in cells and "i-autorec/seed1.json" in cells
    # Each cell says how its numbers were computed: threads and huge pages (imported first,
    # autorec turns them on; the report counts the cells of each setting).
    cell = json.loads((out / "cells" / "i-autorec" / "seed0.json").read_text())
    assert cell["torch_threads"] >= 1
    assert cell["huge_pages"] == ("on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off")
    assert f"Transparent huge pages per cell: {cell['huge_pages']} (" in report
    printed = capsys.readouterr().out
    assert f"report written to {out / 'report.md'}" in printed


def test_resume_after_interruption_skips_finished_cells(tiny, tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=2, quick=True)
    n_cells = len(plan.cells())
    assert n_cells == 6  # 3 sweep points x 2 seeds
    calls: list[tuple[str, int]] = []

    def interrupted(ratings, model, *, seed, overrides, grid):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the fourth cell
        calls.append((str(overrides.get("hidden")), seed))
        return run_protocol(ratings, model, seed=seed, overrides=overrides, grid=grid)

    with pytest.raises(KeyboardInterrupt):
        reproduce(tiny, plan, tmp_path, command="test", runner=interrupted)
    stored = sorted(tmp_path.glob("cells/*/*.json"))
    assert len(stored) == 3
    before = {p: p.read_text() for p in stored}

    def must_not_run(*args, **kwargs):
        raise AssertionError("report_only must not run a cell")

    partial = reproduce(tiny, plan, tmp_path, command="test", runner=must_not_run, report_only=True)
    assert sum(e["n_runs"] for e in partial.results["figure_2"]) == 3
    assert not partial.complete
    assert sorted(partial.skipped) == sorted(c.key for c in plan.cells()[3:])
    assert "Incomplete" in (tmp_path / "report.md").read_text()

    resumed: list[tuple[str, int]] = []

    def counting(ratings, model, *, seed, overrides, grid):
        resumed.append((str(overrides.get("hidden")), seed))
        return run_protocol(ratings, model, seed=seed, overrides=overrides, grid=grid)

    resumed_run = reproduce(tiny, plan, tmp_path, command="test", runner=counting)
    assert resumed_run.complete and resumed_run.skipped == {}
    results = resumed_run.results
    assert len(resumed) == n_cells - 3
    assert not set(resumed) & set(calls)  # no finished cell ran twice
    assert {p: p.read_text() for p in stored} == before  # finished cells left untouched
    assert all(e["n_runs"] == 2 for e in results["figure_2"])


def test_run_cells_skips_cells_of_other_processes_and_takes_their_results(tiny, tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=2, quick=True)
    cells = plan.cells()
    store = CellStore(tmp_path, plan)
    busy, finished_elsewhere = cells[1], cells[4]
    write_lock(store, busy, host="another-machine", pid=1)  # another worker is running it
    ran: list[tuple[int, int]] = []

    def runner(ratings, model, *, seed, overrides, grid):
        ran.append((overrides["hidden"][0], seed))
        # The running cell holds a lock beside the other worker's.
        assert len(list(tmp_path.glob("cells/*/*.lock"))) == 2
        result = run_protocol(ratings, model, seed=seed, overrides=overrides, grid=grid)
        if len(ran) == 1:  # meanwhile the other worker finishes a later cell
            other = finished_elsewhere
            payload = {"setting": other.setting, "seed": other.seed, "seconds": 1.0}
            store.put(other, {**payload, "record": result.record})
        return result

    outcome = reproduce(tiny, plan, tmp_path, command="test", runner=runner)
    results = outcome.results
    key = {c: (dict(c.overrides)["hidden"][0], c.seed) for c in cells}
    assert sorted(ran) == sorted(key[c] for c in cells if c not in (busy, finished_elsewhere))
    locks = [p.relative_to(tmp_path / "cells").as_posix() for p in tmp_path.glob("cells/*/*.lock")]
    assert locks == [f"{busy.key}.lock"]  # ours were released, the other worker's kept
    assert not store.path(busy).exists()
    assert sum(e["n_runs"] for e in results["figure_2"]) == len(cells) - 1
    # The cell left to the other worker is named, with its holder, and the run is incomplete.
    assert not outcome.complete
    assert list(outcome.skipped) == [busy.key]
    assert "process 1 on another-machine" in outcome.skipped[busy.key]


def _empty_lock(store: CellStore, cell, age_s: float) -> None:
    write_lock(store, cell, text="")  # the holder died between creating and writing its lock
    path = store.lock_path(cell)
    old = path.stat().st_mtime - age_s
    os.utime(path, (old, old))


def test_an_empty_lock_past_the_grace_period_is_taken_over_and_its_cell_runs(
    tiny, tmp_path
) -> None:
    # Before: an empty lock was read as "being written right now" forever, so its cell was
    # skipped on every rerun, and the run still ended complete with exit 0.
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    store = CellStore(tmp_path, plan)
    abandoned, fresh = plan.cells()[0], plan.cells()[1]
    _empty_lock(store, abandoned, age_s=LOCK_GRACE_SECONDS + 5)
    _empty_lock(store, fresh, age_s=1)  # may be being written right now: left alone
    ran: list[tuple[str, int]] = []
    outcome = reproduce(tiny, plan, tmp_path, command="t", runner=fake_runner(ran))
    assert len(ran) == len(plan.cells()) - 1
    assert store.path(abandoned).is_file() and not store.lock_path(abandoned).exists()
    assert not store.path(fresh).exists() and store.lock_path(fresh).exists()
    assert list(outcome.skipped) == [fresh.key]
    assert "the lock is empty" in outcome.skipped[fresh.key]


@pytest.mark.parametrize("text", ["[1, 2]", "{}", "\x00garbage"])
def test_a_lock_naming_no_holder_is_taken_over_after_the_grace_period(tmp_path, text) -> None:
    # Before: "[1, 2]" raised AttributeError, "{}" was held forever (as another host's lock).
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    store = CellStore(tmp_path, plan)
    cell = plan.cells()[0]
    write_lock(store, cell, text=text)
    assert "problem" in store.claim(cell)  # within the grace period: held, and said why
    old = store.lock_path(cell).stat().st_mtime - LOCK_GRACE_SECONDS - 5
    os.utime(store.lock_path(cell), (old, old))
    assert store.claim(cell) is None
    assert json.loads(store.lock_path(cell).read_text())["pid"] == os.getpid()


def _report_only(out, *extra: str) -> int:
    args = ["reproduce", "--dataset", "synthetic:tiny", "--quick", "--only", "figure_2"]
    return main([*args, "--runs", "1", "--out", str(out), "--report-only", *extra])


def test_cli_exits_non_zero_and_names_the_cells_when_the_report_is_incomplete(
    tmp_path, capsys
) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    store = CellStore(tmp_path, plan)
    cells = plan.cells()
    for cell in cells[:-1]:
        store.put(cell, fake_cell(cell.setting, cell.model, cell.seed, 0.9))
    assert _report_only(tmp_path) == 3  # before: 0, with one of three points missing
    err = capsys.readouterr().err
    assert "1 cell(s) not in the report: not finished" in err and cells[-1].key in err
    last = cells[-1]
    store.put(last, fake_cell(last.setting, last.model, last.seed, 0.9))
    assert _report_only(tmp_path) == 0
    assert "not in the report" not in capsys.readouterr().err


def test_reproduce_runs_every_paper_row_with_the_constant_fallback(tiny, tmp_path) -> None:
    # The models' default rule is the bias baseline (issue 15); the paper's tables keep the
    # paper's "default rating of 3" (Sedhain et al. 2015, Sec. 3), pinned per cell, for every
    # row, the extra bias row included: one rule per table.
    plan = Plan(dataset="synthetic:tiny", tables=("table_1c",), runs=1, quick=True)
    seen: dict[str, str] = {}

    def runner(ratings, model, *, seed, overrides, grid):
        seen[model] = overrides["fallback"]
        return fake_runner([])(ratings, model, seed=seed, overrides=overrides, grid=grid)

    reproduce(tiny, plan, tmp_path, command="t", runner=runner)
    assert set(seen) >= {"i-autorec", "biased-mf", "u-autorec", "llorma", "bias"}
    assert set(seen.values()) == {"constant"}


def test_beyond_table_shows_published_numbers_apart_and_searches_each_models_grid(
    tiny, tmp_path
) -> None:
    grids: dict[str, dict] = {}

    def runner(ratings, model, *, seed, overrides, grid):
        grids[model] = grid
        out = fake_runner([])(ratings, model, seed=seed, overrides=overrides, grid=grid)
        # A search that covered the grid, so the stored cell is current (not rerun as stale).
        keys = sorted(grid)
        out.record["candidates"] = [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))
        ]
        return out

    # Named ml-1m so the paper's and the published columns have values (the fits are fake).
    plan = Plan(dataset="ml-1m", tables=("beyond",), runs=2)
    results = reproduce(tiny, plan, tmp_path, command="t", runner=runner).results
    # (the paper's tables join the report too: its I-AutoRec cells are theirs)
    assert results["tables"][-1] == "beyond"
    by_model = {e["name"]: e for e in results["beyond"]}
    reference, residual, deep = (e for e in results["beyond"] if e["name"] == "i-autorec")
    assert reference["paper"] == 0.831 and reference["published"] is None
    # The deep row carries the paper's deep number (Sec. 3, 0.827); residuals have no paper value.
    assert deep["paper"] == 0.827 and residual["paper"] is None
    # kernelNet's own single-split number (Muller et al. 2018) is not the paper's column.
    kernel = by_model["i-kernelnet"]
    assert kernel["paper"] is None and kernel["verdict"] == "no paper value"
    assert kernel["published"] == 0.824 and "one 90/10 split" in kernel["published_protocol"]
    assert grids["i-kernelnet"] == {"lam": (30.0, 60.0, 120.0, 240.0)}  # its own grid
    glocal = by_model["glocal-k"]
    assert glocal["published"] == 0.8227 and "seed 1234" in glocal["published_protocol"]
    report = (tmp_path / "report.md").read_text()
    assert "| published (own protocol) |" in report
    assert "0.824 [1]" in report and "[1] 0.824: Muller et al. 2018: one 90/10 split." in report


def test_beyond_table_joins_a_report_only_when_one_of_its_own_rows_ran(tiny, tmp_path) -> None:
    # The paper's tables ran: the beyond table's I-AutoRec row shares their cells, which alone
    # must not put a table nobody asked for into the report.
    paper = Plan(dataset="synthetic:tiny", tables=("table_1a",), runs=1, quick=True)
    reproduce(tiny, paper, tmp_path, command="t", runner=fake_runner([]))
    store = CellStore(tmp_path, paper)
    shown, _ = report_cells(store, paper)
    assert "table_1a" in shown.tables and "beyond" not in shown.tables
    beyond = Plan(dataset="synthetic:tiny", tables=("beyond",), runs=1, quick=True)
    reproduce(tiny, beyond, tmp_path, command="t", runner=fake_runner([]), report_only=False)
    shown, _ = report_cells(store, paper)
    assert shown.tables[-1] == "beyond"
    assert "beyond" in TABLES
