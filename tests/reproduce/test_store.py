"""The cell store: the folder's manifest, exclusive claims by lock files (and taking over the
locks of dead processes, or empty and unreadable ones), and cells of an older protocol."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from autorec.errors import ConfigError
from autorec.models.autorec import DEFAULT_LAMBDA_GRID
from autorec.protocol import MAX_EXTENSIONS
from autorec.reproduce import Cell, CellStore, Plan, stale_reason

from .helpers import write_lock


def test_out_dir_of_another_dataset_is_refused(tmp_path) -> None:
    CellStore(tmp_path, Plan(dataset="ml-100k", quick=True))
    with pytest.raises(ConfigError, match="holds results for dataset 'ml-100k'"):
        CellStore(tmp_path, Plan(dataset="ml-1m", quick=False))


def test_a_claim_is_exclusive_until_released(tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    cell = plan.cells()[0]
    first, second = CellStore(tmp_path, plan), CellStore(tmp_path, plan)
    assert first.claim(cell) is None
    holder = second.claim(cell)
    assert holder is not None and holder["pid"] == os.getpid()
    first.release(cell)
    assert not first.lock_path(cell).exists()
    assert second.claim(cell) is None


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path) -> None:
    plan = Plan(dataset="synthetic:tiny", tables=("figure_2",), runs=1, quick=True)
    cell = plan.cells()[0]
    store = CellStore(tmp_path, plan)
    code = "import os; print(os.getpid())"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    write_lock(store, cell, host=platform.node(), pid=int(ended.stdout))
    assert store.claim(cell) is None
    assert json.loads(store.lock_path(cell).read_text())["pid"] == os.getpid()
    # A lock of another machine cannot be checked, so it is respected.
    other = plan.cells()[1]
    write_lock(store, other, host="another-machine", pid=1)
    assert store.claim(other)["host"] == "another-machine"


def _autorec_cell(chosen: float, tried: list[float]) -> tuple:
    cell = Cell("i-autorec+g=identity", "i-autorec", (("g", "identity"),), 0)
    record = {
        "test_rmse": 0.9,
        "hyperparameters": {"lam": chosen, "n_epochs": 50},
        "candidates": [{"lam": v, "val_rmse": 0.9, "best_epoch": 50} for v in tried],
    }
    return cell, {"seconds": 1.0, "record": record}


def test_cells_of_an_older_grid_are_stale_and_run_again(tmp_path) -> None:
    grid = list(DEFAULT_LAMBDA_GRID)
    assert max(grid) == 1000.0
    cell, ok = _autorec_cell(300.0, grid)
    assert stale_reason(cell, ok, quick=False) is None
    # Chose the top of the grid before the protocol extended it (Table 1(b)'s linear rows).
    cell, top = _autorec_cell(1000.0, grid)
    assert "largest lam" in stale_reason(cell, top, quick=False)
    # Extended until validation turned: current.
    assert stale_reason(cell, _autorec_cell(3000.0, [*grid, 3000.0, 10000.0])[1], False) is None
    # Still rising after every extension the protocol allows: nothing more would be tried.
    capped = [*grid, 3000.0, 10000.0, 30000.0, 100000.0][: len(grid) + MAX_EXTENSIONS]
    assert stale_reason(cell, _autorec_cell(capped[-1], capped)[1], False) is None
    # A grid value the search never tried.
    cell, short = _autorec_cell(300.0, [v for v in grid if v != 10.0])
    assert "lacked lam = 10.0" in stale_reason(cell, short, quick=False)
    # --quick tunes nothing, so nothing is stale there.
    assert stale_reason(cell, short, quick=True) is None
    # The store hands out only current cells.
    store = CellStore(tmp_path, Plan(dataset="ml-1m", tables=("table_1b",)))
    store.put(cell, top)
    assert store.get(cell) is None
    store.put(cell, ok)
    assert store.get(cell) == ok


def test_a_cell_scored_under_another_fallback_rule_is_stale() -> None:
    """The tables answer cold pairs with the paper's constant 3 (cell_overrides); a cell whose
    record says another rule answered them would mix two rules in one table."""
    cell, payload = _autorec_cell(300.0, list(DEFAULT_LAMBDA_GRID))
    payload["record"]["fallback"] = "constant"
    assert stale_reason(cell, payload, quick=False) is None
    payload["record"]["fallback"] = "bias"
    assert "bias fallback" in stale_reason(cell, payload, quick=False)
    del payload["record"]["fallback"]  # stored before runs recorded their rule
    assert stale_reason(cell, payload, quick=False) is None
