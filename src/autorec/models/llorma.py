"""LLORMA: local low-rank matrix approximation (Lee, Kim, Lebanon, Singer, ICML 2013 / JMLR 2016).

The rating matrix is modelled as a smooth blend of low-rank matrices, each accurate near one
*anchor point*, a (user, item) pair, rather than everywhere ("parallel LLORMA").

**Geometry.** An *embedding factorisation* of the raw ratings, ``r_ui ~ P_u . Q_i`` (rank
``embed_rank``, fitted here), gives the distances ``d(u, u') = arccos(cos(P_u, P_u'))`` and
``d(i, i') = arccos(cos(Q_i, Q_i'))``. The kernel between a pair and anchor ``t = (u_t, i_t)`` is a
product of Epanechnikov kernels (paper: h = 0.8)

.. math::  K_h(d) = \\tfrac34 (1 - (d / h)^2) \\, [d < h], \\qquad
           K_t(u, i) = K_h(d(u, u_t)) \\, K_h(d(i, i_t)).

``kernel="flat"`` sets every weight to 1 (a degenerate case: one anchor is then the global
model below). The factors must be of the *raw* ratings, as in the paper: factors of
bias-corrected residuals are nearly orthogonal (median angle pi/2 on ML-100k), so almost no
rating lies within h of any anchor.

**Local models.** ``q`` anchors (paper: 50) are drawn at random among the observed training
pairs. Anchor ``t`` owns a rank-r model (paper: r = 20) of the residual of the damped bias
baseline ``b_ui = mu + b_u + b_i`` (:func:`autorec.models.biases.fit_biases`) with biases of
its own, ``f_t(u, i) = b_ui + c_{t,u} + d_{t,i} + U_{t,u} . V_{t,i}``, fitted to

.. math::  \\min \\sum_{(u,i) \\in O} K_t(u, i) (r_{ui} - f_t(u, i))^2
           + \\sum_u \\lambda_{t,u} \\|(U_{t,u}, c_{t,u})\\|^2
           + \\sum_i \\lambda_{t,i} \\|(V_{t,i}, d_{t,i})\\|^2

with ``lambda_{t,u} = reg * sum_i K_t(u, i)`` (``reg_per_kernel_mass=True``: ALS-WR's
weighted lambda, Zhou et al. 2008, with kernel mass in place of the rating count) or
``lambda = reg`` (``False``, the paper's plain L2). The paper's local models factorise raw
ratings with no biases (``center="none", local_biases=False``); both additions are ours and
both pay on validation (``docs/experiments.md``). Only ratings with positive weight enter a
local model.

**Optimiser.** Alternating least squares. With ``V_t`` fixed, each user's free vector
``x = (U_{t,u}, c_{t,u})`` solves

.. math::  (\\sum_i K_t(u,i) y_i y_i^T + \\lambda_{t,u} I) \\, x
           = \\sum_i K_t(u,i) (r_{ui} - b_{ui} - d_{t,i}) \\, y_i, \\qquad y_i = (V_{t,i}, 1),

then the items likewise; one epoch is one user step and one item step of every anchor. Per
anchor, all Gram matrices come from one sparse-dense product of the kernel-weighted rating
matrix with the upper triangles of ``y_i y_i^T``, and all systems from one batched LAPACK solve,
so the loop runs over the q anchors, never over ratings. The paper trains each anchor by
gradient descent; ALS minimises the same objective exactly per step, needs no learning rate and
is deterministic. The *global model* is the local model's form fitted with every weight 1; it
predicts the pairs that no anchor covers.

**Prediction.** ``r_hat_ui = sum_t K_t(u,i) f_t(u,i) / sum_t K_t(u,i)``, the global model where
the denominator is 0. Training stops when the validation RMSE of this combined prediction has
not improved for ``patience`` epochs, keeping the best epoch's factors; the training RMSE of the
history is measured on a fixed sample of 30,000 training ratings.

**What validation says** about the bandwidth, the regularisation and the embedding rank is in
``docs/experiments.md`` (LLORMA).

References:
    J. Lee, S. Kim, G. Lebanon, Y. Singer. Local Low-Rank Matrix Approximation. ICML 2013.
    J. Lee, S. Kim, G. Lebanon, Y. Singer, S. Bengio. LLORMA: Local Low-Rank Matrix
    Approximation. JMLR 17(15), 2016.
    Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan. Large-scale parallel collaborative filtering
    for the Netflix prize. AAIM 2008 (ALS with weighted lambda).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.biases import fit_biases
from autorec.models.training import EpochScores, IterativeConfig, TrainingSteps, run_epochs

log = logging.getLogger(__name__)

# Pairs scored at once at prediction time (times n_anchors kernel weights).
_SCORE_CHUNK = 1 << 15
# Training ratings the per-epoch training RMSE is measured on.
_TRAIN_RMSE_SAMPLE = 30_000


@dataclass(frozen=True)
class LlormaConfig(IterativeConfig):
    """LLORMA hyperparameters; defaults follow Lee et al. (2013) where the paper fixes them. The
    validation runs behind the others are in ``docs/experiments.md`` (LLORMA)."""

    legacy_fields: ClassVar[dict[str, Callable[[Any], tuple[str, Any]]]] = {
        # Saved before the rename (reg_scaling = "weight" | "none").
        "reg_scaling": lambda value: ("reg_per_kernel_mass", value == "weight"),
    }

    n_anchors: int = 50  # q = 50 anchor points (ICML 2013, Sec. 6, ML-1M/10M results)
    rank: int = 20  # local rank r = 20 (idem)
    # Epanechnikov width; paper: h = 0.8 (idem). Angles depend on the embedding, so h is tuned
    # (tuning_grid); 1.0 is what validation picks on ML-100k and ML-1M.
    bandwidth: float = 1.0
    kernel: Literal["epanechnikov", "flat"] = "epanechnikov"
    reg: float = 0.035  # lambda of the local models (per unit of kernel mass by default)
    # True: lambda_{t,u} = reg * (kernel mass of u's ratings), ALS-WR's weighted lambda;
    # False: lambda = reg, the paper's plain L2.
    reg_per_kernel_mass: bool = True
    # "bias": local models fit r - (mu + b_u + b_i) (our addition); "none": raw ratings (paper).
    center: Literal["bias", "none"] = "bias"
    # Local models learn user and item biases of their own (our addition; paper: none).
    local_biases: bool = True
    # The embedding factorisation (raw ratings, no biases) whose angles define the kernel; rank
    # 5 keeps most training ratings in an average anchor's support.
    embed_rank: int = 5
    embed_reg: float = 0.1  # lambda of the embedding factorisation (same scaling as reg)
    embed_epochs: int = 10  # its ALS sweeps
    # The global model: the local models' form fitted with a flat kernel; it predicts the pairs
    # no anchor covers.
    global_epochs: int = 10
    n_epochs: int = 20  # ALS sweeps of the local models (upper bound: early stopping)
    patience: int = 2  # sweeps without validation improvement before stopping
    min_delta: float = 1e-6  # smaller validation gains are float noise, not improvements
    init_std: float = 0.1  # random factors start as N(0, init_std^2)
    bias_reg_user: float = 15.0  # damping of the bias baseline (Koren 2010, Surprise defaults)
    bias_reg_item: float = 10.0  # idem

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_anchors < 1 or self.rank < 1 or self.embed_rank < 1:
            raise ConfigError(
                f"n_anchors, rank and embed_rank must be >= 1, got "
                f"{self.n_anchors}, {self.rank}, {self.embed_rank}"
            )
        if not (self.bandwidth > 0 and math.isfinite(self.bandwidth)):
            raise ConfigError(f"bandwidth must be a finite number > 0, got {self.bandwidth}")
        if self.kernel not in ("epanechnikov", "flat"):
            raise ConfigError(f"kernel must be 'epanechnikov' or 'flat', got {self.kernel!r}")
        if self.center not in ("bias", "none"):
            raise ConfigError(f"center must be 'bias' or 'none', got {self.center!r}")
        if not isinstance(self.reg_per_kernel_mass, bool):
            raise ConfigError(
                f"reg_per_kernel_mass must be true or false, got {self.reg_per_kernel_mass!r}"
            )
        for name in ("reg", "embed_reg"):
            value = getattr(self, name)
            # ALS solves (G + lambda I) x = b: lambda = 0 leaves rows without data singular.
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        for name in ("embed_epochs", "global_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.init_std > 0:
            raise ConfigError(f"init_std must be > 0, got {self.init_std}")
        if self.bias_reg_user < 0 or self.bias_reg_item < 0:
            raise ConfigError("bias_reg_user and bias_reg_item must be >= 0")


# -- kernel and distances ----------------------------------------------------------------------
def epanechnikov(d: np.ndarray, h: float) -> np.ndarray:
    """``K_h(d) = 3/4 (1 - (d/h)^2)`` for ``d < h``, else 0 (float64)."""
    d = np.asarray(d, dtype=np.float64)
    return np.where(d < h, 0.75 * (1.0 - (d / h) ** 2), 0.0)


def angular_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``arccos`` of the cosine between every row of ``x`` (n, k) and of ``y`` (m, k): (n, m).

    A zero row has no direction; it is given distance pi/2 (cosine 0) to everything.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return np.arccos(np.clip(xn @ yn.T, -1.0, 1.0))


def kernel_weights(factors: np.ndarray, anchors: np.ndarray, h: float, kernel: str) -> np.ndarray:
    """(n_anchors, n_rows) float32 kernel between each anchor row and every row of ``factors``."""
    if kernel == "flat":
        return np.ones((len(anchors), len(factors)), dtype=np.float32)
    d = angular_distance(factors[anchors], factors)  # (q, n_rows)
    return epanechnikov(d, h).astype(np.float32)


# -- weighted ALS over many anchors at once ------------------------------------------------------
@dataclass
class _Side:
    """One anchor's operators for one ALS half-step: its rows are the users (or items) with at
    least one positive-weight rating, its columns the other side's indices."""

    rows: np.ndarray  # (n_active,) int64: which users (items) these rows are
    weight: sp.csr_matrix  # (n_active, n_other): K_t(u, i) at observed pairs
    weighted_target: sp.csr_matrix  # K_t(u, i) * target_ui at the same pairs
    mass: np.ndarray  # (n_active,) float64: sum of the row's weights


