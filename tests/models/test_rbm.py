from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autorec.data import IdIndex, Ratings, paper_split
from autorec.errors import ConfigError
from autorec.evaluation import rmse
from autorec.models import make_model
from autorec.models.base import Recommender
from autorec.models.baselines import BiasBaseline
from autorec.models.rbm import (
    RBM,
    RBMConfig,
    RBMParams,
    VisibleRows,
    cd_gradients,
    free_energy,
    hidden_probs,
    rating_levels,
)

from .contract import RecommenderContract

# These problems are tiny: with several threads, each of the many small sparse products pays
# a thread wake-up, which on a busy machine made this file 15x slower (55 s against 3.5 s).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Small and quick (each fit well under a second on the 120 x 80 contract data); every field the
# training depends on is set here so that changing a default does not change these tests.
FAST = dict(
    n_hidden=16,
    lr=0.1,
    weight_decay=0.01,
    batch_size=10,
    n_epochs=20,
    patience=5,
    min_epochs=0,
    cd_epochs=(1, 6, 9, 12),
)


class TestURBMBiasFallbackContract(RecommenderContract):
    # The registered names run the contract in test_contract.py; this adds the bias fallback.
    @pytest.fixture(scope="class")
    @classmethod
    def make_model(cls):
        return lambda seed=0: RBM(RBMConfig(variant="user", seed=seed, fallback="bias", **FAST))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _tiny_params() -> RBMParams:
    """2 positions, K = 2 rating values, F = 2 hidden units; weight row i * K + k is W_ik."""
    weight = torch.tensor(
        [
            [0.5, -1.0],  # W_0,0
            [1.0, 0.2],  # W_0,1
            [-0.5, 0.3],  # W_1,0
            [0.4, 0.6],  # W_1,1
        ]
    )
    visible_bias = torch.tensor([[0.1, -0.2], [0.3, 0.0]])
    hidden_bias = torch.tensor([0.2, -0.1])
    return RBMParams(weight, visible_bias, hidden_bias)


def _rows(row, position, level, n_rows=1) -> VisibleRows:
    return VisibleRows.build(
        np.array(row), np.array(position), np.array(level), n_rows, n_positions=2, n_levels=2
    )


def test_free_energy_by_hand() -> None:
    # One row observing position 0 at level 1 and position 1 at level 0:
    # F(v) = -sum_i sum_k v_ik b_ik - sum_j log(1 + exp(b_j + sum_ik v_ik W_ikj))
    #      = -(b_01 + b_10) - log(1 + exp(0.2 + 1.0 - 0.5)) - log(1 + exp(-0.1 + 0.2 + 0.3))
    #      = -(-0.2 + 0.3) - log(1 + e^0.7) - log(1 + e^0.4)
    #      = -0.1 - 1.1031860 - 0.9130153 = -2.1162013
    energy = free_energy(_tiny_params(), _rows([0, 0], [0, 1], [1, 0]))
    assert float(energy[0]) == pytest.approx(-2.1162013, abs=1e-6)


def test_free_energy_counts_only_observed_positions() -> None:
    # Only position 1 at level 1: F = -b_11 - log(1 + e^(0.2 + 0.4)) - log(1 + e^(-0.1 + 0.6))
    #   = -0 - 1.0374879 - 0.9740770 = -2.0115649 (position 0 contributes nothing).
    energy = free_energy(_tiny_params(), _rows([0], [1], [1]))
    assert float(energy[0]) == pytest.approx(-2.0115649, abs=1e-6)


def _numpy_cd1(params: RBMParams, rows, positions, levels, n_rows, u_hidden):
    """CD-1 written out entry by entry (the reference for cd_gradients)."""
    w = params.weight.numpy().astype(np.float64).reshape(2, 2, -1)  # (pos, K, F)
    bv = params.visible_bias.numpy().astype(np.float64)
    bh = params.hidden_bias.numpy().astype(np.float64)
    h0 = np.tile(bh, (n_rows, 1))
    for r, i, k in zip(rows, positions, levels, strict=True):
        h0[r] += w[i, k]
    h0 = _sigmoid(h0)
    h_state = (u_hidden < h0).astype(np.float64)
    v1 = []
    for r, i in zip(rows, positions, strict=True):
        logits = bv[i] + w[i] @ h_state[r]
        v1.append(np.exp(logits) / np.exp(logits).sum())
    h1 = np.tile(bh, (n_rows, 1))
    for r, i, p in zip(rows, positions, v1, strict=True):
        h1[r] += p @ w[i]
    h1 = _sigmoid(h1)
    dw = np.zeros_like(w)
    dbv = np.zeros_like(bv)
    for r, i, k, p in zip(rows, positions, levels, v1, strict=True):
        dw[i, k] += h0[r]
        dw[i] -= p[:, None] * h1[r][None, :]
        dbv[i, k] += 1.0
        dbv[i] -= p
    dbh = h0.sum(0) - h1.sum(0)
    return dw.reshape(4, -1), dbv, dbh


