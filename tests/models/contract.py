"""The shared contract every model must honour (implicit's / lkpy's contract-test pattern).

``test_contract.py`` runs it over every registered model name (``autorec.models.MODEL_NAMES``),
so a new model cannot skip it; a test module may subclass :class:`RecommenderContract` for an
extra configuration. A subclass provides the class-scoped fixture ``make_model``: a function
``seed -> fresh unfitted model`` (a fast configuration). Data: the synthetic low-rank set of
``conftest.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from autorec.data import Ratings
from autorec.evaluation import rmse
from autorec.models.base import Recommender

ModelFactory = Callable[..., Recommender]


class RecommenderContract:
    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, make_model: ModelFactory, low_rank_split) -> Recommender:
        # Fitted once per model and shared by the read-only tests below.
        return make_model().fit(low_rank_split.train, low_rank_split.val)

    def test_fit_returns_self(self, make_model, low_rank_split) -> None:
        model = make_model()
        assert model.fit(low_rank_split.train, low_rank_split.val) is model

    def test_predict_shape_finite_and_in_scale(self, fitted, low_rank_split) -> None:
        test = low_rank_split.test
        pred = fitted.predict(test.user_idx, test.item_idx)
        assert pred.shape == (test.n_ratings,)
        assert pred.dtype == np.float32
        assert np.isfinite(pred).all()
        assert pred.min() >= 1.0 and pred.max() <= 5.0

    def test_predict_does_not_mutate(self, fitted, low_rank_split) -> None:
        test = low_rank_split.test
        first = fitted.predict(test.user_idx, test.item_idx)
        second = fitted.predict(test.user_idx, test.item_idx)
        np.testing.assert_array_equal(first, second)

    def test_unknown_index_gets_fallback(self, fitted) -> None:
        # -1 = an id outside the vocabulary: the constant fallback is mid-scale, (1 + 5) / 2 = 3,
        # and the bias fallback is mu + b_u (+ b_i) with the missing side's bias left out.
        pred = fitted.predict(np.array([-1, 0, -1]), np.array([0, -1, -1]))
        assert np.isfinite(pred).all()
        if fitted.config.fallback == "constant":
            np.testing.assert_allclose(pred, [3.0, 3.0, 3.0])
        else:
            assert pred[2] == pytest.approx(np.clip(fitted.global_mean, 1, 5), abs=1e-5)
        assert not fitted.known_mask(np.array([-1, 0]), np.array([0, -1])).any()

    def test_unseen_in_training_gets_fallback(self, make_model, low_rank: Ratings) -> None:
        # Drop every rating of user 0 from training: its pairs must be answered by the fallback.
        train = low_rank.subset(low_rank.user_idx != 0)
        model = make_model().fit(train)
        known = model.known_mask(np.array([0, 1]), np.array([0, 0]))
        assert known.tolist() == [False, True]
        fallback = model._fallback_scores(np.array([0]), np.array([0]))
        assert model.predict(np.array([0]), np.array([0]))[0] == pytest.approx(
            np.clip(fallback[0], 1, 5), abs=1e-5
        )

    def test_out_of_range_index_raises(self, fitted) -> None:
        with pytest.raises(IndexError, match="user_idx"):
            fitted.predict(np.array([fitted.n_users]), np.array([0]))
        with pytest.raises(IndexError, match="item_idx"):
            fitted.predict(np.array([0]), np.array([-2]))

    def test_same_seed_same_predictions(self, make_model, low_rank_split) -> None:
        test = low_rank_split.test
        a = make_model(seed=3).fit(low_rank_split.train, low_rank_split.val)
        b = make_model(seed=3).fit(low_rank_split.train, low_rank_split.val)
        np.testing.assert_array_equal(
            a.predict(test.user_idx, test.item_idx), b.predict(test.user_idx, test.item_idx)
        )

    def test_save_load_round_trip_is_exact(self, fitted, low_rank_split, tmp_path) -> None:
        fitted.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        test = low_rank_split.test
        np.testing.assert_array_equal(
            loaded.predict(test.user_idx, test.item_idx),
            fitted.predict(test.user_idx, test.item_idx),
        )
        assert loaded.recommend(fitted.users.ids[0], 5) == fitted.recommend(fitted.users.ids[0], 5)
        # Loading never unpickles: the folder holds JSON and safetensors only (and the
        # writers' empty lock file).
        names = sorted(p.name for p in (tmp_path / "m").iterdir())
        assert len(names) == 3 and names[:2] == [".lock", "model.json"]
        assert re.fullmatch(r"weights-[0-9a-f]{16}\.safetensors", names[2])

    def test_recommend_excludes_seen_and_is_sorted(self, fitted, low_rank_split) -> None:
        train = low_rank_split.train
        user_id = fitted.users.ids[4]
        recs = fitted.recommend(user_id, k=10)
        assert len(recs) == 10
        scores = [s for _, s in recs]
        assert scores == sorted(scores, reverse=True)
        seen = set(train.items.ids[train.item_idx[train.user_idx == 4]].tolist())
        assert not seen & {item for item, _ in recs}
        with pytest.raises(KeyError):
            fitted.recommend("no-such-user", 3)

    def test_config_round_trips_through_dict(self, fitted) -> None:
        assert type(fitted.config).from_dict(fitted.config.to_dict()) == fitted.config

    def test_beats_global_mean(self, fitted, low_rank_split) -> None:
        test = low_rank_split.test
        mean_rmse = rmse(test.rating, np.full(test.n_ratings, fitted.global_mean))
        assert rmse(test.rating, fitted.predict(test.user_idx, test.item_idx)) < mean_rmse
