from __future__ import annotations

import math

import numpy as np
import pytest

from autorec.evaluation import evaluate, mae, mean_ci95, rmse
from autorec.models.baselines import BiasBaseline


def test_rmse_and_mae_on_hand_numbers() -> None:
    # errors 1, -1, 2, 0: squared mean (1 + 1 + 4 + 0) / 4 = 1.5; absolute mean 4 / 4 = 1.0
    y = np.array([3.0, 4.0, 5.0, 1.0])
    p = np.array([4.0, 3.0, 3.0, 1.0])
    assert rmse(y, p) == pytest.approx(math.sqrt(1.5))
    assert mae(y, p) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([], [], "empty"),
        ([1.0, 2.0], [1.0], "entries"),
        ([1.0, 2.0], [1.0, float("nan")], r"y_pred\[1\] = nan"),
        ([1.0, 2.0], [1.0, float("inf")], "not finite"),
    ],
)
def test_metrics_refuse_bad_input(y, p, match) -> None:
    with pytest.raises(ValueError, match=match):
        rmse(np.array(y), np.array(p))


def test_mean_ci95_on_hand_numbers() -> None:
    # values 0.83, 0.84, 0.82, 0.83, 0.83: mean 0.83, sample sd sqrt(0.0002 / 4) = 0.0070711,
    # t(0.975, 4 dof) = 2.776445 -> half-width 2.776445 * 0.0070711 / sqrt(5) = 0.0087798
    mean, ci = mean_ci95([0.83, 0.84, 0.82, 0.83, 0.83])
    assert mean == pytest.approx(0.83)
    assert ci == pytest.approx(0.0087798, abs=1e-6)
    # Two values 1 and 3: sd sqrt(2), t(1 dof) = 12.706205 -> 12.706205 * sqrt(2) / sqrt(2)
    assert mean_ci95([1.0, 3.0]) == pytest.approx((2.0, 12.706205))
    m1, c1 = mean_ci95([0.9])
    assert m1 == 0.9 and math.isnan(c1)
    with pytest.raises(ValueError):
        mean_ci95([])


def test_evaluate_counts_fallback(tiny) -> None:
    # Train without item 1: test pairs on item 1 are answered by the fallback.
    train = tiny.subset(tiny.item_idx == 0)
    model = BiasBaseline().fit(train)
    result = evaluate(model, tiny)
    assert result["n"] == 4
    assert result["n_fallback"] == 2
