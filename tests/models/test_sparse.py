"""The sparse kernels against dense references and numerical gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.models.sparse import (
    BlockedRows,
    ProductMemo,
    SparseRows,
    sddmm,
    spmm,
    tile_shape,
)

N_ROWS, N_COLS = 13, 29


@pytest.fixture
def coo():
    rng = np.random.default_rng(0)
    lin = rng.choice(N_ROWS * N_COLS, 120, replace=False)
    rows, cols, values = lin // N_COLS, lin % N_COLS, rng.random(120)
    dense = np.zeros((N_ROWS, N_COLS))
    dense[rows, cols] = values
    return rows, cols, values, dense


def _build(kind, rows, cols, values):
    if kind == "plain":
        return SparseRows.from_coo(rows, cols, values, (N_ROWS, N_COLS))
    if kind == "columns":
        return BlockedRows.from_coo(rows, cols, values, (N_ROWS, N_COLS), (N_ROWS, 7))
    if kind == "rows":
        return BlockedRows.from_coo(rows, cols, values, (N_ROWS, N_COLS), (4, N_COLS))
    # uneven tiles both ways; with 120 of 377 cells stored, some tiles may be empty
    return BlockedRows.from_coo(rows, cols, values, (N_ROWS, N_COLS), (5, 7))


KINDS = ["plain", "columns", "rows", "tiles"]


def test_tiles_cover_the_matrix_once() -> None:
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, N_ROWS, 30), rng.integers(0, N_COLS, 30)
    lin = np.unique(rows * N_COLS + cols)
    shape = (N_ROWS, N_COLS)
    x = BlockedRows.from_coo(lin // N_COLS, lin % N_COLS, np.ones(len(lin)), shape, (5, 7))
    # ceil(13 / 5) = 3 row tiles x ceil(29 / 7) = 5 column blocks, column block by column block
    assert len(x.tiles) == 15 and x.origins[:4] == [(0, 0), (5, 0), (10, 0), (0, 7)]
    assert [t.shape for t in x.tiles[:3]] == [(5, 7), (5, 7), (3, 7)]
    assert x.tiles[-1].shape == (3, 1)
    assert sum(t.nnz for t in x.tiles) == x.nnz == len(lin)
    assert any(t.nnz == 0 for t in x.tiles)  # empty tiles are kept and must work


@pytest.mark.parametrize("kind", KINDS)
def test_layout_holds_the_matrix_and_its_entries(coo, kind) -> None:
    rows, cols, values, dense = coo
    x = _build(kind, rows, cols, values)
    np.testing.assert_allclose(x.to_dense().numpy(), dense, rtol=1e-6)
    # values, row and col line up entry by entry (the loss relies on it)
    np.testing.assert_allclose(dense[x.row.numpy(), x.col.numpy()], x.values.numpy(), rtol=1e-6)
    picked = torch.tensor([3, 0, 5])
    sub = x.select_rows(picked)
    np.testing.assert_allclose(sub.to_dense().numpy(), dense[[3, 0, 5]], rtol=1e-6)
    np.testing.assert_allclose(
        dense[[3, 0, 5]][sub.row.numpy(), sub.col.numpy()], sub.values.numpy(), rtol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_products_and_their_gradients(coo, kind) -> None:
    rows, cols, values, dense = coo
    x = _build(kind, rows, cols, values)
    x = x.with_values(x.values.double())
    g = torch.Generator().manual_seed(1)
    v = torch.randn(N_COLS, 4, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.randn(N_ROWS, 4, dtype=torch.float64, generator=g, requires_grad=True)
    torch.testing.assert_close(spmm(x, v), torch.from_numpy(dense) @ v)
    assert torch.autograd.gradcheck(lambda v: spmm(x, v), (v,))
    pattern = x.pattern()
    ref = (h[x.row.long()] * v[x.col.long()]).sum(-1)  # h[row] . w[col] per stored entry
    torch.testing.assert_close(sddmm(pattern, h, v), ref)
    assert torch.autograd.gradcheck(lambda h, w: sddmm(pattern, h, w), (h, v))


def test_tiling_only_when_a_side_outgrows_the_cache() -> None:
    cpu = torch.device("cpu")
    # ML-1M, either orientation (6,040 x 3,706, k = 500): 12 MB and 7.4 MB sides, never cut
    assert tile_shape(3_706, 6_040, 500, cpu) is None
    assert tile_shape(6_040, 3_706, 500, cpu) is None
    # Netflix I-AutoRec: 16 MB blocks of user columns (8,388 users); the 35.5 MB of item codes
    # in 3 tiles of at most 12 MB (5,924 items)
    assert tile_shape(17_770, 480_189, 500, cpu) == (5_924, 8_388)
    # ML-10M I-AutoRec: 21 MB of item codes, 2 row tiles
    assert tile_shape(10_677, 69_878, 500, cpu) == (5_339, 8_388)
    assert tile_shape(17_770, 480_189, 500, torch.device("cuda")) is None


@pytest.mark.parametrize("kind", KINDS)
def test_pattern_keeps_one_tensor_of_ones(coo, kind) -> None:
    # Memory: on Netflix every nnz-sized float tensor is 0.4 GB. The pattern's ones are one
    # tensor, which every tile and every transposed copy views (a permutation of ones is ones).
    x = _build(kind, *coo[:3])
    pattern = x.pattern()
    assert torch.equal(pattern.values, torch.ones(x.nnz))
    base = pattern.values.untyped_storage().data_ptr()
    tiles = pattern.tiles if kind != "plain" else [pattern]
    for tile in tiles:
        for values in (tile.values, tile.csr.values(), tile.csr_t.values()):
            assert values.untyped_storage().data_ptr() == base
    np.testing.assert_array_equal(pattern.to_dense().numpy(), (coo[3] != 0).astype(np.float32))


@pytest.mark.parametrize("kind", ["plain", "tiles"])
def test_product_memo_reuses_only_the_same_operands(coo, kind) -> None:
    # ProductMemo may hand back a product computed without autograd only for the very same X
    # and an unmodified dense side; any other call must compute afresh (a stale product would
    # train on weights from before the optimiser step).
    rows, cols, values, dense = coo
    x = _build(kind, rows, cols, values)
    g = torch.Generator().manual_seed(2)
    v = torch.randn(N_COLS, 4, generator=g, requires_grad=True)
    memo = ProductMemo()
    with torch.no_grad():
        memo.spmm(x, v)  # outside keeping(): not kept
        assert memo._entry is None
    with torch.no_grad(), memo.keeping():
        kept = memo.spmm(x, v)

    def reused(product: torch.Tensor) -> bool:  # the kept tensor's memory (kept is alive)
        return product.data_ptr() == kept.data_ptr()

    assert reused(memo.spmm(x, v))  # the same operands
    assert not reused(memo.spmm(x, v))  # used once
    with torch.no_grad(), memo.keeping():
        kept = memo.spmm(x, v)
    with torch.no_grad():
        v.mul_(2.0)  # an in-place step: same storage, new version
    product = memo.spmm(x, v)
    assert not reused(product)
    torch.testing.assert_close(product, torch.from_numpy(dense).float() @ v)
    with torch.no_grad(), memo.keeping():
        kept = memo.spmm(x, v)
    twin = _build(kind, rows, cols, values)  # equal content, another object
    assert not reused(memo.spmm(twin, v))
    with torch.no_grad(), memo.keeping():
        kept = memo.spmm(x, v)
    assert not reused(memo.spmm(x, v.detach().clone()))  # another storage
    with memo.keeping():
        kept = memo.spmm(x, v)  # with autograd: nothing kept
    assert not reused(memo.spmm(x, v)) and memo._entry is None


@pytest.mark.parametrize("kind", ["plain", "tiles"])
def test_a_kept_product_keeps_its_gradient(coo, kind) -> None:
    # The reused product enters autograd through the same backward (X^T @ grad) as a fresh one.
    x = _build(kind, *coo[:3])
    g = torch.Generator().manual_seed(4)
    v = torch.randn(N_COLS, 3, generator=g, requires_grad=True)
    weight = torch.randn(N_ROWS, 3, generator=g)
    memo = ProductMemo()
    with torch.no_grad(), memo.keeping():
        memo.spmm(x, v)
    reused = memo.spmm(x, v)
    assert reused.requires_grad
    (reused * weight).sum().backward()
    via_memo, v.grad = v.grad.clone(), None
    (spmm(x, v) * weight).sum().backward()
    assert torch.equal(via_memo, v.grad)