def test_cd1_gradient_matches_hand_computation() -> None:
    # Two rows: row 0 observes (pos 0, level 1), (pos 1, level 0); row 1 observes (pos 1, level 1).
    # The hidden draw is fixed, so the sampled states (and the whole estimate) are deterministic;
    # the expected values come from the loop-by-loop numpy reference above.
    params = _tiny_params()
    rows, positions, levels = [0, 0, 1], [0, 1, 1], [1, 0, 1]
    u_hidden = np.array([[0.3, 0.9], [0.7, 0.2]])
    draws = []

    def uniform(shape):
        draws.append(shape)
        assert shape == (2, 2)
        return torch.tensor(u_hidden, dtype=torch.float32)

    dw, dbv, dbh = cd_gradients(params, _rows(rows, positions, levels, n_rows=2), 1, uniform)
    assert draws == [(2, 2)]  # CD-1: one hidden draw, the reconstruction stays probabilities
    ref_w, ref_bv, ref_bh = _numpy_cd1(params, rows, positions, levels, 2, u_hidden)
    np.testing.assert_allclose(dw.numpy(), ref_w, atol=1e-6)
    np.testing.assert_allclose(dbv.numpy(), ref_bv, atol=1e-6)
    np.testing.assert_allclose(dbh.numpy(), ref_bh, atol=1e-6)
    # One number by hand, db_v of (position 1, level 1): data 1 (row 1) minus the two
    # reconstructions' p(level 1). Row 1: h0 = sigmoid([0.2 + 0.4, -0.1 + 0.6]) =
    # [0.6457, 0.6225], u = [0.7, 0.2] samples h = [0, 1], logits [0.3 + 0.3, 0.0 + 0.6] give
    # p = 0.5. Row 0: h0 = sigmoid([0.2 + 1.0 - 0.5, -0.1 + 0.2 + 0.3]) = [0.6682, 0.5987],
    # u = [0.3, 0.9] samples h = [1, 0], logits [0.3 - 0.5, 0.0 + 0.4] give
    # p = e^0.6 / (1 + e^0.6) = 0.645656. So 1 - 0.5 - 0.645656 = -0.145656.
    assert float(dbv[1, 1]) == pytest.approx(-0.145656, abs=1e-6)


def test_cd_t_draws_t_hidden_and_t_minus_1_visible_samples() -> None:
    shapes = []

    def uniform(shape):
        shapes.append(shape)
        return torch.full(shape, 0.5)

    cd_gradients(_tiny_params(), _rows([0, 0, 1], [0, 1, 1], [1, 0, 1], n_rows=2), 3, uniform)
    assert shapes == [(2, 2), (3,), (2, 2), (3,), (2, 2)]


def test_expected_rating_is_the_softmax_mean(tiny) -> None:
    # I-RBM on tiny: rows = items, positions = users, rating values {1, 3, 4, 5} (K = 4).
    model = RBM(RBMConfig(variant="item", n_hidden=2, n_epochs=1)).fit(tiny)
    np.testing.assert_array_equal(model.levels, [1.0, 3.0, 4.0, 5.0])
    gen = torch.Generator().manual_seed(1)
    params = RBMParams(
        torch.randn(3 * 4, 2, generator=gen),
        torch.randn(3, 4, generator=gen),
        torch.randn(2, generator=gen),
    )
    model.params = params
    model._row_hidden = hidden_probs(params, model._visible(tiny), None)
    # Item 1 ("b") was rated 3 by user 0 (level 1) and 1 by user 2 (level 0); predict user 1:
    # p_h = sigmoid(b_h + W[u0, 3] + W[u2, 1]), p_k = softmax(b_v[u1] + W[u1] p_h),
    # prediction = sum_k p_k * value_k.
    w = params.weight.numpy().astype(np.float64).reshape(3, 4, 2)
    bv = params.visible_bias.numpy().astype(np.float64)
    p_h = _sigmoid(params.hidden_bias.numpy() + w[0, 1] + w[2, 0])
    p = _softmax(bv[1] + w[1] @ p_h)
    expected = float(p @ np.array([1.0, 3.0, 4.0, 5.0]))
    assert model.predict(np.array([1]), np.array([1]))[0] == pytest.approx(expected, abs=1e-5)


