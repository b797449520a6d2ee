from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.errors import ConfigError
from autorec.evaluation import evaluate, rmse
from autorec.models import make_model
from autorec.models.baselines import BiasBaseline
from autorec.models.biased_mf import BiasedMF, BiasedMFConfig, ridge_solve_rows


def _exact_biases(tiny, penalty: np.ndarray) -> np.ndarray:
    """[b_u..., b_i...] minimising sum (r - mu - b_u - b_i)^2 + sum penalty * b^2, from numpy's
    solve of the normal equations (X^T X + diag(penalty)) b = X^T (r - mu), X = one-hot design."""
    x = np.zeros((tiny.n_ratings, tiny.n_users + tiny.n_items))
    x[np.arange(tiny.n_ratings), tiny.user_idx] = 1.0
    x[np.arange(tiny.n_ratings), tiny.n_users + tiny.item_idx] = 1.0
    y = tiny.rating - tiny.rating.mean()
    return np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)


@pytest.mark.parametrize("per_rating", [False, True])
def test_rank_zero_als_reaches_the_exact_regularised_biases(tiny, per_rating) -> None:
    # Rank 0 leaves only mu + b_u + b_i; alternating exact minimisation of a strictly convex
    # objective converges to its unique minimiser. tiny: counts n_u = (2, 1, 1), n_i = (2, 2).
    reg = 0.5
    counts = np.array([2, 1, 1, 2, 2], dtype=float)
    penalty = reg * (counts if per_rating else np.ones(5))
    expected = _exact_biases(tiny, penalty)
    model = BiasedMF(BiasedMFConfig(rank=0, reg=reg, reg_per_rating=per_rating, n_epochs=300))
    model.fit(tiny)
    np.testing.assert_allclose(model.user_bias, expected[:3], atol=1e-5)
    np.testing.assert_allclose(model.item_bias, expected[3:], atol=1e-5)
    # The score is mu + b_u + b_i: u1 x i1 (an unrated pair) = 3.25 + b_u1 + b_i1.
    score = model._score(np.array([1]), np.array([1]))[0]
    assert score == pytest.approx(3.25 + expected[1] + expected[4], abs=1e-5)


def test_ridge_solve_rows_matches_numpy_solve() -> None:
    # Four rows with 3, 0, 1 and 5 entries (one empty row, widths that need padding): each
    # row's answer is numpy's solve of (X^T X + diag(reg)) x = X^T y.
    rng = np.random.default_rng(1)
    counts = np.array([3, 0, 1, 5])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cols = rng.integers(0, 6, counts.sum())
    targets = rng.normal(size=counts.sum()).astype(np.float32)
    other = rng.normal(size=(6, 3)).astype(np.float32)
    row_reg = rng.uniform(0.5, 2.0, size=(4, 3)).astype(np.float32)
    got = ridge_solve_rows(
        indptr,
        torch.from_numpy(cols),
        torch.from_numpy(targets),
        torch.from_numpy(other),
        torch.from_numpy(row_reg),
    ).numpy()
    for row in range(4):
        sl = slice(indptr[row], indptr[row + 1])
        x = other[cols[sl]].astype(np.float64)
        expected = np.linalg.solve(x.T @ x + np.diag(row_reg[row]), x.T @ targets[sl])
        np.testing.assert_allclose(got[row], expected, rtol=1e-4, atol=1e-5)
    assert not got[1].any()  # no ratings: the ridge solution is 0


def test_last_item_step_is_the_exact_ridge_solution(low_rank) -> None:
    # After a sweep the item step was the last one: given the final user factors and biases,
    # each [q_i, b_i] solves its ridge problem with target r - mu - b_u and penalty reg * n_i.
    cfg = BiasedMFConfig(rank=3, reg=0.05, n_epochs=2)
    model = BiasedMF(cfg).fit(low_rank)
    mu = low_rank.rating.mean(dtype=np.float64)
    for item in (0, 17, 42):
        rows = np.flatnonzero(low_rank.item_idx == item)
        users = low_rank.user_idx[rows]
        x = np.hstack([model.user_factors[users], np.ones((len(rows), 1))]).astype(np.float64)
        y = low_rank.rating[rows] - mu - model.user_bias[users]
        expected = np.linalg.solve(x.T @ x + cfg.reg * len(rows) * np.eye(4), x.T @ y)
        got = np.append(model.item_factors[item], model.item_bias[item])
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_beats_bias_baseline_on_low_rank_data(low_rank_split) -> None:
    train, val, test = low_rank_split.train, low_rank_split.val, low_rank_split.test
    mf = BiasedMF(BiasedMFConfig(rank=5, reg=0.05)).fit(train, val)
    bias = BiasBaseline().fit(train, val)
    mf_rmse = rmse(test.rating, mf.predict(test.user_idx, test.item_idx))
    bias_rmse = rmse(test.rating, bias.predict(test.user_idx, test.item_idx))
    assert mf_rmse < bias_rmse - 0.05


def test_early_stopping_keeps_the_best_sweep(low_rank_split) -> None:
    # A weak penalty overfits: validation RMSE rises after a few sweeps. The kept parameters
    # must be the best sweep's, not the last one's.
    train, val = low_rank_split.train, low_rank_split.val
    model = BiasedMF(BiasedMFConfig(rank=10, reg=0.001, n_epochs=30, patience=3, min_delta=0.0))
    model.fit(train, val)
    h = model.history
    assert h.best_epoch < h.n_epochs  # training went past the best sweep
    assert h.best_epoch == int(np.argmin(h.val_rmse)) + 1
    assert evaluate(model, val)["rmse"] == pytest.approx(min(h.val_rmse), abs=1e-5)
    assert len(h.train_rmse) == len(h.val_rmse) == len(h.epoch_seconds) == h.n_epochs


def test_without_validation_runs_n_epochs(low_rank) -> None:
    model = BiasedMF(BiasedMFConfig(rank=3, n_epochs=4)).fit(low_rank)
    assert model.history.n_epochs == 4 and model.history.best_epoch == 4
    assert model.history.train_rmse[-1] < model.history.train_rmse[0]


def test_registered_and_config_checked() -> None:
    assert isinstance(make_model("biased-mf"), BiasedMF)
    for bad in ({"reg": 0.0}, {"rank": -1}, {"reg_per_rating": "count"}, {"n_epochs": 0}):
        with pytest.raises(ConfigError):
            BiasedMFConfig(**bad)


def test_config_saved_before_the_rename_still_loads() -> None:
    # model.json files written before reg_scaling became reg_per_rating.
    assert BiasedMFConfig.from_dict({"reg_scaling": "count"}).reg_per_rating is True
    assert BiasedMFConfig.from_dict({"reg_scaling": "none"}).reg_per_rating is False
