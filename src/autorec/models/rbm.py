"""Restricted Boltzmann machines for collaborative filtering (Salakhutdinov, Mnih, Hinton 2007).

One RBM per row of the rating matrix, all sharing their weights:

* **U-RBM** (``variant="user"``, the paper's model): a row is a user, its visible units are the
  items the user rated;
* **I-RBM** (``variant="item"``, the AutoRec paper's stronger baseline): a row is an item, its
  visible units are the users who rated it.

A visible unit is a *softmax* over the K distinct rating values ``x_1 < ... < x_K`` (taken from
the training ratings: 1..5 on MovieLens, K = 10 half stars on ML-10M); ``v_ik = 1`` when the row
gave position i the rating x_k. Only the row's observed positions are visible in its RBM. With F
binary hidden units ``h_j``, weights ``W_ikj`` (shared by every row that observes position i),
visible biases ``b_ik`` and hidden biases ``b_j``:

.. math::

    p(h_j = 1 \\mid V) = \\sigma\\big(b_j + \\sum_{i \\in O} \\sum_k v_{ik} W_{ikj}\\big),
    \\qquad
    p(v_{ik} = 1 \\mid h) = \\frac{\\exp(b_{ik} + \\sum_j h_j W_{ikj})}
                              {\\sum_{l} \\exp(b_{il} + \\sum_j h_j W_{ilj})}

and the free energy of a row's visible configuration (h summed out) is

.. math::

    F(V) = -\\sum_{i \\in O} \\sum_k v_{ik} b_{ik}
           - \\sum_j \\log\\big(1 + \\exp(b_j + \\sum_{i \\in O} \\sum_k v_{ik} W_{ikj})\\big).

**Training** maximises the log-likelihood of the rows' training ratings by contrastive divergence
(CD-T): starting from the data ``V^0``, T steps of alternating Gibbs sampling give ``V^T``, and
the gradient is approximated by

.. math::

    \\Delta W_{ikj} = \\langle v_{ik} h_j \\rangle_{data} - \\langle v_{ik} h_j \\rangle_{T},\\quad
    \\Delta b_{ik} = \\langle v_{ik} \\rangle_{data} - \\langle v_{ik} \\rangle_{T},\\quad
    \\Delta b_j = \\langle h_j \\rangle_{data} - \\langle h_j \\rangle_{T}

(sums over the rows of a minibatch). As the paper does, T grows during training
(``cd_steps`` = 1, 3, 5, 9 from the epochs ``cd_epochs``). Following Hinton's practical guide
(Sec. 3), the hidden states that drive a reconstruction are sampled, intermediate visible
reconstructions are sampled, and the last visible reconstruction and all statistics use
probabilities. The update is SGD with momentum, with weight decay on W only:
``vel <- momentum * vel + lr * (Delta / batch_rows - weight_decay * W)``, ``W <- W + vel``
(the same for the biases, without decay). Training stops when the validation RMSE has not
improved for ``patience`` epochs (never before ``min_epochs``), keeping the best weights
(:mod:`autorec.models.training`).

**Prediction** of position q of a row (the paper's fast approximation): ``p_j = p(h_j = 1 | V)``
from the row's *training* ratings, then ``p(v_q = k | p) = softmax_k(b_qk + sum_j p_j W_qkj)``
and the expected rating ``sum_k p(v_q = k) x_k``. The exact conditional, with h summed out
(``p(v_q = k | V) ~ exp(b_qk) prod_j (1 + exp(b_j + sum_{i,l} v_il W_ilj + W_qkj))``), scored
0.8702 against 0.8707 on ML-1M validation for the same weights, so the cheaper one is kept.

**Cost.** Everything is a sparse product over observed entries: with the one-hot matrix
``X`` (rows x n_positions*K) of a batch, the hidden inputs are the SpMM ``X @ W`` (W viewed as
(n_positions*K, F)), the reconstruction logits at the observed positions are an SDDMM over the
K columns of each observed position, and the weight statistics are ``X^T @ h``. An epoch costs
about ``n_ratings * K * F * (2T + 1)`` multiply-adds plus a few passes over W per batch:
ML-1M I-RBM with F = 500, 300 rows per batch, 2 cores: 2.1 s per CD-1 epoch, 3.7 s per CD-3
epoch (unloaded machine).

References:
    R. Salakhutdinov, A. Mnih, G. Hinton. Restricted Boltzmann Machines for Collaborative
    Filtering. ICML 2007. G. Hinton. A Practical Guide to Training Restricted Boltzmann
    Machines. UTML TR 2010-003.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch.nn import functional as nn_functional

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.sparse import SparseRows, _csr, sddmm, spmm
from autorec.models.training import (
    EpochScores,
    IterativeConfig,
    TrainingSteps,
    generator_rank_state,
    run_epochs,
)

log = logging.getLogger(__name__)

#: More distinct rating values than this is taken for a continuous scale, which softmax visible
#: units cannot model (ML-10M's half stars are K = 10).
MAX_RATING_VALUES = 20

#: Training ratings on which the per-epoch training RMSE is measured.
_MONITOR_RATINGS = 1 << 16

#: Names of the RBMParams tensors in snapshots and checkpoints.
_PARAM_NAMES = ("weight", "visible_bias", "hidden_bias")

#: ``uniform(shape)`` returns U(0, 1) draws of that shape; CD takes it as an argument so that a
#: test can fix the sampled states.
Uniform = Callable[[tuple[int, ...]], torch.Tensor]


@dataclass(frozen=True)
class RBMConfig(IterativeConfig):
    """RBM-CF hyperparameters (Salakhutdinov et al. 2007 unless said otherwise). The validation
    runs behind the choices are in ``docs/experiments.md`` (RBM)."""

    variant: Literal["item", "user"] = "item"  # I-RBM is the stronger one in AutoRec's Table 1a
    # F. The paper shows F = 100 on Netflix; on ML-1M validation more hidden units fit better.
    n_hidden: int = 500
    # Learning rate of weights and biases, applied to the gradient averaged over the batch rows.
    # Lower is better but slower; 0.045 is the compromise on ML-1M.
    lr: float = 0.045
    momentum: float = 0.9  # Hinton's practical guide (UTML TR 2010-003), Sec. 9
    # L2 decay of W (not the biases), in the update as lr * weight_decay * W; tuned on
    # validation (tuning_grid).
    weight_decay: float = 0.001
    # Rows per minibatch (the paper uses 1000 users on Netflix). Per epoch, progress depends on
    # lr / batch_size; 300 rows are faster per epoch than 100 at the same ratio and as good.
    batch_size: int = 300
    n_epochs: int = 100  # upper bound; early stopping on validation ends sooner
    patience: int = 5  # epochs without validation improvement before stopping
    # Never stop before this epoch: while W is still near its initial value the validation RMSE
    # first rises a little.
    min_epochs: int = 15
    min_delta: float = 1e-6  # smaller validation gains are float noise, not improvements
    # CD-T schedule: T = cd_steps[s] from epoch cd_epochs[s] on (1-based); the paper raises T
    # from 1 to 3, 5 and 9 as learning progresses.
    cd_steps: tuple[int, ...] = (1, 3, 5, 9)
    cd_epochs: tuple[int, ...] = (1, 25, 35, 45)
    init_std: float = 0.01  # W ~ N(0, 0.01^2): Hinton's guide, Sec. 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("item", "user"):
            raise ConfigError(f"variant must be 'item' or 'user', got {self.variant!r}")
        if self.n_hidden < 1:
            raise ConfigError(f"n_hidden must be >= 1, got {self.n_hidden}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "cd_steps", tuple(int(t) for t in self.cd_steps))
        object.__setattr__(self, "cd_epochs", tuple(int(e) for e in self.cd_epochs))
        if (
            not self.cd_steps
            or len(self.cd_steps) != len(self.cd_epochs)
            or min(self.cd_steps) < 1
            or self.cd_epochs[0] != 1
            or list(self.cd_epochs) != sorted(set(self.cd_epochs))
        ):
            raise ConfigError(
                "cd_steps and cd_epochs must have the same length, steps >= 1 and epochs "
                f"increasing from 1, got cd_steps={self.cd_steps}, cd_epochs={self.cd_epochs}"
            )
        if not self.init_std > 0:
            raise ConfigError(f"init_std must be > 0, got {self.init_std}")

    def cd_steps_at(self, epoch: int) -> int:
        """T of CD-T at a 1-based epoch."""
        steps = self.cd_steps[0]
        for start, t in zip(self.cd_epochs, self.cd_steps, strict=True):
            if epoch >= start:
                steps = t
        return steps


def rating_levels(ratings: np.ndarray) -> np.ndarray:
    """The sorted distinct rating values (float64), refusing a continuous scale.

    Raises:
        ConfigError: more than ``MAX_RATING_VALUES`` distinct values, or values that are not on
            a half-step grid (e.g. 3.7): the message names the values found.
    """
    values = np.unique(np.asarray(ratings, dtype=np.float64))
    off_grid = np.abs(values * 2 - np.rint(values * 2)) > 1e-6
    if len(values) > MAX_RATING_VALUES or off_grid.any():
        shown = ", ".join(f"{v:g}" for v in values[:12]) + (", ..." if len(values) > 12 else "")
        raise ConfigError(
            f"the RBM needs a discrete rating scale (at most {MAX_RATING_VALUES} integer or "
            f"half-step values, one softmax unit each), but the training ratings hold "
            f"{len(values)} distinct values: {shown}"
        )
    return values


@dataclass
class RBMParams:
    """Weights of the shared RBM. Position i's rating value k is the flat index ``i * K + k``."""

    weight: torch.Tensor  # (n_positions * K, F): W_ikj at [i * K + k, j]
    visible_bias: torch.Tensor  # (n_positions, K)
    hidden_bias: torch.Tensor  # (F,)

    @property
    def n_levels(self) -> int:
        return int(self.visible_bias.shape[1])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.weight, self.visible_bias, self.hidden_bias

    def clone(self) -> RBMParams:
        return RBMParams(*(t.clone() for t in self.tensors()))


