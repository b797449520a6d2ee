"""``autorec reproduce``: the experiments of Sedhain et al. (2015) re-run with the paper's protocol.

The unit of work is a *cell*: one model setting on one seed, run through
:func:`autorec.protocol.run_protocol` and stored at once, so a run of hours resumes where it
stopped and several processes can share one folder. Settings shared by several tables run once.

Where things live:

* ``experiments``: the paper's values and the tables and figure as data (``EXPERIMENTS``);
* ``cells``: ``Cell``, ``Plan``, how a cell runs today and when a stored one is stale;
* ``store``: the cell files, the folder's manifest, the lock files;
* ``schedule``: running the missing cells (``run_cells``);
* ``report`` and ``figures``: ``results.json``, ``report.md`` and the PNG figures;
* ``provenance``: versions, hardware and threads stated beside the numbers;
* ``pipeline``: the entry point ``reproduce`` and its ``ReproduceResult``.

``--quick`` (two runs, at most 15 epochs, three sweep points, hyperparameters at their defaults)
checks the pipeline in minutes; its numbers are not comparable with the paper's.
"""

from autorec.reproduce.cells import Cell, Plan, setting_id, stale_reason
from autorec.reproduce.experiments import (
    DEFAULT_TABLES,
    EXPERIMENTS,
    PAPER,
    PUBLISHED,
    QUICK_RUNS,
    TABLES,
    TITLES,
    Row,
)
from autorec.reproduce.pipeline import ReproduceResult, report_cells, reproduce
from autorec.reproduce.report import summarise, verdict, write_report
from autorec.reproduce.store import LOCK_GRACE_SECONDS, CellStore

__all__ = [
    "DEFAULT_TABLES",
    "EXPERIMENTS",
    "LOCK_GRACE_SECONDS",
    "PAPER",
    "PUBLISHED",
    "QUICK_RUNS",
    "TABLES",
    "TITLES",
    "Cell",
    "CellStore",
    "Plan",
    "ReproduceResult",
    "Row",
    "report_cells",
    "reproduce",
    "setting_id",
    "stale_reason",
    "summarise",
    "verdict",
    "write_report",
]
