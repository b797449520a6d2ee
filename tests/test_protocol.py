from __future__ import annotations

import numpy as np
import pytest

from autorec.data import paper_split
from autorec.protocol import grid_points, merge, run_protocol


def test_grid_points_is_the_cartesian_product_in_fixed_order() -> None:
    assert grid_points({}) == [{}]
    assert grid_points({"b": (1, 2), "a": ("x",)}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]


def test_merge_restores_the_training_part(low_rank) -> None:
    split = paper_split(low_rank, seed=0)
    both = merge(split.train, split.val)
    assert both.n_ratings == split.train.n_ratings + split.val.n_ratings
    assert both.n_ratings + split.test.n_ratings == low_rank.n_ratings
    assert not both.has_duplicates()


def test_protocol_picks_the_lowest_validation_rmse_and_retrains(low_rank) -> None:
    grid = {"lam": (0.001, 10.0)}
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid=grid,
        overrides={"hidden": (8,), "n_epochs": 40, "patience": 5},
    )
    cands = result.candidates
    assert [c["lam"] for c in cands] == [0.001, 10.0]
    best = min(cands, key=lambda c: c["val_rmse"])
    assert result.record["hyperparameters"]["lam"] == best["lam"]
    assert result.record["val_rmse"] == pytest.approx(best["val_rmse"])
    # Retrained on train + validation for the chosen number of epochs, without early stopping.
    assert result.record["hyperparameters"]["n_epochs"] == best["best_epoch"]
    assert result.model.history.n_epochs == best["best_epoch"]
    assert result.model._train_x.nnz == result.split.train.n_ratings + result.split.val.n_ratings
    assert result.record["n_test"] == result.split.test.n_ratings
    assert np.isfinite(result.record["test_rmse"])


def test_protocol_is_deterministic(low_rank) -> None:
    kwargs = dict(seed=1, grid={"reg_user": (1.0, 15.0)})
    a = run_protocol(low_rank, "bias", **kwargs).record
    b = run_protocol(low_rank, "bias", **kwargs).record
    assert a["test_rmse"] == b["test_rmse"] and a["hyperparameters"] == b["hyperparameters"]