def _ratings(values) -> Ratings:
    n = len(values)
    return Ratings(
        np.arange(n) % 3,
        np.arange(n) // 3,
        np.asarray(values, dtype=np.float32),
        IdIndex(np.arange(3)),
        IdIndex(np.arange((n + 2) // 3)),
        (0.0, 100.0),
    )


def test_continuous_scale_is_refused_naming_the_values() -> None:
    with pytest.raises(ConfigError, match=r"discrete.*2\.37"):
        RBM(RBMConfig(n_epochs=1)).fit(_ratings([1.0, 2.37, 4.0, 5.0]))
    # 41 half-step values are too many softmax units.
    with pytest.raises(ConfigError, match="41 distinct values"):
        rating_levels(np.arange(41) * 0.5)


def test_half_stars_are_accepted() -> None:
    np.testing.assert_array_equal(rating_levels(np.array([0.5, 4.5, 3.0, 0.5])), [0.5, 3.0, 4.5])


def test_cd_schedule() -> None:
    cfg = RBMConfig(cd_steps=(1, 3, 5, 9), cd_epochs=(1, 4, 6, 8))
    assert [cfg.cd_steps_at(e) for e in range(1, 10)] == [1, 1, 1, 3, 3, 5, 5, 9, 9]


@pytest.mark.parametrize(
    "bad",
    [
        {"cd_steps": (1, 3), "cd_epochs": (1,)},
        {"cd_steps": (1, 3), "cd_epochs": (2, 5)},
        {"cd_steps": (1, 3), "cd_epochs": (5, 1)},
        {"variant": "both"},
        {"n_hidden": 0},
        {"momentum": 1.0},
        {"min_epochs": -1},
        {"lr": -1.0},
    ],
)
def test_bad_config_is_refused(bad) -> None:
    with pytest.raises(ConfigError):
        RBMConfig(**bad)


def test_registry_names_and_save_name(tmp_path, low_rank) -> None:
    for name, variant in (("i-rbm", "item"), ("u-rbm", "user")):
        model = make_model(name, n_hidden=4, n_epochs=2)
        assert model.config.variant == variant
        model.fit(low_rank).save(tmp_path / name)
        assert Recommender.load(tmp_path / name).model_name == name


def test_early_stopping_keeps_best_epoch(low_rank_split) -> None:
    model = RBM(
        RBMConfig(
            n_hidden=16,
            lr=0.3,
            weight_decay=0.0,
            batch_size=100,
            n_epochs=40,
            patience=3,
            min_epochs=0,
        )
    )
    model.fit(low_rank_split.train, low_rank_split.val)
    history = model.history
    best = int(np.argmin(history.val_rmse)) + 1
    assert history.best_epoch == best
    assert history.n_epochs < 40  # stopped early
    val = low_rank_split.val
    assert rmse(val.rating, model.predict(val.user_idx, val.item_idx)) == pytest.approx(
        history.best_val_rmse, abs=1e-5
    )


@pytest.mark.parametrize("variant", ["item", "user"])
def test_beats_bias_baseline_on_low_rank_data(variant) -> None:
    # Rank-3 structure that biases alone cannot capture (conftest.low_rank_ratings).
    from tests.conftest import low_rank_ratings

    data = low_rank_ratings(n_users=300, n_items=200, density=0.25, noise=0.1, seed=5)
    split = paper_split(data, seed=0)
    bias = BiasBaseline().fit(split.train)
    config = RBMConfig(
        variant=variant,
        n_hidden=32,
        lr=0.1,
        weight_decay=0.001,
        batch_size=20,
        n_epochs=40,
        patience=5,
        min_epochs=0,
    )
    rbm = RBM(config).fit(split.train, split.val)
    test = split.test
    bias_rmse = rmse(test.rating, bias.predict(test.user_idx, test.item_idx))
    rbm_rmse = rmse(test.rating, rbm.predict(test.user_idx, test.item_idx))
    assert math.isfinite(rbm_rmse)
    assert rbm_rmse < bias_rmse - 0.03, (rbm_rmse, bias_rmse)


def test_half_star_ratings_get_one_softmax_unit_per_value(low_rank) -> None:
    # Halving the 1..5 ratings gives the half-star values 0.5..2.5: K = 5 levels, found in the
    # training ratings, and the expected ratings stay inside them.
    halves = Ratings(
        low_rank.user_idx,
        low_rank.item_idx,
        low_rank.rating / 2,
        low_rank.users,
        low_rank.items,
        (0.5, 2.5),
    )
    model = RBM(RBMConfig(**FAST)).fit(halves)
    np.testing.assert_array_equal(model.levels, [0.5, 1.0, 1.5, 2.0, 2.5])
    pred = model.predict(halves.user_idx, halves.item_idx)
    assert pred.min() >= 0.5 and pred.max() <= 2.5
    assert rmse(halves.rating, pred) < rmse(halves.rating, np.full(len(pred), halves.rating.mean()))
