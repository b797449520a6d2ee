from __future__ import annotations

import numpy as np
import pytest

from autorec.data import IdIndex, Ratings, load_dataset, paper_split
from autorec.models.baselines import BiasBaseline
from autorec.models.popularity import Popularity
from autorec.ranking import evaluate_ranking, rank_users


def _ratings(triples: list[tuple[int, int, float]], n_users: int, n_items: int) -> Ratings:
    u, i, r = (np.array(c) for c in zip(*triples, strict=True))
    return Ratings(u, i, r, IdIndex(np.arange(n_users)), IdIndex(np.arange(n_items)), (1.0, 5.0))


def test_ranks_unseen_items_by_training_count() -> None:
    # Item counts: i0 3, i1 1, i2 2, i3 2, i4 0 (no training rating). User 0 rated i0.
    # Ties (i2, i3) go to the lower index; the unrated i4 (popularity 0) comes last.
    train = _ratings(
        [(0, 0, 1), (1, 0, 5), (2, 0, 5), (1, 1, 2), (1, 2, 5), (2, 2, 4), (2, 3, 1), (0, 3, 1)],
        3,
        5,
    )
    model = Popularity().fit(train)
    np.testing.assert_array_equal(model.item_count, [3, 1, 2, 2, 0])
    top = rank_users(model, np.array([0]), 5, exclude=[train])
    np.testing.assert_array_equal(top, [[2, 1, 4, -1, -1]])


def test_rating_predictions_are_the_bias_baseline(low_rank_split) -> None:
    # The base class fits its fallback biases with the bias model's defaults (Koren 2010,
    # lambda_u = 15, lambda_i = 10, 10 sweeps), so the two predict the same ratings.
    train, test = low_rank_split.train, low_rank_split.test
    pop = Popularity().fit(train)
    bias = BiasBaseline().fit(train)
    np.testing.assert_allclose(
        pop.predict(test.user_idx, test.item_idx), bias.predict(test.user_idx, test.item_idx)
    )


@pytest.mark.realdata
def test_ml100k_matches_the_issue_probe(shared_data_dir) -> None:
    # Issue 14 measured popularity on ML-100k (paper split seed 0, relevance >= 4, train and
    # validation excluded) at NDCG@10 0.135 and Recall@10 0.167; its Recall is the truncated
    # one (hits / min(10, |R_u|)), recall_trunc here.
    split = paper_split(load_dataset("ml-100k", data_dir=shared_data_dir).ratings, seed=0)
    model = Popularity().fit(split.train)
    m = evaluate_ranking(
        model, split.train, split.test, val=split.val, metrics="ndcg@10,recall_trunc@10"
    ).metrics
    assert m["ndcg@10"] == pytest.approx(0.135, abs=0.001)
    assert m["recall_trunc@10"] == pytest.approx(0.167, abs=0.001)
    # Refitting on train + validation (the protocol's retrain) moves it little.
    refit = Popularity().fit(split.train.merge(split.val))
    m2 = evaluate_ranking(refit, split.train, split.test, val=split.val, metrics="ndcg@10")
    assert m2.metrics["ndcg@10"] == pytest.approx(m["ndcg@10"], abs=0.003)