@dataclass(frozen=True, eq=False)
class VisibleRows:
    """The observed entries of a batch of rows, in (row, position) order.

    ``data`` holds one 1 per observed entry at column ``position * K + level`` (the one-hot
    training configuration); ``levels`` holds K ones per observed entry, at every column of its
    position (the pattern over which reconstructions are evaluated); entry e's K columns are
    ``levels`` entries ``e * K .. e * K + K - 1``.
    """

    n_rows: int
    row: torch.Tensor  # (nnz,) int64 row of each entry within the batch
    position: torch.Tensor  # (nnz,) int64
    level: torch.Tensor  # (nnz,) int64 index k of the observed rating value
    data: SparseRows  # (n_rows, n_positions * K), nnz ones
    levels: SparseRows  # (n_rows, n_positions * K), nnz * K ones
    order: np.ndarray  # (nnz,) index of each entry in the arrays given to ``build``

    @classmethod
    def build(
        cls,
        row: np.ndarray,
        position: np.ndarray,
        level: np.ndarray,
        n_rows: int,
        n_positions: int,
        n_levels: int,
    ) -> VisibleRows:
        order = np.lexsort((position, row))
        row, position, level = row[order], position[order], level[order]
        k = n_levels
        width = n_positions * k
        data = _sorted_csr(row, position.astype(np.int64) * k + level, n_rows, width)
        levels = _sorted_csr(
            np.repeat(row, k),
            (position.astype(np.int64)[:, None] * k + np.arange(k)).reshape(-1),
            n_rows,
            width,
        )
        return cls(
            n_rows,
            torch.from_numpy(row.astype(np.int64)),
            torch.from_numpy(position.astype(np.int64)),
            torch.from_numpy(level.astype(np.int64)),
            data,
            levels,
            order,
        )

    @property
    def nnz(self) -> int:
        return int(self.row.numel())


