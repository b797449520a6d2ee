from __future__ import annotations

import math

import numpy as np
import pytest

from autorec.errors import ConfigError
from autorec.evaluation import rmse
from autorec.models import make_model
from autorec.models.baselines import BiasBaseline
from autorec.models.biases import fit_biases
from autorec.models.knn import ItemKNN, ItemKNNConfig, neighbour_offsets, shrunk_pearson

# Hand-made residuals e_ui, 4 users x 3 items ("." = not rated):
#        i0   i1   i2
#   u0    1    1    .
#   u1   -1   -1    2
#   u2    2    .   -1
#   u3    .    2    2
_USERS = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3])
_ITEMS = np.array([0, 1, 0, 1, 2, 0, 2, 1, 2])
_RESID = np.array([1, 1, -1, -1, 2, 2, -1, 2, 2], dtype=np.float32)
# With shrinkage 2, by hand:
# s01: co-raters u0, u1: sum e e = 1*1 + (-1)(-1) = 2; sum e_i0^2 = 2, sum e_i1^2 = 2;
#      rho = 2 / sqrt(2 * 2) = 1; n = 2 -> s = 2 / (2 + 2) * 1 = 0.5.
# s02: co-raters u1, u2: sum e e = (-1)(2) + (2)(-1) = -4; sums of squares 1 + 4 = 5 and
#      4 + 1 = 5; rho = -4 / 5 = -0.8 -> s = 0.5 * -0.8 = -0.4.
# s12: co-raters u1, u3: sum e e = (-1)(2) + (2)(2) = 2; sum e_i1^2 = 1 + 4 = 5,
#      sum e_i2^2 = 4 + 4 = 8; rho = 2 / sqrt(40) -> s = 0.5 * 2 / sqrt(40) = 0.158114.
_S12 = 0.5 * 2 / math.sqrt(40)
_EXPECTED_S = np.array([[0.0, 0.5, -0.4], [0.5, 0.0, _S12], [-0.4, _S12, 0.0]])


def test_shrunk_pearson_on_hand_made_matrix() -> None:
    sim = shrunk_pearson(_USERS, _ITEMS, _RESID, 4, 3, shrinkage=2.0)
    assert sim.dtype == np.float32
    np.testing.assert_allclose(sim, _EXPECTED_S, atol=1e-6)


def test_neighbour_offsets_on_hand_made_matrix() -> None:
    # Users' ratings grouped by user (the order above), plus u4 who rated only i0 (e = 1.5).
    indptr = np.array([0, 2, 5, 7, 9, 10])
    items = np.append(_ITEMS, 0)
    resid = np.append(_RESID, np.float32(1.5))
    users, targets = np.array([2, 0, 3, 4]), np.array([1, 2, 0, 2])
    # u2 x i1, k = 2: neighbours i0 (s = 0.5, e = 2) and i2 (s = 0.158, e = -1):
    #   (0.5 * 2 - 0.158114) / (0.5 + 0.158114) = 1.279241.
    # u0 x i2: i0 has s = -0.4 (left out), i1 has s = 0.158 and e = 1 -> 1.
    # u3 x i0: i1 (s = 0.5, e = 2), i2 (s = -0.4, left out) -> 2.
    # u4 x i2: its only neighbour i0 has s = -0.4 -> no positive neighbour -> 0.
    got = neighbour_offsets(_EXPECTED_S.astype(np.float32), indptr, items, resid, users, targets, 2)
    np.testing.assert_allclose(got, [(1 - _S12) / (0.5 + _S12), 1.0, 2.0, 0.0], atol=1e-6)
    # k = 1 keeps the single most similar rated item: u2 x i1 -> i0 only -> e = 2.
    got = neighbour_offsets(_EXPECTED_S.astype(np.float32), indptr, items, resid, users, targets, 1)
    np.testing.assert_allclose(got, [2.0, 1.0, 2.0, 0.0], atol=1e-6)


