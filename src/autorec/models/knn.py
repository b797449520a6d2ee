"""Item-item k nearest neighbours with baseline correction and shrunk Pearson similarities.

With baseline predictors ``b_ui = mu + b_u + b_i`` (:func:`autorec.models.biases.fit_biases`,
Koren 2010, Sec. 2.1) and training residuals ``e_uj = r_uj - b_uj``:

* **similarity** (Koren 2008, Sec. 2.2): the Pearson correlation of items i and j over the users
  U(i, j) who rated both, computed on baseline residuals (as Surprise's ``pearson_baseline``),
  then shrunk towards 0 when few users support it,

  .. math::

      \\rho_{ij} = \\frac{\\sum_{u \\in U(i,j)} e_{ui} e_{uj}}
                        {\\sqrt{\\sum_{u \\in U(i,j)} e_{ui}^2 \\sum_{u \\in U(i,j)} e_{uj}^2}},
      \\qquad s_{ij} = \\frac{n_{ij}}{n_{ij} + \\lambda_2} \\rho_{ij}

  with ``n_ij = |U(i, j)|`` and ``lambda_2`` = ``shrinkage`` (Koren: 100). ``s_ii`` is set to 0 so
  that an item is never its own neighbour.
* **prediction** (Koren 2008, Eq. 3; Sarwar et al. 2001): among the items j the user rated in
  training, the neighbourhood N^k(i; u) is the ``k`` with the largest s_ij; only positive
  similarities contribute (as Surprise's ``KNNBaseline``),

  .. math::

      \\hat r_{ui} = b_{ui} + \\frac{\\sum_{j \\in N^k(i;u), s_{ij} > 0} s_{ij} e_{uj}}
                               {\\sum_{j \\in N^k(i;u), s_{ij} > 0} s_{ij}}

  and ``b_ui`` alone when no rated item has a positive similarity to i. Ties at the k-th
  similarity are broken arbitrarily (but deterministically) by ``argpartition``.

**Cost.** The three co-rating sums (``sum e_ui e_uj``, ``sum e_ui^2`` over U(i, j), and
``n_ij``) are sparse-sparse products of the residual and indicator matrices
(about ``sum_u n_u^2`` multiply-adds each). The similarity matrix is dense float32,
``4 n_items^2`` bytes, and is kept in the model and saved with it: 55 MB for ML-1M's 3,706 items,
456 MB for ML-10M's 10,677; fitting holds about five such matrices at its peak. Scoring groups
the pairs by their user's number of ratings and handles a chunk of pairs at once: the rows of
S are gathered at the user's rated items into a (pairs, max count) block, and the top k are
chosen with ``argpartition``.

References:
    B. Sarwar, G. Karypis, J. Konstan, J. Riedl. Item-based collaborative filtering
    recommendation algorithms. WWW 2001.
    Y. Koren. Factorization meets the neighborhood: a multifaceted collaborative filtering model.
    KDD 2008, Sec. 2.2 (shrunk similarities, baseline-corrected kNN; lambda_2 = 100).
    Y. Koren. Factor in the neighbors: scalable and accurate collaborative filtering. TKDD 4(1),
    2010, Sec. 2.1 (baseline predictors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.biases import fit_biases

log = logging.getLogger(__name__)

# Largest (pairs, neighbours) block gathered at once while scoring (16 MB of float32).
_BLOCK_CELLS = 1 << 22
# Padded cells below which a scoring chunk is not split further by user activity.
_SMALL_BLOCK = 1 << 14


@dataclass(frozen=True)
class ItemKNNConfig(BaseConfig):
    """Item-kNN hyperparameters; ``autorec evaluate`` tunes ``k`` and ``shrinkage``."""

    k: int = 40  # neighbours per prediction (Surprise's KNNBaseline default)
    shrinkage: float = 100.0  # lambda_2 of Koren 2008, Sec. 2.2
    # Baseline predictors: Surprise's BaselineOnly ALS defaults, as autorec.models.baselines.
    baseline_reg_user: float = 15.0
    baseline_reg_item: float = 10.0
    baseline_sweeps: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if not self.shrinkage >= 0:
            raise ConfigError(f"shrinkage must be >= 0, got {self.shrinkage}")
        if not (self.baseline_reg_user >= 0 and self.baseline_reg_item >= 0):
            raise ConfigError(
                "baseline_reg_user and baseline_reg_item must be >= 0, got "
                f"{self.baseline_reg_user}, {self.baseline_reg_item}"
            )
        if self.baseline_sweeps < 1:
            raise ConfigError(f"baseline_sweeps must be >= 1, got {self.baseline_sweeps}")


def shrunk_pearson(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    residual: np.ndarray,
    n_users: int,
    n_items: int,
    shrinkage: float,
) -> np.ndarray:
    """(n_items, n_items) float32 shrunk Pearson similarities of the residuals (module docstring).

    Pairs of items without a co-rating user, or whose co-raters all have zero residuals, get 0;
    the diagonal is 0.
    """
    shape = (n_users, n_items)
    values = residual.astype(np.float32)
    e = sp.csr_matrix((values, (user_idx, item_idx)), shape=shape)  # (n_users, n_items)
    e_sq = sp.csr_matrix((values * values, (user_idx, item_idx)), shape=shape)
    rated = sp.csr_matrix((np.ones_like(values), (user_idx, item_idx)), shape=shape)
    et, rated_t = e.T.tocsr(), rated.T.tocsr()
    cross = (et @ e).toarray()  # (n_items, n_items): sum_{u in U(i,j)} e_ui e_uj
    # sq[i, j] = sum_{u in U(i,j)} e_ui^2: the first factor of rho_ij's denominator.
    sq = (e_sq.T.tocsr() @ rated).toarray()  # (n_items, n_items)
    denom = sq * sq.T  # (n_items, n_items)
    del sq
    np.sqrt(denom, out=denom)
    # Where denom is 0 every co-rater's residual of i (or j) is 0, so cross is 0 there too.
    np.divide(cross, denom, out=cross, where=denom > 0)  # rho_ij
    del denom
    support = (rated_t @ rated).toarray()  # (n_items, n_items): n_ij
    shrink = support + np.float32(shrinkage)
    np.divide(support, shrink, out=support, where=shrink > 0)  # n_ij / (n_ij + lambda_2)
    del shrink
    cross *= support  # s_ij
    np.fill_diagonal(cross, 0.0)
    return cross


def neighbour_offsets(
    similarity: np.ndarray,
    indptr: np.ndarray,
    rated_items: np.ndarray,
    residuals: np.ndarray,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    k: int,
) -> np.ndarray:
    """(pairs,) float64 ``sum s_ij e_uj / sum s_ij`` over the top-``k`` positive neighbours.

    Args:
        similarity: (n_items, n_items) item-item similarities s_ij.
        indptr: (n_users + 1,) int64 pointers of each user's training ratings.
        rated_items: (n_ratings,) item index of each training rating, grouped by user.
        residuals: (n_ratings,) residual e_uj of each training rating, aligned with
            ``rated_items``.
        user_idx, item_idx: (pairs,) the pairs to score.
        k: neighbourhood size.

    Returns:
        The neighbourhood correction of each pair; 0 where no rated item has s_ij > 0.
    """
    out = np.zeros(len(user_idx), dtype=np.float64)
    counts = (indptr[1:] - indptr[:-1])[user_idx]  # (pairs,) ratings of each pair's user
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    sorted_counts = counts[order]
    start = 0
    while start < len(order):
        # Pairs sorted by their user's count; a chunk is padded to its last pair's count
        # (the same chunking rule as autorec.models.biased_mf.ridge_solve_rows).
        cost = np.arange(1, len(order) - start + 1) * sorted_counts[start:]
        similar = max(
            int(np.searchsorted(sorted_counts[start:], 1.25 * sorted_counts[start], "right")),
            int(np.searchsorted(cost, _SMALL_BLOCK, side="right")),
        )
        stop = start + max(1, min(int(np.searchsorted(cost, _BLOCK_CELLS, "right")), similar))
        pairs = order[start:stop]
        width = int(sorted_counts[stop - 1])
        offsets = np.arange(width)
        valid = offsets[None, :] < counts[pairs][:, None]  # (chunk, width)
        pos = np.where(valid, indptr[user_idx[pairs]][:, None] + offsets[None, :], 0)
        neighbours = rated_items[pos]  # (chunk, width) items the user rated (padded)
        sims = similarity[item_idx[pairs][:, None], neighbours]  # (chunk, width)
        # Padding and non-positive similarities contribute nothing.
        sims = np.where(valid & (sims > 0), sims, np.float32(0.0))
        res = residuals[pos]  # (chunk, width)
        if width > k:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (chunk, k)
            sims = np.take_along_axis(sims, top, axis=1)
            res = np.take_along_axis(res, top, axis=1)
        num = (sims.astype(np.float64) * res).sum(1)  # (chunk,)
        den = sims.astype(np.float64).sum(1)  # (chunk,)
        out[pairs] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        start = stop
    return out


class ItemKNN(Recommender):
    """Baseline-corrected item-item kNN with shrunk Pearson similarities (module docstring)."""

    name: ClassVar[str] = "item-knn"
    config_class: ClassVar[type[BaseConfig]] = ItemKNNConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        # Around the ML-1M validation optimum (docs/experiments.md, item-kNN).
        "k": (20, 30, 40),
        "shrinkage": (100.0, 200.0),
    }
    config: ItemKNNConfig

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        self.user_bias, self.item_bias = fit_biases(
            train,
            self.global_mean,
            reg_user=cfg.baseline_reg_user,
            reg_item=cfg.baseline_reg_item,
            n_sweeps=cfg.baseline_sweeps,
        )
        residual = (
            train.rating
            - self.global_mean
            - self.user_bias[train.user_idx]
            - self.item_bias[train.item_idx]
        ).astype(np.float32)  # (n_ratings,) e_uj
        self.similarity = shrunk_pearson(
            train.user_idx, train.item_idx, residual, self.n_users, self.n_items, cfg.shrinkage
        )
        # Each user's training items and residuals, for the neighbourhoods at scoring time.
        by_user = np.lexsort((train.item_idx, train.user_idx))
        self.user_indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(train.user_counts(), out=self.user_indptr[1:])
        self.user_items = train.item_idx[by_user]
        self.user_residuals = residual[by_user]

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        base = self.global_mean + self.user_bias[user_idx] + self.item_bias[item_idx]
        return base + neighbour_offsets(
            self.similarity,
            self.user_indptr,
            self.user_items,
            self.user_residuals,
            user_idx,
            item_idx,
            self.config.k,
        )

    def _fold_in_user(
        self, item_idx: np.ndarray, rating: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The new user's baseline bias (the baseline's own user step, item biases fixed) and
        residuals e_uj on the items rated: all a neighbourhood needs, the similarities are
        item-item."""
        cfg = self.config
        order = np.argsort(item_idx, kind="stable")  # the model keeps a user's items sorted
        items, values = item_idx[order], rating[order]
        bias = float(
            (values - self.global_mean - self.item_bias[items]).sum()
            / (cfg.baseline_reg_user + len(values))
        )
        residual = (values - self.global_mean - bias - self.item_bias[items]).astype(np.float32)
        return bias, items, residual

    def _fold_in_scores(self, state: tuple[float, np.ndarray, np.ndarray]) -> np.ndarray:
        bias, items, residual = state
        offsets = neighbour_offsets(
            self.similarity,
            np.array([0, len(items)], dtype=np.int64),
            items,
            residual,
            np.zeros(self.n_items, dtype=np.int64),
            np.arange(self.n_items, dtype=np.int64),
            self.config.k,
        )
        return self.global_mean + bias + self.item_bias + offsets

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "similarity": self.similarity,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "user_indptr": self.user_indptr,
            "user_items": self.user_items,
            "user_residuals": self.user_residuals,
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.similarity = state["similarity"]
        self.user_bias, self.item_bias = state["user_bias"], state["item_bias"]
        self.user_indptr = state["user_indptr"]
        self.user_items = state["user_items"]
        self.user_residuals = state["user_residuals"]