def _sorted_csr(row: np.ndarray, col: np.ndarray, n_rows: int, n_cols: int) -> SparseRows:
    """A pattern (all values 1) from entries sorted by (row, col), with its transpose.

    numpy's stable argsort of the (row-sorted, hence run-structured) columns took 3 ms for a
    batch's 1.1 M entries where ``torch.sort(stable=True)`` (``SparseRows.from_coo``) took
    0.17 s and dominated an epoch.
    """
    itype = np.int32 if max(len(col), n_rows, n_cols) < 2**31 - 1 else np.int64
    perm = np.argsort(col, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=itype)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    indptr_t = np.zeros(n_cols + 1, dtype=itype)
    np.cumsum(np.bincount(col, minlength=n_cols), out=indptr_t[1:])
    ones = torch.ones(len(col))
    col_t = torch.from_numpy(col.astype(itype))
    csr = _csr(torch.from_numpy(indptr), col_t, ones, (n_rows, n_cols))
    csr_t = _csr(
        torch.from_numpy(indptr_t),
        torch.from_numpy(row[perm].astype(itype)),
        ones,
        (n_cols, n_rows),
    )
    return SparseRows(csr, csr_t, torch.from_numpy(perm.astype(itype)), col_t, ones)


def hidden_probs(params: RBMParams, rows: VisibleRows, soft: torch.Tensor | None) -> torch.Tensor:
    """p(h = 1 | V): (n_rows, F). ``soft`` (nnz, K) replaces the one-hot training states by
    (probabilities of) reconstructed ones; None means the training ratings."""
    x = rows.data if soft is None else rows.levels.with_values(soft.reshape(-1))
    return torch.sigmoid(spmm(x, params.weight) + params.hidden_bias)  # (n_rows, F)


