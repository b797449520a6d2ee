"""Kernelised (Sparse FC) weight matrices for AutoRec (Muller, Nagel, Zimmermann et al. 2018).

Each weight matrix ``W`` (rows x cols, as stored) is used through its effective weight

.. math::  \\hat W_{rc} = W_{rc} \\, K_{rc}, \\qquad
           K_{rc} = \\max(0, 1 - \\|a_r - b_c\\|^2)

with learned low-dimensional vectors ``a_r`` (one per row) and ``b_c`` (one per column),
``d = 5`` dimensions in the paper. Two units whose vectors drift further apart than 1 lose their
connection altogether, so the kernel learns a sparse connectivity; vectors start near the origin
(truncated normal, standard deviation 1e-3, as in the authors' code), where every ``K`` is about
1 and the layer starts as a dense one. The penalty adds ``lambda_s / 2 * ||K||_F^2`` per matrix
(the sparsity term) to the ``lambda / 2 * ||W||_F^2`` weight decay on the raw ``W``.

The squared distance is expanded as ``||a||^2 + ||b||^2 - 2 a.b``, a (rows x d)(d x cols) product,
so the kernel costs a few weight-sized temporaries and never a (rows x cols x d) tensor. Rounding
can leave ``d^2`` a hair below 0 for nearly equal vectors, so ``K`` can exceed 1 by ~1e-7; it is
not clamped, since a clamp would cut the gradient exactly where the vectors start.

The effective weight is a dense matrix of the stored shape (k x n_cols for AutoRec's encoder and
decoder), so the sparse engine uses it like any weight: the users x items matrix is never built.

:class:`KernelWeight` is a ``torch.nn.utils.parametrize`` parametrisation: registered on a weight,
every read of that weight returns ``W * K`` (autograd reaches ``W``, ``a`` and ``b``) and the raw
``W`` lives in ``parametrizations.<name>.original``.

Reference:
    L. Muller, J. Martel, G. Indiveri. Kernelized Synaptic Weight Matrices. ICML 2018,
    PMLR 80:3654-3663 (the "kernelNet" code, github.com/lorenzMuller/kernelNet_MovieLens:
    ML-1M test RMSE 0.824, ML-10M 0.769, on a single 90/10 split).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

# The authors' initial spread of the kernel vectors: every K starts at ~1 (a dense layer).
INIT_STD = 1e-3


def kernel_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``K[r, c] = max(0, 1 - ||a_r - b_c||^2)``: (n_rows, n_cols) from a (n_rows, d) and
    b (n_cols, d)."""
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * (a @ b.t())  # (n_rows, n_cols)
    return torch.relu(1.0 - sq)


class KernelWeight(nn.Module):
    """The parametrisation ``W -> W * K(a, b)`` of one (n_rows x n_cols) weight matrix."""

    def __init__(self, n_rows: int, n_cols: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()

        def init(n: int) -> nn.Parameter:
            out = torch.empty(n, dim)
            nn.init.trunc_normal_(
                out, 0.0, INIT_STD, -2 * INIT_STD, 2 * INIT_STD, generator=generator
            )
            return nn.Parameter(out)

        self.row_vectors = init(n_rows)  # a: (n_rows, d)
        self.col_vectors = init(n_cols)  # b: (n_cols, d)

    def kernel(self) -> torch.Tensor:
        """K (n_rows, n_cols), float32 even under bf16 autocast: the squared distances are
        differences of numbers near 1e-5 at the start, which bfloat16 cannot resolve."""
        with torch.autocast(device_type=self.row_vectors.device.type, enabled=False):
            return kernel_matrix(self.row_vectors, self.col_vectors)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.kernel()  # (n_rows, n_cols)


def kernelise(module: nn.Module, name: str, dim: int, generator: torch.Generator) -> None:
    """Make ``module.<name>`` (a 2-d parameter) read as ``W * K``; its kernel vectors are drawn
    from ``generator``."""
    n_rows, n_cols = getattr(module, name).shape
    parametrize.register_parametrization(module, name, KernelWeight(n_rows, n_cols, dim, generator))


def raw_weight(module: nn.Module, name: str) -> nn.Parameter:
    """The stored parameter behind ``module.<name>``: the raw W of a kernelised weight (what
    the weight decay acts on), the parameter itself otherwise."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


def kernel_of(module: nn.Module, name: str) -> KernelWeight | None:
    """The :class:`KernelWeight` of ``module.<name>``, or None for a plain weight."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name][0]
    return None
