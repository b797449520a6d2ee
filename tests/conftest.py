"""Shared fixtures. Real MovieLens files are never copied into the repository: tests that need
them read ``../shared/data`` (relative to the repository root) or ``$AUTOREC_DATA_DIR``, and skip
when it is absent (mark such tests ``realdata``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    """Where the real data sets are looked for: ``$AUTOREC_DATA_DIR``, else ``../shared/data``."""
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data directory, or skip the test when it is not there."""
    path = real_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set AUTOREC_DATA_DIR)")
    return path
