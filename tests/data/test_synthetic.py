"""Synthetic data: exact sizes, no duplicates, coverage, long tails, low-rank structure."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from autorec.data.synthetic import (
    SYNTHETIC_PRESETS,
    low_rank,
    synthetic_preset,
    synthetic_ratings,
)
from autorec.errors import DataError


def check_valid(r, n_users: int, n_items: int, n_ratings: int, min_per_user: int = 1) -> None:
    assert (r.n_users, r.n_items, r.n_ratings) == (n_users, n_items, n_ratings)
    assert not r.has_duplicates()
    assert r.user_counts().min() >= min_per_user
    if n_ratings >= n_items:
        assert r.item_counts().min() >= 1


def test_ml1m_preset_exact_sizes() -> None:
    r = synthetic_preset("ml-1m")
    check_valid(r, 6_040, 3_706, 1_000_209, min_per_user=20)
    assert r.rating_values().tolist() == [1, 2, 3, 4, 5]
    assert r.rating_scale == (1.0, 5.0)
    # long tails on both sides, like MovieLens: a few very active users and popular items
    for counts in (r.user_counts(), r.item_counts()):
        assert counts.max() > 10 * np.median(counts)
        assert np.median(counts) < 0.8 * counts.mean()


def test_ml10m_preset_has_half_stars() -> None:
    p = SYNTHETIC_PRESETS["ml-10m"]
    assert (p.n_users, p.n_items, p.n_ratings) == (69_878, 10_677, 10_000_054)
    r = synthetic_ratings(
        500, 300, 20_000, rating_scale=p.rating_scale, rating_step=p.rating_step, seed=1
    )
    assert r.rating_values().tolist() == [0.5 * k for k in range(1, 11)]


def test_netflix_preset_sizes() -> None:
    p = SYNTHETIC_PRESETS["netflix"]
    assert (p.n_users, p.n_items, p.n_ratings) == (480_189, 17_770, 100_480_507)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (synthetic_preset("ml-100k", seed=s) for s in (5, 5, 6))
    for name in ("user_idx", "item_idx", "rating"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.item_idx, c.item_idx)


@pytest.mark.parametrize(
    ("n_users", "n_items", "n_ratings", "min_per_user"),
    [
        (50, 40, 300, 1),
        (20, 10, 190, 1),  # nearly dense: most users take the weighted-without-replacement path
        (20, 10, 200, 10),  # completely dense
        (100, 500, 120, 1),  # fewer ratings than items: users covered, items cannot all be
        (1, 1, 1, 1),
        (300, 200, 5_000, 5),
    ],
)
def test_exact_sizes_without_duplicates(
    n_users: int, n_items: int, n_ratings: int, min_per_user: int
) -> None:
    r = synthetic_ratings(n_users, n_items, n_ratings, min_per_user=min_per_user, seed=2)
    check_valid(r, n_users, n_items, n_ratings, min_per_user)


@pytest.mark.parametrize("args", [(10, 10, 101), (10, 10, 9), (0, 5, 5)])
def test_infeasible_sizes(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        synthetic_ratings(*args)


@pytest.mark.parametrize(("noise", "low", "high"), [(0.0, 0.0, 0.03), (0.5, 0.08, 1.0)])
def test_ratings_follow_a_low_rank_model(noise: float, low: float, high: float) -> None:
    """Fully observed and continuous: without noise, all but the clipped part of the (centred)
    matrix lies in rank + 2 (biases) dimensions; noise spreads energy over all of them."""
    rank = 4
    r = synthetic_ratings(60, 40, 2_400, rank=rank, noise=noise, rating_step=None, seed=3)
    dense = np.zeros((60, 40))
    dense[r.user_idx, r.item_idx] = r.rating
    energy = np.linalg.svd(dense - dense.mean(), compute_uv=False) ** 2
    assert low <= energy[rank + 2 :].sum() / energy.sum() < high


def test_noise_and_rounding() -> None:
    clean = synthetic_ratings(100, 80, 3_000, noise=0.0, rating_step=None, seed=4)
    noisy = synthetic_ratings(100, 80, 3_000, noise=0.5, rating_step=None, seed=4)
    assert np.array_equal(clean.item_idx, noisy.item_idx)
    assert 0.05 < float(np.std(noisy.rating - clean.rating)) < 1.0
    assert not np.array_equal(clean.rating, np.round(clean.rating))
    stars = synthetic_ratings(100, 80, 3_000, seed=4)
    assert np.array_equal(stars.rating, np.round(stars.rating))


def test_low_rank_helper() -> None:
    r, truth = low_rank(300, 200, 5, density=0.1, return_truth=True, seed=7)
    assert truth.shape == (300, 200) and truth.dtype == np.float32
    assert r.user_counts().min() >= 1 and r.item_counts().min() >= 1
    assert 0.07 < r.density < 0.13
    assert np.allclose(r.rating, truth[r.user_idx, r.item_idx])  # noise 0
    assert truth.min() >= 1.0 and truth.max() <= 5.0
    s = np.linalg.svd(truth.astype(np.float64), compute_uv=False)
    assert s[5 + 3] < 1e-5 * s[0]
    noisy = low_rank(300, 200, 5, density=0.1, noise=0.3, seed=7, rating_step=1.0)
    assert np.array_equal(noisy.rating, np.round(noisy.rating))
    assert np.array_equal(low_rank(seed=1).rating, low_rank(seed=1).rating)


def test_unknown_preset() -> None:
    with pytest.raises(DataError, match="ml-1m"):
        synthetic_preset("ml-3m")


NETFLIX_SCRIPT = """
import json, resource, time
from autorec.data.synthetic import synthetic_preset
t = time.perf_counter()
r = synthetic_preset("netflix")
seconds = time.perf_counter() - t
ok = bool(r.user_counts().min() >= 1 and r.item_counts().min() >= 1)
print(json.dumps({"seconds": seconds, "peak_gb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 2**20, "n": [r.n_users, r.n_items, r.n_ratings],
    "covered": ok}))
"""


@pytest.mark.slow
def test_netflix_preset_under_a_minute_and_4gb() -> None:
    out = subprocess.run(
        [sys.executable, "-c", NETFLIX_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == [480_189, 17_770, 100_480_507] and result["covered"]
    assert result["seconds"] < 60 and result["peak_gb"] < 4
