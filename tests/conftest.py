"""Shared fixtures. Real MovieLens files are never copied into the repository: tests that need
them read ``../shared/data`` (relative to the repository root) or ``$AUTOREC_DATA_DIR``, and skip
when it is absent (mark such tests ``realdata``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autorec.data import IdIndex, Ratings, paper_split

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    """Where the real data sets are looked for: ``$AUTOREC_DATA_DIR``, else ``../shared/data``.

    Absolute, so that a relative ``AUTOREC_DATA_DIR`` (the README's ``../shared/data``) still
    names the same folder from a link or a working directory a test makes elsewhere."""
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env).resolve() if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data directory, or skip the test when it is not there."""
    path = real_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set AUTOREC_DATA_DIR)")
    return path


def low_rank_ratings(
    n_users: int = 120,
    n_items: int = 80,
    rank: int = 3,
    density: float = 0.2,
    noise: float = 0.25,
    seed: int = 0,
) -> Ratings:
    """Integer ratings 1..5 from a rank-``rank`` matrix plus user/item offsets and noise.

    Every user and item gets at least one rating so that no pair needs the fallback in train.
    """
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, rank))
    q = rng.normal(size=(n_items, rank))
    truth = 3.2 + 0.9 * (p @ q.T) / np.sqrt(rank)
    truth += rng.normal(0, 0.3, n_users)[:, None] + rng.normal(0, 0.3, n_items)[None, :]
    observed = rng.random((n_users, n_items)) < density
    observed[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    observed[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(observed)
    values = np.clip(np.rint(truth[users, items] + rng.normal(0, noise, len(users))), 1, 5)
    return Ratings(
        users,
        items,
        values,
        IdIndex(np.arange(1, n_users + 1) * 10),
        IdIndex(np.arange(1, n_items + 1) * 7),
        (1.0, 5.0),
    )


@pytest.fixture(scope="session")
def low_rank() -> Ratings:
    return low_rank_ratings()


@pytest.fixture(scope="session")
def low_rank_split(low_rank: Ratings):
    return paper_split(low_rank, seed=0)


@pytest.fixture
def tiny() -> Ratings:
    """3 users x 2 items, 4 ratings: u0 rates i0=5, i1=3; u1 rates i0=4; u2 rates i1=1."""
    return Ratings(
        user_idx=np.array([0, 0, 1, 2]),
        item_idx=np.array([0, 1, 0, 1]),
        rating=np.array([5.0, 3.0, 4.0, 1.0]),
        users=IdIndex(np.array([101, 102, 103])),
        items=IdIndex(np.array(["a", "b"])),
        rating_scale=(1.0, 5.0),
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures(...)``), the
    previous count restored after it; each module says why it needs it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
