"""Shared by the reproduce tests: lock files as another process leaves them, and cells whose
numbers are made by hand (so the report's arithmetic can be checked without fitting)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from autorec.reproduce import CellStore


def write_lock(store: CellStore, cell, text: str | None = None, **holder) -> None:
    """A lock on ``cell`` as another process writes it (``text``: the raw content instead)."""
    path = store.lock_path(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = json.dumps({"since": "2026-01-01T00:00:00+00:00", **holder})
    path.write_text(text)


def fake_cell(setting: str, model: str, seed: int, rmse: float) -> dict[str, Any]:
    return {
        "setting": setting,
        "model": model,
        "seed": seed,
        "seconds": 10.0 + seed,
        "record": {
            "test_rmse": rmse,
            "test_mae": rmse * 0.8,
            "hyperparameters": {},
            "n_test_fallback": 0,
        },
    }


def fake_runner(ran: list[tuple[str, int]]):
    """A protocol runner that fits nothing: records (model, seed) and returns a fixed record."""

    def run(ratings, model, *, seed, overrides, grid):
        ran.append((model, seed))
        record = fake_cell("-", model, seed, 0.9)["record"]
        return SimpleNamespace(record={**record, "learning_curve": {}})

    return run
