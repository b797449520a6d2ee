"""Scheduling: run the cells of a plan that the store lacks, one claim at a time, with an estimate
of the time left; say which cells were left to other processes and why."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import autorec
from autorec.data.ratings import Ratings
from autorec.protocol import run_protocol
from autorec.reproduce.cells import Cell, Plan, cell_grid, cell_overrides
from autorec.reproduce.provenance import fmt_duration, huge_pages, torch_threads
from autorec.reproduce.store import CellStore, holder_text

log = logging.getLogger(__name__)


def _estimate_left(
    pending: Sequence[Cell], done: dict[str, float], model_of: dict[str, str]
) -> float:
    """Seconds the pending cells should take: the mean of finished cells of the same setting,
    else of the same model, else of all finished cells."""
    if not done:
        return math.nan
    by_setting: dict[str, list[float]] = {}
    by_model: dict[str, list[float]] = {}
    for setting, secs in done.items():
        name = setting.split("/")[0]
        by_setting.setdefault(name, []).append(secs)
        by_model.setdefault(model_of[name], []).append(secs)
    overall = float(np.mean(list(done.values())))
    total = 0.0
    for cell in pending:
        if cell.setting in by_setting:
            total += float(np.mean(by_setting[cell.setting]))
        elif cell.model in by_model:
            total += float(np.mean(by_model[cell.model]))
        else:
            total += overall
    return total


def run_cells(
    ratings: Ratings,
    plan: Plan,
    store: CellStore,
    *,
    runner: Callable[..., Any] = run_protocol,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run every cell of ``plan`` that ``store`` does not hold yet. Returns all finished cells
    by key, and the cells left to other processes by key with the reason."""
    cells = plan.cells()
    results: dict[str, dict[str, Any]] = {}
    for cell in cells:
        found = store.get(cell)
        if found is not None:
            results[cell.key] = found
    pending = [c for c in cells if c.key not in results]
    model_of = {c.setting: c.model for c in cells}
    done_seconds = {k: float(v["seconds"]) for k, v in results.items()}
    if results:
        log.info("%d of %d cells already finished in %s", len(results), len(cells), store.root)
    skipped: dict[str, str] = {}
    for number, cell in enumerate(pending, start=1):
        holder = store.claim(cell)
        if holder is not None:
            skipped[cell.key] = holder_text(holder)
            log.info(
                "cell %d/%d: %s seed %d: %s; skipped",
                number,
                len(pending),
                cell.setting,
                cell.seed,
                skipped[cell.key],
            )
            continue
        found = store.get(cell)  # another process finished it since we started
        if found is not None:
            store.release(cell)
            results[cell.key] = found
            continue
        left = _estimate_left(pending[number - 1 :], done_seconds, model_of)
        log.info(
            "cell %d/%d: %s seed %d%s",
            number,
            len(pending),
            cell.setting,
            cell.seed,
            "" if math.isnan(left) else f" (about {fmt_duration(left)} left)",
        )
        try:
            payload = _run_cell(ratings, plan, runner, cell)
            store.put(cell, payload)
        finally:
            store.release(cell)
        results[cell.key] = payload
        done_seconds[cell.key] = payload["seconds"]
        log.info(
            "cell %d/%d done in %s: test RMSE %.4f",
            number,
            len(pending),
            fmt_duration(payload["seconds"]),
            payload["record"]["test_rmse"],
        )
    return results, skipped


def _run_cell(
    ratings: Ratings, plan: Plan, runner: Callable[..., Any], cell: Cell
) -> dict[str, Any]:
    """Run one cell through the protocol; its stored form, with provenance."""
    started = time.perf_counter()
    result = runner(
        ratings,
        cell.model,
        seed=cell.seed,
        overrides=cell_overrides(cell, plan.quick),
        grid=cell_grid(cell, plan.quick),
    )
    return {
        "setting": cell.setting,
        "model": cell.model,
        "overrides": dict(cell.overrides),
        "seed": cell.seed,
        "dataset": plan.dataset,
        "quick": plan.quick,
        "seconds": time.perf_counter() - started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "autorec_version": autorec.__version__,
        "torch_threads": torch_threads(),
        "huge_pages": huge_pages(),
        "record": result.record,
    }
