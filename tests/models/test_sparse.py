"""The sparse kernels against dense references and numerical gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.models.sparse import BlockedRows, SparseRows, block_columns, sddmm, spmm

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
    return BlockedRows.from_coo(rows, cols, values, (N_ROWS, N_COLS), block_cols=7)


@pytest.mark.parametrize("kind", ["plain", "blocked"])
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


@pytest.mark.parametrize("kind", ["plain", "blocked"])
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


def test_blocking_only_when_the_column_weights_outgrow_the_cache() -> None:
    cpu = torch.device("cpu")
    assert block_columns(6_040, 500, cpu) is None  # ML-1M users x 500: 12 MB
    assert block_columns(480_189, 500, cpu) == 8_388  # Netflix users: 16 MB of rows a block
    assert block_columns(480_189, 500, torch.device("cuda")) is None
