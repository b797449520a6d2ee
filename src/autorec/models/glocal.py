"""GLocal-K: global and local kernels for recommender systems (Han et al., CIKM 2021).

Two stages on the item-based rating matrix R (n_items x n_users, rows are items as in
I-AutoRec; unobserved entries are 0).

**Pre-training: the local kernel.** A kernelised I-AutoRec (kernelNet, :mod:`autorec.models.kernel`)
with two sigmoid hidden layers of 500 and an identity output layer,

.. math::  h(r) = W_3 \\hat\\sigma(W_2 \\hat\\sigma(W_1 r + b_1) + b_2) + b_3, \\qquad
           \\hat W_\\ell = W_\\ell \\odot K(a_\\ell, b_\\ell)

fitted by full-batch L-BFGS on the observed squared error plus ``lam / 2 sum ||W||^2`` and the
kernel sparsity term ``kernel_lam / 2 sum ||K||^2`` (the AutoRec objective, as i-kernelnet).

**Fine-tuning: the global kernel.** The item-pooled output of the local model,
``p_i = mean_u h(R_{i,:})_u`` (n_items,), is mapped by a learned ``C`` (n_items x s^2,
truncated normal, s.d. 0.1) to one small convolution kernel ``G = reshape(dot_scale * p C,
s x s)`` (s = 3). The rating matrix is smoothed by it, ``R~ = relu(G * R)`` (a 2-d
cross-correlation over item and user indices, zero padding, "same" size), and the local model
is trained again on ``R~`` as its input, the loss still at the observed entries of R:

.. math::  \\min \\sum_{(i,u) \\in O} (R_{iu} - h(\\tilde R_{i,:})_u)^2 + \\text{penalties}

with ``G`` recomputed from the current local model at every evaluation (the gradient reaches
the local weights both through ``h`` and through ``p``, and ``C``; ``C`` carries no penalty).
Predictions of a fine-tuned model are ``h(R~_{i,:})_u`` with the final ``G`` kept. Because f is
the identity, ``p = H mean_u(W_3) + mean(b_3)`` from the codes H of the rows: no dense
reconstruction is built for the pooling.

**Cost.** Pre-training is the sparse engine of AutoRec (never a dense matrix). The global
convolution, however, works on the **dense** n_items x n_users matrix: R, R~ and their
gradients are dense, and the fine-tuned encoder is a dense product. A fit therefore refuses,
with a ConfigError, a matrix above ``max_dense_cells`` cells (2e8 by default, ~0.8 GB per
float32 copy and a handful of copies: ML-1M's 3,706 x 6,040 = 2.2e7 is fine, ML-10M's 7.5e8 is
not).

**Epochs, chosen on validation.** The authors ran a fixed number of L-BFGS rounds per stage
(``iter_p``/``iter_f`` iterations each, SciPy L-BFGS-B restarting its memory every round) and
reported the best test RMSE over the fine-tuning rounds. Here a round is an epoch; each stage
stops early on validation RMSE (``patience`` rounds without a gain) and keeps its best round's
weights; fine-tuning starts from the pre-training choice and is kept only if one of its rounds
beats the pre-trained validation RMSE (otherwise the model stays the local one, fine-tuning
epochs 0). :meth:`GLocalK.retrain_overrides` hands both counts to the protocol's retrain on
train + validation, which runs exactly that many rounds of each stage.

**Design.** :class:`GLocalK` subclasses :class:`~autorec.models.autorec.AutoRec` and keeps its
network (:class:`~autorec.models.autorec.AutoRecNet` with ``kernel_dim``), its sparse engine and
its full-batch step for pre-training, its scoring, persistence and fold-in; only the training
stages and the codes of the rows (from ``R~`` once fine-tuned) are its own. The config is not an
``IterativeConfig``: the two stages are two early-stopped loops, not one epoch counter.

**Fold-in** of a new user is I-AutoRec's (:meth:`AutoRec._fold_in_column`): a new column whose
decoder row is a ridge fit on the frozen item codes (those of ``R~`` once fine-tuned), its
input left at 0, so that no trained item's code moves. The user's column would enter ``R~``
only through a convolution with its index neighbours, which is what leaving it out ignores.

Reference:
    S. C. Han, T. Lim, S. Long, B. Burgstaller, J. Poon. GLocal-K: Global and Local Kernels
    for Recommender Systems. CIKM 2021, pp. 3063-3067 (code: github.com/usydnlp/Glocal_K;
    ML-1M 0.8227 on one 90/10 split with seed 1234, ML-100k u1 0.8889, each the best test RMSE
    over the fine-tuning rounds).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError, ModelFitError
from autorec.models.autorec import AutoRec, AutoRecNet, resolve_device
from autorec.models.base import BaseConfig
from autorec.models.sparse import GradientPool, Sparse
from autorec.models.training import EarlyStopping, epoch_log
from autorec.optim import RestartingLBFGS

log = logging.getLogger(__name__)

# The authors' truncated normal spread of the global kernel's map C.
CONV_INIT_STD = 0.1
# lambda grid for the protocol: the authors' ML-100k (lambda_2 = 20) and ML-1M (70) values on
# this package's loss scale (x2), and one step above the latter.
GLOCAL_LAMBDA_GRID = (40.0, 140.0, 400.0)


@dataclass(frozen=True)
class GLocalConfig(BaseConfig):
    """GLocal-K hyperparameters. Defaults: the authors' ML-1M settings (Han et al. 2021, code
    github.com/usydnlp/Glocal_K: n_hid 500, n_layers 2, n_dim 5, gk_size 3, lambda_2 70,
    lambda_s 0.018, iter_p 50, iter_f 10, epoch_p 20, epoch_f 30, dot_scale 0.5). Their loss
    halves the squared error and this package's does not, so lambda_2 and lambda_s are doubled
    (as for i-kernelnet). Their ML-100k settings: lam 40, kernel_lam 0.012, pretrain_iters 5,
    finetune_iters 5, pretrain_epochs 30, finetune_epochs 60, dot_scale 1."""

    hidden: tuple[int, ...] = (500, 500)  # two kernelised sigmoid layers of 500
    kernel_dim: int = 5  # n_dim of the kernel vectors
    lam: float = 140.0  # lambda_2 = 70 (ML-1M) x 2; tuned over GLOCAL_LAMBDA_GRID
    kernel_lam: float = 0.036  # lambda_s = 0.018 (ML-1M) x 2
    gk_size: int = 3  # the global convolution kernel is gk_size x gk_size
    dot_scale: float = 0.5  # scale of the pooled-output dot product that makes the kernel
    pretrain_iters: int = 50  # L-BFGS iterations per pre-training round (epoch)
    finetune_iters: int = 10  # L-BFGS iterations per fine-tuning round
    # Upper bounds with validation (early stopping chooses); exact counts without it (the
    # protocol's retrain takes the chosen ones from retrain_overrides). 0 fine-tuning rounds:
    # the local kernel model alone.
    pretrain_epochs: int = 20
    finetune_epochs: int = 30
    patience: int = 5  # rounds without a validation gain before a stage stops
    min_delta: float = 1e-6  # smaller validation gains are float noise
    history_size: int = 10  # L-BFGS curvature pairs (the authors' maxcor)
    # The global convolution needs the dense n_items x n_users matrix: refuse larger ones.
    max_dense_cells: int = 200_000_000
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto"

    # Fixed parts of the architecture, read by the AutoRec machinery this model reuses.
    variant: ClassVar[str] = "item"
    f: ClassVar[str] = "identity"
    g: ClassVar[str] = "sigmoid"
    engine: ClassVar[str] = "sparse"
    precision: ClassVar[str] = "fp32"
    input_dropout: ClassVar[float] = 0.0
    baseline: ClassVar[str] = "none"  # the authors fit the ratings themselves
    bias_reg_user: ClassVar[float] = 15.0  # the fallback's damping (fit_biases' defaults)
    bias_reg_item: ClassVar[float] = 10.0
    layer_lam_scales: ClassVar[tuple[float, ...]] = ()  # one lam for every weight matrix

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hidden or any(int(k) < 1 for k in self.hidden):
            raise ConfigError(f"hidden must be positive layer sizes, got {self.hidden}")
        object.__setattr__(self, "hidden", tuple(int(k) for k in self.hidden))
        if self.kernel_dim < 1:
            raise ConfigError(f"kernel_dim must be >= 1, got {self.kernel_dim}")
        for name in ("lam", "kernel_lam", "dot_scale", "min_delta"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.gk_size < 1 or self.gk_size % 2 == 0:
            raise ConfigError(f"gk_size must be odd and >= 1, got {self.gk_size}")
        for name in ("pretrain_iters", "finetune_iters", "pretrain_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if self.history_size < 1 or self.max_dense_cells < 1:
            raise ConfigError(
                f"history_size and max_dense_cells must be >= 1, got {self.history_size}, "
                f"{self.max_dense_cells}"
            )


def global_kernel(
    codes: torch.Tensor,
    decoder: torch.Tensor,
    decoder_bias: torch.Tensor,
    conv_map: torch.Tensor,
    dot_scale: float,
) -> torch.Tensor:
    """The global convolution kernel (1, 1, s, s) from the local model's codes of the training
    rows (n_items, k) and its (effective) decoder (n_users, k), bias (n_users,), and the map
    ``conv_map`` (n_items, s^2): ``dot_scale * p C`` with ``p_i = mean_u h_iu`` the item-pooled
    reconstruction, computed as ``H mean_u(W) + mean(b)`` (f is the identity)."""
    pooled = codes @ decoder.mean(0) + decoder_bias.mean()  # (n_items,)
    side = math.isqrt(conv_map.shape[1])
    return (dot_scale * (pooled @ conv_map)).view(1, 1, side, side)  # (1, 1, s, s)


def convolve(dense: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``relu(G * R)``: (n_rows, n_cols) cross-correlated with the (1, 1, s, s) kernel, zero
    padding, the same size out."""
    pad = kernel.shape[-1] // 2
    out = nn.functional.conv2d(dense[None, None], kernel, padding=pad)  # (1, 1, rows, cols)
    return torch.relu(out[0, 0])