def _side(
    rows: np.ndarray,
    cols: np.ndarray,
    weight: np.ndarray,
    target: np.ndarray,
    n_other: int,
) -> _Side:
    active, local = np.unique(rows, return_inverse=True)
    shape = (len(active), n_other)
    w = sp.csr_matrix((weight.astype(np.float32), (local, cols)), shape=shape)
    wt = sp.csr_matrix(((weight * target).astype(np.float32), (local, cols)), shape=shape)
    mass = np.bincount(local, weight.astype(np.float64), minlength=len(active))
    return _Side(active.astype(np.int64), w, wt, mass)


class WeightedALS:
    """Weighted rank-r factorisations of one target matrix, one per anchor, fitted jointly.

    Holds ``U`` (q, n_users, width) and ``V`` (q, n_items, width) float32, ``width = r`` or,
    with ``biases``, ``r + 2``: ``U_u = [p_u, b_u, 1]`` and ``V_i = [q_i, 1, b_i]`` so that
    ``U_u . V_i = p_u . q_i + b_u + b_i`` (the usual trick; the biases get the same ridge
    penalty as the factors). Each half-step runs, per anchor, one sparse-dense product for all
    Gram matrices at once (upper triangles, k(k+1)/2 columns for the k free columns) and one
    batched solve; anchors are independent, so the loop is over q anchors, never over ratings.
    """

    def __init__(
        self,
        n_anchors: int,
        n_users: int,
        n_items: int,
        rank: int,
        reg: float,
        reg_per_mass: bool,
        generator: torch.Generator,
        init_std: float,
        biases: bool = False,
    ) -> None:
        self.n_anchors, self.n_users, self.n_items, self.rank = n_anchors, n_users, n_items, rank
        self.reg, self.reg_per_mass, self.biases = reg, reg_per_mass, biases
        # The users are drawn first, then the items: a one-anchor model started from the same
        # generator state starts exactly where the global factorisation does.
        u = torch.randn((n_anchors, n_users, rank), generator=generator) * init_std
        v = torch.randn((n_anchors, n_items, rank), generator=generator) * init_std
        self.U: np.ndarray = u.numpy()  # (q, n_users, width)
        self.V: np.ndarray = v.numpy()  # (q, n_items, width)
        k = rank
        # Free columns of each side, and the other side's column that multiplies the fixed 1.
        self._user_free = np.arange(rank)
        self._item_free = np.arange(rank)
        self._user_offset: int | None = None  # column of V added as a constant (b_i)
        self._item_offset: int | None = None  # column of U added as a constant (b_u)
        if biases:
            zeros_u = np.zeros((n_anchors, n_users, 1), dtype=np.float32)
            zeros_i = np.zeros((n_anchors, n_items, 1), dtype=np.float32)
            self.U = np.concatenate([self.U, zeros_u, zeros_u + 1.0], axis=2)  # [p, b_u, 1]
            self.V = np.concatenate([self.V, zeros_i + 1.0, zeros_i], axis=2)  # [q, 1, b_i]
            self._user_free = np.arange(rank + 1)
            self._item_free = np.r_[np.arange(rank), rank + 1]
            self._user_offset, self._item_offset = rank + 1, rank
            k = rank + 1
        self.user_sides: list[_Side] = []
        self.item_sides: list[_Side] = []
        iu, ju = np.triu_indices(k)
        self._tri = (iu, ju)
        # full[a, b] = position of (min(a, b), max(a, b)) among the upper-triangle entries.
        full = np.empty((k, k), dtype=np.int64)
        full[iu, ju] = np.arange(len(iu))
        full[ju, iu] = np.arange(len(iu))
        self._full = full.reshape(-1)
        self._k = k

    def set_data(
        self,
        user_kernel: np.ndarray,
        item_kernel: np.ndarray,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        target: np.ndarray,
    ) -> None:
        """Weights ``K_t(u, i) = user_kernel[t, u] * item_kernel[t, i]`` at the observed pairs
        ``(user_idx, item_idx)`` with values ``target``; only positive weights are kept."""
        self.user_sides, self.item_sides = [], []
        target = np.asarray(target, dtype=np.float64)
        self.n_anchors_per_rating = np.zeros(len(target), dtype=np.int64)
        for t in range(self.n_anchors):  # q iterations, each vectorised over the ratings
            w = user_kernel[t, user_idx].astype(np.float64) * item_kernel[t, item_idx]
            keep = np.flatnonzero(w > 0)
            self.n_anchors_per_rating[keep] += 1
            u, i, w, y = user_idx[keep], item_idx[keep], w[keep], target[keep]
            users, items = _side(u, i, w, y, self.n_items), _side(i, u, w, y, self.n_users)
            self.user_sides.append(users)
            self.item_sides.append(items)
            # Rows without positive weight are 0 at the optimum, whatever the start.
            idle_users = np.setdiff1d(np.arange(self.n_users), users.rows)
            idle_items = np.setdiff1d(np.arange(self.n_items), items.rows)
            self.U[t, idle_users[:, None], self._user_free] = 0.0
            self.V[t, idle_items[:, None], self._item_free] = 0.0

    @property
    def n_pairs(self) -> int:
        return sum(side.weight.nnz for side in self.user_sides)

    def sweep(self) -> None:
        """One user step then one item step, every anchor."""
        uf, itf = self._user_free, self._item_free
        for t, side in enumerate(self.user_sides):
            V = self.V[t]
            offset = V[:, self._user_offset] if self._user_offset is not None else None
            self.U[t, side.rows[:, None], uf] = self._solve(side, V[:, uf], offset)
        for t, side in enumerate(self.item_sides):
            U = self.U[t]
            offset = U[:, self._item_offset] if self._item_offset is not None else None
            self.V[t, side.rows[:, None], itf] = self._solve(side, U[:, itf], offset)

    def _solve(self, side: _Side, fixed: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
        """Exact minimiser of the weighted ridge problem of every active row, given the other
        side's ``fixed`` (n_other, k) features and constant ``offset`` (n_other,): (n_active, k).
        """
        k = self._k
        if not len(side.rows):
            return np.zeros((0, k), dtype=np.float32)
        fixed = np.ascontiguousarray(fixed)
        iu, ju = self._tri
        outer = fixed[:, iu] * fixed[:, ju]  # (n_other, k(k+1)/2)
        gram_tri = side.weight @ outer  # (n_active, k(k+1)/2)
        gram = gram_tri[:, self._full].reshape(-1, k, k).astype(np.float64)  # (n_active, k, k)
        rhs = side.weighted_target @ fixed  # (n_active, k)
        if offset is not None:
            rhs = rhs - side.weight @ (fixed * offset[:, None])  # target minus the fixed bias
        lam = self.reg * side.mass if self.reg_per_mass else self.reg
        diag = np.arange(k)
        gram[:, diag, diag] += np.reshape(lam, (-1, 1))
        # numpy's batched LAPACK solve: per-system overhead is a few microseconds, far below
        # torch's batched Cholesky on CPU for the few thousand systems of one anchor.
        sol = np.linalg.solve(gram, rhs.astype(np.float64)[:, :, None])  # (n_active, k, 1)
        return sol[:, :, 0].astype(np.float32)

    def pair_scores(
        self, anchor: np.ndarray, user_idx: np.ndarray, item_idx: np.ndarray
    ) -> np.ndarray:
        """``U_t[u] . V_t[i]`` (float64) for aligned (anchor, user, item) index arrays."""
        out = np.empty(len(anchor), dtype=np.float64)
        step = 1 << 18
        for s in range(0, len(anchor), step):
            t, u, i = anchor[s : s + step], user_idx[s : s + step], item_idx[s : s + step]
            out[s : s + step] = np.einsum("nk,nk->n", self.U[t, u], self.V[t, i])  # (step,)
        return out


def positive_pairs(
    user_kernel: np.ndarray, item_kernel: np.ndarray, user_idx: np.ndarray, item_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor, pair position, weight) for every anchor and pair with ``K_t(u, i) > 0``, sorted
    by anchor then position; ``user_kernel`` is (q, n_users), ``item_kernel`` (q, n_items)."""
    anchors, positions, weights = [], [], []
    for t in range(user_kernel.shape[0]):  # q iterations, each vectorised over the pairs
        w = user_kernel[t, user_idx].astype(np.float64) * item_kernel[t, item_idx]  # (n_pairs,)
        pos = np.flatnonzero(w > 0)
        anchors.append(np.full(len(pos), t, dtype=np.int32))
        positions.append(pos)
        weights.append(w[pos])
    return np.concatenate(anchors), np.concatenate(positions), np.concatenate(weights)


class Llorma(Recommender):
    """Parallel LLORMA estimator (see the module docstring for the model and the solver)."""

    name: ClassVar[str] = "llorma"
    config_class: ClassVar[type[BaseConfig]] = LlormaConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"bandwidth": (0.8, 1.0)}
    config: LlormaConfig

    # -- training ------------------------------------------------------------------------------
    def _flat_model(self, train: Ratings, rank: int, reg: float, biases: bool) -> WeightedALS:
        """An unfitted one-anchor, flat-kernel model (every weight 1) drawing its start from
        the seed's stream, as the local models do."""
        cfg = self.config
        return WeightedALS(
            1,
            train.n_users,
            train.n_items,
            rank,
            reg,
            cfg.reg_per_kernel_mass,
            torch.Generator().manual_seed(cfg.seed),
            cfg.init_std,
            biases=biases,
        )

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        started = time.perf_counter()
        self.user_bias, self.item_bias = fit_biases(
            train, self.global_mean, reg_user=cfg.bias_reg_user, reg_item=cfg.bias_reg_item
        )
        ones_u = np.ones((1, train.n_users), dtype=np.float32)
        ones_i = np.ones((1, train.n_items), dtype=np.float32)
        rating = train.rating.astype(np.float64)
        target = rating - self._center(train.user_idx, train.item_idx)

        # Embedding factorisation of the raw ratings: its angles define the kernel.
        embed = self._flat_model(train, cfg.embed_rank, cfg.embed_reg, biases=False)
        embed.set_data(ones_u, ones_i, train.user_idx, train.item_idx, rating)
        for _ in range(cfg.embed_epochs):
            embed.sweep()
        self.embed_user, self.embed_item = embed.U[0], embed.V[0]  # (n, embed_rank)
        del embed

        # Global model: the local models' form under a flat kernel.
        glob = self._flat_model(train, cfg.rank, cfg.reg, biases=cfg.local_biases)
        glob.set_data(ones_u, ones_i, train.user_idx, train.item_idx, target)
        for _ in range(cfg.global_epochs):
            glob.sweep()
        self.global_user, self.global_item = glob.U[0], glob.V[0]  # (n, width)
        del glob

        # Anchors: distinct observed training pairs, drawn at random.
        q = min(cfg.n_anchors, train.n_ratings)
        picks = np.sort(rng.choice(train.n_ratings, size=q, replace=False))
        self.anchor_user = train.user_idx[picks].astype(np.int64)
        self.anchor_item = train.item_idx[picks].astype(np.int64)
        self.user_kernel = kernel_weights(
            self.embed_user, self.anchor_user, cfg.bandwidth, cfg.kernel
        )  # (q, n_users)
        self.item_kernel = kernel_weights(
            self.embed_item, self.anchor_item, cfg.bandwidth, cfg.kernel
        )  # (q, n_items)

        self.local = WeightedALS(
            q,
            train.n_users,
            train.n_items,
            cfg.rank,
            cfg.reg,
            cfg.reg_per_kernel_mass,
            torch.Generator().manual_seed(cfg.seed),
            cfg.init_std,
            biases=cfg.local_biases,
        )
        self.local.set_data(
            self.user_kernel, self.item_kernel, train.user_idx, train.item_idx, target
        )
        # The training RMSE of the history is measured on a fixed sample of the training
        # ratings: the combined prediction at every rating costs as much as half a sweep.
        n_sample = min(train.n_ratings, _TRAIN_RMSE_SAMPLE)
        sample = train.subset(np.sort(rng.choice(train.n_ratings, n_sample, replace=False)))
        sample_pairs = positive_pairs(
            self.user_kernel, self.item_kernel, sample.user_idx, sample.item_idx
        )
        log.info(
            "llorma: embedding, global model and kernels %.1f s; %d anchors hold %d weighted "
            "ratings (%.1f%% of %d x %d); %d training ratings have no anchor",
            time.perf_counter() - started,
            q,
            self.local.n_pairs,
            100.0 * self.local.n_pairs / (q * train.n_ratings),
            q,
            train.n_ratings,
            int(np.sum(self.local.n_anchors_per_rating == 0)),
        )
        val_pairs = None
        if val is not None and val.n_ratings:
            val_pairs = positive_pairs(
                self.user_kernel, self.item_kernel, val.user_idx, val.item_idx
            )

        def run_epoch(epoch: int) -> EpochScores:
            self.local.sweep()
            val_rmse = (
                self._rmse(val, val_pairs) if val is not None and val_pairs is not None else None
            )
            return EpochScores(self._rmse(sample, sample_pairs), val_rmse)

        def snapshot(into: dict[str, Any] | None) -> dict[str, Any]:
            if into is None:
                return {"U": self.local.U.copy(), "V": self.local.V.copy()}
            np.copyto(into["U"], self.local.U)
            np.copyto(into["V"], self.local.V)
            return into

        def restore(kept: dict[str, Any]) -> None:
            self.local.U, self.local.V = kept["U"], kept["V"]

        def state() -> dict[str, Any]:
            return {"U": self.local.U, "V": self.local.V}

        run_epochs(self, TrainingSteps(run_epoch, snapshot, restore, state, restore), train, val)
        # The sparse operators are for training only (hundreds of MB on ML-1M).
        self.local.user_sides, self.local.item_sides = [], []

    def _center(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """What the local models are fitted relative to: the bias baseline, or 0."""
        if self.config.center == "none":
            return np.zeros(len(user_idx))
        return self.global_mean + self.user_bias[user_idx] + self.item_bias[item_idx]

    def _global(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """The global model's prediction (float64)."""
        dot = np.einsum(
            "nk,nk->n",
            self.global_user[user_idx].astype(np.float64),
            self.global_item[item_idx].astype(np.float64),
        )
        return self._center(user_idx, item_idx) + dot

    def _combine(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Kernel-weighted average of the local predictions at ``(user_idx, item_idx)``, given
        their positive-weight (anchor, position, weight) triples; the global factorisation
        where no anchor has weight."""
        anchor, pos, weight = pairs
        n = len(user_idx)
        local = self.local.pair_scores(anchor, user_idx[pos], item_idx[pos])  # (n_pairs,)
        num = np.bincount(pos, weight * local, minlength=n)  # (n,)
        den = np.bincount(pos, weight, minlength=n)  # (n,)
        covered = den > 0
        out = self._global(user_idx, item_idx)
        out[covered] = self._center(user_idx[covered], item_idx[covered]) + (
            num[covered] / den[covered]
        )
        return out

    def _rmse(self, part: Ratings, pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        low, high = self.rating_scale
        pred = np.clip(self._combine(part.user_idx, part.item_idx, pairs), low, high)
        return float(np.sqrt(np.mean((pred - part.rating) ** 2)))

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        out = np.empty(len(user_idx), dtype=np.float64)
        for s in range(0, len(user_idx), _SCORE_CHUNK):
            u, i = user_idx[s : s + _SCORE_CHUNK], item_idx[s : s + _SCORE_CHUNK]
            pairs = positive_pairs(self.user_kernel, self.item_kernel, u, i)
            out[s : s + _SCORE_CHUNK] = self._combine(u, i, pairs)
        return out

    # -- folding in a new user ----------------------------------------------------------------
    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> tuple:
        """Every part of the new user, each by the model's own step for a user with the item
        side frozen: the damped bias (the baseline's user step), the embedding row (a ridge
        regression of the raw ratings on the item embeddings), hence the user kernel to every
        anchor, the global model's row, and each covering anchor's local row (the
        kernel-weighted ridge of ``WeightedALS``). Returns (user kernel (q,), global row
        (width,), local rows (q, width), bias)."""
        cfg = self.config
        rating = rating.astype(np.float64)
        bias = float(
            (rating - self.global_mean - self.item_bias[item_idx]).sum()
            / (cfg.bias_reg_user + len(rating))
        )
        ones = np.ones((1, len(item_idx)))
        embed = self._new_row(self.embed_item[:, None, :], item_idx, ones, rating, False, "embed")
        embed = embed[0]  # (embed_rank,)
        if cfg.kernel == "flat":
            user_kernel = np.ones(len(self.anchor_user), dtype=np.float32)
        else:
            distance = angular_distance(embed[None, :], self.embed_user[self.anchor_user])[0]
            user_kernel = epanechnikov(distance, cfg.bandwidth).astype(np.float32)  # (q,)
        center = rating - self.global_mean - bias - self.item_bias[item_idx]
        if cfg.center == "none":
            center = rating
        biases = cfg.local_biases
        global_row = self._new_row(self.global_item[:, None, :], item_idx, ones, center, biases)
        weights = user_kernel[:, None].astype(np.float64) * self.item_kernel[:, item_idx]
        local_rows = self._new_row(
            self.local.V.transpose(1, 0, 2), item_idx, weights, center, biases
        )  # (q, width)
        return user_kernel, global_row[0], local_rows, bias

    def _new_row(
        self,
        item_side: np.ndarray,
        item_idx: np.ndarray,
        weights: np.ndarray,
        target: np.ndarray,
        biases: bool,
        model: str = "local",
    ) -> np.ndarray:
        """A new user's rows (n_anchors, width) of weighted ALS models whose item factors are
        ``item_side`` (n_items, n_anchors, width): per anchor, the exact minimiser of
        ``sum_i w_ti (y_i - U . V_ti)^2 + lambda ||free part of U||^2`` over the rated items,
        with the model's penalty (``embed_reg`` for ``model="embed"``, else ``reg``; per unit of
        kernel mass when ``reg_per_kernel_mass``); ``weights`` (n_anchors or 1, n_rated). An
        anchor without positive weight keeps a zero row."""
        cfg = self.config
        reg = cfg.embed_reg if model == "embed" else cfg.reg
        rank = item_side.shape[2] - (2 if biases else 0)
        n_anchors = item_side.shape[1]
        rows = np.zeros((n_anchors, item_side.shape[2]))
        if biases:
            rows[:, rank + 1] = 1.0  # U = [p, b_u, 1]
        free = np.arange(rank + 1 if biases else rank)
        for t in range(n_anchors):
            w = weights[0 if weights.shape[0] == 1 else t]  # (n_rated,)
            keep = w > 0
            if not keep.any():
                continue
            v = item_side[item_idx[keep], t].astype(np.float64)  # (n_kept, width)
            y = target[keep] - (v[:, rank + 1] if biases else 0.0)  # minus b_i
            x = v[:, free]  # (n_kept, k) item features [q, 1]
            gram = x.T @ (w[keep, None] * x)  # (k, k)
            lam = reg * w[keep].sum() if cfg.reg_per_kernel_mass else reg
            gram[np.diag_indices(len(free))] += lam
            rows[t, free] = np.linalg.solve(gram, x.T @ (w[keep] * y))
        return rows

    def _fold_in_scores(self, state: tuple) -> np.ndarray:
        user_kernel, global_row, local_rows, bias = state
        base = np.zeros(self.n_items)
        if self.config.center == "bias":
            base = self.global_mean + bias + self.item_bias.astype(np.float64)
        out = base + self.global_item.astype(np.float64) @ global_row  # (n_items,)
        weight = user_kernel[:, None].astype(np.float64) * self.item_kernel  # (q, n_items)
        local = np.einsum("tiw,tw->ti", self.local.V, local_rows)  # (q, n_items)
        den = weight.sum(0)
        covered = den > 0
        out[covered] = base[covered] + (weight * local).sum(0)[covered] / den[covered]
        return out

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "embed_user": self.embed_user,
            "embed_item": self.embed_item,
            "global_user": self.global_user,
            "global_item": self.global_item,
            "anchor_user": self.anchor_user,
            "anchor_item": self.anchor_item,
            "user_kernel": self.user_kernel,
            "item_kernel": self.item_kernel,
            "local_user": self.local.U,
            "local_item": self.local.V,
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        cfg = self.config
        self.user_bias, self.item_bias = state["user_bias"], state["item_bias"]
        self.embed_user, self.embed_item = state["embed_user"], state["embed_item"]
        self.global_user, self.global_item = state["global_user"], state["global_item"]
        self.anchor_user, self.anchor_item = state["anchor_user"], state["anchor_item"]
        self.user_kernel, self.item_kernel = state["user_kernel"], state["item_kernel"]
        q, n_users, _ = state["local_user"].shape
        self.local = WeightedALS(
            q,
            n_users,
            state["local_item"].shape[1],
            cfg.rank,
            cfg.reg,
            cfg.reg_per_kernel_mass,
            torch.Generator().manual_seed(0),
            cfg.init_std,
            biases=cfg.local_biases,
        )
        self.local.U, self.local.V = state["local_user"], state["local_item"]
