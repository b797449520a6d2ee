"""Full-ranking evaluation: known answers worked out by hand, an oracle, a random scorer, and the
protocol's rules (exclusion, ties, raw scores, bounded memory)."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any, ClassVar

import numpy as np
import pytest

from autorec.data import IdIndex, Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.ease import Ease
from autorec.models.popularity import Popularity
from autorec.ranking import (
    RANKING_KINDS,
    RankingMetric,
    block_size,
    default_relevance,
    evaluate_ranking,
    gini_index,
    parse_metrics,
    rank_users,
    rating_step,
    score_block,
    select_on_validation,
    top_k,
)


class FixedScores(Recommender):
    """A model whose raw score of (u, i) is ``matrix[u, i]``, whatever the training data."""

    name: ClassVar[str] = "fixed"
    config_class: ClassVar[type[BaseConfig]] = BaseConfig

    def __init__(self, matrix: np.ndarray, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.matrix = np.asarray(matrix, dtype=np.float64)

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        assert self.matrix.shape == (train.n_users, train.n_items)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.matrix[user_idx, item_idx]


def ratings(n_users: int, n_items: int, triples: list[tuple[int, int, float]]) -> Ratings:
    u, i, r = (np.array(c) for c in zip(*triples, strict=True)) if triples else ([], [], [])
    return Ratings(
        np.asarray(u, dtype=np.int32),
        np.asarray(i, dtype=np.int32),
        np.asarray(r, dtype=np.float32),
        IdIndex(np.arange(n_users)),
        IdIndex(np.arange(n_items)),
        (1.0, 5.0),
    )


# -- parsing and defaults ------------------------------------------------------------------------
def test_parse_metrics_splits_rating_and_ranking_in_order() -> None:
    rating, ranking = parse_metrics("rmse, MAE,ndcg@10,recall@20,ndcg@10,ndcg_graded@5")
    assert rating == ("rmse", "mae")
    assert ranking == (
        RankingMetric("ndcg", 10),
        RankingMetric("recall", 20),
        RankingMetric("ndcg_graded", 5),
    )
    assert [str(m) for m in ranking] == ["ndcg@10", "recall@20", "ndcg_graded@5"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rmse,ndgc@10", "unknown metric 'ndgc@10'"),
        ("recall", "needs a cutoff"),
        ("hit@0", "cutoff must be >= 1"),
        ("precision@k", "unknown metric"),
        ("", "no metric given"),
    ],
)
def test_parse_metrics_rejects_bad_names(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_metrics(spec)


@pytest.mark.parametrize(
    ("scale", "step", "expected"),
    [((1.0, 5.0), 1.0, 4.0), ((0.5, 5.0), 0.5, 4.0), ((1.0, 10.0), 1.0, 8.0), ((0, 1), 1, 1.0)],
)
def test_default_relevance(scale, step, expected) -> None:
    # low + 0.75 (high - low) on the step grid: 1 + 3 = 4; 0.5 + 3.375 -> 0.5 + 7 * 0.5 = 4.0;
    # 1 + 6.75 -> 8; 0 + 0.75 -> 1.
    assert default_relevance(scale, step) == expected


def test_rating_step_is_the_smallest_gap() -> None:
    assert rating_step(ratings(2, 2, [(0, 0, 1.0), (0, 1, 3.0), (1, 0, 5.0)])) == 2.0
    assert rating_step(ratings(2, 2, [(0, 0, 3.5), (0, 1, 4.0)])) == 0.5


# -- ties ----------------------------------------------------------------------------------------
def test_top_k_breaks_ties_by_lower_index() -> None:
    # Sorted descending: 3 (items 1 and 3), then 2 (items 2, 4, 5): the top 3 are 1, 3, 2.
    scores = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0], [0.0] * 6])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_array_equal(top_k(scores, 10)[0], [1, 3, 2, 4, 5, 0])


def test_top_k_matches_a_full_stable_sort_under_heavy_ties() -> None:
    # Reference: a full sort on (-score, index). Integer scores 0..3 on 50 items make ties at
    # the k-th value in almost every row, where argpartition's own order is arbitrary.
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 50)).astype(np.float64)
    scores[:5, :] = -np.inf
    for k in (1, 7, 20, 50):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k(scores, k), expected)


# -- a hand-built list ---------------------------------------------------------------------------
@pytest.fixture
def hand() -> tuple[FixedScores, Ratings, Ratings]:
    """User 0 of 10 items. Train: items 0 and 1 (scored highest, must be excluded). Test: item 2
    rated 5, items 5 and 9 rated 4 (relevant), item 7 rated 3 (not). The candidates, by score:
    3, 2, 4, 9, 7, 5, 6, 8, so the hits are at positions 2 (item 2), 4 (item 9) and 6 (item 5).
    User 1 has only a test rating of 2 (skipped); user 2 has no test rating (not counted) and
    rates items 1..9 in train, so that no item of user 0 is answered by the fallback."""
    matrix = np.zeros((3, 10))
    for item, score in {0: 10, 1: 9, 3: 8, 2: 7, 4: 6, 9: 5, 7: 4, 5: 3, 6: 2, 8: 1}.items():
        matrix[0, item] = score
    train = ratings(3, 10, [(0, 0, 4), (0, 1, 2), (1, 0, 3)] + [(2, i, 3) for i in range(1, 10)])
    test = ratings(3, 10, [(0, 2, 5), (0, 5, 4), (0, 7, 3), (0, 9, 4), (1, 3, 2)])
    return FixedScores(matrix).fit(train), train, test


def test_hand_built_list_at_5(hand) -> None:
    model, train, test = hand
    result = evaluate_ranking(model, train, test, metrics=[f"{m}@5" for m in RANKING_KINDS])
    m = result.metrics
    d2, d4 = 1 / math.log2(3), 1 / math.log2(5)  # discounts of positions 2 and 4
    assert m["precision@5"] == pytest.approx(2 / 5)  # 2 hits in 5
    assert m["recall@5"] == pytest.approx(2 / 3)  # 2 of the 3 relevant
    assert m["recall_trunc@5"] == pytest.approx(2 / 3)  # / min(5, 3)
    # DCG = 1/log2(3) + 1/log2(5) = 1.0616; ideal = 1 + 1/log2(3) + 1/log2(4) = 2.1309.
    assert m["ndcg@5"] == pytest.approx((d2 + d4) / (1 + d2 + 0.5))
    assert m["ndcg@5"] == pytest.approx(0.49819, abs=1e-5)
    # Graded gains 2^(r - 4 + 1) - 1: item 2 (r=5) 3, items 9 and 5 (r=4) 1.
    # DCG = 3/log2(3) + 1/log2(5) = 2.3235; ideal = 3 + 1/log2(3) + 1/log2(4) = 4.1309.
    assert m["ndcg_graded@5"] == pytest.approx((3 * d2 + d4) / (3 + d2 + 0.5))
    assert m["ndcg_graded@5"] == pytest.approx(0.56246, abs=1e-5)
    # Precision at the hits: 1/2 (position 2), 2/4 (position 4); divided by min(5, 3).
    assert m["map@5"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert m["mrr@5"] == pytest.approx(1 / 2)
    assert m["hit@5"] == 1.0
    # One list of 5 items out of 10; counts: five 1s and five 0s. Gini with the counts sorted
    # ascending, j = 6..10 weighted (2j - 11): (1 + 3 + 5 + 7 + 9) / (10 * 5) = 0.5.
    assert m["coverage@5"] == pytest.approx(0.5)
    assert m["gini@5"] == pytest.approx(0.5)
    assert result.n_users == 1
    assert result.n_users_skipped == 1
    assert result.n_relevant == 3


def test_hand_built_list_at_3(hand) -> None:
    model, train, test = hand
    m = evaluate_ranking(model, train, test, metrics="precision@3,recall@3,ndcg@3,map@3").metrics
    # Only position 2 hits among 3, 2, 4.
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    assert m["map@3"] == pytest.approx((1 / 2) / 3)


def test_relevance_override(hand) -> None:
    model, train, test = hand
    # Relevant = rated 5: only item 2, found at position 2.
    result = evaluate_ranking(model, train, test, metrics="recall@5,mrr@5", relevance=5.0)
    assert result.metrics == {"recall@5": 1.0, "mrr@5": 0.5}
    assert result.relevance == 5.0
    with pytest.raises(ConfigError, match="outside the rating scale"):
        evaluate_ranking(model, train, test, relevance=6.0)


def test_validation_items_are_excluded_too(hand) -> None:
    model, train, test = hand
    # Put item 3 (the top candidate) in user 0's validation ratings: the list moves up one
    # place and item 2 becomes the first hit.
    val = ratings(3, 10, [(0, 3, 4)])
    assert evaluate_ranking(model, train, test, val=val, metrics="mrr@5").metrics["mrr@5"] == 1.0
    top = rank_users(model, np.array([0]), 4, exclude=[train, val])
    np.testing.assert_array_equal(top, [[2, 4, 9, 7]])


def test_relevant_test_pair_also_in_train_is_dropped_and_counted(hand) -> None:
    model, train, test = hand
    test2 = ratings(3, 10, [(0, 2, 5), (0, 5, 4), (0, 9, 4), (0, 0, 5)])  # (0, 0) is in train
    result = evaluate_ranking(model, train, test2, metrics="recall@5")
    assert result.n_relevant_excluded == 1
    assert result.metrics["recall@5"] == pytest.approx(2 / 3)


def test_gini_index_extremes() -> None:
    assert gini_index(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    # All on one of n items: (2n - n - 1) / n = (n - 1) / n.
    assert gini_index(np.array([0, 0, 0, 8])) == pytest.approx(3 / 4)
    assert gini_index(np.zeros(4)) == 0.0


# -- raw scores, fallback, padding -------------------------------------------------------------
def test_ranks_on_the_raw_score_not_the_clipped_rating() -> None:
    # Items 1 and 2 both predict above the scale (clipped to 5, a tie); the raw 7 beats the 6.
    train = ratings(1, 4, [(0, 0, 3), (0, 1, 3), (0, 2, 3), (0, 3, 3)])
    model = FixedScores(np.array([[1.0, 6.0, 7.0, 2.0]])).fit(train)
    assert model.predict(np.array([0, 0]), np.array([1, 2])).tolist() == [5.0, 5.0]
    np.testing.assert_array_equal(rank_users(model, np.array([0]), 4), [[2, 1, 3, 0]])


def test_unknown_pairs_get_the_unclipped_fallback() -> None:
    # Item 2 has no training rating: the constant fallback, (1 + 5) / 2 = 3, answers it.
    train = ratings(2, 3, [(0, 0, 5), (1, 1, 1)])
    matrix = np.array([[9.0, -4.0, 100.0], [0.5, 2.0, 100.0]])
    model = FixedScores(matrix, fallback="constant").fit(train)
    np.testing.assert_array_equal(score_block(model, np.array([1, 0])), [[0.5, 2, 3], [9, -4, 3]])


class BlockScores(FixedScores):
    """FixedScores that scores whole rows at once (a ``_score_block`` of its own, as AutoRec's),
    leaving the fallback to ``_block_with_fallback``."""

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        self.block_calls += 1
        return self._block_with_fallback(user_idx, self.matrix[user_idx])


def test_dense_block_route_gives_the_pairwise_numbers() -> None:
    # Same model both ways: the dense route must give the pair route's scores, the fallback
    # (3 for item 2, which has no training rating) included.
    train = ratings(2, 3, [(0, 0, 5), (1, 1, 1)])
    matrix = np.array([[9.0, -4.0, 100.0], [0.5, 2.0, 100.0]])
    dense = BlockScores(matrix).fit(train)
    dense.block_calls = 0
    expected = score_block(FixedScores(matrix).fit(train), np.array([1, 0]))
    np.testing.assert_array_equal(score_block(dense, np.array([1, 0])), expected)
    assert dense.block_calls == 1


def test_short_candidate_lists_are_padded() -> None:
    train = ratings(1, 4, [(0, 0, 3), (0, 2, 3), (0, 3, 3)])
    model = FixedScores(np.zeros((1, 4))).fit(train)
    np.testing.assert_array_equal(
        rank_users(model, np.array([0]), 3, exclude=[train]), [[1, -1, -1]]
    )


def test_non_finite_score_raises() -> None:
    train = ratings(1, 3, [(0, 0, 3), (0, 1, 3), (0, 2, 3)])
    model = FixedScores(np.array([[0.0, np.nan, 1.0]])).fit(train)
    with pytest.raises(ValueError, match="user_idx 0, item_idx 1"):
        score_block(model, np.array([0]))


# -- an oracle and a random scorer --------------------------------------------------------------
def _interactions(n_users: int, n_items: int, n_train: int, n_test: int, seed: int):
    """Each user rates ``n_train`` random items in train and ``n_test`` others in test (ratings
    drawn from 1..5)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for u in range(n_users):
        items = rng.permutation(n_items)[: n_train + n_test]
        values = rng.integers(1, 6, n_train + n_test)
        tr += [(u, i, r) for i, r in zip(items[:n_train], values[:n_train], strict=True)]
        te += [(u, i, r) for i, r in zip(items[n_train:], values[n_train:], strict=True)]
    return ratings(n_users, n_items, tr), ratings(n_users, n_items, te)


def test_oracle_gets_the_best_achievable_values() -> None:
    train, test = _interactions(150, 60, 10, 30, seed=1)
    matrix = np.zeros((150, 60))
    matrix[test.user_idx, test.item_idx] = test.rating  # test ratings above everything else
    matrix[train.user_idx, train.item_idx] = 99.0  # excluded, or the oracle would fail
    model = FixedScores(matrix).fit(train)
    result = evaluate_ranking(model, train, test, metrics=None, keep_per_user=True)
    m = result.metrics
    for name in ("ndcg", "ndcg_graded", "recall_trunc", "map", "mrr", "hit"):
        for k in (10, 20):
            assert m[f"{name}@{k}"] == pytest.approx(1.0), name
    # Precision and recall are capped by the number of relevant items n_u:
    # precision@k = mean(min(n_u, k) / k), recall@k = mean(min(n_u, k) / n_u).
    n_rel = np.bincount(test.user_idx[test.rating >= 4], minlength=150)
    n_rel = n_rel[n_rel > 0]
    assert m["precision@10"] == pytest.approx(np.mean(np.minimum(n_rel, 10) / 10))
    assert m["recall@10"] == pytest.approx(np.mean(np.minimum(n_rel, 10) / n_rel))
    assert (n_rel > 10).any()  # so recall@10 < 1 is exercised
    assert result.n_users == len(n_rel)


def test_random_scores_get_the_random_expectation() -> None:
    # 180 candidates per user (200 items - 20 in train), 5 relevant (all test ratings 5).
    # Hits in a top 10 are hypergeometric: mean 10 * 5 / 180, variance
    # 10 (5/180)(175/180)(170/179) = 0.2565, so recall (= hits / 5) has per-user sd 0.101 and
    # its mean over 400 users an sd of 0.0051; hit@10 = 1 - C(175, 10) / C(180, 10) = 0.2469.
    n_users, n_items = 400, 200
    train, test = _interactions(n_users, n_items, 20, 5, seed=2)
    test = Ratings(
        test.user_idx, test.item_idx, np.full(test.n_ratings, 5.0), test.users, test.items, (1, 5)
    )
    matrix = np.random.default_rng(3).random((n_users, n_items))
    m = evaluate_ranking(FixedScores(matrix).fit(train), train, test).metrics
    assert m["recall@10"] == pytest.approx(10 / 180, abs=4 * 0.0051)
    assert m["precision@10"] == pytest.approx(5 / 180, abs=4 * 0.0051 / 2)
    # hit@10 over 400 users: sd sqrt(0.2469 * 0.7531 / 400) = 0.0216; 4 sd.
    assert m["hit@10"] == pytest.approx(1 - math.comb(175, 10) / math.comb(180, 10), abs=0.087)
    # A random list reaches most of the catalogue; a popularity list the same 10 items for all.
    assert m["coverage@10"] > 0.9
    pop = evaluate_ranking(Popularity().fit(train), train, test).metrics
    assert pop["gini@10"] > 0.9 > m["gini@10"]


# -- blocks and memory ---------------------------------------------------------------------------
def test_result_does_not_depend_on_the_block_size() -> None:
    train, test = _interactions(90, 40, 8, 6, seed=4)
    model = FixedScores(np.random.default_rng(5).integers(0, 3, (90, 40)).astype(float))
    model.fit(train)
    one = evaluate_ranking(model, train, test, max_block_bytes=1)  # one user per block
    big = evaluate_ranking(model, train, test)
    assert one.block_users == 1 and big.block_users == block_size(40)
    for name, value in big.metrics.items():
        assert one.metrics[name] == pytest.approx(value), name


@pytest.mark.parametrize("model_class", [Popularity, Ease])
def test_memory_stays_within_the_block_bound(model_class) -> None:
    # 3,000 x 2,000: the whole float64 score matrix alone is 48 MB. With 4 MiB blocks the
    # traced peak (numpy and scipy report their allocations to tracemalloc) must stay near
    # 4 MiB plus the O(n_ratings) user lists (60,000 ratings: about 3 MB of sort temporaries).
    n_users, n_items = 3000, 2000
    train, test = _interactions(n_users, n_items, 12, 8, seed=6)
    model = model_class().fit(train)
    tracemalloc.start()
    try:
        evaluate_ranking(model, train, test, max_block_bytes=4 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_select_on_validation_picks_the_better_ranker() -> None:
    train, val = _interactions(60, 30, 6, 6, seed=7)
    good = np.zeros((60, 30))
    good[val.user_idx, val.item_idx] = val.rating
    bad = -good
    best, scores = select_on_validation(
        lambda name: FixedScores({"bad": bad, "good": good}[name]), ["bad", "good"], train, val
    )
    assert best == "good"
    assert scores["good"] == pytest.approx(1.0) and scores["bad"] < 0.5