class GLocalK(AutoRec):
    """GLocal-K estimator (module docstring): AutoRec's kernelised net, pre-trained, then
    fine-tuned on the globally convolved rating matrix."""

    name: ClassVar[str] = "glocal-k"
    config_class: ClassVar[type[BaseConfig]] = GLocalConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"lam": GLOCAL_LAMBDA_GRID}
    open_above: ClassVar[tuple[str, ...]] = ()
    config: GLocalConfig  # type: ignore[assignment]

    @property
    def model_name(self) -> str:
        return self.name

    # -- training ------------------------------------------------------------------------------
    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        n_rows, n_cols = self._shape()
        if cfg.finetune_epochs and n_rows * n_cols > cfg.max_dense_cells:
            raise ConfigError(
                f"glocal-k: the global convolution works on the dense {n_rows:,} x {n_cols:,} "
                f"rating matrix ({n_rows * n_cols:,} cells), above max_dense_cells = "
                f"{cfg.max_dense_cells:,}; use i-kernelnet (sparse) or finetune_epochs=0"
            )
        self.device = device = resolve_device(cfg.device)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.net = AutoRecNet(
            n_cols, cfg.hidden, cfg.f, cfg.g, train.rating_scale, generator, cfg.kernel_dim
        )
        with torch.no_grad():
            self.net.decoder_bias.fill_(self.global_mean)
        self.net.to(device)
        self._choose_layout(train.n_ratings, device)
        x = self._train_x = self._sparse(train, device)
        val_x = self._sparse(val, device) if val is not None and val.n_ratings else None
        self._train_pattern: Sparse | None = None
        self._grad_pool = GradientPool()
        self._group = None
        self._head = None
        self._codes: torch.Tensor | None = None
        self._gk: torch.Tensor | None = None
        conv_map = torch.empty(n_rows, cfg.gk_size**2)  # C
        nn.init.trunc_normal_(
            conv_map, 0.0, CONV_INIT_STD, -2 * CONV_INIT_STD, 2 * CONV_INIT_STD, generator=generator
        )
        self.conv_map = nn.Parameter(conv_map.to(device))
        log.info(
            "glocal-k: %d x %d training matrix, %d ratings, lam %g, kernel_lam %g",
            n_rows,
            n_cols,
            x.nnz,
            cfg.lam,
            cfg.kernel_lam,
        )
        self.pretrain_epochs = self._pretrain(x, val_x, generator)
        # Where the history's fine-tuning rounds begin (history.val_rmse[pretrain_rounds:]).
        self.pretrain_rounds = self.history.n_epochs
        self.finetune_epochs = self._finetune(x, val_x) if cfg.finetune_epochs else 0
        # The history's epoch (1-based, both stages in one list) whose weights were kept.
        self.history.best_epoch = (
            self.pretrain_rounds + self.finetune_epochs
            if self.finetune_epochs
            else self.pretrain_epochs
        )
        self._grad_pool.clear()
        self._train_pattern = None
        self._codes = None
        for param in (*self.net.parameters(), self.conv_map):
            param.grad = None

    def _lbfgs(self, params: list[torch.Tensor], iters: int) -> RestartingLBFGS:
        # A fresh optimiser per round: SciPy's L-BFGS-B, which the authors ran once per round,
        # starts every call without curvature pairs.
        return RestartingLBFGS(
            params,
            lr=1.0,
            max_iter=iters,
            history_size=self.config.history_size,
            line_search_fn="strong_wolfe",
        )

    def _stage(
        self,
        label: str,
        n_epochs: int,
        run_round: Callable[[], float],
        val_rmse: Callable[[], float],
        stopper: EarlyStopping | None,
        snapshot: Callable[[], dict[str, torch.Tensor]],
        restore: Callable[[dict[str, torch.Tensor]], None],
    ) -> int:
        """Run up to ``n_epochs`` rounds; with validation (``stopper``) stop early and keep the
        best round (0: none beat the stopper's starting best). Returns the rounds kept."""
        offset = self.history.n_epochs
        best: dict[str, torch.Tensor] | None = None
        for epoch in range(1, n_epochs + 1):
            started = time.perf_counter()
            train_rmse = run_round()
            val = val_rmse() if stopper is not None else None
            seconds = time.perf_counter() - started
            for what, value in (("training", train_rmse), ("validation", val)):
                if value is not None and not math.isfinite(value):
                    raise ModelFitError(
                        f"glocal-k diverged: {what} RMSE became {value} in {label} round "
                        f"{epoch} (try a larger lambda)"
                    )
            self.history.record(epoch_log, offset + epoch, train_rmse, val, seconds, label)
            if stopper is None:
                continue
            is_best, stop = stopper.update(epoch, val)
            if is_best:
                best = snapshot()
            if stop:
                break
        if stopper is None:
            return n_epochs
        if best is not None:
            restore(best)
        return stopper.best_epoch

    def _net_snapshot(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        state["conv_map"] = self.conv_map.detach().clone()
        return state

    def _net_restore(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict({k: v for k, v in state.items() if k != "conv_map"})
        with torch.no_grad():
            self.conv_map.copy_(state["conv_map"])

    def _pretrain(self, x: Sparse, val_x: Sparse | None, generator: torch.Generator) -> int:
        """The local kernel stage: AutoRec's full-batch step, ``pretrain_iters`` L-BFGS
        iterations a round. Returns the rounds kept."""
        cfg = self.config
        params = list(self.net.parameters())

        def run_round() -> float:
            # baseline "none": the targets are the input ratings themselves
            sse = self._full_batch_step(x, x, self._lbfgs(params, cfg.pretrain_iters), generator)
            return math.sqrt(sse / x.nnz)

        stopper = self._stopper() if val_x is not None else None
        return self._stage(
            "pre",
            cfg.pretrain_epochs,
            run_round,
            lambda: self._rmse_at(x, val_x),
            stopper,
            self._net_snapshot,
            self._net_restore,
        )

    def _stopper(self) -> EarlyStopping:
        return EarlyStopping(self.config.patience, 0, self.config.min_delta, False)

    def _finetune(self, x: Sparse, val_x: Sparse | None) -> int:
        """The global kernel stage, from the pre-trained weights. Returns the rounds kept: 0
        when none beat the pre-trained model on validation (which is then kept)."""
        cfg = self.config
        dense = x.to_dense()  # (n_items, n_users): the convolution needs every cell
        pattern = x.pattern()
        params = [*self.net.parameters(), self.conv_map]

        def codes() -> torch.Tensor:  # (n_items, k_last), a graph node
            net = self.net
            gk = global_kernel(
                net.encode(x), net.decoder, net.decoder_bias, self.conv_map, cfg.dot_scale
            )
            return net.encode_dense(convolve(dense, gk))

        def run_round() -> float:
            opt = self._lbfgs(params, cfg.finetune_iters)
            first: list[float] = []

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    pred = self.net.decode_at(codes(), pattern)  # (nnz,)
                    sse = (pred - x.values).pow(2).sum()
                    sse.backward()
                    objective = float(sse.detach())
                    self.net.add_weight_decay(cfg.lam)
                    objective += 0.5 * cfg.lam * self.net.weight_sq_norm()
                    kernel_sq = self.net.kernel_penalty()
                    if cfg.kernel_lam and kernel_sq is not None:
                        penalty = 0.5 * cfg.kernel_lam * kernel_sq
                        penalty.backward()
                        objective += float(penalty.detach())
                self._check(objective)
                if not first:
                    first.append(float(sse.detach()))
                return torch.tensor(objective)

            opt.step(closure)
            return math.sqrt(first[0] / x.nnz)

        @torch.no_grad()
        def val_rmse() -> float:
            low, high = self.rating_scale
            pred = self.net.decode_at(codes(), val_x.pattern()).clamp(low, high)
            return math.sqrt(float((pred - val_x.values).double().pow(2).sum()) / val_x.nnz)

        stopper = None
        pretrained = self._net_snapshot()
        if val_x is not None:
            # Fine-tuning must beat the pre-trained model's validation RMSE to be kept.
            stopper = self._stopper()
            stopper.best_val = self.history.val_rmse[self.pretrain_epochs - 1]
        kept = self._stage(
            "fine",
            cfg.finetune_epochs,
            run_round,
            val_rmse,
            stopper,
            self._net_snapshot,
            self._net_restore,
        )
        if kept == 0:
            self._net_restore(pretrained)
            return 0
        with torch.no_grad():
            net = self.net
            self._gk = global_kernel(
                net.encode(x), net.decoder, net.decoder_bias, self.conv_map, cfg.dot_scale
            ).detach()
        return kept

    @classmethod
    def hands_over(cls, config: BaseConfig) -> bool:
        return True  # the rounds of both stages, always

    def retrain_overrides(self) -> dict[str, Any]:
        """The rounds of each stage that validation kept, for the refit on train + validation."""
        self._check_fitted()
        return {"pretrain_epochs": self.pretrain_epochs, "finetune_epochs": self.finetune_epochs}

    # -- prediction ----------------------------------------------------------------------------
    @torch.no_grad()
    def _all_codes(self) -> torch.Tensor:
        """Codes of every training row (n_items, k_last): of ``R~ = relu(G * R)`` once
        fine-tuned, of R otherwise; computed once and kept."""
        if self._codes is None:
            if self._gk is None:
                self._codes = self.net.encode(self._train_x)
            else:
                dense = self._train_x.to_dense()  # (n_items, n_users)
                self._codes = self.net.encode_dense(convolve(dense, self._gk))
        return self._codes

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state["glocal_conv_map"] = self.conv_map.detach().cpu().numpy()
        if self._gk is not None:
            state["glocal_kernel"] = self._gk.cpu().numpy()
        return state

    def _extra_meta(self) -> dict[str, Any]:
        return {
            **super()._extra_meta(),
            "pretrain_epochs": self.pretrain_epochs,
            "finetune_epochs": self.finetune_epochs,
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        own = {k: state[k] for k in state if k.startswith("glocal_")}
        super()._load_state({k: v for k, v in state.items() if k not in own}, extra)
        self.conv_map = nn.Parameter(torch.from_numpy(own["glocal_conv_map"]).to(self.device))
        gk = own.get("glocal_kernel")
        self._gk = None if gk is None else torch.from_numpy(gk).to(self.device)
        self.pretrain_epochs = int(extra["pretrain_epochs"])
        self.finetune_epochs = int(extra["finetune_epochs"])
