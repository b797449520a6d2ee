"""Fixtures of the CLI tests: a small rating file, a saved bias model, and a log folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorec.cli import main
from tests.conftest import low_rank_ratings


@pytest.fixture(autouse=True)
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tracebacks of internal errors go here, not to ~/.cache/autorec/logs."""
    folder = tmp_path / "logs"
    monkeypatch.setenv("AUTOREC_LOG_DIR", str(folder))
    return folder


@pytest.fixture(scope="package")
def ratings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = low_rank_ratings(n_users=40, n_items=30, density=0.4, seed=5)
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    lines = [
        f"u{data.users.ids[u]},m{data.items.ids[i]},{int(r)}"
        for u, i, r in zip(data.user_idx, data.item_idx, data.rating, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="package")
def bias_model(ratings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "bias"
    argv = ["train", "--dataset", str(ratings_file), "--model", "bias", "-q", "--output", str(out)]
    assert main([*argv, "--no-test"]) == 0
    return out
