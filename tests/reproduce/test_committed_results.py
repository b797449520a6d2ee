"""The committed results in ``docs/results/<dataset>/`` against today's code: every cell still
checks as current (so ``autorec reproduce`` would not rerun it), and ``--report-only`` rewrites
``report.md`` and ``results.json`` byte for byte. The provenance a report states (machine,
versions, when it was generated, the wall time of its last invocation) is taken from the
committed ``results.json``: it describes the run, not the code. Needs only the committed files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from autorec.reproduce import TABLES, CellStore, Plan, report_cells, stale_reason, write_report

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
DATASETS = ("ml-1m", "ml-100k")


def _committed(dataset: str) -> tuple[Plan, dict]:
    results = json.loads((RESULTS / dataset / "results.json").read_text())
    return Plan(dataset=dataset, runs=results["runs"], quick=results["quick"]), results


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_committed_cell_is_current(dataset) -> None:
    plan, _ = _committed(dataset)
    store = CellStore(RESULTS / dataset, plan)  # reads the manifest, writes nothing
    stored = {p.relative_to(store.root).as_posix() for p in store.root.glob("*/*.json")}
    # The paper's tables: 21 model settings x 5 seeds (settings shared by several tables are
    # stored once), all there; beyond the paper (run only when asked): whichever rows ran.
    paper = {f"{c.key}.json" for c in plan.cells()}
    everything = dataclasses.replace(plan, tables=TABLES)
    assert len(paper) == 105 and paper <= stored <= {f"{c.key}.json" for c in everything.cells()}
    stale = {}
    for cell in everything.cells():
        if f"{cell.key}.json" not in stored:
            continue
        reason = stale_reason(cell, json.loads(store.path(cell).read_text()), plan.quick)
        if reason is not None:
            stale[cell.key] = reason
    assert stale == {}


@pytest.mark.parametrize(
    "dataset, name",
    [
        ("ml-1m", "report.md"),
        ("ml-1m", "results.json"),
        ("ml-100k", "report.md"),
        ("ml-100k", "results.json"),
    ],
)
def test_report_only_rewrites_the_committed_report_byte_for_byte(dataset, name, tmp_path) -> None:
    plan, committed = _committed(dataset)
    store = CellStore(RESULTS / dataset, plan)
    shown, cells = report_cells(store, plan)
    assert len(cells) == len(list(store.root.glob("*/*.json")))  # every stored cell is shown
    write_report(
        tmp_path,
        shown,
        cells,
        command=committed["command"],
        wall_seconds=committed["wall_seconds_last_invocation"],
        env=committed["environment"],
        generated=committed["generated"],
    )
    assert (tmp_path / name).read_bytes() == (RESULTS / dataset / name).read_bytes()
