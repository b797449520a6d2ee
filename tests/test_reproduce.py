"""``autorec reproduce``: the quick pipeline end to end, resume after an interruption, and the
interval arithmetic of the report on hand-made numbers."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys

import pytest

from autorec.cli import main
from autorec.data import load_dataset
from autorec.errors import ConfigError
from autorec.evaluation import mean_ci95
from autorec.models.autorec import DEFAULT_LAMBDA_GRID
from autorec.protocol import MAX_EXTENSIONS, run_protocol
from autorec.reproduce import (
    PAPER,
    TABLES,
    Cell,
    CellStore,
    Plan,
    reproduce,
    setting_id,
    stale_reason,
    summarise,
    verdict,
)

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
    assert results["tables"] == list(TABLES)
    assert results["quick"] is True and results["runs"] == 2
    for table in TABLES:
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
    assert sum(e["n_runs"] for e in partial["figure_2"]) == 3
    assert "Incomplete" in (tmp_path / "report.md").read_text()

    resumed: list[tuple[str, int]] = []

    def counting(ratings, model, *, seed, overrides, grid):
        resumed.append((str(overrides.get("hidden")), seed))
        return run_protocol(ratings, model, seed=seed, overrides=overrides, grid=grid)

    results = reproduce(tiny, plan, tmp_path, command="test", runner=counting)
    assert len(resumed) == n_cells - 3
    assert not set(resumed) & set(calls)  # no finished cell ran twice
    assert {p: p.read_text() for p in stored} == before  # finished cells left untouched
    assert all(e["n_runs"] == 2 for e in results["figure_2"])


def test_out_dir_of_another_dataset_is_refused(tmp_path) -> None:
    CellStore(tmp_path, Plan(dataset="ml-100k", quick=True))
    with pytest.raises(ConfigError, match="holds results for dataset 'ml-100k'"):
        CellStore(tmp_path, Plan(dataset="ml-1m", quick=False))


def test_identical_settings_share_one_cell() -> None:
    # f = identity, g = sigmoid, k = 500 are I-AutoRec's defaults: Table 1(b)'s third row is the
    # same experiment as Table 1(a)'s I-AutoRec row.
    assert setting_id("i-autorec", {"f": "identity", "g": "sigmoid"}) == "i-autorec"
    assert setting_id("i-autorec", {"hidden": (500,)}) == "i-autorec"
    assert setting_id("i-autorec", {"hidden": (500, 250, 500)}) == "i-autorec+hidden=500-250-500"


def test_ci_arithmetic_on_hand_made_numbers() -> None:
    # mean(0.83, 0.84, 0.85) = 0.84; sample sd = 0.01; t(0.975, 2 dof) = 4.302653;
    # half-width = 4.302653 * 0.01 / sqrt(3) = 0.0248414.
    mean, ci = mean_ci95([0.83, 0.84, 0.85])
    assert mean == pytest.approx(0.84)
    assert ci == pytest.approx(0.0248414, abs=1e-7)
    # Five runs (the paper's): t(0.975, 4 dof) = 2.776445; sd of (1, 2, 3, 4, 5) = sqrt(2.5).
    _, ci5 = mean_ci95([1, 2, 3, 4, 5])
    assert ci5 == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_verdict_thresholds() -> None:
    assert verdict(0.833, 0.003, 0.831) == "agrees (within our CI)"
    assert verdict(0.840, 0.003, 0.831).startswith("worse")
    assert verdict(0.825, 0.003, 0.831).startswith("better")
    assert verdict(0.840, None, 0.831) == "one run: no interval"
    assert verdict(0.840, 0.003, None) == "no paper value"


def _fake_cell(setting: str, model: str, seed: int, rmse: float) -> dict:
    return {
        "setting": setting,
        "model": model,
        "seed": seed,
        "seconds": 10.0 + seed,
        "record": {
            "test_rmse": rmse,
            "test_mae": rmse * 0.8,
            "hyperparameters": {},
            "n_test_fallback": 0,
        },
    }


def test_summary_against_the_paper_on_hand_made_cells() -> None:
    plan = Plan(dataset="ml-1m", tables=("table_1c",), runs=3)
    values = [0.8300, 0.8400, 0.8500]  # mean 0.84, half-width 0.0248414 (see above)
    cells = {
        f"i-autorec/seed{s}": _fake_cell("i-autorec", "i-autorec", s, v)
        for s, v in enumerate(values)
    }
    cells["bias/seed0"] = _fake_cell("bias", "bias", 0, 0.9)
    table = {e["model"]: e for e in summarise(plan, cells)["table_1c"]}
    auto = table["I-AutoRec"]
    assert auto["paper"] == PAPER["I-AutoRec"]["ml-1m"] == 0.831
    assert auto["test_rmse_mean"] == pytest.approx(0.84)
    assert auto["difference"] == pytest.approx(0.84 - 0.831)
    assert auto["verdict"] == "agrees (within our CI)"  # 0.009 < 0.0248
    assert auto["n_runs"] == 3 and auto["seconds_per_run"] == pytest.approx(11.0)
    assert table["bias"]["n_runs"] == 1 and table["bias"]["test_rmse_ci95"] is None
    assert table["bias"]["verdict"] == "no paper value" and table["bias"]["extra_row"]
    assert table["LLORMA"]["test_rmse_mean"] is None and table["LLORMA"]["paper"] == 0.833
    assert auto["command"] == "autorec evaluate --dataset ml-1m --model i-autorec --runs 3"


def test_models_filter_keeps_only_those_rows() -> None:
    plan = Plan(dataset="ml-1m", tables=("table_1c", "table_1a"), runs=2, models=("bias", "i-rbm"))
    assert {c.setting for c in plan.cells()} == {"bias", "i-rbm"}
    assert len(plan.cells()) == 4  # I-RBM is in both tables but runs once per seed


# -- several processes on one folder, and cells of an older protocol ---------------------------
def _lock(store: CellStore, cell, **holder) -> None:
    path = store.lock_path(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"since": "2026-01-01T00:00:00+00:00", **holder}))


def test_a_claim_is_exclusive_until_released(tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    cell = plan.cells()[0]
    first, second = CellStore(tmp_path, plan), CellStore(tmp_path, plan)
    assert first.claim(cell) is None
    holder = second.claim(cell)
    assert holder is not None and holder["pid"] == os.getpid()
    first.release(cell)
    assert not first.lock_path(cell).exists()
    assert second.claim(cell) is None


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    cell = plan.cells()[0]
    store = CellStore(tmp_path, plan)
    code = "import os; print(os.getpid())"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    _lock(store, cell, host=platform.node(), pid=int(ended.stdout))
    assert store.claim(cell) is None
    assert json.loads(store.lock_path(cell).read_text())["pid"] == os.getpid()
    # A lock of another machine cannot be checked, so it is respected.
    other = plan.cells()[1]
    _lock(store, other, host="another-machine", pid=1)
    assert store.claim(other)["host"] == "another-machine"


def test_run_cells_skips_cells_of_other_processes_and_takes_their_results(tiny, tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=2, quick=True)
    cells = plan.cells()
    store = CellStore(tmp_path, plan)
    busy, finished_elsewhere = cells[1], cells[4]
    _lock(store, busy, host="another-machine", pid=1)  # another worker is running it
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

    results = reproduce(tiny, plan, tmp_path, command="test", runner=runner)
    key = {c: (dict(c.overrides)["hidden"][0], c.seed) for c in cells}
    assert sorted(ran) == sorted(key[c] for c in cells if c not in (busy, finished_elsewhere))
    locks = [p.relative_to(tmp_path / "cells").as_posix() for p in tmp_path.glob("cells/*/*.lock")]
    assert locks == [f"{busy.key}.lock"]  # ours were released, the other worker's kept
    assert not store.path(busy).exists()
    assert sum(e["n_runs"] for e in results["figure_2"]) == len(cells) - 1


def _autorec_cell(chosen: float, tried: list[float]) -> tuple:
    cell = Cell("i-autorec+g=identity", "i-autorec", (("g", "identity"),), 0)
    record = {
        "test_rmse": 0.9,
        "hyperparameters": {"lam": chosen, "n_epochs": 50},
        "candidates": [{"lam": v, "val_rmse": 0.9, "best_epoch": 50} for v in tried],
    }
    return cell, {"seconds": 1.0, "record": record}


def test_cells_of_an_older_grid_are_stale_and_run_again(tmp_path) -> None:
    grid = list(DEFAULT_LAMBDA_GRID)
    assert max(grid) == 1000.0
    cell, ok = _autorec_cell(300.0, grid)
    assert stale_reason(cell, ok, quick=False) is None
    # Chose the top of the grid before the protocol extended it (Table 1(b)'s linear rows).
    cell, top = _autorec_cell(1000.0, grid)
    assert "largest lam" in stale_reason(cell, top, quick=False)
    # Extended until validation turned: current.
    assert stale_reason(cell, _autorec_cell(3000.0, [*grid, 3000.0, 10000.0])[1], False) is None
    # Still rising after every extension the protocol allows: nothing more would be tried.
    capped = [*grid, 3000.0, 10000.0, 30000.0, 100000.0][: len(grid) + MAX_EXTENSIONS]
    assert stale_reason(cell, _autorec_cell(capped[-1], capped)[1], False) is None
    # A grid value the search never tried.
    cell, short = _autorec_cell(300.0, [v for v in grid if v != 10.0])
    assert "lacked lam = 10.0" in stale_reason(cell, short, quick=False)
    # --quick tunes nothing, so nothing is stale there.
    assert stale_reason(cell, short, quick=True) is None
    # The store hands out only current cells.
    store = CellStore(tmp_path, Plan(dataset="ml-1m", tables=("table_1b",)))
    store.put(cell, top)
    assert store.get(cell) is None
    store.put(cell, ok)
    assert store.get(cell) == ok
