"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), a closed-form item-item model.

With X the binary (n_users, n_items) training matrix (1 = the user rated the item, any value),
EASE learns the item-item weights

.. math::

    \\min_B \\|X - XB\\|_F^2 + \\lambda \\|B\\|_F^2
    \\quad \\text{s.t. } \\operatorname{diag}(B) = 0,

whose solution (Steck 2019, Eq. 8) is

.. math::

    P = (X^\\top X + \\lambda I)^{-1}, \\qquad
    B = I - P \\operatorname{diagMat}(1 / \\operatorname{diag}(P)),

i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and ``B_jj = 0``. The ranking score of user u is
row u of ``X B``. Fitting is one Gram matrix and one inverse of an (n_items, n_items) matrix:
O(n_items^3) time and about 3 x 8 x n_items^2 bytes (0.3 GB for ML-1M's 3,706 items, 17 GB for
ML-20M's 26,744); ``B`` is kept in float32.

EASE is a ranking model: its scores are not ratings. ``predict`` (and so RMSE) is the damped bias
baseline ``mu + b_u + b_i`` of the base class, stated as such; ``_rank_score`` (and
``_score_block``, whole rows) is the EASE score, defined for every pair (a user or an item
without training ratings scores 0: its row of X, or its column of B, is zero).

lambda is chosen on validation ranking quality (:data:`LAMBDA_GRID`,
:func:`autorec.ranking.select_on_validation`), never on RMSE, which does not depend on it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender

log = logging.getLogger(__name__)

#: lambda candidates for validation (1-2-5 steps over two decades around the paper's 500).
LAMBDA_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)

# Users scored per product X[users] @ B: bounds the dense (users, n_items) float32 result.
_SCORE_CELLS = 1 << 22


@dataclass(frozen=True)
class EaseConfig(BaseConfig):
    # Steck 2019, Sec. 4: lambda = 500 on ML-20M, chosen there on validation data.
    lam: float = 500.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise ConfigError(f"lam must be a finite number > 0, got {self.lam}")


def binary_matrix(n_users: int, n_items: int, user_idx, item_idx) -> sp.csr_matrix:
    """(n_users, n_items) CSR with 1.0 where a rating exists (duplicate pairs count once)."""
    x = sp.csr_matrix(
        (np.ones(len(user_idx)), (np.asarray(user_idx), np.asarray(item_idx))),
        shape=(n_users, n_items),
    )
    x.data[:] = 1.0
    return x


def ease_weights(x: sp.spmatrix | np.ndarray, lam: float) -> np.ndarray:
    """EASE's B (n_items, n_items) float64 for the (n_users, n_items) binary matrix ``x``
    (Steck 2019, Eq. 8)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    gram = (x.T @ x).toarray()  # (n_items, n_items) co-occurrence counts
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    del gram
    b = p / (-np.diag(p))[None, :]  # column j scaled by -1 / P_jj
    b[np.diag_indices_from(b)] = 0.0
    return b


class Ease(Recommender):
    """EASE item-item ranking model; rating predictions are the bias baseline's."""

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type[BaseConfig]] = EaseConfig
    #: Candidates for lambda, selected on validation ranking quality (not the RMSE protocol's
    #: ``tuning_grid``: lambda does not change EASE's rating predictions at all).
    ranking_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"lam": LAMBDA_GRID}
    config: EaseConfig

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        x = binary_matrix(train.n_users, train.n_items, train.user_idx, train.item_idx)
        log.info("EASE: inverting a %d x %d Gram matrix", train.n_items, train.n_items)
        self.weights = ease_weights(x, self.config.lam).astype(np.float32)
        self.x_indptr = x.indptr.astype(np.int64)
        self.x_items = x.indices.astype(np.int32)

    def _x(self) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.ones(len(self.x_items), dtype=np.float32), self.x_items, self.x_indptr),
            shape=(self.n_users, self.n_items),
        )

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        # The rating prediction: the damped bias baseline fitted by the base class.
        return self._fallback_mean + self._user_bias[user_idx] + self._item_bias[item_idx]

    def _rank_score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """(X B)_ui (float64) for aligned index arrays."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        unique, inverse = np.unique(users, return_inverse=True)
        x = self._x()
        out = np.empty(len(users), dtype=np.float64)
        order = np.argsort(inverse, kind="stable")  # pairs grouped by user
        sorted_inverse = inverse[order]
        per_chunk = max(1, _SCORE_CELLS // max(1, self.n_items))
        for start in range(0, len(unique), per_chunk):
            rows = x[unique[start : start + per_chunk]] @ self.weights  # (chunk, n_items)
            lo, hi = np.searchsorted(sorted_inverse, [start, start + per_chunk])
            at = order[lo:hi]
            out[at] = rows[inverse[at] - start, items[at]]
        return out

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """Rows ``X[users] B`` (n_block, n_items), float64."""
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        return np.asarray(self._x()[users] @ self.weights, dtype=np.float64)

    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> tuple[float, np.ndarray]:
        # EASE's input is the binary row x_new (the items rated, whatever the value).
        return self._fold_in_bias(item_idx, rating), item_idx

    def _fold_in_scores(self, state: tuple[float, np.ndarray]) -> np.ndarray:
        # The rating prediction of a new user: the bias baseline with their own damped bias.
        return self._fallback_mean + state[0] + self._item_bias

    def _fold_in_rank(self, state: tuple[float, np.ndarray], scores: np.ndarray) -> np.ndarray:
        """``x_new B``: the sum of B's rows of the items rated, (n_items,)."""
        return self.weights[state[1]].sum(0, dtype=np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "x_indptr": self.x_indptr, "x_items": self.x_items}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.weights = state["weights"].astype(np.float32)
        self.x_indptr = state["x_indptr"].astype(np.int64)
        self.x_items = state["x_items"].astype(np.int32)