def visible_probs(params: RBMParams, rows: VisibleRows, hidden: torch.Tensor) -> torch.Tensor:
    """p(v_i = k | h) at the observed positions: (nnz, K) softmax over the rating values."""
    k = params.n_levels
    logits = sddmm(rows.levels, hidden, params.weight).view(-1, k)  # (nnz, K)
    logits = logits + params.visible_bias[rows.position]  # (nnz, K)
    return torch.softmax(logits, dim=1)


def free_energy(params: RBMParams, rows: VisibleRows) -> torch.Tensor:
    """F(V) of each row's training configuration (see the module docstring): (n_rows,)."""
    flat_bias = params.visible_bias.reshape(-1)  # (n_positions * K,)
    k = params.n_levels
    bias_term = torch.zeros(rows.n_rows, dtype=flat_bias.dtype).index_add_(
        0, rows.row, flat_bias[rows.position * k + rows.level]
    )  # (n_rows,)
    hidden_in = spmm(rows.data, params.weight) + params.hidden_bias  # (n_rows, F)
    return -bias_term - torch.nn.functional.softplus(hidden_in).sum(1)


def sample_levels(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One-hot (nnz, K) draws from the rows of ``probs`` by inverting the CDF at ``uniform``."""
    k = probs.shape[1]
    cdf = probs.cumsum(1)  # (nnz, K)
    drawn = (cdf < uniform[:, None]).sum(1).clamp_(max=k - 1)  # (nnz,)
    return torch.nn.functional.one_hot(drawn, k).to(probs.dtype)


def cd_gradients(
    params: RBMParams, rows: VisibleRows, n_steps: int, uniform: Uniform
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CD-``n_steps`` estimates of the log-likelihood gradient, summed over the batch rows:
    ``(dW (n_positions * K, F), db_visible (n_positions, K), db_hidden (F,))``.

    Chain: ``h0 = p(h | V0)``; for t = 1..T: sample ``h ~ Bernoulli(p)`` (``uniform((n_rows, F))``),
    reconstruct ``p(v | h)`` at the observed positions, sample it to one-hot
    (``uniform((nnz,))``) except at t = T where the probabilities are kept, and set
    ``p = p(h | v)``. Statistics: data ``(V0, h0)`` minus model ``(V_T, p_T)``.
    """
    n_rows, k = rows.n_rows, params.n_levels
    n_hidden = params.hidden_bias.shape[0]
    h_data = hidden_probs(params, rows, None)  # (n_rows, F)
    h_model = h_data
    v_model = torch.empty(0)
    for step in range(n_steps):
        h_state = (uniform((n_rows, n_hidden)) < h_model).to(h_model.dtype)  # (n_rows, F)
        v_model = visible_probs(params, rows, h_state)  # (nnz, K)
        if step < n_steps - 1:
            v_model = sample_levels(v_model, uniform((rows.nnz,)))  # (nnz, K) one-hot
        h_model = hidden_probs(params, rows, v_model)  # (n_rows, F)
    model_x = rows.levels.with_values(v_model.reshape(-1))
    # dW = X_data^T h_data - X_model^T h_model, the second product accumulated in place.
    d_weight = torch.sparse.mm(rows.data.csr_t, h_data)  # (n_positions * K, F)
    d_weight = torch.addmm(d_weight, model_x.csr_t, h_model, alpha=-1.0)
    n_positions = params.visible_bias.shape[0]
    d_visible = torch.zeros(n_positions * k, dtype=v_model.dtype)
    d_visible.index_add_(0, rows.position * k + rows.level, torch.ones(rows.nnz))
    d_visible = d_visible.view(n_positions, k).index_add_(0, rows.position, -v_model)
    d_hidden = h_data.sum(0) - h_model.sum(0)  # (F,)
    return d_weight, d_visible, d_hidden


def expected_at(
    params: RBMParams, row_hidden: torch.Tensor, rows: VisibleRows, values: torch.Tensor
) -> np.ndarray:
    """Expected ratings at the entries of ``rows`` (their order), through one SDDMM: (nnz,)."""
    k = params.n_levels
    logits = sddmm(rows.levels, row_hidden, params.weight).view(-1, k)  # (nnz, K)
    probs = torch.softmax(logits + params.visible_bias[rows.position], dim=1)  # (nnz, K)
    return (probs.double() @ values).numpy()


def expected_ratings(
    params: RBMParams,
    row_hidden: torch.Tensor,
    row: np.ndarray,
    position: np.ndarray,
    values: torch.Tensor,
) -> np.ndarray:
    """``sum_k p(v_q = k | p_row) x_k`` for aligned (row, position) pairs: (n,) float64.
    ``row_hidden`` (n_rows, F) holds ``p(h = 1 | V_row)`` of every row."""
    k = params.n_levels
    weight = params.weight.view(-1, k, params.weight.shape[1])  # (n_positions, K, F)
    out = np.empty(len(row), dtype=np.float64)
    chunk = 1 << 14
    for s in range(0, len(row), chunk):
        r = torch.from_numpy(np.asarray(row[s : s + chunk], dtype=np.int64))
        p = torch.from_numpy(np.asarray(position[s : s + chunk], dtype=np.int64))
        logits = torch.bmm(weight[p], row_hidden[r].unsqueeze(2)).squeeze(2)  # (chunk, K)
        probs = torch.softmax(logits + params.visible_bias[p], dim=1)  # (chunk, K)
        out[s : s + chunk] = (probs.double() @ values).numpy()
    return out


class RBM(Recommender):
    """I-RBM / U-RBM (see the module docstring for the model, training and prediction)."""

    name: ClassVar[str] = "rbm"
    config_class: ClassVar[type[BaseConfig]] = RBMConfig
    # Two points keep a whole ML-1M protocol run (grid + retrain) at a few minutes.
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"weight_decay": (0.001, 0.01)}
    config: RBMConfig

    @property
    def model_name(self) -> str:
        return "i-rbm" if self.config.variant == "item" else "u-rbm"

    def _rows_positions(
        self, user_idx: np.ndarray, item_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return (item_idx, user_idx) if self.config.variant == "item" else (user_idx, item_idx)

    def _shape(self) -> tuple[int, int]:
        """(n_rows, n_positions)."""
        if self.config.variant == "item":
            return self.n_items, self.n_users
        return self.n_users, self.n_items

    def _visible(self, part: Ratings) -> VisibleRows:
        rows, positions = self._rows_positions(part.user_idx, part.item_idx)
        levels = np.searchsorted(self.levels, part.rating.astype(np.float64))
        levels = np.clip(levels, 0, len(self.levels) - 1)
        n_rows, n_positions = self._shape()
        return VisibleRows.build(rows, positions, levels, n_rows, n_positions, len(self.levels))

    # -- training ------------------------------------------------------------------------------
    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        self.levels = rating_levels(train.rating)
        self._values = torch.from_numpy(self.levels)
        k = len(self.levels)
        n_rows, n_positions = self._shape()
        generator = torch.Generator().manual_seed(cfg.seed)
        train_rows = self._visible(train)
        # Rows are batched by their training entries: CSR row pointers of the (row, position)
        # ordered entries give each batch's slice.
        row_np = train_rows.row.numpy()
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_np, minlength=n_rows), out=indptr[1:])
        position_np, level_np = train_rows.position.numpy(), train_rows.level.numpy()
        active = np.flatnonzero(np.diff(indptr) > 0)

        weight = torch.randn(n_positions * k, cfg.n_hidden, generator=generator) * cfg.init_std
        # Visible biases start at the log of each position's smoothed rating-value frequencies
        # (Hinton's guide, Sec. 8), so the first epochs learn structure, not marginals.
        counts = np.zeros(n_positions * k)
        np.add.at(counts, position_np * k + level_np, 1.0)
        counts = counts.reshape(n_positions, k) + 1.0
        visible_bias = torch.from_numpy(np.log(counts / counts.sum(1, keepdims=True))).float()
        self.params = RBMParams(weight, visible_bias, torch.zeros(cfg.n_hidden))
        velocity = [torch.zeros_like(t) for t in self.params.tensors()]

        # The training RMSE (a reconstruction error: each rating is also an input) is tracked on
        # a fixed sample of the training ratings; scoring all of them cost a fifth of an epoch.
        monitor = np.arange(len(row_np))
        if len(monitor) > _MONITOR_RATINGS:
            monitor = np.sort(
                torch.randperm(len(monitor), generator=generator)[:_MONITOR_RATINGS].numpy()
            )
        monitor_rows = VisibleRows.build(
            row_np[monitor], position_np[monitor], level_np[monitor], n_rows, n_positions, k
        )
        monitor_target = self.levels[level_np[monitor]]
        val_rows, val_target, val_fallback = None, None, None
        if val is not None and val.n_ratings:
            # Validation is scored as predict() would score it: pairs whose user or item has no
            # training rating get the fallback, and everything is clipped to the scale.
            known = self.known_mask(val.user_idx, val.item_idx)
            val_fallback = self._fallback_scores(val.user_idx[~known], val.item_idx[~known])
            val_fallback = np.clip(val_fallback, *self.rating_scale) - val.rating[~known]
            val_part = val.subset(known)
            val_rows = self._visible(val_part)
            val_target = val_part.rating[val_rows.order].astype(np.float64)

        def uniform(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.rand(shape, generator=generator)

        log.info(
            "%s: %d rows x %d positions, K = %d rating values %s, F = %d, %d ratings",
            self.model_name,
            n_rows,
            n_positions,
            k,
            self.levels.tolist(),
            cfg.n_hidden,
            train.n_ratings,
        )

        def run_epoch(epoch: int) -> EpochScores:
            n_steps = cfg.cd_steps_at(epoch)
            order = active[torch.randperm(len(active), generator=generator).numpy()]
            for start in range(0, len(order), cfg.batch_size):
                batch = np.sort(order[start : start + cfg.batch_size])
                rows = self._batch(batch, indptr, position_np, level_np, n_positions, k)
                grads = cd_gradients(self.params, rows, n_steps, uniform)
                for param, vel, grad, decay in zip(
                    self.params.tensors(),
                    velocity,
                    grads,
                    (cfg.weight_decay, 0.0, 0.0),
                    strict=True,
                ):
                    # vel <- momentum vel + lr (grad / rows - decay W), fused in place: the
                    # weight-sized passes dominate an epoch once F is in the hundreds.
                    vel.mul_(cfg.momentum).add_(grad, alpha=cfg.lr / len(batch))
                    if decay:
                        vel.add_(param, alpha=-cfg.lr * decay)
                    param.add_(vel)
            self._row_hidden = hidden_probs(self.params, train_rows, None)  # (n_rows, F)
            val_rmse = None
            if val_rows is not None:
                val_rmse = self._rmse(val_rows, val_target, val_fallback)
            train_rmse = self._rmse(monitor_rows, monitor_target, None)
            return EpochScores(train_rmse, val_rmse, f"CD-{n_steps}")

        def snapshot(into: dict[str, Any] | None) -> dict[str, Any]:
            return dict(zip(_PARAM_NAMES, self.params.clone().tensors(), strict=True))

        def restore(kept: dict[str, Any]) -> None:
            self.params = RBMParams(*(kept[name] for name in _PARAM_NAMES))

        def state() -> dict[str, Any]:
            return {"params": list(self.params.tensors()), "velocity": velocity}

        def load_state(saved: dict[str, Any]) -> None:
            self.params = RBMParams(*saved["params"])
            for vel, value in zip(velocity, saved["velocity"], strict=True):
                vel.copy_(value)

        run_epochs(
            self,
            TrainingSteps(
                run_epoch,
                snapshot,
                restore,
                state,
                load_state,
                **generator_rank_state(generator),
                divergence_hint="try a smaller lr",
            ),
            train,
            val,
        )
        self._row_hidden = hidden_probs(self.params, train_rows, None)

    @staticmethod
    def _batch(
        batch: np.ndarray,
        indptr: np.ndarray,
        position: np.ndarray,
        level: np.ndarray,
        n_positions: int,
        k: int,
    ) -> VisibleRows:
        """The entries of the (sorted) rows ``batch``, renumbered 0..len(batch)-1."""
        lengths = indptr[batch + 1] - indptr[batch]
        local_row = np.repeat(np.arange(len(batch)), lengths)
        take = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        take += np.repeat(indptr[batch], lengths)
        return VisibleRows.build(local_row, position[take], level[take], len(batch), n_positions, k)

    @torch.no_grad()
    def _rmse(
        self, rows: VisibleRows, target: np.ndarray, fallback_errors: np.ndarray | None
    ) -> float:
        """RMSE at ``rows`` (targets in its order) plus the errors of fallback-scored pairs."""
        pred = expected_at(self.params, self._row_hidden, rows, self._values)
        pred = np.clip(pred, *self.rating_scale)
        sse = float(np.sum((pred - target) ** 2))
        n = len(target)
        if fallback_errors is not None:
            sse += float(np.sum(fallback_errors**2))
            n += len(fallback_errors)
        return math.sqrt(sse / max(n, 1))

    @torch.no_grad()
    def _expected(self, row: np.ndarray, position: np.ndarray) -> np.ndarray:
        return expected_ratings(self.params, self._row_hidden, row, position, self._values)

    # -- prediction ----------------------------------------------------------------------------
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._expected(*self._rows_positions(user_idx, item_idx))

    # -- folding in a new user ----------------------------------------------------------------
    @torch.no_grad()
    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> Any:
        """U-RBM: a new user is a new row of visible units, ``p(h = 1 | V_new)`` (1, F)
        through the trained weights.

        I-RBM: a new user is a new visible softmax unit, with weights ``W_new`` (K, F) and
        biases ``b_new`` (K,) of its own. With every trained weight frozen and the items'
        hidden probabilities ``p_i = p(h | V_i)`` taken as fixed (first order, as I-AutoRec's
        fold-in takes its codes), the unit's conditional log-likelihood of the user's ratings
        is a multinomial logistic regression,

        .. math::  \\max \\sum_{i \\in I} \\log \\operatorname{softmax}(b + W p_i)_{k(r_i)}
                   - \\frac{c}{2} (\\|W\\|^2 + \\|b - \\bar b\\|^2),

        with ``c = n_rows * weight_decay``, the decay training applies per row of the data
        (lr * weight_decay * W per batch, against the gradient averaged over the batch's rows),
        and the biases pulled toward the training users' mean ``b_bar`` (a user who used only
        one rating value would otherwise send b to infinity). Solved by L-BFGS from
        ``(0, b_bar)``.
        """
        level = np.searchsorted(self.levels, rating)
        off = np.flatnonzero(
            (level >= len(self.levels))
            | (self.levels[np.minimum(level, len(self.levels) - 1)] != rating)
        )
        if len(off):
            values = ", ".join(f"{v:g}" for v in self.levels)
            raise ConfigError(
                f"{self.model_name} has one visible unit per rating value ({values}); "
                f"got {rating[off[0]]:g}"
            )
        if self.config.variant == "user":
            rows = VisibleRows.build(
                np.zeros(len(item_idx), dtype=np.int64),
                item_idx,
                level,
                1,
                self.n_items,
                len(self.levels),
            )
            return hidden_probs(self.params, rows, None)  # (1, F)
        return self._fit_new_unit(item_idx, level)

    def _fit_new_unit(self, item_idx: np.ndarray, level: np.ndarray) -> tuple:
        """I-RBM's new visible unit (see :meth:`_fold_in_user`): (W_new (K, F), b_new (K,))."""
        k = len(self.levels)
        seen = self.user_seen
        prior = self.params.visible_bias[torch.from_numpy(seen)].double().mean(0)  # (K,)
        coef = int(self.item_seen.sum()) * self.config.weight_decay
        features = self._row_hidden[torch.from_numpy(item_idx)].double()  # (n_rated, F)
        target = torch.from_numpy(level.astype(np.int64))
        weight = torch.zeros(k, features.shape[1], dtype=torch.float64, requires_grad=True)
        bias = prior.clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=100, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = features @ weight.t() + bias  # (n_rated, K)
            loss = nn_functional.cross_entropy(logits, target, reduction="sum")
            loss = loss + coef / 2 * (weight.pow(2).sum() + (bias - prior).pow(2).sum())
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return weight.detach(), bias.detach()

    @torch.no_grad()
    def _fold_in_scores(self, state: Any) -> np.ndarray:
        if self.config.variant == "user":
            return expected_ratings(
                self.params,
                state,
                np.zeros(self.n_items, dtype=np.int64),
                np.arange(self.n_items),
                self._values,
            )
        weight, bias = state
        logits = self._row_hidden.double() @ weight.t() + bias  # (n_items, K)
        return (torch.softmax(logits, dim=1) @ self._values).numpy()

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        p = self.params
        # p(h | V_row) of every row is all that prediction needs of the training ratings.
        return {
            "weight": p.weight.numpy(),
            "visible_bias": p.visible_bias.numpy(),
            "hidden_bias": p.hidden_bias.numpy(),
            "row_hidden": self._row_hidden.numpy(),
            "levels": self.levels,
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.params = RBMParams(
            torch.from_numpy(state["weight"]),
            torch.from_numpy(state["visible_bias"]),
            torch.from_numpy(state["hidden_bias"]),
        )
        self._row_hidden = torch.from_numpy(state["row_hidden"])
        self.levels = state["levels"].astype(np.float64)
        self._values = torch.from_numpy(self.levels)
