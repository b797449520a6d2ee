"""The report's arithmetic on hand-made numbers: the 95% interval, the verdict against the
paper, the per-row summary; and how rows become cells."""

from __future__ import annotations

import math

import pytest

from autorec.evaluation import mean_ci95
from autorec.reproduce import PAPER, Plan, setting_id, summarise, verdict

from .helpers import fake_cell


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


def test_summary_against_the_paper_on_hand_made_cells() -> None:
    plan = Plan(dataset="ml-1m", tables=("table_1c",), runs=3)
    values = [0.8300, 0.8400, 0.8500]  # mean 0.84, half-width 0.0248414 (see above)
    cells = {
        f"i-autorec/seed{s}": fake_cell("i-autorec", "i-autorec", s, v)
        for s, v in enumerate(values)
    }
    cells["bias/seed0"] = fake_cell("bias", "bias", 0, 0.9)
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
    # The row's command states the paper's rule (evaluate's default is the bias baseline) and
    # turns evaluate's adaptive search off (reproduce searches the grid as it stands, with the
    # paper's model: evaluate's default would fit I-AutoRec on bias-baseline residuals).
    assert auto["command"] == (
        "autorec evaluate --dataset ml-1m --model i-autorec --runs 3 --fallback constant "
        "--no-refine"
    )
    # The extra bias row is under the table's rule too, not the bias model's own.
    assert table["bias"]["command"].endswith(
        "--model bias --runs 3 --fallback constant --no-refine"
    )


def test_models_filter_keeps_only_those_rows() -> None:
    plan = Plan(dataset="ml-1m", tables=("table_1c", "table_1a"), runs=2, models=("bias", "i-rbm"))
    assert {c.setting for c in plan.cells()} == {"bias", "i-rbm"}
    assert len(plan.cells()) == 4  # I-RBM is in both tables but runs once per seed
