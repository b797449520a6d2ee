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

import contextlib
import contextvars
import ctypes
import functools
import math
import warnings
import weakref
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
        """Build from aligned coordinate arrays (any order; duplicates are not allowed), with
        int32 indices whenever the sizes allow (see :func:`_sorted_coo`)."""
        r, c, vals = _sorted_coo(row, col, values, shape)
        return _from_sorted(r.to(device), c.to(device), vals.to(device), shape)

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

    def pattern(self, ones: torch.Tensor | None = None) -> SparseRows:
        """Same pattern with all values 1 (the sampling mask of an SDDMM). The transposed copy
        shares the same ones, since permuting ones changes nothing. ``ones``: a tensor of nnz
        ones to use (a view into a larger one), else a new one."""
        ones = torch.ones_like(self.values) if ones is None else ones
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


def _sorted_coo(
    row: np.ndarray, col: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, values) as CPU tensors sorted by (row, col).

    Indices are int32 whenever the sizes allow (they do up to 2^31 - 1 ratings), which halves
    the index memory: Netflix's 100 M ratings need 0.4 GB per index array instead of 0.8 GB."""
    n_rows, n_cols = shape
    itype = np.int32 if max(len(values), n_rows, n_cols) < 2**31 - 1 else np.int64
    # One stable sort of a combined key instead of lexsort's several int64 passes.
    order = np.argsort(
        np.asarray(row, dtype=np.int64) * n_cols + np.asarray(col, dtype=np.int64),
        kind="stable",
    )
    r = np.asarray(row)[order].astype(itype)
    c = np.asarray(col)[order].astype(itype)
    vals = np.asarray(values, dtype=np.float32)[order]
    return torch.from_numpy(r), torch.from_numpy(c), torch.from_numpy(vals)


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
    """The same sparse matrix cut into tiles of consecutive rows and consecutive columns.

    When a dense side of a product is far larger than the CPU cache, the sparse kernels fetch a
    random 2 KB row of it from memory for every rating. Two products suffer:

    * the row-major ones (``X @ V`` in the encoder, ``D @ W`` in the decoder's gradient) gather
      rows of the column-side weights: 0.96 GB each for I-AutoRec's users on Netflix;
    * the transposed ones (``X^T @ G``, ``D^T @ H``: the gradients of those weights) gather rows
      of the row-side codes (17,770 x 500 floats, 35 MB on Netflix, just over a 32 MB cache).

    Cutting the columns into blocks whose weight rows fit in cache (16 MB by default) and the
    rows into tiles whose codes fit beside them (12 MB) turns those fetches into cache hits, at
    the price of streaming the other, sequentially written side once per tile. Measured on the
    Netflix shape (I-AutoRec, k = 500, 2 cores): the encoder went from 30 s to 11 s with column
    blocks, and one block's transposed product from 0.16 s to 0.04 s with three row tiles.

    Entries are stored tile by tile (column block by column block, row tiles in order within
    each), so every per-entry quantity (``values``, and ``row`` and ``col``, computed on demand
    to save memory) lines up with the loss as it does for :class:`SparseRows`. Each tile is a
    :class:`SparseRows` over its own rows and columns whose values are a view into ``values``.
    """

    def __init__(
        self,
        tiles: list[SparseRows],
        origins: list[tuple[int, int]],
        shape: tuple[int, int],
        values: torch.Tensor,
        tile_shape: tuple[int, int],
    ) -> None:
        self.tiles, self.origins, self._shape, self.values = tiles, origins, shape, values
        self.tile_shape = tile_shape  # (rows, columns) of a full tile

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def row(self) -> torch.Tensor:
        """(nnz,) global row of each entry, tile order."""
        return torch.cat([t.row + r for t, (r, _) in zip(self.tiles, self.origins, strict=True)])

    @property
    def col(self) -> torch.Tensor:
        """(nnz,) global column of each entry, tile order."""
        return torch.cat([t.col + c for t, (_, c) in zip(self.tiles, self.origins, strict=True)])

    def _offsets(self) -> list[int]:
        out, total = [], 0
        for tile in self.tiles:
            out.append(total)
            total += tile.nnz
        return out

    @classmethod
    def _assemble(
        cls,
        tiles: list[SparseRows],
        origins: list[tuple[int, int]],
        shape: tuple[int, int],
        tile_shape: tuple[int, int],
    ) -> BlockedRows:
        """Concatenate the tiles' values and re-point each tile at its slice (no copies
        survive: the per-tile value tensors are dropped)."""
        values = torch.cat([t.values for t in tiles])
        out, offset = [], 0
        for t in tiles:
            out.append(t.with_values(values[offset : offset + t.nnz]))
            offset += t.nnz
        return cls(out, origins, shape, values, tile_shape)

    @classmethod
    def from_coo(
        cls,
        row: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        shape: tuple[int, int],
        tile_shape: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> BlockedRows:
        """Build from aligned coordinate arrays; ``tile_shape`` is (rows, columns) per tile."""
        n_rows, n_cols = shape
        tile_rows, tile_cols = tile_shape
        col = np.asarray(col)
        row = np.asarray(row)
        values = np.asarray(values, dtype=np.float32)
        tiles, origins = [], []
        for c0 in range(0, n_cols, tile_cols):
            width = min(tile_cols, n_cols - c0)
            in_block = (col >= c0) & (col < c0 + width)
            block_row, block_col, block_values = _sorted_coo(
                row[in_block], col[in_block] - c0, values[in_block], (n_rows, width)
            )
            # Sorted by row: each row tile is one contiguous run of the block's entries.
            starts = np.searchsorted(block_row.numpy(), np.arange(0, n_rows + tile_rows, tile_rows))
            for r0 in range(0, n_rows, tile_rows):
                height = min(tile_rows, n_rows - r0)
                a, b = int(starts[r0 // tile_rows]), int(starts[r0 // tile_rows + 1])
                tiles.append(
                    _from_sorted(
                        (block_row[a:b] - r0).to(device),
                        block_col[a:b].to(device),
                        block_values[a:b].to(device),
                        (height, width),
                    )
                )
                origins.append((r0, c0))
            del block_row, block_col, block_values
        out = cls._assemble(tiles, origins, shape, tile_shape)
        del tiles
        release_freed_heap()
        return out

    def with_values(self, values: torch.Tensor) -> BlockedRows:
        tiles = [
            tile.with_values(values[off : off + tile.nnz])
            for tile, off in zip(self.tiles, self._offsets(), strict=True)
        ]
        return BlockedRows(tiles, self.origins, self._shape, values, self.tile_shape)

    def pattern(self) -> BlockedRows:
        """Same pattern, all values 1; each tile's transposed copy shares the same ones (as for
        :meth:`SparseRows.pattern`) instead of gathering a second nnz-sized tensor of them."""
        ones = torch.ones_like(self.values)
        tiles = [
            tile.pattern(ones[off : off + tile.nnz])
            for tile, off in zip(self.tiles, self._offsets(), strict=True)
        ]
        return BlockedRows(tiles, self.origins, self._shape, ones, self.tile_shape)

    def select_rows(self, rows: torch.Tensor) -> BlockedRows:
        """The sub-matrix of the given rows (in that order), all columns kept, re-tiled."""
        rows = rows.long().cpu()
        new_index = torch.full((self._shape[0],), -1, dtype=torch.long)
        new_index[rows] = torch.arange(len(rows))
        new_row = new_index[self.row.long().cpu()]
        keep = new_row >= 0
        device = self.values.device
        return BlockedRows.from_coo(
            new_row[keep].numpy(),
            self.col.cpu()[keep].numpy(),
            self.values.cpu()[keep].numpy(),
            (len(rows), self._shape[1]),
            self.tile_shape,
            device,
        )

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self._shape, dtype=self.values.dtype, device=self.values.device)
        for tile, (r0, c0) in zip(self.tiles, self.origins, strict=True):
            height, width = tile.shape
            out[r0 : r0 + height, c0 : c0 + width] = tile.to_dense()
        return out


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_heap() -> None:
    """Give the memory freed while building back to the operating system (glibc only).

    Building the tiles allocates and frees many arrays of a few MB, below glibc's mmap threshold,
    so freed ones stay in the heap, fragmented, and count in the resident set: on the Netflix
    shape 1.1 GB beside 2.0 GB of tiles, which then stays for the whole training run."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _row_major(x: BlockedRows, dense: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out += X @ dense``, tile by tile, in place (no per-tile result to zero, then add)."""
    for tile, (r0, c0) in zip(x.tiles, x.origins, strict=True):
        height, width = tile.shape
        out[r0 : r0 + height].addmm_(tile.csr, dense[c0 : c0 + width])
    return out


class GradientPool:
    """Weight-sized gradient buffers kept from one epoch to the next.

    The transposed products ``X^T @ G`` and ``D^T @ H`` are the gradients of the column-side
    weights, as large as those weights: 0.96 GB each for I-AutoRec on Netflix. Allocated afresh
    every epoch, such a buffer is past glibc's 32 MB mmap threshold, so it arrives as new pages
    that the kernel must fault in and zero while the product writes them, and its time varies
    with what else the machine does. While :meth:`lending` is active, the tiled products take
    their output from the pool; autograd hands that tensor to the parameter's ``.grad`` as it is
    (nothing else refers to it), and :meth:`reclaim` takes it back before the next backward pass,
    so the same pages serve every epoch. The arithmetic is unchanged (each buffer is fully
    overwritten by its first row tile), so results are bit for bit those without a pool.
    """

    def __init__(self) -> None:
        self._free: list[torch.Tensor] = []
        self._lent: set[int] = set()  # data pointers of the buffers out on loan

    def take(
        self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """A free buffer of that shape, dtype and device (uninitialised), or a new one."""
        buf = next(
            (
                b
                for b in self._free
                if (tuple(b.shape), b.dtype, b.device) == (shape, dtype, device)
            ),
            None,
        )
        if buf is None:
            buf = torch.empty(shape, dtype=dtype, device=device)
        else:
            self._free = [b for b in self._free if b is not buf]
        self._lent.add(buf.data_ptr())
        return buf

    def reclaim(self, params: list[torch.Tensor]) -> None:
        """Take back the lent buffers that became gradients of ``params`` (their ``.grad``
        becomes None); a lent buffer that did not (autograd copied it) is forgotten."""
        for p in params:
            if p.grad is not None and p.grad.data_ptr() in self._lent:
                self._free.append(p.grad)
                p.grad = None
        self._lent.clear()

    def clear(self) -> None:
        self._free.clear()
        self._lent.clear()

    @contextlib.contextmanager
    def lending(self) -> Any:
        """Within this block, the tiled transposed products take their outputs from the pool."""
        token = _LENDING.set(self)
        try:
            yield self
        finally:
            _LENDING.reset(token)


#: The pool the tiled transposed products take their outputs from (GradientPool.lending). The
#: autograd engine runs CPU backward functions on the thread that called ``backward``, which
#: sees this variable; elsewhere (CUDA's worker threads) it is unset and outputs are fresh.
_LENDING: contextvars.ContextVar[GradientPool | None] = contextvars.ContextVar(
    "autorec_gradient_pool", default=None
)


def _transposed(x: BlockedRows, dense: torch.Tensor) -> torch.Tensor:
    """``X^T @ dense`` (n_cols, k): each column block written by its first row tile and
    accumulated in place by the others; the output comes from the lending
    :class:`GradientPool`, if any."""
    shape = (x.shape[1], dense.shape[1])
    pool = _LENDING.get()
    if pool is not None:
        out = pool.take(shape, dense.dtype, dense.device)
    else:
        out = torch.empty(shape, dtype=dense.dtype, device=dense.device)
    for tile, (r0, c0) in zip(x.tiles, x.origins, strict=True):
        height, width = tile.shape
        part, rows = out[c0 : c0 + width], dense[r0 : r0 + height]
        if r0 == 0:
            torch.mm(tile.csr_t, rows, out=part)
        else:
            part.addmm_(tile.csr_t, rows)
    return out


class _SpMM(torch.autograd.Function):
    """``X @ dense`` for a constant sparse X; gradient ``X^T @ grad``. ``known``: the product,
    already computed from these very operands (:class:`ProductMemo`), returned as it is."""

    @staticmethod
    def forward(
        ctx: Any,
        dense: torch.Tensor,
        x: SparseRows | BlockedRows,
        known: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx.x = x
        if known is not None:
            return known
        if isinstance(x, SparseRows):
            return torch.sparse.mm(x.csr, dense)
        out = torch.zeros(x.shape[0], dense.shape[1], dtype=dense.dtype, device=dense.device)
        return _row_major(x, dense.contiguous(), out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, grad = ctx.x, grad.contiguous()
        if isinstance(x, SparseRows):
            return torch.sparse.mm(x.csr_t, grad), None, None
        return _transposed(x, grad), None, None


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
        for tile, (r0, c0) in zip(pattern.tiles, pattern.origins, strict=True):
            height, width = tile.shape
            out[offset : offset + tile.nnz] = torch.sparse.sampled_addmm(
                tile.csr, h[r0 : r0 + height], w[c0 : c0 + width].t(), beta=0.0
            ).values()
            offset += tile.nnz
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
        grad_h = _row_major(d, w.contiguous(), torch.zeros_like(h)) if need_h else None
        grad_w = _transposed(d, h.contiguous()) if need_w else None
        return grad_h, grad_w, None


#: Either layout; every function here accepts both.
Sparse = SparseRows | BlockedRows


def _full(t: torch.Tensor) -> torch.Tensor:
    """float32 for reduced-precision inputs (bf16 autocast); float64 stays (gradient checks)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def spmm(
    x: SparseRows | BlockedRows, dense: torch.Tensor, known: torch.Tensor | None = None
) -> torch.Tensor:
    """(n_rows, k) = X (n_rows, n_cols) @ dense (n_cols, k), differentiable in ``dense``;
    ``known``: that product already computed (only :class:`ProductMemo` passes it)."""
    # The sparse kernels are float32 only: never let an enclosing bf16 autocast reach them.
    with torch.autocast(device_type=dense.device.type, enabled=False):
        return _SpMM.apply(_full(dense), x, known)


class ProductMemo:
    """Keeps the last ``X @ dense`` computed without autograd, for one later call with the same
    X and the same, unmodified ``dense``.

    Why. A full-batch fit with a validation set encodes the training rows twice per epoch with
    the same weights: the validation pass after step t computes ``X @ V_t``, and the forward
    pass of step t + 1 starts with exactly that product. Handing the validation pass's result
    to the next forward saves one of the five sparse-dense products of a validated epoch (about
    16% of an ML-1M epoch: docs/performance.md, "One product fewer per epoch"), with the same
    numbers bit for bit: the same kernel on the same operands, whose backward is unchanged.

    Only products computed without autograd inside :meth:`keeping` (the validation pass) are
    kept. Same operands means: X is the very object (held by a weak reference, so a new matrix
    at a recycled address never matches) and ``dense`` has the same storage, shape, dtype and
    version counter (every in-place change, an optimiser step or a ``load_state_dict``, bumps
    it). Anything else computes the product afresh. An entry is used at most once.
    """

    def __init__(self) -> None:
        self._entry: tuple[weakref.ref, tuple, torch.Tensor] | None = None
        self._keep = False

    @contextlib.contextmanager
    def keeping(self) -> Any:
        """Within this block, a product computed without autograd is kept for the next call."""
        self._keep = True
        try:
            yield self
        finally:
            self._keep = False

    @staticmethod
    def _key(dense: torch.Tensor) -> tuple:
        return (dense.data_ptr(), dense._version, tuple(dense.shape), dense.dtype, dense.device)

    def spmm(self, x: SparseRows | BlockedRows, dense: torch.Tensor) -> torch.Tensor:
        """:func:`spmm`, from the kept product when its operands are these."""
        entry, self._entry = self._entry, None
        if entry is not None and entry[0]() is x and entry[1] == self._key(dense):
            return spmm(x, dense, known=entry[2])
        out = spmm(x, dense)
        if self._keep and not torch.is_grad_enabled():
            self._entry = (weakref.ref(x), self._key(dense), out)
        return out

    def clear(self) -> None:
        self._entry = None


def sddmm(pattern: SparseRows | BlockedRows, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(nnz,) with entry e = h[row_e] . w[col_e], differentiable in ``h`` and ``w``."""
    with torch.autocast(device_type=h.device.type, enabled=False):
        return _SDDMM.apply(_full(h), _full(w), pattern)


#: Bytes of column-side weight rows per column block, and of row-side codes per row tile: the
#: two gathered operands of a tile's products share a 32 MB last-level cache.
COLUMN_BLOCK_BYTES = 16 << 20
ROW_TILE_BYTES = 12 << 20
CACHE_BYTES = 32 << 20


def tile_shape(n_rows: int, n_cols: int, k: int, device: torch.device) -> tuple[int, int] | None:
    """(rows, columns) per tile for a CPU run, or None when one tile is best.

    Columns are cut when the column-side weights (n_cols x k floats) outgrow the cache, into
    blocks of 16 MB of weight rows; rows are cut when the row-side codes (n_rows x k floats) take
    more than half of it, into tiles of at most 12 MB. GPUs have no such cache cliff: one tile.
    ML-1M (at most 6,040 x 500 floats, 12 MB, a side) is never cut."""
    if device.type != "cpu":
        return None
    cut_cols = n_cols * k * 4 > CACHE_BYTES
    cut_rows = n_rows * k * 4 > CACHE_BYTES // 2
    if not (cut_cols or cut_rows):
        return None
    tile_cols = max(1024, COLUMN_BLOCK_BYTES // (4 * k)) if cut_cols else n_cols
    tile_rows = n_rows
    if cut_rows:
        n_tiles = math.ceil(n_rows * k * 4 / ROW_TILE_BYTES)
        tile_rows = math.ceil(n_rows / n_tiles)
    return tile_rows, tile_cols
