from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autorec.errors import ConfigError
from autorec.evaluation import rmse
from autorec.models.baselines import BiasBaseline
from autorec.models.llorma import (
    Llorma,
    LlormaConfig,
    WeightedALS,
    angular_distance,
    epanechnikov,
    kernel_weights,
)

# Small enough that one fit on the 120 x 80 synthetic set takes a few tens of milliseconds.
FAST = dict(n_anchors=5, rank=3, embed_rank=3)


def test_epanechnikov_by_hand() -> None:
    # K_h(d) = 3/4 (1 - (d/h)^2) for d < h: with h = 0.8, d = 0 -> 0.75,
    # d = 0.4 -> 0.75 * (1 - 0.25) = 0.5625, d = 0.6 -> 0.75 * (1 - 0.5625) = 0.328125,
    # d = h and beyond -> 0.
    got = epanechnikov(np.array([0.0, 0.4, 0.6, 0.8, 1.5]), 0.8)
    np.testing.assert_allclose(got, [0.75, 0.5625, 0.328125, 0.0, 0.0])


def test_angular_distance_by_hand() -> None:
    # (1, 0) against (1, 1): 45 degrees; (0, 2): 90; (-3, 0): 180; (5, 0): same direction.
    x = np.array([[1.0, 0.0]])
    y = np.array([[1.0, 1.0], [0.0, 2.0], [-3.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    got = angular_distance(x, y)
    # A zero vector has no direction: distance pi/2 by convention.
    np.testing.assert_allclose(got, [[math.pi / 4, math.pi / 2, math.pi, 0.0, math.pi / 2]])


def test_kernel_weights_of_anchor_rows() -> None:
    # Rows 0 and 2 are anchors. Row 0 is at distance 0 from itself (weight 0.75) and pi/4 from
    # row 1 (h = 1: 0.75 * (1 - (pi/4)^2) = 0.28240...); row 2 is orthogonal to both (0).
    factors = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    got = kernel_weights(factors, np.array([0, 2]), 1.0, "epanechnikov")
    expected_01 = 0.75 * (1 - (math.pi / 4) ** 2)
    np.testing.assert_allclose(got, [[0.75, expected_01, 0.0], [0.0, 0.0, 0.75]], rtol=1e-6)
    np.testing.assert_array_equal(kernel_weights(factors, np.array([1]), 1.0, "flat"), [[1, 1, 1]])


def _dense_step(
    kernel_rows: np.ndarray,
    kernel_cols: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    target: np.ndarray,
    features: np.ndarray,
    offset: np.ndarray,
    reg: float,
    weighted_reg: bool,
    n_rows: int,
) -> np.ndarray:
    """Reference half-step with explicit loops: for every row, the weighted ridge solution
    ``(sum w y y^T + lam I)^-1 sum w (target - offset) y`` (0 for rows without weight)."""
    k = features.shape[1]
    out = np.zeros((n_rows, k))
    for row in range(n_rows):
        gram, rhs, mass = np.zeros((k, k)), np.zeros(k), 0.0
        for j in np.flatnonzero(rows == row):
            w = kernel_rows[row] * kernel_cols[cols[j]]
            y = features[cols[j]]
            gram += w * np.outer(y, y)
            rhs += w * (target[j] - offset[cols[j]]) * y
            mass += w
        if mass > 0:
            lam = reg * mass if weighted_reg else reg
            out[row] = np.linalg.solve(gram + lam * np.eye(k), rhs)
    return out


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("per_mass", [False, True])
def test_als_sweep_solves_the_weighted_normal_equations(biases: bool, per_mass: bool) -> None:
    # Two anchors with kernels that zero out some users and items: one sweep must give, per
    # anchor, exactly the loop-computed weighted ridge solutions (user step with the starting
    # V, then item step with the new U), with U_u = [p, b_u, 1] and V_i = [q, 1, b_i].
    rng = np.random.default_rng(1)
    n_users, n_items, rank, reg = 7, 6, 2, 0.3
    cells = rng.permutation(n_users * n_items)[:25]
    user_idx, item_idx = cells // n_items, cells % n_items
    target = rng.normal(size=25)
    user_kernel = rng.uniform(0, 1, (2, n_users)) * (rng.random((2, n_users)) > 0.3)
    item_kernel = rng.uniform(0, 1, (2, n_items)) * (rng.random((2, n_items)) > 0.3)
    als = WeightedALS(
        2, n_users, n_items, rank, reg, per_mass, torch.Generator().manual_seed(0), 0.5, biases
    )
    als.set_data(user_kernel, item_kernel, user_idx, item_idx, target)
    if biases:  # item biases start at 0: give them values so the user step must subtract them
        for t in range(2):
            active = als.item_sides[t].rows
            als.V[t, active, rank + 1] = rng.normal(size=len(active))
    V0 = als.V.astype(np.float64)
    als.sweep()
    weighted = per_mass
    for t in range(2):
        if biases:
            user_feat, user_off = V0[t][:, : rank + 1], V0[t][:, rank + 1]  # [q, 1], b_i
        else:
            user_feat, user_off = V0[t], np.zeros(n_items)
        expected_u = _dense_step(
            user_kernel[t], item_kernel[t], user_idx, item_idx, target,
            user_feat, user_off, reg, weighted, n_users,
        )  # fmt: skip
        np.testing.assert_allclose(als.U[t][:, : expected_u.shape[1]], expected_u, atol=1e-4)
        U1 = als.U[t].astype(np.float64)
        if biases:
            item_feat = np.c_[U1[:, :rank], U1[:, rank + 1]]  # [p, 1]
            item_off = U1[:, rank]  # b_u
            got_v = np.c_[als.V[t][:, :rank], als.V[t][:, rank + 1]]  # [q, b_i]
        else:
            item_feat, item_off, got_v = U1, np.zeros(n_users), als.V[t]
        expected_v = _dense_step(
            item_kernel[t], user_kernel[t], item_idx, user_idx, target,
            item_feat, item_off, reg, weighted, n_items,
        )  # fmt: skip
        np.testing.assert_allclose(got_v, expected_v, atol=1e-4)
    if biases:  # the constant columns stay exactly 1
        assert (als.U[:, :, rank + 1] == 1).all() and (als.V[:, :, rank] == 1).all()


def test_one_flat_anchor_equals_the_global_model(low_rank_split) -> None:
    # With one anchor and every weight 1, the local model is the global model trained the same
    # way (same form, seed stream and number of sweeps), so predictions must coincide.
    cfg = LlormaConfig(n_anchors=1, kernel="flat", rank=3, n_epochs=6, global_epochs=6)
    model = Llorma(cfg).fit(low_rank_split.train)
    test = low_rank_split.test
    np.testing.assert_array_equal(model.local.U[0], model.global_user)
    np.testing.assert_array_equal(model.local.V[0], model.global_item)
    expected = np.clip(model._global(test.user_idx, test.item_idx), 1.0, 5.0)
    np.testing.assert_allclose(model.predict(test.user_idx, test.item_idx), expected, atol=1e-5)
    # ... and a different number of sweeps gives a different model (the check has teeth).
    other = Llorma(cfg.replace(n_epochs=2)).fit(low_rank_split.train)
    assert not np.allclose(other.local.U[0], other.global_user)


def test_combination_weights_on_hand_made_example(tiny) -> None:
    # Two rank-1 local models on raw ratings (no centring, no local biases), weights set by hand.
    model = Llorma(
        LlormaConfig(n_anchors=2, rank=1, embed_rank=1, center="none", local_biases=False)
    ).fit(tiny)
    model.user_kernel = np.array([[0.75, 0.5, 0.0], [0.25, 0.0, 0.0]], dtype=np.float32)
    model.item_kernel = np.array([[1.0, 0.5], [0.5, 0.0]], dtype=np.float32)
    model.local.U = np.array([[[2.0], [1.0], [3.0]], [[8.0], [1.0], [1.0]]], dtype=np.float32)
    model.local.V = np.array([[[1.0], [2.0]], [[0.5], [1.0]]], dtype=np.float32)
    model.global_user = np.array([[1.0], [1.0], [1.5]], dtype=np.float32)
    model.global_item = np.array([[2.0], [2.0]], dtype=np.float32)
    # (u0, i0): w = (0.75 * 1, 0.25 * 0.5) = (0.75, 0.125), f = (2 * 1, 8 * 0.5) = (2, 4):
    #           (0.75 * 2 + 0.125 * 4) / 0.875 = 2 / 0.875 = 2.285714...
    # (u1, i1): w = (0.5 * 0.5, 0 * 0) = (0.25, 0), f_0 = 1 * 2 = 2 -> 2
    # (u0, i1): w = (0.75 * 0.5, 0.25 * 0) = (0.375, 0), f_0 = 2 * 2 = 4 -> 4
    # (u2, i0): no weight at all -> the global model, 1.5 * 2 = 3
    got = model.predict(np.array([0, 1, 0, 2]), np.array([0, 1, 1, 0]))
    np.testing.assert_allclose(got, [2.0 / 0.875, 2.0, 4.0, 3.0], rtol=1e-6)


def test_beats_bias_baseline_on_low_rank_data(low_rank_split) -> None:
    test = low_rank_split.test
    bias = BiasBaseline().fit(low_rank_split.train, low_rank_split.val)
    model = Llorma(LlormaConfig(**FAST)).fit(low_rank_split.train, low_rank_split.val)
    bias_rmse = rmse(test.rating, bias.predict(test.user_idx, test.item_idx))
    model_rmse = rmse(test.rating, model.predict(test.user_idx, test.item_idx))
    # Measured: bias 0.952, LLORMA 0.607 (the data are rank 3 plus noise 0.25).
    assert model_rmse < 0.8 * bias_rmse


def test_history_and_retrain_without_validation(low_rank_split) -> None:
    model = Llorma(LlormaConfig(**FAST)).fit(low_rank_split.train, low_rank_split.val)
    h = model.history
    assert 1 <= h.best_epoch <= h.n_epochs
    assert h.val_rmse[h.best_epoch - 1] == min(h.val_rmse)
    # The protocol retrains for best_epoch sweeps without validation: exactly that many run.
    again = Llorma(LlormaConfig(**FAST, n_epochs=h.best_epoch)).fit(low_rank_split.train)
    assert again.history.n_epochs == h.best_epoch == again.history.best_epoch


@pytest.mark.parametrize(
    "field, value",
    [
        ("bandwidth", 0.0),
        ("reg", 0.0),
        ("embed_reg", -1.0),
        ("kernel", "gaussian"),
        ("reg_per_kernel_mass", "weight"),
        ("center", "median"),
        ("n_anchors", 0),
        ("n_epochs", 0),
    ],
)
def test_bad_config_raises(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        LlormaConfig(**{field: value})


def test_config_saved_before_the_rename_still_loads() -> None:
    # model.json files written before reg_scaling became reg_per_kernel_mass.
    assert LlormaConfig.from_dict({"reg_scaling": "weight"}).reg_per_kernel_mass is True
    assert LlormaConfig.from_dict({"reg_scaling": "none"}).reg_per_kernel_mass is False
