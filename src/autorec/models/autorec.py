"""AutoRec: autoencoders meet collaborative filtering (Sedhain, Menon, Sanner, Xie, WWW 2015).

One implementation serves both orientations. With the rating matrix R (n_users x n_items):

* **I-AutoRec** (``variant="item"``, the paper's best) encodes an item's column
  ``r^(i) in R^{n_users}``: rows of the training matrix are items, columns users;
* **U-AutoRec** (``variant="user"``) encodes a user's row ``r^(u) in R^{n_items}``.

The reconstruction of an input vector r (``n_cols`` entries) is

.. math::  h(r; \\theta) = f(W \\, g(V r + \\mu) + b)

with ``V`` (k x n_cols), ``W`` (n_cols x k), ``g`` the hidden and ``f`` the output activation
(paper's best: g = sigmoid, f = identity, k = 500). Deep variants stack more hidden layers
between them (``hidden=(500, 250, 500)``, the paper's deep AutoRec). The objective sums over the
*observed* entries O of the training matrix only, plus weight decay on the weight matrices
(never on the biases; ``layer_lam_scales`` multiplies lambda per matrix, 1 for all by default):

.. math::  \\min_\\theta \\sum_{(r, c) \\in O} (R_{rc} - h(R_{r,:}; \\theta)_c)^2
           + \\frac{\\lambda}{2} \\sum_{\\text{weights } M} \\|M\\|_F^2

**How lambda is scaled.** The data term is a *sum* over the training ratings, exactly as written
in the paper (Eq. 2), not a mean: with ML-1M's ~810k training ratings, lambda = 1 is a weak
penalty and lambda = 1000 a strong one, which is what makes the paper's grid
{0.001, 0.01, 0.1, 1, 100, 1000} span the useful range. With minibatches, each batch carries the
fraction of the penalty equal to its share of rows, so an epoch still minimises this objective.

**Prediction.** ``R_hat[u, i] = h(r^(i))_u`` for I-AutoRec, where ``r^(i)`` is built from the
*training* ratings only; validation and test ratings never enter an input (a model keeps its
training matrix for this). Pairs whose user or item has no training rating get the fallback of
the base class (paper: 3). Outputs of a bounded ``f`` (sigmoid, tanh) are mapped affinely onto
the rating scale, since a sigmoid cannot otherwise reach a rating of 5.

**Residuals of the bias baseline** (``baseline="bias"``, beyond the paper; issues 15, 16). The
output bias of I-AutoRec is per user, so as lambda grows (W, V -> 0) the model tends to each
user's mean rating, which loses to the damped bias baseline ``b_ui = mu + b_u + b_i`` (Koren 2010,
Sec. 2.1) on small or noisy data. With this option the model first fits that baseline on the
training ratings (:func:`autorec.models.biases.fit_biases` with the damping ``bias_reg_user``,
``bias_reg_item``, by default the bias model's 15 and 10, which the searched protocol may set
on validation: the very fit the base class keeps for its fallback, saved with every model), then
trains the autoencoder to reconstruct the residuals from the ratings:

.. math::  \\min_\\theta \\sum_{(r, c) \\in O} (R_{rc} - b_{rc} - h(R_{r,:}; \\theta)_c)^2
           + \\frac{\\lambda}{2} \\sum_{\\text{weights } M} \\|M\\|_F^2, \\qquad
           \\hat R_{rc} = b_{rc} + h(R_{r,:}; \\theta)_c

The input stays the paper's (the ratings, 0 where unobserved): which users rated an item is
information that residual inputs, about 0 at every entry, lose (on ML-100k u1 the validation RMSE
is 0.8927 with rating inputs against 0.9291 with residual inputs at lambda = 300;
docs/experiments.md, "I-AutoRec on bias-baseline residuals"). The output bias is held at 0: the
baseline's b_u (b_i for U-AutoRec) is each column's offset already, and a free, unpenalised bias
would fit each column's undamped mean residual. So as lambda grows the prediction tends to the
baseline itself, and a tuned lambda cannot lose much to it. It needs f = identity: a bounded or
one-sided output cannot produce residuals of both signs. A new user or item (fold-in) first gets
its own damped bias against the trained baseline (one step of the baseline's fit, with its
lambda_u or lambda_i) and is then folded in as before, on residual targets.

**Deep nets: greedy layer-wise pre-training** (``pretrain="layerwise"``, beyond the paper,
which does not say how its deep AutoRec was trained; issue 18). A deep net of hidden
(k1, ..., k1) starts from a one-layer AutoRec's outer layers and a dense autoencoder fitted to
its codes, then is fine-tuned as usual: :mod:`autorec.models.pretrain`.

**Cost.** Training never builds a dense n_users x n_items matrix. The ``sparse`` engine computes
``V r`` as a sparse-dense product and evaluates the decoder only at observed entries (a sampled
dense-dense product), so an epoch costs about ``n_ratings x k`` multiply-adds per layer
(see :mod:`autorec.models.sparse`). The ``dense`` engine densifies a batch of rows at a time (the
way most public reimplementations train); ``auto`` picks sparse unless the data is dense.

**Optimisers.** ``rprop`` (full batch; the paper's choice), ``lbfgs`` (full batch; the paper
calls it comparable) and ``adam`` (minibatches). With a validation set, training stops when the
validation RMSE has not improved for ``patience`` epochs and the best weights are kept.

References:
    S. Sedhain, A. K. Menon, S. Sanner, L. Xie. AutoRec: Autoencoders Meet Collaborative
    Filtering. WWW 2015 Companion, pp. 111-112.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError, ModelFitError
from autorec.models import autorec_rank, pretrain
from autorec.models.base import BaseConfig, Recommender
from autorec.models.kernel import kernel_of, kernelise, raw_weight
from autorec.models.sparse import (
    BlockedRows,
    GradientPool,
    ProductMemo,
    Sparse,
    SparseRows,
    sddmm,
    tile_shape,
)
from autorec.models.training import (
    EpochScores,
    IterativeConfig,
    TrainingSteps,
    generator_rank_state,
    run_epochs,
)
from autorec.optim import LeanRprop, RestartingLBFGS

log = logging.getLogger(__name__)

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "selu": nn.functional.selu,
}
_BOUNDED = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}

# Sedhain et al. 2015, Sec. 3: lambda is tuned over this grid on 10% of the training data.
PAPER_LAMBDA_GRID = (0.001, 0.01, 0.1, 1.0, 100.0, 1000.0)
# The grid `autorec evaluate` searches by default: the paper's plus 10 and 300. With the loss as
# the paper writes it (a sum over ratings), the validation optimum on ML-1M lies between 100 and
# 1000 (docs/experiments.md), so the paper's grid alone cannot reach it. `--lambdas` restores the
# paper's.
# lambda is open above (AutoRec.open_above): the protocol extends the grid past 1000 while
# validation picks its top, which a linear hidden layer (g = identity) does.
DEFAULT_LAMBDA_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 300.0, 1000.0)
_DECAY_CHUNK_ELEMENTS = 1 << 20  # 4 MB of float32 temporaries
DEFAULT_LR = {"rprop": 0.002, "lbfgs": 1.0, "adam": 1e-3}


@dataclass(frozen=True)
class AutoRecConfig(IterativeConfig):
    """AutoRec hyperparameters; defaults are the paper's best I-AutoRec (Sedhain et al. 2015)."""

    variant: Literal["item", "user"] = "item"  # I-AutoRec beats U-AutoRec in the paper (Table 1a)
    hidden: tuple[int, ...] = (500,)  # k = 500 hidden units (Sec. 3); (500, 250, 500) = deep
    f: str = "identity"  # output activation; identity/sigmoid is the best pair (Table 1b)
    g: str = "sigmoid"  # hidden activation
    # Weight decay lambda; `autorec evaluate` tunes it on validation (DEFAULT_LAMBDA_GRID).
    # 300 is the value validation picks on ML-1M (docs/experiments.md).
    lam: float = 300.0
    # Per-layer weight decay: matrix j (V, the middle layers', W in that order) is penalised with
    # lam * layer_lam_scales[j]; () scales every matrix by 1, the paper's single lambda (Eq. 2).
    # The paper does not say how its deep AutoRec was regularised (docs/experiments.md, issue 18).
    layer_lam_scales: tuple[float, ...] = ()
    optimizer: Literal["rprop", "lbfgs", "adam"] = "rprop"  # "resilient propagation" (Sec. 3)
    # Upper bound; early stopping on validation usually ends sooner.
    n_epochs: int = 500
    patience: int = 30  # epochs without validation improvement before stopping
    min_epochs: int = 0  # never stop before this many epochs
    min_delta: float = 1e-6  # smaller validation gains are float noise, not improvements
    # The protocol's retrain on train + validation: 0 trains from scratch for the epochs
    # validation chose (Sedhain et al. 2015, Sec. 3); N > 0 continues from the validation-stopped
    # weights for N epochs instead (AutoRec.start_from; measured in docs/experiments.md,
    # "Main job speed").
    warm_retrain_epochs: int = 0
    # None: the optimiser's default, DEFAULT_LR (Rprop's initial step was chosen on ML-1M
    # validation: docs/experiments.md).
    lr: float | None = None
    batch_size: int = 256  # rows per minibatch (adam only; rprop and lbfgs are full-batch)
    input_dropout: float = 0.0  # denoising: drop observed inputs with this probability (0: paper)
    # Kernelised (Sparse FC) weights, autorec.models.kernel: every weight matrix W is used as
    # W * K with K[r, c] = max(0, 1 - ||a_r - b_c||^2) of learned kernel_dim-d vectors (Muller,
    # Martel, Indiveri, ICML 2018: d = 5). 0: the paper's dense layers, bit for bit.
    kernel_dim: int = 0
    # Sparsity penalty kernel_lam / 2 * ||K||_F^2 per matrix (with kernel_dim > 0), on the same
    # scale as lam: the authors' lambda_s = 0.013 against a halved squared error is 0.026 here.
    kernel_lam: float = 0.0
    # What the autoencoder reconstructs (module docstring, "Residuals of the bias baseline"):
    # "none", the ratings (Sedhain et al. 2015, the paper's model); "bias", the residuals of the
    # damped bias baseline mu + b_u + b_i (Koren 2010, Sec. 2.1), added back to predict.
    baseline: Literal["none", "bias"] = "none"
    # lambda_u, lambda_i of that baseline's damped biases, which are also the fallback's (cold
    # users and items): fit_biases' defaults. When the residual model has not beaten the tuned
    # bias model on validation, the searched protocol tries that model's damping
    # (autorec.search.baseline_regs): on a noisy set the defaults left it 0.0014 behind.
    bias_reg_user: float = 15.0
    bias_reg_item: float = 10.0
    # Greedy layer-wise pre-training of a deep net (autorec.models.pretrain; Hinton and
    # Salakhutdinov 2006): "none", a random start (the paper says nothing on how its deep model
    # was trained); "layerwise", a one-layer AutoRec, then a dense autoencoder on its codes,
    # stacked and fine-tuned. Needs hidden = (k1, ..., k1) of depth 3, 5, ... Defaults: the
    # ML-1M experiment, 0.8278 +- 0.0028 over 5 seeds with lam = 100 (docs/experiments.md,
    # "Deep AutoRec and U-AutoRec k=500: what was tried (issue 18)").
    pretrain: Literal["none", "layerwise"] = "none"
    pretrain_lam: float = 300.0  # step 1's lambda: the one-layer model's ML-1M choice
    # Step 1's upper bound (early-stopped on validation); the retrain runs validation's choice.
    pretrain_epochs: int = 500
    pretrain_middle_lam: float = 1.0  # step 2's lambda (on the codes)
    pretrain_middle_epochs: int = 300  # step 2's fixed budget (it fits codes, not ratings)
    engine: Literal["auto", "sparse", "dense"] = "auto"
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto"
    # "fp32"; "tf32" lets CUDA matmuls use TensorFloat-32; "bf16" runs the dense matrix products
    # (dense engine, deep middle layers) under bfloat16 autocast. Sparse kernels stay float32.
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    # -- ranking head (autorec.models.autorec_rank): a second, implicit-feedback autoencoder whose
    # scores rank top-N lists (`recommend`); the rating model is untouched, bit for bit, either
    # way. None (auto): on for I-AutoRec when not distributed, off for U-AutoRec (issue 14);
    # `autorec reproduce` pins it off (the paper's model). Defaults: chosen on ML-1M validation
    # NDCG@10 (docs/experiments.md, "Ranking head").
    ranking_head: bool | None = None
    rank_loss: Literal["softmax", "wmse"] = "softmax"  # Mult-DAE's multinomial (Liang et al.)
    rank_hidden: int = 200
    rank_lam: float = 100.0
    rank_dropout: float = 0.5  # input dropout, as Mult-DAE / CDAE
    rank_negative_weight: float = 0.1  # weight of unobserved entries (wmse only)
    # Adam; lr, batch, patience and the evaluation sample cut the head's cost about 2x at the
    # same validation NDCG@10 (docs/experiments.md, "Ranking head", cost).
    rank_lr: float = 0.03
    rank_batch_users: int = 2048
    rank_epochs: int = 100  # upper bound; validation NDCG@10 stops it sooner
    rank_eval_every: int = 2
    rank_patience: int = 2  # evaluations without a validation gain before stopping
    rank_eval_users: int = 2000  # validation users sampled per epoch evaluation (0: all)
    rank_beta: float | None = None  # weight of the z-scored rating; None: chosen on validation
    rank_relevance: float | None = None  # validation positives; None: the ranking default

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("item", "user"):
            raise ConfigError(f"variant must be 'item' or 'user', got {self.variant!r}")
        if not self.hidden or any(int(k) < 1 for k in self.hidden):
            raise ConfigError(f"hidden must be positive layer sizes, got {self.hidden}")
        object.__setattr__(self, "hidden", tuple(int(k) for k in self.hidden))
        for name in ("f", "g"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ConfigError(
                    f"{name} must be one of {', '.join(ACTIVATIONS)}, got {getattr(self, name)!r}"
                )
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ConfigError(f"lam must be a finite number >= 0, got {self.lam}")
        scales = tuple(float(s) for s in self.layer_lam_scales)
        object.__setattr__(self, "layer_lam_scales", scales)
        if scales and (
            len(scales) != len(self.hidden) + 1
            or not all(s >= 0 and math.isfinite(s) for s in scales)
        ):
            raise ConfigError(
                f"layer_lam_scales must be {len(self.hidden) + 1} finite numbers >= 0 (one per "
                f"weight matrix of hidden={list(self.hidden)}), got {list(scales)}"
            )
        if self.optimizer not in ("rprop", "lbfgs", "adam"):
            raise ConfigError(f"optimizer must be rprop, lbfgs or adam, got {self.optimizer!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.warm_retrain_epochs < 0:
            raise ConfigError(f"warm_retrain_epochs must be >= 0, got {self.warm_retrain_epochs}")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ConfigError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.kernel_dim < 0:
            raise ConfigError(f"kernel_dim must be >= 0 (0: dense layers), got {self.kernel_dim}")
        if not (self.kernel_lam >= 0 and math.isfinite(self.kernel_lam)):
            raise ConfigError(f"kernel_lam must be a finite number >= 0, got {self.kernel_lam}")
        if self.precision not in ("fp32", "tf32", "bf16"):
            raise ConfigError(f"precision must be fp32, tf32 or bf16, got {self.precision!r}")
        if self.engine not in ("auto", "sparse", "dense"):
            raise ConfigError(f"engine must be auto, sparse or dense, got {self.engine!r}")
        if self.baseline not in ("none", "bias"):
            raise ConfigError(f"baseline must be 'none' or 'bias', got {self.baseline!r}")
        if self.baseline != "none" and self.f != "identity":
            raise ConfigError(
                f"baseline={self.baseline!r} needs f='identity' (the residuals of a baseline take "
                f"both signs; f={self.f!r} cannot produce them)"
            )
        if self.pretrain not in ("none", "layerwise"):
            raise ConfigError(f"pretrain must be 'none' or 'layerwise', got {self.pretrain!r}")
        for name in ("bias_reg_user", "bias_reg_item", "pretrain_lam", "pretrain_middle_lam"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("pretrain_epochs", "pretrain_middle_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pretrain == "layerwise":
            pretrain.check_layerwise(self)
        autorec_rank.check_config(self)

    def memory_estimate(self, n_rows: int, n_cols: int, n_ratings: int) -> dict[str, int]:
        """Bytes a fit of this config needs on an ``n_rows x n_cols`` training matrix with
        ``n_ratings`` entries, by part (an estimate from the shapes, float32 throughout).

        With P parameters: weights 4P, gradients 4P, optimiser state (RProp: float step sizes
        and int8 signs, 5P; Adam: two moments, 8P; L-BFGS: 20 pairs of flat vectors plus a few
        work vectors, 172P); activations: the hidden codes of the rows of one step (all rows
        for the full-batch optimisers, ``batch_size`` for Adam), kept for the backward pass
        with their pre-activations (8 bytes per unit), plus a few float buffers per training
        rating; the training matrix: row, column and value of every rating in two layouts
        (and the residual targets' values with a baseline);
        with ``ranking_head``, the head's dense target, batch and weights (trained after the
        rating model, so this overstates the peak a little); with ``kernel_dim``, the kernel
        vectors as parameters and four floats per weight cell (K, the distances, W * K).
        """
        widths = (*self.hidden, n_cols)
        n_params = n_cols * self.hidden[0] + self.hidden[0]  # V, mu
        n_params += sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        # (rows, cols) of every weight matrix: V^T, the middle layers', W
        shapes = [(n_cols, self.hidden[0]), *zip(widths[1:], widths[:-1], strict=True)]
        if self.kernel_dim:
            # One kernel vector per row and per column of every weight matrix.
            n_params += self.kernel_dim * sum(a + b for a, b in shapes)
        optimiser = {"rprop": 5, "adam": 8, "lbfgs": 172}[self.optimizer]
        step_rows = n_rows if self.optimizer != "adam" else min(n_rows, self.batch_size)
        step_ratings = n_ratings if self.optimizer != "adam" else n_ratings * step_rows // n_rows
        parts = {
            "weights": 4 * n_params,
            "gradients": 4 * n_params,
            "optimiser state": optimiser * n_params,
            "activations": 8 * step_rows * sum(self.hidden) + 32 * step_ratings,
            "training matrix": 40 * n_ratings,
        }
        if self.baseline != "none":
            # The residual targets: a second value array in both layouts, the indices shared.
            parts["training matrix"] += 8 * n_ratings
        if self.kernel_dim:
            # K, W * K and the distances, kept for the backward pass, per weight cell.
            parts["kernel"] = 16 * sum(a * b for a, b in shapes)
        if autorec_rank.head_wanted(self):
            # The dense user x item target, the logits of one batch of users with their softmax
            # and gradient, and V, W with gradients and Adam's two moments (autorec_rank).
            batch = min(n_cols, self.rank_batch_users)
            parts["ranking head"] = (
                4 * n_rows * n_cols + 12 * batch * n_rows + 16 * 2 * n_cols * self.rank_hidden
            )
        return parts


def available_memory(device: torch.device, meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes free for a new allocation on ``device``: ``MemAvailable`` of ``meminfo`` on the CPU,
    the free device memory on CUDA; None when it cannot be read (the check is then skipped)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        with open(meminfo) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, RuntimeError, IndexError):
        return None
    return None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def resolve_device(name: str) -> torch.device:
    from autorec.distributed import local_device

    name = local_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available")
    return dev


# Largest dense block (rows x columns) the dense engine materialises at once: 64 MB of float32.
_DENSE_CHUNK_CELLS = 1 << 24


def choose_engine(n_rows: int, n_cols: int, n_ratings: int, device: torch.device) -> str:
    """The engine ``engine="auto"`` picks.

    CPU (measured, ML-1M I-AutoRec, k = 500, 2 cores): a sparse epoch costs 0.19 s against
    0.78 s for the dense forward/backward at 4.5% density; the dense path only pays off when
    most entries are observed, so CPU goes dense above 25% density. CUDA: dense GEMMs run at
    tens of TFLOP/s while sparse kernels are memory-bound, so small matrices (up to 2.5e8
    cells, 1 GB as float32) go dense. The CUDA threshold is an estimate, not yet measured.
    """
    density = n_ratings / max(1, n_rows * n_cols)
    if device.type == "cuda":
        return "dense" if n_rows * n_cols <= 250_000_000 or density > 0.25 else "sparse"
    return "dense" if density > 0.25 else "sparse"


def _process_group() -> object | None:
    """The default process group when running distributed with more than one rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


class AutoRecNet(nn.Module):
    """The maths only: ``h(r) = f(W g(... g(V r + mu) ...) + b)``.

    Both sparse-facing matrices are stored with one row per input/output coordinate:
    ``encoder`` = V^T (n_cols x k_1) and ``decoder`` = W (n_cols x k_L), so that the sparse
    products index rows and a distributed run can shard them by rows.

    With ``kernel_dim > 0`` every weight matrix is kernelised (:mod:`autorec.models.kernel`):
    reading ``encoder``, ``decoder`` or a middle weight returns the effective ``W * K``, so the
    forward code is the same for both; the raw matrices are what :meth:`weights` returns.
    """

    def __init__(
        self,
        n_cols: int,
        hidden: tuple[int, ...],
        f: str,
        g: str,
        out_range: tuple[float, float],
        generator: torch.Generator,
        kernel_dim: int = 0,
    ) -> None:
        super().__init__()
        k1, k_last = hidden[0], hidden[-1]

        def uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
            # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)

        self.encoder = uniform((n_cols, k1), n_cols)  # V^T
        self.encoder_bias = uniform((k1,), n_cols)  # mu
        self.middle_weights = nn.ParameterList(
            uniform((b, a), a) for a, b in zip(hidden[:-1], hidden[1:], strict=True)
        )
        self.middle_biases = nn.ParameterList(
            uniform((b,), a) for a, b in zip(hidden[:-1], hidden[1:], strict=True)
        )
        self.decoder = uniform((n_cols, k_last), k_last)  # W
        self.decoder_bias = nn.Parameter(torch.zeros(n_cols))  # b
        # The validation pass's X @ V, reused by the next step's forward (ProductMemo).
        self._products = ProductMemo()
        # (module, attribute) of every weight matrix, in the order weights() lists them.
        self._weight_slots: list[tuple[nn.Module, str]] = [
            (self, "encoder"),
            *((self.middle_weights, str(i)) for i in range(len(self.middle_weights))),
            (self, "decoder"),
        ]
        if kernel_dim:
            # Drawn after every dense weight, so the dense draws match an unkernelised net's.
            for module, name in self._weight_slots:
                kernelise(module, name, kernel_dim, generator)
        self.f_name, self.g_name = f, g
        self.f, self.g = ACTIVATIONS[f], ACTIVATIONS[g]
        low, high = out_range
        if f in _BOUNDED:
            a, b = _BOUNDED[f]
            self.out_scale, self.out_shift = (
                (high - low) / (b - a),
                low - a * (high - low) / (b - a),
            )
        else:
            self.out_scale, self.out_shift = 1.0, 0.0

    def _output(self, z: torch.Tensor) -> torch.Tensor:
        out = self.f(z)
        if self.out_scale != 1.0 or self.out_shift != 0.0:
            out = out * self.out_scale + self.out_shift
        return out

    def _middle(self, hidden: torch.Tensor) -> torch.Tensor:
        for weight, bias in zip(self.middle_weights, self.middle_biases, strict=True):
            hidden = self.g(hidden @ weight.t() + bias)  # (rows, k_next)
        return hidden

    def encode(self, x: Sparse) -> torch.Tensor:
        """Codes of sparse input rows: (n_rows, k_last)."""
        hidden = self.g(self._products.spmm(x, self.encoder) + self.encoder_bias)  # (rows, k_1)
        return self._middle(hidden)  # (rows, k_last)

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of dense input rows (unobserved entries are 0): (n_rows, k_last)."""
        hidden = self.g(x @ self.encoder + self.encoder_bias)  # (rows, k_1)
        return self._middle(hidden)

    def decode_at(self, codes: torch.Tensor, pattern: Sparse) -> torch.Tensor:
        """Reconstructions at the stored entries of ``pattern`` only: (nnz,)."""
        z = sddmm(pattern, codes, self.decoder) + self.decoder_bias[pattern.col]  # (nnz,)
        return self._output(z)

    def decode_pairs(
        self, codes: torch.Tensor, row_pos: torch.Tensor, col: torch.Tensor
    ) -> torch.Tensor:
        """Reconstruction entries for aligned (row position in ``codes``, column) pairs."""
        z = (codes[row_pos] * self.decoder[col]).sum(-1) + self.decoder_bias[col]  # (pairs,)
        return self._output(z)

    def decode_dense(self, codes: torch.Tensor) -> torch.Tensor:
        """Full reconstructions: (n_rows, n_cols)."""
        return self._output(codes @ self.decoder.t() + self.decoder_bias)

    def weights(self) -> list[nn.Parameter]:
        """The weight matrices the penalty covers: V, the middle layers', W (never biases);
        the raw matrices of a kernelised net, not ``W * K``."""
        return [raw_weight(module, name) for module, name in self._weight_slots]

    def kernel_penalty(self) -> torch.Tensor | None:
        """``sum ||K||_F^2`` over the kernelised matrices (a graph node), None without kernels."""
        kernels = [kernel_of(module, name) for module, name in self._weight_slots]
        if kernels[0] is None:
            return None
        return sum(k.kernel().pow(2).sum() for k in kernels if k is not None)

    @torch.no_grad()
    def weight_sq_norm(self, scales: Sequence[float] = ()) -> float:
        """Sum of squared Frobenius norms of all weight matrices (biases excluded), matrix j
        weighted by ``scales[j]`` (``()``: all 1).

        A value, not a graph node: ``w.pow(2).sum()`` and its backward would allocate three
        weight-sized temporaries per matrix (0.96 GB each for I-AutoRec on Netflix), while a dot
        product allocates none. The penalty's gradient is added by :meth:`add_weight_decay`."""
        weights = self.weights()
        scales = scales or (1.0,) * len(weights)
        return sum(
            s * float(torch.dot(w.view(-1), w.view(-1)))
            for w, s in zip(weights, scales, strict=True)
        )

    @torch.no_grad()
    def add_weight_decay(self, coef: float, scales: Sequence[float] = ()) -> None:
        """``grad += coef * scales[j] * w`` for every weight matrix j (``scales`` ``()``: all 1):
        the gradient of ``coef/2 * scales[j] ||w||^2``, in place, a few MB of rows at a time.

        Rounded as autograd rounds the penalty written out (``coef * w`` first, then the sum), not
        as one fused ``add_(w, alpha=coef)``, so results stay bit for bit those of earlier
        versions and of the committed experiment outputs."""
        weights = self.weights()
        scales = scales or (1.0,) * len(weights)
        for w, scale in zip(weights, scales, strict=True):
            if w.grad is None:
                w.grad = torch.zeros_like(w)
            step = max(1, _DECAY_CHUNK_ELEMENTS // max(1, w.shape[-1]))
            w_coef = coef * scale  # coef itself when scale is 1: the rounding stays as before
            for start in range(0, w.shape[0], step):
                w.grad[start : start + step] += w[start : start + step] * w_coef


class AutoRec(Recommender):
    """I-AutoRec / U-AutoRec estimator: owns the training loop, the optimiser and the device.

    See the module docstring for the model, the objective and the lambda scaling.
    """

    name: ClassVar[str] = "autorec"
    config_class: ClassVar[type[BaseConfig]] = AutoRecConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"lam": DEFAULT_LAMBDA_GRID}
    # The paper's grid stops at 1000, but with a linear hidden layer (g = identity) validation
    # keeps improving beyond it on ML-1M (docs/experiments.md).
    open_above: ClassVar[tuple[str, ...]] = ("lam",)
    config: AutoRecConfig

    @property
    def model_name(self) -> str:
        if self.config.variant == "user":
            return "u-autorec"
        return "i-kernelnet" if self.config.kernel_dim else "i-autorec"

    # -- orientation helpers -----------------------------------------------------------------
    def _rows_cols(
        self, user_idx: np.ndarray, item_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return (item_idx, user_idx) if self.config.variant == "item" else (user_idx, item_idx)

    def _shape(self) -> tuple[int, int]:
        return (
            (self.n_items, self.n_users)
            if self.config.variant == "item"
            else (self.n_users, self.n_items)
        )

    def _sparse(self, part: Ratings, device: torch.device) -> Sparse:
        rows, cols = self._rows_cols(part.user_idx, part.item_idx)
        return self._sparse_from_arrays(rows, cols, part.rating, device)

    def _baseline_like(self, x: Sparse) -> Sparse | None:
        """The baseline ``b_rc`` at ``x``'s entries, as a matrix of ``x``'s pattern (its values
        line up with ``x.values``); None without a baseline."""
        if self.config.baseline == "none":
            return None
        base = self._baseline_at(x.row.long().cpu().numpy(), x.col.long().cpu().numpy())
        return x.with_values(torch.from_numpy(base).to(x.values))  # (nnz,) float32

    def _baseline_parts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The bias baseline in the training matrix's orientation, ``b_rc = mu + row[r] +
        col[c]``: (row part (n_rows,), column part (n_cols,)) float64; None without one. It is
        the base class's fallback fit (fit_biases' defaults on the training ratings)."""
        if self.config.baseline == "none":
            return None
        if self.config.variant == "item":
            return self._item_bias, self._user_bias
        return self._user_bias, self._item_bias

    def _baseline_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
        """float64 baseline ``b_rc`` at aligned (row, column) positions; None without one."""
        parts = self._baseline_parts()
        if parts is None:
            return None
        return self._fallback_mean + parts[0][rows] + parts[1][cols]

    def _new_bias(self, idx: np.ndarray, rating: np.ndarray, what: str) -> float:
        """The damped bias of a new user (``what="user"``, ``idx`` the items rated) or item
        against the trained baseline: one step of fit_biases, the other biases fixed."""
        if what == "user":
            return self._fold_in_bias(idx, rating)
        residual = rating - self._fallback_mean - self._user_bias[idx]
        return float(residual.sum() / (self._fallback_regs()[1] + len(rating)))

    def _fallback_regs(self) -> tuple[float, float]:
        return self.config.bias_reg_user, self.config.bias_reg_item

    def _sparse_from_arrays(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        device: torch.device | None = None,
    ) -> Sparse:
        device = self.device if device is None else device
        tiles = getattr(self, "_tile_shape", None)
        if tiles is not None:
            return BlockedRows.from_coo(rows, cols, values, self._shape(), tiles, device)
        return SparseRows.from_coo(rows, cols, values, self._shape(), device)

    def _choose_layout(self, n_ratings: int, device: torch.device) -> None:
        """Engine (sparse/dense) and, for the sparse engine on CPU, the tiling."""
        n_rows, n_cols = self._shape()
        engine = self.config.engine
        if engine == "auto":
            engine = choose_engine(n_rows, n_cols, n_ratings, device)
        self.engine = engine
        widest = max(self.config.hidden[0], self.config.hidden[-1])
        self._tile_shape = (
            tile_shape(n_rows, n_cols, widest, device) if engine == "sparse" else None
        )

    # -- training ------------------------------------------------------------------------------
    def _check_memory(self, n_rows: int, n_cols: int, n_ratings: int, device: torch.device) -> None:
        """Refuse, before allocating, a configuration that cannot fit in the free memory."""
        parts = self.config.memory_estimate(n_rows, n_cols, n_ratings)
        needed = sum(parts.values())
        free = available_memory(device)
        if free is None or needed <= free:
            return
        detail = ", ".join(f"{name} {_gib(n)}" for name, n in parts.items())
        raise ConfigError(
            f"{self.model_name} with hidden={list(self.config.hidden)} on a {n_rows:,} x "
            f"{n_cols:,} training matrix needs about {_gib(needed)} ({detail}) but only "
            f"{_gib(free)} is available on {device}; use fewer hidden units"
        )

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        self.device = device
        if device.type == "cuda":
            tf32 = cfg.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        generator = torch.Generator().manual_seed(cfg.seed)
        n_rows, n_cols = self._shape()
        self._check_memory(n_rows, n_cols, train.n_ratings, device)
        self.net = AutoRecNet(
            n_cols, cfg.hidden, cfg.f, cfg.g, train.rating_scale, generator, cfg.kernel_dim
        )
        start, self._start_weights = getattr(self, "_start_weights", None), None
        # Step 1's kept epoch count (handed to the retrain) and the stages' record; a warm
        # start (start_from) skips the pre-training.
        self.pretrained: dict[str, Any] | None = None
        if start is None and cfg.pretrain == "layerwise":
            start, self.pretrained = pretrain.layerwise_start(cfg, train, val)
        with torch.no_grad():
            if start is not None:
                self._load_start(start)
            elif cfg.f == "identity" and cfg.baseline == "none":
                # Start the output bias at the mean rating, so the first epochs fit structure
                # rather than the offset; identity f only (a bounded f starts mid-scale).
                # Residuals of a baseline have mean about 0, where the bias starts.
                self.net.decoder_bias.fill_(self.global_mean)
        self.net.to(device)
        self._choose_layout(train.n_ratings, device)
        engine = self.engine
        x = self._sparse(train, device)
        self._train_x = x
        self._train_pattern: Sparse | None = None
        self._grad_pool = GradientPool()  # weight-sized gradients reused across epochs
        self._codes: torch.Tensor | None = None
        val_x = self._sparse(val, device) if val is not None and val.n_ratings else None
        # With a baseline the input stays the ratings and the target is their residuals; the
        # validation RMSE scores b + h, clipped to the scale as predictions are.
        target = x
        base = self._baseline_like(x)
        if base is not None:
            target = x.with_values(x.values - base.values)  # (nnz,) residuals
            del base
        val_base = None if val_x is None else self._baseline_like(val_x)
        # Distributed (torchrun): each rank owns the rows r with r % world_size == rank, computes
        # the loss and gradients of its rows, and the gradients are summed across ranks before
        # every (identical) optimiser step, so all ranks hold the same weights at all times.
        self._group = _process_group()
        fit_x, fit_target, fit_val, fit_val_base = x, target, val_x, val_base
        if self._group is not None:
            rank, world = dist.get_rank(), dist.get_world_size()
            local_rows = torch.arange(rank, n_rows, world, device=device)
            fit_x = x.select_rows(local_rows)
            fit_target = fit_x if target is x else target.select_rows(local_rows)
            fit_val = None if val_x is None else val_x.select_rows(local_rows)
            fit_val_base = None if val_base is None else val_base.select_rows(local_rows)
            log.info("rank %d of %d: %d of %d rows", rank, world, len(local_rows), n_rows)
        if self.pretrained is not None and fit_val is not None:
            # The stack before fine-tuning, on the validation ratings (a record for the report).
            stacked = self._rmse_at(fit_x, fit_val, fit_val_base)
            self.pretrained["stacked_val_rmse"] = stacked
            log.info("layer-wise pre-training: the stack's validation RMSE %.4f", stacked)
        n_train_ratings = self._sum_across_ranks(float(fit_x.nnz))
        n_params = sum(p.numel() for p in self.net.parameters())
        log.info(
            "%s: %d x %d training matrix, %d ratings, %s engine, %s, %d parameters, device %s",
            self.model_name,
            n_rows,
            n_cols,
            x.nnz,
            engine,
            cfg.optimizer,
            n_params,
            device,
        )
        if cfg.baseline != "none":
            # The baseline's b_u (b_i for U-AutoRec) is each column's offset already: the output
            # bias stays at 0, so that W, V -> 0 leaves the baseline itself rather than the
            # baseline plus an undamped (over-fitted) column mean of the residuals.
            self.net.decoder_bias.requires_grad_(False)
        params = [p for p in self.net.parameters() if p.requires_grad]
        lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
        if cfg.optimizer == "rprop":
            opt: torch.optim.Optimizer = LeanRprop(params, lr=lr)
        elif cfg.optimizer == "lbfgs":
            opt = RestartingLBFGS(
                params, lr=lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe"
            )
        else:
            opt = torch.optim.Adam(params, lr=lr)

        def run_epoch(epoch: int) -> EpochScores:
            if cfg.optimizer == "adam":
                train_sse = self._minibatch_epoch(fit_x, fit_target, opt, generator, n_rows)
            else:
                train_sse = self._full_batch_step(fit_x, fit_target, opt, generator)
            train_rmse = math.sqrt(self._sum_across_ranks(train_sse) / n_train_ratings)
            val_rmse = None
            if fit_val is not None:
                with self.net._products.keeping():  # its X @ V starts the next step
                    val_rmse = self._rmse_at(fit_x, fit_val, fit_val_base)
            return EpochScores(train_rmse, val_rmse)

        def snapshot(into: dict[str, Any] | None) -> dict[str, Any]:
            # Copy into one kept buffer rather than allocating a new copy per improvement.
            if into is None:
                return {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            for key, value in self.net.state_dict().items():
                into[key].copy_(value)
            return into

        def state() -> dict[str, Any]:
            return {"net": self.net.state_dict(), "optimizer": opt.state_dict()}

        def load_state(saved: dict[str, Any]) -> None:
            self.net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["optimizer"])

        run_epochs(
            self,
            TrainingSteps(
                run_epoch,
                snapshot,
                self.net.load_state_dict,
                state,
                load_state,
                **generator_rank_state(generator),
                divergence_hint="try a smaller lr or a larger lambda",
            ),
            train,
            val,
        )
        for param in params:
            param.grad = None  # the gradients are as large as the weights: free them now
        self._grad_pool.clear()
        self.net._products.clear()  # the last validation pass's product, as large as the codes
        opt.state.clear()  # RProp's step sizes are as large as the weights too
        self._codes = None
        self._train_pattern = None
        self._head = None
        if autorec_rank.head_wanted(cfg, distributed=self._group is not None):
            self._head = autorec_rank.fit_ranking_head(self, train, val)

    @classmethod
    def hands_over(cls, config: BaseConfig) -> bool:
        # Only layer-wise pre-training hands its refit anything (the step-1 epochs).
        return getattr(config, "pretrain", "none") != "none"

    def retrain_overrides(self) -> dict[str, Any]:
        """With ``pretrain="layerwise"``: the epochs of pre-training step 1 that validation kept,
        run as they are by the refit on train + validation (step 2's budget is fixed, the
        fine-tuning's epochs come from the protocol)."""
        pretrained = getattr(self, "pretrained", None)
        if pretrained is None:
            return {}
        return {"pretrain_epochs": int(pretrained["stage1_best_epoch"])}

    def start_from(self, other: AutoRec) -> AutoRec:
        """Start the next :meth:`fit` from ``other``'s trained weights instead of a random
        initialisation (a warm-started retrain); the optimiser state starts afresh. The random
        initialisation is still drawn, so the generator's stream (dropout) is that of a cold fit.

        Raises:
            ConfigError: ``other`` is not a fitted AutoRec of the same variant and layer sizes.
        """
        if not isinstance(other, AutoRec) or getattr(other, "net", None) is None:
            raise ConfigError("start_from needs a fitted AutoRec")
        if (other.config.variant, other.config.hidden) != (self.config.variant, self.config.hidden):
            raise ConfigError(
                f"cannot start a {self.model_name} with hidden={list(self.config.hidden)} from a "
                f"{other.model_name} with hidden={list(other.config.hidden)}"
            )
        if other.config.baseline != self.config.baseline:
            raise ConfigError(
                f"cannot start a model with baseline={self.config.baseline!r} from one with "
                f"baseline={other.config.baseline!r}: they fit different targets"
            )
        self._start_weights = {k: v.detach().clone() for k, v in other.net.state_dict().items()}
        return self

    def _load_start(self, start: dict[str, torch.Tensor]) -> None:
        """Put :meth:`start_from`'s weights into the new network (same shapes required)."""
        for name, value in self.net.state_dict().items():
            if start[name].shape != value.shape:
                raise ConfigError(
                    f"start_from: {name} has shape {tuple(start[name].shape)}, this data needs "
                    f"{tuple(value.shape)} (other users or items)"
                )
        self.net.load_state_dict(start)

    def _input(self, x: Sparse, generator: torch.Generator) -> Sparse:
        p = self.config.input_dropout
        if p == 0.0:
            return x
        keep = (torch.rand(x.nnz, generator=generator) >= p).to(x.values.device)
        return x.with_values(x.values * keep / (1.0 - p))

    def _data_loss(
        self, x_in: Sparse, target: Sparse, pattern: SparseRows | None = None
    ) -> torch.Tensor:
        """Sum of squared errors at ``target``'s entries of the reconstructions of the input
        rows ``x_in`` (a graph node). ``pattern`` is ``target.pattern()``, passed in when the
        caller keeps it across epochs."""
        pattern = pattern if pattern is not None else target.pattern()
        with self._autocast():
            if self.engine == "sparse":
                codes = self.net.encode(x_in)  # (rows, k_last)
                pred = self.net.decode_at(codes.float(), pattern)  # (nnz,)
                return (pred.float() - target.values).pow(2).sum()
            dense_in = x_in.to_dense()  # (rows, n_cols)
            mask = pattern.to_dense()  # (rows, n_cols)
            pred = self.net.decode_dense(self.net.encode_dense(dense_in))  # (rows, n_cols)
            return ((pred.float() - target.to_dense()) * mask).pow(2).sum()

    def _backward(
        self,
        x_in: Sparse,
        target: Sparse,
        weight_share: float,
        pattern: SparseRows | None = None,
    ) -> tuple[float, float]:
        """Accumulate into the gradients the objective of a batch of rows, the sum of squared
        errors at its observed entries plus ``weight_share * lam/2 * ||weights||^2``, and return
        (objective, sum of squared errors).

        The dense engine densifies a few thousand cells' worth of rows at a time when the batch
        is large (the whole matrix at once would need n_rows x n_cols floats several times over:
        3 GB each for ML-10M). The penalty's gradient is added in place, outside autograd."""
        n_rows, n_cols = target.shape
        if self.engine == "dense" and n_rows * n_cols > _DENSE_CHUNK_CELLS:
            step = max(1, _DENSE_CHUNK_CELLS // n_cols)
            device = target.values.device
            sse = 0.0
            for start in range(0, n_rows, step):
                rows = torch.arange(start, min(start + step, n_rows), device=device)
                chunk = self._data_loss(x_in.select_rows(rows), target.select_rows(rows))
                chunk.backward()
                sse += float(chunk.detach())
        else:
            data = self._data_loss(x_in, target, pattern)
            data.backward()
            sse = float(data.detach())
        coef = weight_share * self.config.lam
        scales = self.config.layer_lam_scales
        self.net.add_weight_decay(coef, scales)
        objective = sse + 0.5 * coef * self.net.weight_sq_norm(scales)
        sparsity = weight_share * self.config.kernel_lam
        if sparsity:
            kernel_sq = self.net.kernel_penalty()
            if kernel_sq is not None:
                penalty = 0.5 * sparsity * kernel_sq
                penalty.backward()
                objective += float(penalty.detach())
        return objective, sse

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.config.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _check(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise ModelFitError(
                f"{self.model_name} diverged: loss became {loss} at epoch "
                f"{len(self.history.epoch_seconds) + 1} (try a smaller lr or a larger lambda)"
            )

    def _full_batch_step(
        self,
        x: Sparse,
        target: Sparse,
        opt: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> float:
        """One step on all rows: inputs ``x``, targets ``target`` (x itself, or its residuals
        with a baseline); returns the sum of squared errors."""
        sse_box: list[float] = []
        if self._train_pattern is None:
            self._train_pattern = x.pattern()

        share = 1.0 / (dist.get_world_size() if self._group is not None else 1)
        params = list(self.net.parameters())

        def closure() -> torch.Tensor:
            # The weight gradients of the last pass go back to the pool, to be written again by
            # this one; set_to_none for the rest: backward then writes each gradient instead of
            # adding it to zeros, which would need a second weight-sized buffer.
            self._grad_pool.reclaim(params)
            opt.zero_grad(set_to_none=True)
            with self._grad_pool.lending():
                loss, sse = self._backward(
                    self._input(x, generator), target, share, self._train_pattern
                )
            total = self._sum_across_ranks(loss)  # one reduction per call
            self._check(total)
            self._all_reduce_grads()
            if not sse_box:
                sse_box.append(sse)
            return torch.tensor(total)

        if isinstance(opt, torch.optim.LBFGS):
            opt.step(closure)
        else:
            closure()
            opt.step()
        return sse_box[0]

    def _minibatch_epoch(
        self,
        x: Sparse,
        target: Sparse,
        opt: torch.optim.Optimizer,
        generator: torch.Generator,
        n_rows_total: int,
    ) -> float:
        n_rows = x.shape[0]
        order = torch.randperm(n_rows, generator=generator).to(x.values.device)
        size = self.config.batch_size
        world = dist.get_world_size() if self._group is not None else 1
        # Every rank takes the same number of steps (one all-reduce each), even when its shard
        # is a row shorter than another's.
        n_steps = math.ceil(math.ceil(n_rows_total / world) / size)
        total = 0.0
        for step in range(n_steps):
            rows = order[step * size : (step + 1) * size]
            opt.zero_grad(set_to_none=False)
            batch = x.select_rows(rows) if len(rows) else None
            if batch is not None and batch.nnz:
                batch_target = batch if target is x else target.select_rows(rows)
                loss, sse = self._backward(
                    self._input(batch, generator), batch_target, len(rows) / n_rows_total
                )
                self._check(loss)
                total += sse
            elif self._group is None:
                continue
            self._all_reduce_grads()
            opt.step()
        return total

    @torch.no_grad()
    def _rmse_at(self, x: Sparse, target: Sparse, base: Sparse | None = None) -> float:
        """RMSE at ``target``'s entries of the reconstructions of the training rows ``x``
        (clipped to the scale, as predictions are), summed over ranks when distributed.
        ``base``: the baseline at those entries (same pattern), added to the reconstructions
        when the model fits residuals."""
        low, high = self.rating_scale
        codes = self.net.encode(x) if self.engine == "sparse" else self._dense_codes(x)
        pred = self.net.decode_at(codes, target.pattern())  # (nnz,)
        if base is not None:
            pred = pred + base.values
        pred = pred.clamp(low, high)
        sse = float((pred - target.values).double().pow(2).sum())
        return math.sqrt(self._sum_across_ranks(sse) / self._sum_across_ranks(float(target.nnz)))

    def _sum_across_ranks(self, value: float) -> float:
        if getattr(self, "_group", None) is None:
            return value
        buf = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(buf)
        return float(buf[0])

    def _all_reduce_grads(self) -> None:
        if getattr(self, "_group", None) is None:
            return
        for p in self.net.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)

    # -- prediction ----------------------------------------------------------------------------
    @torch.no_grad()
    def _all_codes(self) -> torch.Tensor:
        """Codes of every training row, from the training inputs only: (n_rows, k_last),
        computed once after fitting or loading and kept for later predictions."""
        if self._codes is None:
            x = self._train_x
            self._codes = self.net.encode(x) if self.engine == "sparse" else self._dense_codes(x)
        return self._codes

    @torch.no_grad()
    def _dense_codes(self, x: Sparse) -> torch.Tensor:
        """Codes through the dense engine, a few MB of dense rows at a time."""
        n_rows = x.shape[0]
        chunk = max(1, 2**22 // max(1, x.shape[1]))
        return torch.cat(
            [
                self.net.encode_dense(
                    x.select_rows(
                        torch.arange(s, min(s + chunk, n_rows), device=x.values.device)
                    ).to_dense()
                )
                for s in range(0, n_rows, chunk)
            ]
        )

    @torch.no_grad()
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        rows, cols = self._rows_cols(user_idx, item_idx)
        codes = self._all_codes()
        out = np.empty(len(rows), dtype=np.float64)
        chunk = 1 << 16
        for s in range(0, len(rows), chunk):
            r = torch.from_numpy(np.ascontiguousarray(rows[s : s + chunk])).to(codes.device)
            c = torch.from_numpy(np.ascontiguousarray(cols[s : s + chunk])).to(codes.device)
            out[s : s + chunk] = self.net.decode_pairs(codes, r, c).double().cpu().numpy()
        base = self._baseline_at(rows, cols)
        return out if base is None else out + base

    @torch.no_grad()
    def _rating_block(self, user_idx: np.ndarray) -> np.ndarray:
        """Every item's unclipped predicted rating for a block of users, (n_block, n_items)
        float64 (the rating order, and the ranking score without a ranking head), by one dense
        product instead of ``_score``'s gathered dot products (5.6 s instead of
        274 s for all ML-1M pairs, ``benchmarks/bench_ranking.py``); the fallback where the
        model does not know the pair.

        I-AutoRec (rows = items): ``f(codes W[users]^T + b[users])^T``; U-AutoRec (rows =
        users): ``f(codes[users] W^T + b)``; plus the baseline ``mu + b_u + b_i`` when the model
        fits its residuals. Besides the codes, it holds about 16 bytes per (user, item) cell
        (the float32 product and the float64 result).
        """
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        codes = self._all_codes()  # (n_rows, k_last)
        at = torch.from_numpy(users).to(codes.device)
        net = self.net
        if self.config.variant == "item":
            z = (codes @ net.decoder[at].t() + net.decoder_bias[at]).t()  # (n_block, n_items)
        else:
            z = codes[at] @ net.decoder.t() + net.decoder_bias  # (n_block, n_items)
        scores = net._output(z).double().cpu().numpy()  # (n_block, n_items)
        if self.config.baseline != "none":
            scores += self._fallback_mean + self._user_bias[users][:, None] + self._item_bias
        return self._block_with_fallback(users, scores)

    # -- folding in a new user or a new item ---------------------------------------------------
    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> Any:
        """U-AutoRec: a new user is a new input row, through the trained encoder
        (:meth:`_fold_in_row`). I-AutoRec: a new input and output coordinate
        (:meth:`_fold_in_column`)."""
        if self.config.variant == "user":
            return self._fold_in_row(item_idx, rating, "user")
        state = self._fold_in_column(item_idx, rating, "user")
        if getattr(self, "_head", None) is not None:
            return autorec_rank.fold_in_user(self, self._head, item_idx, state)
        return state

    def _fold_in_scores(self, state: Any) -> np.ndarray:
        if self.config.variant == "user":
            return self._row_scores(state)
        if isinstance(state, autorec_rank.FoldedHeadUser):
            state = state.rating
        return self._column_scores(state)

    def _fold_in_rank(self, state: Any, scores: np.ndarray) -> np.ndarray:
        """The ranking head's score (:func:`autorec_rank.fold_in_rank`) when the model has one,
        else the unclipped predicted rating ``scores``."""
        if isinstance(state, autorec_rank.FoldedHeadUser):
            return autorec_rank.fold_in_rank(self._head, state, scores)
        return scores

    def _ranks_on_rating(self) -> bool:
        return getattr(self, "_head", None) is None

    def fold_in_item(
        self,
        ratings: dict[object, float] | tuple[Sequence[object], Sequence[float]],
        *,
        ignore_unknown: bool = False,
    ) -> np.ndarray:
        """Predicted ratings of every user for an item the model was not trained on, from the
        ratings some users gave it (``{raw user id: rating}`` or aligned arrays), without
        retraining; the same checks as :meth:`fold_in`, on user ids.

        I-AutoRec: a new item is a new input row, through the trained encoder
        (:meth:`_fold_in_row`). U-AutoRec: a new input and output coordinate, the decoder row
        fitted in closed form (:meth:`_fold_in_column`).

        Returns:
            (n_users,) float32 predictions, clipped to the scale; the fallback for users
            without training ratings.
        """
        self._check_fitted()
        user_idx, rating, _ = self._fold_in_input(ratings, ignore_unknown, self.users, "user")
        if self.config.variant == "item":
            scores = self._row_scores(self._fold_in_row(user_idx, rating, "item"))
        else:
            scores = self._column_scores(self._fold_in_column(user_idx, rating, "item"))
        unseen = np.flatnonzero(~self.user_seen)
        scores[unseen] = self._fallback_scores(unseen, np.full(len(unseen), -1))
        return np.clip(scores, *self.rating_scale).astype(np.float32)

    @torch.no_grad()
    def _fold_in_row(
        self, cols: np.ndarray, values: np.ndarray, what: str
    ) -> tuple[torch.Tensor, float]:
        """The code ``g(V r_new + mu)`` (1, k_last) of a new input row (a U-AutoRec user, an
        I-AutoRec item): the trained encoder applied to its ratings, as for a training row;
        and the row's own part of the baseline, ``mu + b_new`` (0 without a baseline)."""
        offset = 0.0
        if self.config.baseline != "none":
            offset = self._fallback_mean + self._new_bias(cols, values, what)
        x = SparseRows.from_coo(
            np.zeros(len(cols), dtype=np.int64),
            cols,
            values.astype(np.float32),
            (1, self._shape()[1]),
            self._train_x.values.device,
        )
        codes = self.net.encode(x) if self.engine == "sparse" else self._dense_codes(x)
        return codes, offset

    @torch.no_grad()
    def _row_scores(self, state: tuple[torch.Tensor, float]) -> np.ndarray:
        """(n_cols,) float64 unclipped reconstruction of a new row from its code (plus the
        baseline, ``offset`` + the column part)."""
        codes, offset = state
        scores = self.net.decode_dense(codes)[0].double().cpu().numpy()  # (n_cols,)
        parts = self._baseline_parts()
        return scores if parts is None else scores + offset + parts[1]

    @torch.no_grad()
    def _fold_in_column(
        self, rows: np.ndarray, values: np.ndarray, what: str
    ) -> tuple[torch.Tensor, float]:
        """Decoder row ``w`` (k_last,) and bias ``b`` of a new column (an I-AutoRec user, a
        U-AutoRec item), every trained weight frozen.

        A new column is a new input coordinate (encoder row ``v_new``) and a new output
        coordinate (``w``, ``b``). Fitting them minimises, over the rows R it has ratings in,

        .. math::  \\sum_{r \\in R} (x_r - w^\\top h_r - b)^2 + \\frac{\\lambda}{2} \\|w\\|^2

        (the training objective restricted to the new coordinates; ``b`` is not penalised, as
        in training). ``v_new`` only enters the codes h_r of the rows in R, so it cannot change
        a prediction outside R except through ``w``; it is left at 0, which keeps every row's
        code that of the trained model (first order), and the problem is a ridge regression
        solved in closed form: centring H and x removes the unpenalised bias,
        ``w = H_c^T (H_c H_c^T + lambda/2 I)^{-1} x_c`` (the n x n dual system when there are
        fewer ratings than hidden units, the primal k x k one otherwise) and
        ``b = mean(x) - mean(H) w``. Needs f = identity (the paper's best). With a baseline,
        x are the residuals ``r - mu - b_new - b_row`` (``b_new`` the column's own damped bias,
        :meth:`_new_bias`), the output bias is held at 0 as in training (no centring: ``w`` is
        the plain ridge solution) and the returned ``b`` is ``mu + b_new``.
        """
        if self.config.f != "identity":
            raise ConfigError(
                f"{self.model_name} with f = {self.config.f} cannot fold in a new {what} (the "
                "closed-form fit needs f = identity); retrain it with the ratings"
            )
        offset = 0.0
        parts = self._baseline_parts()
        if parts is not None:
            offset = self._fallback_mean + self._new_bias(rows, values, what)
            values = values - offset - parts[0][rows]
        codes = self._all_codes()[torch.from_numpy(rows)].double().cpu()  # (n_rated, k)
        target = torch.from_numpy(values)  # (n_rated,) float64
        h_mean, x_mean = codes.mean(0), target.mean()
        if parts is not None:
            # The output bias is held at 0 with a baseline, as in training: no centring.
            h_mean, x_mean = torch.zeros_like(h_mean), torch.zeros_like(x_mean)
        h_c, x_c = codes - h_mean, target - x_mean  # (n_rated, k), (n_rated,)
        # lambda = 0 would leave the system singular with fewer ratings than units.
        scales = self.config.layer_lam_scales
        reg = self.config.lam * (scales[-1] if scales else 1.0) / 2.0 + 1e-8
        n_rated, k = h_c.shape
        if n_rated <= k:
            gram = h_c @ h_c.t()  # (n_rated, n_rated)
            gram.diagonal().add_(reg)
            w = h_c.t() @ torch.linalg.solve(gram, x_c)  # (k,)
        else:
            gram = h_c.t() @ h_c  # (k, k)
            gram.diagonal().add_(reg)
            w = torch.linalg.solve(gram, h_c.t() @ x_c)  # (k,)
        return w, float(x_mean - h_mean @ w) + offset

    @torch.no_grad()
    def _column_scores(self, state: tuple[torch.Tensor, float]) -> np.ndarray:
        """(n_rows,) float64 unclipped predictions of a new column for every training row
        (plus the rows' part of the baseline; ``b`` carries the rest)."""
        w, b = state
        codes = self._all_codes()  # (n_rows, k_last)
        # float32 product, as the trained rows are scored (a float64 copy of the codes per
        # new user would cost more than the fit).
        scores = (codes @ w.to(codes)).double().cpu().numpy() + b  # (n_rows,)
        parts = self._baseline_parts()
        return scores if parts is None else scores + parts[0]

    # -- ranking (the ranking head: autorec.models.autorec_rank) --------------------------------
    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), n_items) float64 ranking scores: the ranking head's when the model
        has one, else the unclipped predicted ratings (:meth:`_rating_block`)."""
        if getattr(self, "_head", None) is not None:
            return autorec_rank.score_rows(self, self._head, user_idx)
        return self._rating_block(user_idx)

    def _rank_score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Ranking scores (float64) of aligned pairs: the ranking head's when the model has one,
        else the unclipped predicted rating (the fallback at unknown pairs)."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        if getattr(self, "_head", None) is not None:
            return autorec_rank.score_pairs(self, self._head, users, items)
        return super()._rank_score(users, items)

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        x = self._train_x
        # The training matrix is part of the model: predictions are h(r) of training inputs.
        state["train_row"] = x.row.cpu().numpy()
        state["train_col"] = x.col.cpu().numpy()
        state["train_value"] = x.values.cpu().numpy()
        if getattr(self, "_head", None) is not None:
            state.update(self._head.head.state_arrays())
        return state

    def _extra_meta(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"engine": self.engine}
        if getattr(self, "pretrained", None) is not None:
            extra["pretrained"] = self.pretrained
        if getattr(self, "_head", None) is not None:
            extra["rank_beta"] = self._head.beta
            extra["rank_epoch"] = self._head.epoch
        return extra

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        cfg = self.config
        # A model trained on a GPU still loads on a machine without one ("auto" -> CPU).
        self.device = resolve_device(cfg.device if cfg.device != "cuda" else "auto")
        n_rows, n_cols = self._shape()
        self.net = AutoRecNet(
            n_cols,
            cfg.hidden,
            cfg.f,
            cfg.g,
            self.rating_scale,
            torch.Generator().manual_seed(0),
            cfg.kernel_dim,
        )
        net_state = {
            k: torch.from_numpy(v)
            for k, v in state.items()
            if not k.startswith(("train_", "head_"))
        }
        self.net.load_state_dict(net_state)
        self.net.to(self.device)
        self._choose_layout(len(state["train_value"]), self.device)
        self.engine = extra.get("engine", self.engine)
        if self.engine != "sparse":
            self._tile_shape = None
        self._train_x = self._sparse_from_arrays(
            state["train_row"], state["train_col"], state["train_value"]
        )
        self._codes = None
        self._head = None
        self.pretrained = extra.get("pretrained")
        if "rank_beta" in extra:  # saved with a head (an auto config may have none: U-AutoRec)
            head = autorec_rank.RankingHead.from_arrays(
                {k: v for k, v in state.items() if k.startswith("head_")}
            )
            x = autorec_rank.binary_items(
                state["train_row"], state["train_col"], self.n_items, self.n_users
            )
            self._head = autorec_rank.HeadScorer(
                head, x, float(extra["rank_beta"]), int(extra["rank_epoch"])
            )
