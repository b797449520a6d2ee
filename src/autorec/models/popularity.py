"""Most-popular baseline (``pop``): every user gets the same list, the items with the most
training ratings.

.. math::

    s_{ui} = n_i = |\\{u' : (u', i) \\in O_{train}\\}|

Popularity is the number of training ratings of the item, whatever their value (the "MostPop"
of Cremonesi, Koren and Turrin, RecSys 2010, and RecBole's ``Pop``), not the number of high
ratings: a rating of any value is the user's choice to watch the item, and ranking predicts what
a user goes on to rate. Every ranking table must beat it.

As a rating predictor (``predict``, RMSE) the model is the damped bias baseline
``mu + b_u + b_i`` (Koren 2010; the base class's fallback biases), so its RMSE is the bias
baseline's: popularity is not a rating. ``_rank_score`` and ``_score_block`` return the
popularity for every pair, including users and items without training ratings (an unseen item
has popularity 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from autorec.data.ratings import Ratings
from autorec.models.base import BaseConfig, Recommender


@dataclass(frozen=True)
class PopularityConfig(BaseConfig):
    """No fields of its own: ratings are predicted by the base class's bias baseline."""


class Popularity(Recommender):
    """Rank by the number of training ratings; predict ratings with the bias baseline."""

    name: ClassVar[str] = "pop"
    config_class: ClassVar[type[BaseConfig]] = PopularityConfig
    config: PopularityConfig

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        self.item_count = np.bincount(train.item_idx, minlength=train.n_items).astype(np.int64)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        # The rating prediction: the damped bias baseline fitted by the base class.
        return self._fallback_mean + self._user_bias[user_idx] + self._item_bias[item_idx]

    def _rank_score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Popularity n_i (float64) of each pair's item; the user does not matter."""
        return self.item_count[np.asarray(item_idx, dtype=np.int64)].astype(np.float64)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """(n_block, n_items): the popularity row, once per user."""
        n_block = len(np.asarray(user_idx).reshape(-1))
        return np.repeat(self.item_count[None, :].astype(np.float64), n_block, axis=0)

    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> float:
        return self._fold_in_bias(item_idx, rating)

    def _fold_in_scores(self, state: float) -> np.ndarray:
        # The rating prediction of a new user: the bias baseline with their own damped bias.
        return self._fallback_mean + state + self._item_bias

    def _fold_in_rank(self, state: float, scores: np.ndarray) -> np.ndarray:
        return self.item_count.astype(np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_count": self.item_count}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.item_count = state["item_count"].astype(np.int64)
