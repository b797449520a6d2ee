"""The pure parts of experiments/ranking_table.py: reading a reproduce cell, the retrain config,
the summary over seeds, the table and the verdict. No real data: cells and results are written
by hand into tmp_path, and one end-to-end run uses the synthetic low-rank ratings."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from autorec.data import paper_split
from autorec.evaluation import mean_ci95
from tests.conftest import REPO_ROOT, low_rank_ratings

_SPEC = importlib.util.spec_from_file_location(
    "ranking_table", REPO_ROOT / "experiments" / "ranking_table.py"
)
assert _SPEC is not None and _SPEC.loader is not None
rt = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(rt)


def _write_cell(path: Path, model: str, seed: int, **extra) -> Path:
    payload = {
        "setting": model,
        "model": model,
        "overrides": extra.pop("overrides", {}),
        "seed": seed,
        "quick": extra.pop("quick", False),
        "record": {
            "seed": seed,
            "test_rmse": 0.8339,
            "hyperparameters": extra.pop("hyperparameters", {"lam": 300.0, "n_epochs": 90}),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def _result(model: str, seed: int, ndcg: float, rmse: float, cell_rmse=None) -> dict:
    metrics = {m: ndcg for m in rt.METRICS}
    metrics["recall@10"] = ndcg / 2
    return {
        "model": model,
        "seed": seed,
        "test_rmse": rmse,
        "cell_test_rmse": cell_rmse,
        "hyperparameters": {},
        "ranking": {"metrics": metrics, "n_relevant": 90, "n_users": 10},
        "seconds": 10.0,
    }


def test_read_cell_returns_the_chosen_point_and_epochs(tmp_path):
    path = _write_cell(tmp_path / "i-autorec" / "seed3.json", "i-autorec", 3)
    cell = rt.read_cell(path, "i-autorec", 3)
    assert cell["hyperparameters"] == {"lam": 300.0, "n_epochs": 90}
    assert cell["test_rmse"] == 0.8339


def test_read_cell_refuses_another_model_or_seed(tmp_path):
    path = _write_cell(tmp_path / "c.json", "i-autorec", 3)
    with pytest.raises(ValueError, match="holds i-autorec seed 3, expected u-autorec seed 3"):
        rt.read_cell(path, "u-autorec", 3)
    with pytest.raises(ValueError, match="expected i-autorec seed 4"):
        rt.read_cell(path, "i-autorec", 4)


def test_read_cell_refuses_quick_cells_and_broken_files(tmp_path):
    quick = _write_cell(tmp_path / "q.json", "bias", 0, quick=True)
    with pytest.raises(ValueError, match="--quick"):
        rt.read_cell(quick, "bias", 0)
    broken = tmp_path / "b.json"
    broken.write_text('{"model": "bias", "seed": 0}')
    with pytest.raises(ValueError, match=r"b\.json: not a reproduce cell"):
        rt.read_cell(broken, "bias", 0)


def test_retrain_options_match_the_protocol_retrain(tmp_path):
    # run_protocol's retrain: {**overrides (seed included), **point, "n_epochs": best_epoch}.
    path = _write_cell(
        tmp_path / "c.json",
        "i-autorec",
        2,
        overrides={"hidden": [500, 250, 500]},
        hyperparameters={"lam": 100.0, "n_epochs": 40},
    )
    options = rt.retrain_options(rt.read_cell(path, "i-autorec", 2), 2)
    assert options == {"hidden": (500, 250, 500), "seed": 2, "lam": 100.0, "n_epochs": 40}


def test_summary_mean_ci_and_rmse_difference():
    results = [_result("bias", s, 0.1 + 0.01 * s, 0.90 + 0.001 * s, 0.90) for s in range(5)]
    summary = rt.summarize(results)["bias"]
    expected = mean_ci95([0.1 + 0.01 * s for s in range(5)])  # the project's Student-t CI
    assert summary["metrics"]["ndcg@10"]["mean"] == pytest.approx(expected[0])
    assert summary["metrics"]["ndcg@10"]["ci95"] == pytest.approx(expected[1])
    assert summary["complete"]
    assert summary["max_abs_rmse_diff_vs_cell"] == pytest.approx(0.004)  # seed 4: 0.904 - 0.900
    assert summary["seconds_total"] == 50.0


def test_table_marks_a_model_without_all_seeds():
    results = [_result("pop", s, 0.12, 0.90) for s in range(5)]
    results += [_result("i-rbm", s, 0.05, 0.85) for s in (0, 2)]
    table = rt.markdown_table(rt.summarize(results), ("rmse", "ndcg@10"))
    lines = table.splitlines()
    assert lines[0] == "| model | rmse | ndcg@10 |"
    assert lines[2].startswith("| pop | 0.9000 ± 0.0000 | 0.1200 ± 0.0000 |")
    assert lines[3].startswith("| i-rbm (INCOMPLETE: seeds 0,2 only) |")


def test_fmt_stat_without_interval_or_value():
    assert rt.fmt_stat({"mean": 0.12345, "ci95": None}) == "0.1235"
    assert rt.fmt_stat({"mean": None, "ci95": None}) == "-"
    assert rt.fmt_stat({"mean": 0.5, "ci95": 0.01}) == "0.5000 ± 0.0100"


def test_verdict_says_the_best_rmse_model_loses_to_pop():
    results = [_result("i-autorec", s, 0.10, 0.83) for s in range(5)]
    results += [_result("biased-mf", s, 0.20, 0.85) for s in range(5)]
    results += [_result("pop", s, 0.12, 0.90) for s in range(5)]
    results += [_result("ease", s, 0.30, 0.90) for s in range(5)]
    text = rt.verdict(rt.summarize(results))
    # i-autorec has the best RMSE (0.83) among rating models; pop and ease never count for it.
    assert "best model on RMSE is **i-autorec**" in text
    assert "i-autorec LOSES on ranking to **pop**" in text
    assert "0.83x on NDCG@10" in text  # 0.10 / 0.12
    assert "ranks 4 of 4 models; the best ranker is **ease**" in text
    assert "Rating models above pop on NDCG@10: biased-mf; at or below it: i-autorec." in text


def test_verdict_when_the_best_rmse_model_beats_pop():
    results = [_result("i-autorec", s, 0.20, 0.83) for s in range(5)]
    results += [_result("pop", s, 0.10, 0.90) for s in range(5)]
    assert "i-autorec beats on ranking **pop**" in rt.verdict(rt.summarize(results))


def test_run_one_on_synthetic_data_uses_the_cell_and_ranks(tmp_path):
    split = paper_split(low_rank_ratings(n_users=60, n_items=40), seed=1)
    _write_cell(
        tmp_path / "bias" / "seed1.json",
        "bias",
        1,
        hyperparameters={"reg_item": 5.0, "reg_user": 5.0},
    )
    entry = rt.run_one(split, "bias", 1, tmp_path, "cmd")
    assert entry["hyperparameters"] == {"reg_item": 5.0, "reg_user": 5.0}
    assert entry["rmse_diff_vs_cell"] == pytest.approx(entry["test_rmse"] - 0.8339)
    assert set(entry["ranking"]["metrics"]) == set(rt.METRICS)
    assert entry["ranking"]["relevance"] == 4.0
    assert all(math.isfinite(v) for v in entry["ranking"]["metrics"].values())


def test_main_resumes_and_writes_the_report(tmp_path):
    out = tmp_path / "ranking"
    done = _result("pop", 0, 0.12, 0.90)
    done.update(command="c", cpu="cpu", load_at_start="1 1 1")
    (out / "cells" / "pop").mkdir(parents=True)
    (out / "cells" / "pop" / "seed0.json").write_text(json.dumps(done))
    # Resumed: the stored result is kept and nothing is left to run, so the (absent) data
    # directory is never read.
    missing = str(tmp_path / "no-data")
    argv = ["--models", "pop", "--seeds", "0", "--out", str(out), "--data-dir", missing]
    assert rt.main([*argv, "--note", "Stopped at the deadline."]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["models"]["pop"]["seeds"] == [0]
    md = out.with_suffix(".md").read_text()
    assert "pop (INCOMPLETE: seeds 0 only)" in md
    assert "Missing: pop, bias" in md
    assert "9.0 relevant test items on average" in md  # 90 relevant pairs / 10 users
    assert "\n- Stopped at the deadline.\n" in md


def test_claim_shares_runs_and_takes_over_a_dead_process_lock(tmp_path):
    target = tmp_path / "ease" / "seed0.json"
    assert rt.claim(target)  # first: ours
    assert not rt.claim(target)  # held by a live process (this one)
    target.with_suffix(".lock").write_text("999999999")  # no such process
    assert rt.claim(target)
    assert target.with_suffix(".lock").read_text() == str(os.getpid())
