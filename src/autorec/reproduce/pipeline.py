"""The entry point: ``reproduce`` runs the missing cells of a plan, writes the report from every
finished cell, and returns a ``ReproduceResult`` that says whether the plan is complete."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autorec.data.ratings import Ratings
from autorec.protocol import run_protocol
from autorec.reproduce.cells import Plan, setting_id
from autorec.reproduce.experiments import DEFAULT_TABLES, EXPERIMENTS, TABLES, rows
from autorec.reproduce.figures import pyplot
from autorec.reproduce.report import write_report
from autorec.reproduce.schedule import run_cells
from autorec.reproduce.store import CellStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReproduceResult:
    """What a reproduce run wrote (``results``, as in ``results.json``) and the cells of its plan
    that the report lacks, by key, with the reason (``skipped``)."""

    results: dict[str, Any]
    skipped: dict[str, str]

    @property
    def complete(self) -> bool:
        return not self.skipped


def report_cells(store: CellStore, plan: Plan) -> tuple[Plan, dict[str, dict[str, Any]]]:
    """The plan a report shows and its cells: every finished cell of every table, including
    earlier ``--only`` runs; the tables of ``plan`` and those with any finished cell."""
    full = dataclasses.replace(plan, tables=TABLES, models=None)
    everything = {c.key: store.get(c) for c in full.cells()}
    cells = {k: v for k, v in everything.items() if v is not None}
    shown = dataclasses.replace(
        full, tables=tuple(t for t in TABLES if t in plan.tables or _has_any(full, t, cells))
    )
    return shown, cells


def _has_any(plan: Plan, table: str, cells: dict[str, dict[str, Any]]) -> bool:
    """Whether a row of ``table`` has a finished cell. A table run only on request (``beyond``)
    counts only the rows no default table has: its I-AutoRec reference row shares the cells of
    Table 1, and those alone do not put a table nobody asked for into the report."""
    shared: set[str] = set()
    if not EXPERIMENTS[table].default:
        shared = {
            setting_id(r.model, r.overrides) for t in DEFAULT_TABLES for r in rows(t, plan.quick)
        }
    for row in rows(table, plan.quick):
        sid = setting_id(row.model, row.overrides)
        if sid in shared:
            continue
        if any(f"{sid}/seed{s}" in cells for s in range(plan.runs)):
            return True
    return False


def reproduce(
    ratings: Ratings | None,
    plan: Plan,
    out_dir: Path,
    *,
    command: str | None = None,
    runner: Callable[..., Any] = run_protocol,
    report_only: bool = False,
) -> ReproduceResult:
    """Run the missing cells of ``plan`` (storing each as it ends), then write the report.
    ``report_only`` runs nothing (``ratings`` may then be None): the report shows the cells
    finished so far. Cells of ``plan`` left out of the report are logged and returned."""
    pyplot()  # fail before hours of work, not after
    started = time.perf_counter()
    store = CellStore(out_dir, plan)
    command = command or "autorec reproduce " + " ".join(sys.argv[1:])
    held: dict[str, str] = {}
    if not report_only:
        if ratings is None:
            raise ValueError("reproduce needs ratings unless report_only")
        _, held = run_cells(ratings, plan, store, runner=runner)
    shown, cells = report_cells(store, plan)
    results = write_report(
        out_dir, shown, cells, command=command, wall_seconds=time.perf_counter() - started
    )
    # A cell left to another process may have finished meanwhile: only what the report lacks.
    not_run = "not finished (report only: nothing was run)" if report_only else "not finished"
    skipped = {c.key: held.get(c.key, not_run) for c in plan.cells() if c.key not in cells}
    by_reason: dict[str, list[str]] = {}
    for key, reason in skipped.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        log.warning("%d cell(s) not in the report: %s: %s", len(keys), reason, ", ".join(keys))
    if skipped:
        log.warning("the report is incomplete; rerun the same command to add the missing cells")
    return ReproduceResult(results, skipped)