def _naive_prediction(train, mu, b_user, b_item, user, item, k, shrinkage) -> float | None:
    """Koren 2008's formulas with plain loops, for a check of the vectorised model."""
    resid = {
        (u, i): r - mu - b_user[u] - b_item[i]
        for u, i, r in zip(train.user_idx, train.item_idx, train.rating, strict=True)
    }
    raters = {i: {u for (u, j) in resid if j == i} for i in range(train.n_items)}
    neighbours = []
    for (u, j), e_uj in resid.items():
        if u != user or j == item:
            continue
        common = raters[item] & raters[j]
        cross = sum(resid[v, item] * resid[v, j] for v in common)
        norm = math.sqrt(
            sum(resid[v, item] ** 2 for v in common) * sum(resid[v, j] ** 2 for v in common)
        )
        rho = cross / norm if norm > 0 else 0.0
        neighbours.append((len(common) / (len(common) + shrinkage) * rho, e_uj))
    ranked = sorted(neighbours, reverse=True)
    if len(ranked) > k and ranked[k - 1][0] > 0 and math.isclose(ranked[k - 1][0], ranked[k][0]):
        return None  # a tie at the k-th neighbour: either choice is a valid neighbourhood
    top = [(s, e) for s, e in ranked[:k] if s > 0]
    offset = sum(s * e for s, e in top) / sum(s for s, _ in top) if top else 0.0
    return mu + b_user[user] + b_item[item] + offset


def test_model_matches_naive_loops(low_rank_split) -> None:
    train = low_rank_split.train
    cfg = ItemKNNConfig(k=5, shrinkage=10.0)
    model = ItemKNN(cfg).fit(train)
    mu = float(train.rating.mean(dtype=np.float64))
    b_user, b_item = fit_biases(train, mu)
    test = low_rank_split.test
    users, items = test.user_idx[:25], test.item_idx[:25]
    expected = np.array(
        [
            _naive_prediction(train, mu, b_user, b_item, u, i, cfg.k, cfg.shrinkage)
            for u, i in zip(users, items, strict=True)
        ],
        dtype=float,  # None (a tied neighbourhood) -> nan
    )
    checked = ~np.isnan(expected)
    assert checked.sum() >= 20
    np.testing.assert_allclose(model._score(users, items)[checked], expected[checked], atol=1e-4)


def test_beats_bias_baseline_on_low_rank_data(low_rank_split) -> None:
    train, test = low_rank_split.train, low_rank_split.test
    knn = ItemKNN(ItemKNNConfig(k=20, shrinkage=10.0)).fit(train)
    bias = BiasBaseline().fit(train)
    knn_rmse = rmse(test.rating, knn.predict(test.user_idx, test.item_idx))
    bias_rmse = rmse(test.rating, bias.predict(test.user_idx, test.item_idx))
    assert knn_rmse < bias_rmse - 0.02


def test_recommend_scores_every_unseen_item(low_rank_split) -> None:
    # recommend() scores all items of one user through _score: one block as wide as the
    # user's ratings, and the top item is the argmax of the model's own scores.
    model = ItemKNN(ItemKNNConfig(k=10, shrinkage=10.0)).fit(low_rank_split.train)
    user = 7
    scores = model.predict(np.full(model.n_items, user), np.arange(model.n_items))
    scores[model._seen_items(user)] = -np.inf
    (best_id, best_score), *_ = model.recommend(model.users.ids[user], k=3)
    assert best_score == pytest.approx(scores.max())
    assert best_id == model.items.ids[int(np.argmax(scores))]


def test_registered_and_config_checked() -> None:
    assert isinstance(make_model("item-knn"), ItemKNN)
    assert "n_epochs" not in ItemKNNConfig.__dataclass_fields__  # not iterative
    for bad in ({"k": 0}, {"shrinkage": -1.0}, {"baseline_sweeps": 0}):
        with pytest.raises(ConfigError):
            ItemKNNConfig(**bad)
