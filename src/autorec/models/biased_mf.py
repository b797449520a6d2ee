"""Biased matrix factorisation (Koren, Bell, Volinsky 2009), fitted by alternating least squares.

.. math::

    \\hat r_{ui} = \\mu + b_u + b_i + p_u^\\top q_i, \\qquad
    \\min_{P, Q, b} \\sum_{(u,i) \\in O} (r_{ui} - \\hat r_{ui})^2
        + \\sum_u \\lambda_u (\\|p_u\\|^2 + b_u^2) + \\sum_i \\lambda_i (\\|q_i\\|^2 + b_i^2)

with mu the (fixed) training mean. ``reg_per_rating=False`` is the paper's objective as written,
``lambda_u = lambda_i = reg``. ``reg_per_rating=True`` makes ``reg`` a penalty per training
rating, ``lambda_u = reg * n_u`` (ALS-WR, Zhou et al. 2008): this is the penalty that Koren's
per-rating stochastic gradient updates actually apply (every rating of u shrinks p_u once), and
it gives the better validation RMSE on MovieLens (``docs/experiments.md``).

**Alternating least squares with biases.** Write the user's unknowns as one vector
``x_u = [p_u, b_u]`` (k + 1 entries) and the items' as ``y_i = [q_i, 1]`` (the bias column fixed
to 1). With the items fixed, each user's problem is an exact ridge regression,

.. math::  x_u = (Y_u^\\top Y_u + \\lambda_u I)^{-1} Y_u^\\top (r_u - \\mu - b_{I(u)})

where Y_u stacks the y_i of the items u rated. The item step is the mirror image with
``y_i = [q_i, b_i]`` and users ``[p_u, 1]``. Each half-sweep solves every user (item) at once:
rows are sorted by their number of ratings and cut into chunks, a chunk's neighbours are
gathered into a zero-padded (rows, max_count, k + 1) tensor, the normal equations are built
with one batched matrix product and solved by batched Cholesky factorisation. One sweep (an
"epoch" in ``history``) costs about ``n_ratings * (k + 1)^2`` multiply-adds plus
``(n_users + n_items) * (k + 1)^3 / 3`` for the solves; each step can only lower the objective,
so there is no learning rate to tune. With a validation set, training stops when the
validation RMSE has not improved by ``min_delta`` for ``patience`` sweeps and the best
parameters are kept (:mod:`autorec.models.training`).

References:
    Y. Koren, R. Bell, C. Volinsky. Matrix factorization techniques for recommender systems.
    IEEE Computer 42(8), 2009, pp. 30-37 (the model and objective, Eq. 5).
    Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan. Large-scale parallel collaborative filtering
    for the Netflix Prize. AAIM 2008 (ALS, and the count-weighted penalty).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError, ModelFitError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.training import EpochScores, IterativeConfig, TrainingSteps, run_epochs

log = logging.getLogger(__name__)

# Largest padded neighbour block gathered at once, in float32 values (64 MB).
_BLOCK_VALUES = 1 << 24
# Padded entries below which a chunk is not split further by count.
_SMALL_BLOCK = 1 << 14


@dataclass(frozen=True)
class BiasedMFConfig(IterativeConfig):
    """Biased MF hyperparameters; ``autorec evaluate`` tunes ``reg`` on validation. The
    validation runs behind the defaults are in ``docs/experiments.md`` (Biased MF)."""

    legacy_fields: ClassVar[dict[str, Callable[[Any], tuple[str, Any]]]] = {
        # Saved before the rename (reg_scaling = "count" | "none").
        "reg_scaling": lambda value: ("reg_per_rating", value == "count"),
    }

    rank: int = 100  # Koren et al. 2009 leave the rank open; 100 on ML-1M validation
    reg: float = 0.07  # penalty weight lambda (per rating with reg_per_rating); tuned
    # True: lambda_u = reg * n_u (ALS-WR, Zhou et al. 2008); False: lambda_u = reg (Koren's
    # Eq. 5 as written, which over-fits on MovieLens).
    reg_per_rating: bool = True
    # Upper bound on ALS sweeps; early stopping usually ends sooner. 20 cut small ranks short on
    # small sets (still improving at sweep 20: docs/experiments.md, "Adaptive grids").
    n_epochs: int = 50
    patience: int = 2  # sweeps without a validation improvement of min_delta before stopping
    # The first sweeps from random item factors are a transient (validation can rise at sweep
    # 2 on a noisy set), which patience 2 alone would stop in; no committed run stopped sooner.
    min_epochs: int = 5
    # ALS converges geometrically: past ~10 sweeps the validation RMSE moves in the 4th decimal.
    min_delta: float = 1e-4
    # A smaller gain still replaces the kept factors (it just does not restart the patience).
    keep_small_gains: bool = True
    init_std: float = 0.1  # std of the Gaussian initial item factors
    # Penalty weight of the biases; None: the same as reg (Koren et al. 2009, Eq. 5).
    reg_bias: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 0:
            raise ConfigError(f"rank must be >= 0, got {self.rank}")
        if not (self.reg > 0 and math.isfinite(self.reg)):
            # reg = 0 would leave the normal equations of a user with fewer than k + 1 ratings
            # singular.
            raise ConfigError(f"reg must be a finite number > 0, got {self.reg}")
        if not isinstance(self.reg_per_rating, bool):
            raise ConfigError(f"reg_per_rating must be true or false, got {self.reg_per_rating!r}")
        if not self.init_std >= 0:
            raise ConfigError(f"init_std must be >= 0, got {self.init_std}")


def ridge_solve_rows(
    indptr: np.ndarray,
    cols: torch.Tensor,
    targets: torch.Tensor,
    other: torch.Tensor,
    row_reg: torch.Tensor,
) -> torch.Tensor:
    """Solve every row's ridge regression ``(X_r^T X_r + diag(reg_r)) x_r = X_r^T y_r`` at once.

    Args:
        indptr: (n_rows + 1,) int64 CSR row pointers into ``cols`` / ``targets``.
        cols: (nnz,) int64 column index of each entry.
        targets: (nnz,) float32 regression target of each entry.
        other: (n_cols, d) float32 features of the columns (X_r = other[cols of row r]).
        row_reg: (n_rows, d) float32 penalty of each row's unknowns (diagonal of its ridge).

    Returns:
        (n_rows, d) float32 solutions; rows without entries get zeros.
    """
    n_rows, d = len(indptr) - 1, other.shape[1]
    out = torch.zeros(n_rows, d, dtype=other.dtype)
    counts = np.diff(indptr)
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]  # empty rows keep x = 0 (their exact solution)
    sorted_counts = counts[order]
    # Padded entries point at an extra zero feature row and a zero target, so they add nothing
    # to the normal equations.
    other = torch.cat([other, other.new_zeros(1, d)])  # (n_cols + 1, d)
    targets = torch.cat([targets, targets.new_zeros(1)])  # (nnz + 1,)
    cols = torch.cat([cols, cols.new_full((1,), len(other) - 1)])
    pad = len(targets) - 1
    budget = max(1, _BLOCK_VALUES // d)  # padded entries per chunk: (chunk, width, d) values
    max_rows = max(1, _BLOCK_VALUES // (d * d))  # rows per chunk: (chunk, d, d) normal equations
    start = 0
    while start < len(order):
        # Rows are sorted by count and a chunk is padded to its last row's count: a chunk ends
        # where padding would exceed 25% of its shortest row or a block would exceed budget.
        # Small blocks may pad more: a torch call costs more than padding a few thousand entries.
        cost = np.arange(1, len(order) - start + 1) * sorted_counts[start:]
        similar = max(
            int(np.searchsorted(sorted_counts[start:], 1.25 * sorted_counts[start], "right")),
            int(np.searchsorted(cost, _SMALL_BLOCK, side="right")),
        )
        stop = min(max_rows, int(np.searchsorted(cost, budget, side="right")), similar)
        stop = start + max(1, stop)
        rows = order[start:stop]
        width = int(sorted_counts[stop - 1])
        offsets = np.arange(width)
        pos = np.where(
            offsets[None, :] < counts[rows][:, None], indptr[rows][:, None] + offsets[None, :], pad
        )  # (chunk, width) entry positions, `pad` past each row's end
        pos_t = torch.from_numpy(pos)
        x = other[cols[pos_t]]  # (chunk, width, d)
        xt = x.transpose(1, 2)  # (chunk, d, width)
        gram = torch.bmm(xt, x)  # (chunk, d, d)
        gram.diagonal(dim1=1, dim2=2).add_(row_reg[torch.from_numpy(rows)])
        rhs = torch.bmm(targets[pos_t][:, None, :], x).transpose(1, 2)  # (chunk, d, 1)
        chol, info = torch.linalg.cholesky_ex(gram)
        if bool((info != 0).any()):
            raise ModelFitError("ALS normal equations are not positive definite (reg too small?)")
        out[torch.from_numpy(rows)] = torch.cholesky_solve(rhs, chol)[..., 0]
        start = stop
    return out


class BiasedMF(Recommender):
    """Biased matrix factorisation fitted by ALS (see the module docstring)."""

    name: ClassVar[str] = "biased-mf"
    config_class: ClassVar[type[BaseConfig]] = BiasedMFConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        # Log-spaced around the validation optima of ML-1M (0.07) and ML-100k (0.1):
        # docs/experiments.md.
        "reg": (0.05, 0.07, 0.1),
    }
    config: BiasedMFConfig

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        mu = self.global_mean
        generator = torch.Generator().manual_seed(cfg.seed)
        k = cfg.rank
        r = torch.from_numpy(train.rating.astype(np.float32)) - mu  # (nnz,) centred ratings
        u_idx = torch.from_numpy(train.user_idx.astype(np.int64))
        i_idx = torch.from_numpy(train.item_idx.astype(np.int64))
        # Both orientations of the training matrix: entry positions sorted by user / by item.
        user_ptr, _, _, by_user = train.csr("user")
        item_ptr, _, _, by_item = train.csr("item")
        by_user_t, by_item_t = torch.from_numpy(by_user), torch.from_numpy(by_item)
        u_cols, u_vals = i_idx[by_user_t], r[by_user_t]  # user rows -> item columns
        i_cols, i_vals = u_idx[by_item_t], r[by_item_t]  # item rows -> user columns
        n_u = torch.from_numpy(train.user_counts().astype(np.float32))
        n_i = torch.from_numpy(train.item_counts().astype(np.float32))
        scale_u = n_u if cfg.reg_per_rating else torch.ones_like(n_u)
        scale_i = n_i if cfg.reg_per_rating else torch.ones_like(n_i)
        reg_bias = cfg.reg if cfg.reg_bias is None else cfg.reg_bias
        # Per-row penalties on the k factor entries and on the bias entry: (n_rows, k + 1).
        reg_u = torch.cat(
            [cfg.reg * scale_u[:, None].expand(-1, k), reg_bias * scale_u[:, None]], 1
        )
        reg_i = torch.cat(
            [cfg.reg * scale_i[:, None].expand(-1, k), reg_bias * scale_i[:, None]], 1
        )

        self.user_factors = torch.zeros(self.n_users, k)
        self.item_factors = torch.randn(self.n_items, k, generator=generator) * cfg.init_std
        self.item_factors[n_i == 0] = 0.0
        self.user_bias = torch.zeros(self.n_users)
        self.item_bias = torch.zeros(self.n_items)
        ones_u, ones_i = torch.ones(self.n_users, 1), torch.ones(self.n_items, 1)
        has_val = val is not None and val.n_ratings > 0
        names = ("user_factors", "item_factors", "user_bias", "item_bias")

        def run_epoch(epoch: int) -> EpochScores:
            # User step: unknowns [p_u, b_u], item features [q_i, 1], target r - mu - b_i.
            x = ridge_solve_rows(
                user_ptr,
                u_cols,
                u_vals - self.item_bias[u_cols],
                torch.cat([self.item_factors, ones_i], 1),  # (n_items, k + 1)
                reg_u,
            )
            self.user_factors, self.user_bias = x[:, :k].contiguous(), x[:, k].contiguous()
            # Item step: unknowns [q_i, b_i], user features [p_u, 1], target r - mu - b_u.
            y = ridge_solve_rows(
                item_ptr,
                i_cols,
                i_vals - self.user_bias[i_cols],
                torch.cat([self.user_factors, ones_u], 1),  # (n_users, k + 1)
                reg_i,
            )
            self.item_factors, self.item_bias = y[:, :k].contiguous(), y[:, k].contiguous()
            val_rmse = self._rmse(val) if has_val and val is not None else None
            return EpochScores(self._rmse(train), val_rmse)

        def snapshot(into: dict[str, Any] | None) -> dict[str, Any]:
            # Each sweep builds new tensors, so references are the sweep's values: no copy.
            return {name: getattr(self, name) for name in names}

        def restore(kept: dict[str, Any]) -> None:
            for name in names:
                setattr(self, name, kept[name])

        run_epochs(
            self,
            TrainingSteps(
                run_epoch, snapshot, restore, state=lambda: snapshot(None), load_state=restore
            ),
            train,
            val,
        )
        self._to_numpy()

    def _to_numpy(self) -> None:
        self.user_factors = np.asarray(self.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(self.item_factors, dtype=np.float32)
        self.user_bias = np.asarray(self.user_bias, dtype=np.float32)
        self.item_bias = np.asarray(self.item_bias, dtype=np.float32)

    def _raw(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """mu + b_u + b_i + p_u . q_i for aligned index tensors (training-time tensors)."""
        dots = (self.user_factors[user_idx] * self.item_factors[item_idx]).sum(-1)  # (pairs,)
        return self.global_mean + self.user_bias[user_idx] + self.item_bias[item_idx] + dots

    def _rmse(self, part: Ratings) -> float:
        """RMSE over ``part`` of the predictions ``predict`` would return: clipped, and the
        fallback for pairs whose user or item has no training rating."""
        low, high = self.rating_scale
        users = torch.from_numpy(part.user_idx.astype(np.int64))
        items = torch.from_numpy(part.item_idx.astype(np.int64))
        target = torch.from_numpy(part.rating)
        known = torch.from_numpy(self.known_mask(part.user_idx, part.item_idx))
        fallback = torch.from_numpy(self._fallback_scores(part.user_idx, part.item_idx))
        sse, chunk = 0.0, 1 << 18
        for s in range(0, part.n_ratings, chunk):
            sl = slice(s, s + chunk)
            pred = torch.where(known[sl], self._raw(users[sl], items[sl]).double(), fallback[sl])
            sse += float((pred.clamp(low, high) - target[sl]).pow(2).sum())
        return math.sqrt(sse / max(1, part.n_ratings))

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        out = np.empty(len(user_idx), dtype=np.float64)
        chunk = 1 << 16
        for s in range(0, len(user_idx), chunk):
            u, i = user_idx[s : s + chunk], item_idx[s : s + chunk]
            dots = np.einsum("nk,nk->n", self.user_factors[u], self.item_factors[i])  # (pairs,)
            out[s : s + chunk] = (
                self.global_mean + self.user_bias[u].astype(np.float64) + self.item_bias[i] + dots
            )
        return out

    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, float]:
        """The new user's ``[p_u, b_u]`` by the model's own user step, one ridge regression
        with the item factors and biases fixed (module docstring):
        ``x_u = (Y_u^T Y_u + diag(lambda_u))^{-1} Y_u^T (r_u - mu - b_I)``."""
        cfg = self.config
        k = cfg.rank
        n_rated = len(rating)
        scale = n_rated if cfg.reg_per_rating else 1
        reg_bias = cfg.reg if cfg.reg_bias is None else cfg.reg_bias
        features = np.concatenate(
            [self.item_factors[item_idx].astype(np.float64), np.ones((n_rated, 1))], 1
        )  # (n_rated, k + 1)
        target = rating - self.global_mean - self.item_bias[item_idx]  # (n_rated,)
        gram = features.T @ features  # (k + 1, k + 1)
        gram[np.diag_indices(k + 1)] += np.r_[np.full(k, cfg.reg), reg_bias] * scale
        x = np.linalg.solve(gram, features.T @ target)  # (k + 1,)
        return x[:k], float(x[k])

    def _fold_in_scores(self, state: tuple[np.ndarray, float]) -> np.ndarray:
        factors, bias = state
        dots = self.item_factors.astype(np.float64) @ factors  # (n_items,)
        return self.global_mean + bias + self.item_bias.astype(np.float64) + dots

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]
        self.user_bias = state["user_bias"]
        self.item_bias = state["item_bias"]
