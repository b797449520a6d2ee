"""Sparse building blocks whose cost follows the observed ratings, not the matrix size.

AutoRec's two expensive products both touch only observed entries:

* the encoder ``X @ V`` with ``X`` the (rows x cols) sparse rating matrix: a sparse-dense
  product (SpMM), ``n_ratings x k`` multiply-adds; its gradient ``X^T @ G`` is another SpMM with
  the transposed matrix, which we build once instead of transposing per step;
* the decoder evaluated at observed entries only, ``(H W^T)[r, c]`` for each rating ``(r, c)``:
  a sampled dense-dense product (SDDMM), again ``n_ratings x k``; its gradients are the SpMMs
  ``D @ W`` and ``D^T @ H`` with ``D`` the sparse matrix of per-rating gradients.

Both are wrapped as ``torch.autograd.Function`` so the rest of the network (activations, deep
middle layers, the regulariser) stays ordinary autograd code. On CPU the products run in MKL's
sparse kernels, on CUDA in cuSPARSE.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A CSR tensor from indices we built ourselves (so invariant checks are skipped)."""
    with warnings.catch_warnings():
        # torch flags the CSR layout as beta on every construction; it is what we rely on.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


@dataclass(frozen=True, eq=False)
class SparseRows:
    """A (n_rows x n_cols) sparse matrix in CSR, its transpose in CSR, and the permutation
    ``perm`` with ``values_t == values[perm]`` (needed to transpose per-entry gradients)."""

    csr: torch.Tensor  # (n_rows, n_cols) sparse CSR, float32
    csr_t: torch.Tensor  # (n_cols, n_rows) sparse CSR, float32
    perm: torch.Tensor  # (nnz,) int32/int64
    col: torch.Tensor  # (nnz,) column of each stored entry, CSR order (the CSR's own indices)
    values: torch.Tensor  # (nnz,) float32, CSR order

    @property
    def row(self) -> torch.Tensor:
        """(nnz,) row of each stored entry, CSR order; computed on demand rather than kept
        (0.4 GB on Netflix)."""
        crow = self.csr.crow_indices()
        counts = (crow[1:] - crow[:-1]).long()
        return torch.repeat_interleave(
            torch.arange(len(counts), dtype=self.col.dtype, device=crow.device), counts
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.csr.shape[0]), int(self.csr.shape[1]))

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @classmethod
    def from_coo(
        cls,
        row: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        shape: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> SparseRows:
        """Build from aligned coordinate arrays (any order; duplicates are not allowed).

        Indices are int32 whenever the sizes allow (they do up to 2^31 - 1 ratings), which halves
        the index memory: Netflix's 100 M ratings need 0.4 GB per index array instead of 0.8 GB.
        """
        n_rows, n_cols = shape
        n = len(values)
        itype = np.int32 if max(n, n_rows, n_cols) < 2**31 - 1 else np.int64
        # One stable sort of a combined key instead of lexsort's several int64 passes.
        order = np.argsort(
            np.asarray(row, dtype=np.int64) * n_cols + np.asarray(col, dtype=np.int64),
            kind="stable",
        )
        r = np.asarray(row)[order].astype(itype)
        c = np.asarray(col)[order].astype(itype)
        vals = np.asarray(values, dtype=np.float32)[order]
        del order
        return _from_sorted(
            torch.from_numpy(r).to(device),
            torch.from_numpy(c).to(device),
            torch.from_numpy(vals).to(device),
            shape,
        )

    def with_values(self, values: torch.Tensor) -> SparseRows:
        """Same pattern, other values (CSR order); used for input dropout and gradients."""
        csr = _csr(self.csr.crow_indices(), self.csr.col_indices(), values, self.shape)
        csr_t = _csr(
            self.csr_t.crow_indices(),
            self.csr_t.col_indices(),
            values[self.perm],
            (self.shape[1], self.shape[0]),
        )
        return SparseRows(csr, csr_t, self.perm, self.col, values)

    def pattern(self) -> SparseRows:
        """Same pattern with all values 1 (the sampling mask of an SDDMM). The transposed copy
        shares the same ones, since permuting ones changes nothing."""
        ones = torch.ones_like(self.values)
        csr = _csr(self.csr.crow_indices(), self.csr.col_indices(), ones, self.shape)
        csr_t = _csr(
            self.csr_t.crow_indices(),
            self.csr_t.col_indices(),
            ones,
            (self.shape[1], self.shape[0]),
        )
        return SparseRows(csr, csr_t, self.perm, self.col, ones)

    def select_rows(self, rows: torch.Tensor) -> SparseRows:
        """The sub-matrix of the given rows (in that order), all columns kept."""
        indptr = self.csr.crow_indices().long()
        rows = rows.long()
        starts, ends = indptr[rows], indptr[rows + 1]
        lengths = ends - starts
        new_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
        offsets = torch.cumsum(lengths, 0) - lengths
        pos = starts[new_row] + torch.arange(int(lengths.sum()), device=rows.device)
        pos -= offsets[new_row]
        return _from_sorted(
            new_row.to(self.col.dtype), self.col[pos], self.values[pos], (len(rows), self.shape[1])
        )

    def to_dense(self) -> torch.Tensor:
        return self.csr.to_dense()


def _from_sorted(
    row: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> SparseRows:
    """Build from entries already sorted by (row, col), on their device."""
    n_rows, n_cols = shape
    dev = row.device
    itype = row.dtype
    indptr = torch.zeros(n_rows + 1, dtype=itype, device=dev)
    indptr[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
    # A stable sort by column of entries sorted by row gives the transposed CSR order.
    perm = torch.sort(col, stable=True).indices.to(itype)
    indptr_t = torch.zeros(n_cols + 1, dtype=itype, device=dev)
    indptr_t[1:] = torch.cumsum(torch.bincount(col, minlength=n_cols), 0)
    csr = _csr(indptr, col, values, shape)
    csr_t = _csr(indptr_t, row[perm], values[perm], (n_cols, n_rows))
    return SparseRows(csr, csr_t, perm, col, values)


class BlockedRows:
    """The same sparse matrix split into blocks of consecutive columns.

    When the column side of the weights (``n_cols x k`` floats: the users for I-AutoRec) is far
    larger than the CPU cache, a row-major SpMM or SDDMM fetches a random weight row from memory
    for every rating: on Netflix 100 M x 2 KB. Cutting the columns into blocks whose weight rows
    fit in cache (``block_cols`` x k floats, 16 MB by default) turns those fetches into cache
    hits, at the price of one pass over the small row-side matrix per block. Measured on the
    Netflix shape (I-AutoRec, k = 500, 2 cores): encoder 30 s -> 11 s, SDDMM 21 s -> 5 s.

    Entries are stored block by block, so every per-entry quantity (``values``, and ``row`` and
    ``col``, which are computed on demand to save memory) lines up with the loss as it does for
    :class:`SparseRows`. Each block is a :class:`SparseRows` over its own columns whose values
    are a view into ``values``.
    """

    def __init__(
        self,
        blocks: list[SparseRows],
        starts: list[int],
        shape: tuple[int, int],
        values: torch.Tensor,
    ) -> None:
        self.blocks, self.starts, self._shape, self.values = blocks, starts, shape, values

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def row(self) -> torch.Tensor:
        """(nnz,) global row of each entry, block order."""
        return torch.cat([b.row for b in self.blocks])

    @property
    def col(self) -> torch.Tensor:
        """(nnz,) global column of each entry, block order."""
        return torch.cat([b.col + s for b, s in zip(self.blocks, self.starts, strict=True)])

    def _offsets(self) -> list[int]:
        out, total = [], 0
        for block in self.blocks:
            out.append(total)
            total += block.nnz
        return out

    @classmethod
    def _assemble(
        cls, blocks: list[SparseRows], starts: list[int], shape: tuple[int, int]
    ) -> BlockedRows:
        """Concatenate the blocks' values and re-point each block at its slice (no copies
        survive: the per-block value tensors are dropped)."""
        values = torch.cat([b.values for b in blocks])
        out, offset = [], 0
        for b in blocks:
            out.append(b.with_values(values[offset : offset + b.nnz]))
            offset += b.nnz
        return cls(out, starts, shape, values)

    @classmethod
    def from_coo(
        cls,
        row: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        shape: tuple[int, int],
        block_cols: int,
        device: torch.device | str = "cpu",
    ) -> BlockedRows:
        n_rows, n_cols = shape
        col = np.asarray(col)
        row = np.asarray(row)
        values = np.asarray(values, dtype=np.float32)
        blocks, starts = [], []
        for start in range(0, n_cols, block_cols):
            width = min(block_cols, n_cols - start)
            mask = (col >= start) & (col < start + width)
            blocks.append(
                SparseRows.from_coo(
                    row[mask], col[mask] - start, values[mask], (n_rows, width), device
                )
            )
            starts.append(start)
        return cls._assemble(blocks, starts, shape)

    def with_values(self, values: torch.Tensor) -> BlockedRows:
        blocks = [
            block.with_values(values[off : off + block.nnz])
            for block, off in zip(self.blocks, self._offsets(), strict=True)
        ]
        return BlockedRows(blocks, self.starts, self._shape, values)

    def pattern(self) -> BlockedRows:
        return self.with_values(torch.ones_like(self.values))

    def select_rows(self, rows: torch.Tensor) -> BlockedRows:
        blocks = [block.select_rows(rows) for block in self.blocks]
        return self._assemble(blocks, self.starts, (len(rows), self._shape[1]))

    def to_dense(self) -> torch.Tensor:
        return torch.cat([b.to_dense() for b in self.blocks], dim=1)


class _SpMM(torch.autograd.Function):
    """``X @ dense`` for a constant sparse X; gradient ``X^T @ grad``."""

    @staticmethod
    def forward(ctx: Any, dense: torch.Tensor, x: SparseRows | BlockedRows) -> torch.Tensor:
        ctx.x = x
        if isinstance(x, SparseRows):
            return torch.sparse.mm(x.csr, dense)
        out = torch.zeros(x.shape[0], dense.shape[1], dtype=dense.dtype, device=dense.device)
        for block, start in zip(x.blocks, x.starts, strict=True):
            out += torch.sparse.mm(block.csr, dense[start : start + block.shape[1]])
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, grad = ctx.x, grad.contiguous()
        if isinstance(x, SparseRows):
            return torch.sparse.mm(x.csr_t, grad), None
        out = torch.empty(x.shape[1], grad.shape[1], dtype=grad.dtype, device=grad.device)
        for block, start in zip(x.blocks, x.starts, strict=True):
            out[start : start + block.shape[1]] = torch.sparse.mm(block.csr_t, grad)
        return out, None


class _SDDMM(torch.autograd.Function):
    """``(H @ W^T)`` at the stored entries of ``pattern`` (values must be 1): (nnz,)."""

    @staticmethod
    def forward(
        ctx: Any, h: torch.Tensor, w: torch.Tensor, pattern: SparseRows | BlockedRows
    ) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        ctx.pattern = pattern
        if isinstance(pattern, SparseRows):
            return torch.sparse.sampled_addmm(pattern.csr, h, w.t(), beta=0.0).values()
        out = torch.empty(pattern.nnz, dtype=h.dtype, device=h.device)
        offset = 0
        for block, start in zip(pattern.blocks, pattern.starts, strict=True):
            w_block = w[start : start + block.shape[1]]
            out[offset : offset + block.nnz] = torch.sparse.sampled_addmm(
                block.csr, h, w_block.t(), beta=0.0
            ).values()
            offset += block.nnz
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        h, w = ctx.saved_tensors
        d = ctx.pattern.with_values(grad.contiguous())
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if isinstance(d, SparseRows):
            grad_h = torch.sparse.mm(d.csr, w) if need_h else None
            grad_w = torch.sparse.mm(d.csr_t, h) if need_w else None
            return grad_h, grad_w, None
        grad_h = torch.zeros_like(h) if need_h else None
        grad_w = torch.empty_like(w) if need_w else None
        for block, start in zip(d.blocks, d.starts, strict=True):
            end = start + block.shape[1]
            if grad_h is not None:
                grad_h += torch.sparse.mm(block.csr, w[start:end])
            if grad_w is not None:
                grad_w[start:end] = torch.sparse.mm(block.csr_t, h)
        return grad_h, grad_w, None


#: Either layout; every function here accepts both.
Sparse = SparseRows | BlockedRows


def _full(t: torch.Tensor) -> torch.Tensor:
    """float32 for reduced-precision inputs (bf16 autocast); float64 stays (gradient checks)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def spmm(x: SparseRows | BlockedRows, dense: torch.Tensor) -> torch.Tensor:
    """(n_rows, k) = X (n_rows, n_cols) @ dense (n_cols, k), differentiable in ``dense``."""
    # The sparse kernels are float32 only: never let an enclosing bf16 autocast reach them.
    with torch.autocast(device_type=dense.device.type, enabled=False):
        return _SpMM.apply(_full(dense), x)


def sddmm(pattern: SparseRows | BlockedRows, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(nnz,) with entry e = h[row_e] . w[col_e], differentiable in ``h`` and ``w``."""
    with torch.autocast(device_type=h.device.type, enabled=False):
        return _SDDMM.apply(_full(h), _full(w), pattern)


def block_columns(n_cols: int, k: int, device: torch.device) -> int | None:
    """Columns per block for a CPU run, or None when one block is best (the column-side
    weights, n_cols x k floats, already fit in a 32 MB cache; and on GPUs, which have no such
    cache cliff). 16 MB of weight rows per block."""
    if device.type != "cpu" or n_cols * k * 4 <= (32 << 20):
        return None
    return max(1024, (16 << 20) // (4 * k))
