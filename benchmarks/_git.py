"""The code of another commit, for the benchmarks that time old code against new
(bench_main_job and bench_protocol)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_src(ref: str, into: Path) -> Path:
    """``src/`` of git ``ref`` under ``into`` (``git archive``); returns the folder, to put on
    PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"
