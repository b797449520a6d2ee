"""Synthetic rating data with a known low-rank structure.

Every rating is ``mu + b_u + b_i + <p_u, q_i> + noise``, rounded to the rating step and clipped to
the scale: the biased matrix-factorisation model of Koren, Bell & Volinsky (2009, "Matrix
Factorization Techniques for Recommender Systems", IEEE Computer 42(8)), which is also the structure
AutoRec's reconstruction is meant to capture (Sedhain et al. 2015). Which (user, item) pairs are
observed follows long-tailed popularity on both sides: user activity and item popularity weights
are log-normal, whose sorted values fall off Zipf-like over the head (rating counts of MovieLens
and Netflix are heavy tailed, Harper & Konstan 2015), so a few users and items have many ratings
and most have few.

Guarantees: exactly ``n_ratings`` ratings, no duplicate (user, item) pair, every user has at least
``min_per_user`` ratings, and every item has at least one rating whenever ``n_ratings >= n_items``.
Everything is a function of ``seed``.

The sampler is vectorised and chunked so that the ``netflix`` preset (480,189 x 17,770,
100,480,507 ratings) takes well under a minute and a few GB: per-user counts are allocated first;
light users draw items with replacement from a popularity table and duplicates are removed by
sorting int64 keys chunk by chunk (deficits are drawn again); heavy users (more than an eighth of
the catalogue) take the smallest exponential keys ``E_i / w_i`` (Efraimidis & Spirakis 2006,
weighted sampling without replacement).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from autorec.data.ratings import IdIndex, Ratings
from autorec.data.registry import SYNTHETIC_PRESETS
from autorec.errors import DataError

logger = logging.getLogger(__name__)


#: Keys (ratings) handled at once by the light-user sampler and the rating computation.
_CHUNK = 1 << 22


def synthetic_preset(name: str, *, seed: int = 0, rank: int = 10) -> Ratings:
    """The synthetic set of preset ``name`` (see :data:`~autorec.data.registry.SYNTHETIC_PRESETS`:
    sizes, scale and step of the set it mimics)."""
    try:
        p = SYNTHETIC_PRESETS[name.lower()]
    except KeyError:
        raise DataError(
            f"unknown synthetic preset {name!r}; presets: {', '.join(SYNTHETIC_PRESETS)}"
        ) from None
    return synthetic_ratings(
        p.n_users,
        p.n_items,
        p.n_ratings,
        rank=rank,
        seed=seed,
        rating_scale=p.rating_scale,
        rating_step=p.rating_step,
        min_per_user=p.min_per_user,
    )


# ---------------------------------------------------------------------------------------------
# the rating model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
    mu: float
    user_bias: np.ndarray  # (n_users,) float32
    item_bias: np.ndarray  # (n_items,) float32
    p: np.ndarray  # (n_users, rank) float32, already scaled
    q: np.ndarray  # (n_items, rank) float32

    @classmethod
    def draw(
        cls,
        n_users: int,
        n_items: int,
        rank: int,
        scale: tuple[float, float],
        rng: np.random.Generator,
        signal: float = 0.2,
    ) -> _Model:
        low, high = scale
        width = high - low
        # for 1..5: mu 3.6, biases of std 0.36 / 0.48, interaction of std 0.8
        factor = np.sqrt(signal * width / np.sqrt(rank))
        return cls(
            mu=low + 0.65 * width,
            user_bias=(rng.standard_normal(n_users) * 0.09 * width).astype(np.float32),
            item_bias=(rng.standard_normal(n_items) * 0.12 * width).astype(np.float32),
            p=(rng.standard_normal((n_users, rank)) * factor).astype(np.float32),
            q=(rng.standard_normal((n_items, rank)) * factor).astype(np.float32),
        )

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Noise-free scores (float32) of the given pairs."""
        dot = np.einsum("ij,ij->i", self.p[user_idx], self.q[item_idx])
        return dot + self.user_bias[user_idx] + self.item_bias[item_idx] + np.float32(self.mu)

    def dense(self) -> np.ndarray:
        """(n_users, n_items) float32 noise-free scores: only for small sets."""
        return (
            self.p @ self.q.T
            + self.user_bias[:, None]
            + self.item_bias[None, :]
            + np.float32(self.mu)
        ).astype(np.float32)


def _quantise(score: np.ndarray, scale: tuple[float, float], step: float | None) -> np.ndarray:
    low, high = scale
    if step:
        score = low + np.round((score - low) / step) * step
    return np.clip(score, low, high).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# which pairs are observed
# ---------------------------------------------------------------------------------------------
def _popularity_weights(n: int, skew: float, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed weights: log-normal with log-standard-deviation ``skew`` (0: uniform).

    Sorted, they fall off like a Zipf law over the head, and most entities sit in the long tail
    far below the mean, as rating counts do in MovieLens and Netflix (a median user with about
    half the mean number of ratings needs a log-sd of about 1).
    """
    if skew < 0:
        raise ValueError(f"skew must be >= 0, got {skew}")
    return np.exp(rng.standard_normal(n) * float(skew))


def _allocate(
    total: int, weights: np.ndarray, low: int, high: int, rng: np.random.Generator
) -> np.ndarray:
    """Integer counts in [low, high] summing to ``total``, roughly proportional to ``weights``."""
    n = len(weights)
    counts = np.full(n, low, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for _ in range(64):
        rest = total - int(counts.sum())
        if rest <= 0:
            break
        w = np.where(open_, weights, 0.0)
        add = np.floor(rest * w / w.sum()).astype(np.int64)
        counts += add
        over = counts > high
        if over.any():
            counts[over] = high
            open_ &= ~over
            continue
        rest = total - int(counts.sum())
        if rest > 0:
            # the remaining units (fewer than n) go to distinct open entities, weighted
            candidates = np.flatnonzero(open_ & (counts < high))
            keys = rng.exponential(size=len(candidates)) / weights[candidates]
            chosen = candidates[np.argpartition(keys, rest - 1)[:rest]]
            counts[chosen] += 1
        break
    if int(counts.sum()) != total or counts.max() > high:
        raise AssertionError("count allocation failed")  # pragma: no cover
    return counts


class _ItemSampler:
    """Items drawn with replacement with probability ∝ weight, by a lookup table (O(1) a draw)."""

    def __init__(self, weights: np.ndarray) -> None:
        n = len(weights)
        size = max(1 << 20, 64 * n)
        quota = np.maximum(1, np.floor(weights / weights.sum() * size)).astype(np.int64)
        self.table = np.repeat(np.arange(n, dtype=np.int32), quota)
        self.weights = weights

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.table[rng.integers(0, len(self.table), size=n)]


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` by an explicit sort (numpy 2's hash-based unique is ~100x slower here)."""
    x.sort()
    keep = np.ones(len(x), dtype=bool)
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _sample_light(
    users: np.ndarray,
    counts: np.ndarray,
    n_items: int,
    sampler: _ItemSampler,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items for each of ``users`` (ascending); returns (user, item) sorted by both."""
    done_keys: list[np.ndarray] = []
    pending = np.arange(len(users))  # local user numbers still short of their count
    have = np.zeros(0, dtype=np.int64)  # keys (local user * n_items + item) of pending users
    got = np.zeros(len(users), dtype=np.int64)
    for _ in range(200):
        deficit = counts[pending] - got[pending]
        new_users = np.repeat(pending, deficit)
        new = new_users.astype(np.int64) * n_items + sampler.draw(len(new_users), rng)
        keys = _sorted_unique(np.concatenate([have, new]))
        per_user = np.bincount(keys // n_items, minlength=len(users))
        got[pending] = per_user[pending]
        full = per_user == counts
        key_full = full[keys // n_items]
        done_keys.append(keys[key_full])
        have = keys[~key_full]
        pending = pending[~full[pending]]
        if len(pending) == 0:
            break
    else:
        raise AssertionError("light-user sampling did not converge")  # pragma: no cover
    keys = np.concatenate(done_keys)
    keys.sort()
    local, items = np.divmod(keys, n_items)
    return users[local], items


def _sample_heavy(
    users: np.ndarray,
    counts: np.ndarray,
    n_items: int,
    sampler: _ItemSampler,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sampling without replacement: the ``count`` smallest of ``E_i / w_i`` per user."""
    out_u: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    rows = max(1, _CHUNK // n_items)
    inv_w = (1.0 / sampler.weights).astype(np.float64)
    for a in range(0, len(users), rows):
        u = users[a : a + rows]
        c = counts[a : a + rows]
        keys = rng.exponential(size=(len(u), n_items)) * inv_w
        order = np.argsort(keys, axis=1)
        chosen = np.arange(n_items)[None, :] < c[:, None]
        mask = np.zeros_like(chosen)
        np.put_along_axis(mask, order, chosen, axis=1)
        r, i = np.nonzero(mask)
        out_u.append(u[r])
        out_i.append(i)
    return np.concatenate(out_u), np.concatenate(out_i)


def _coverage_fix(item_idx: np.ndarray, n_items: int, rng: np.random.Generator) -> None:
    """Give every item at least one rating by moving single ratings off items that have several.

    The user of a moved rating cannot already rate the new item (nobody does), so no duplicate
    appears and per-user counts are unchanged.
    """
    counts = np.bincount(item_idx, minlength=n_items)
    missing = np.flatnonzero(counts == 0)
    for j in missing:
        while True:
            r = int(rng.integers(0, len(item_idx)))
            if counts[item_idx[r]] > 1:
                break
        counts[item_idx[r]] -= 1
        item_idx[r] = j
        counts[j] = 1


def _observed_pairs(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    user_skew: float,
    item_skew: float,
    min_per_user: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    user_weights = _popularity_weights(n_users, user_skew, rng)
    counts = _allocate(n_ratings, user_weights, min_per_user, n_items, rng)
    sampler = _ItemSampler(_popularity_weights(n_items, item_skew, rng))
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    user_idx = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    item_idx = np.empty(n_ratings, dtype=np.int32)
    heavy_threshold = max(1, n_items // 8)
    start = 0
    while start < n_users:
        stop = int(np.searchsorted(offsets, offsets[start] + _CHUNK, side="right")) - 1
        stop = min(max(stop, start + 1), n_users)
        users = np.arange(start, stop)
        c = counts[start:stop]
        heavy = c > heavy_threshold
        for sample, sel in ((_sample_light, ~heavy), (_sample_heavy, heavy)):
            if not sel.any():
                continue
            u, i = sample(users[sel], c[sel], n_items, sampler, rng)
            # u is sorted and every user is complete: place each user's items at its offset
            first = np.searchsorted(u, u, side="left")
            item_idx[offsets[u] + np.arange(len(u)) - first] = i
        start = stop
    if n_ratings >= n_items:
        _coverage_fix(item_idx, n_items, rng)
    return user_idx, item_idx


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def _check_sizes(n_users: int, n_items: int, n_ratings: int, min_per_user: int) -> None:
    if n_users < 1 or n_items < 1:
        raise ValueError(f"need at least one user and one item, got {n_users} x {n_items}")
    if not 1 <= min_per_user <= n_items:
        raise ValueError(f"min_per_user must be in 1..{n_items}, got {min_per_user}")
    if not n_users * min_per_user <= n_ratings <= n_users * n_items:
        raise ValueError(
            f"n_ratings must be in {n_users * min_per_user}..{n_users * n_items} for "
            f"{n_users} users x {n_items} items with min_per_user={min_per_user}, got {n_ratings}"
        )


def synthetic_ratings(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    rank: int = 10,
    seed: int | np.random.Generator = 0,
    noise: float = 0.5,
    user_skew: float = 1.0,
    item_skew: float = 1.3,
    min_per_user: int = 1,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    rating_step: float | None = 1.0,
) -> Ratings:
    """Ratings from a known biased low-rank model with long-tailed user and item popularity.

    Args:
        n_users, n_items, n_ratings: exact sizes (every user and item gets a rating if feasible).
        rank: rank of the interaction term ``<p_u, q_i>``.
        seed: seed or generator; the same seed gives the same set.
        noise: standard deviation of the Gaussian noise, in units of a 1..5 scale's star.
        user_skew, item_skew: log-sd of the log-normal activity / popularity weights (0:
            uniform; defaults are close to MovieLens 1M: median/mean user count about 0.6,
            item count about 0.45).
        min_per_user: least number of ratings of every user (MovieLens guarantees 20).
        rating_scale: (low, high); ratings are clipped to it.
        rating_step: ratings are rounded to ``low + k * step`` (1: integer stars, 0.5: half
            stars); None keeps continuous ratings.

    Returns:
        Ratings sorted by user then item, with integer ids 0..n-1 as the raw ids.
    """
    _check_sizes(n_users, n_items, n_ratings, min_per_user)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scale = (float(rating_scale[0]), float(rating_scale[1]))
    user_idx, item_idx = _observed_pairs(
        n_users,
        n_items,
        n_ratings,
        user_skew=user_skew,
        item_skew=item_skew,
        min_per_user=min_per_user,
        rng=rng,
    )
    model = _Model.draw(n_users, n_items, rank, scale, rng)
    rating = np.empty(n_ratings, dtype=np.float32)
    noise_scale = np.float32(noise * (scale[1] - scale[0]) / 4.0)
    for a in range(0, n_ratings, _CHUNK):
        u, i = user_idx[a : a + _CHUNK], item_idx[a : a + _CHUNK]
        s = model.score(u, i)
        if noise:
            s += rng.standard_normal(len(s), dtype=np.float32) * noise_scale
        rating[a : a + _CHUNK] = _quantise(s, scale, rating_step)
    logger.debug("synthetic: %d users x %d items, %d ratings", n_users, n_items, n_ratings)
    return Ratings(
        user_idx=user_idx,
        item_idx=item_idx,
        rating=rating,
        users=IdIndex(np.arange(n_users, dtype=np.int64)),
        items=IdIndex(np.arange(n_items, dtype=np.int64)),
        rating_scale=scale,
    )


@overload
def low_rank(
    n_users: int = ...,
    n_items: int = ...,
    rank: int = ...,
    *,
    density: float = ...,
    noise: float = ...,
    seed: int | np.random.Generator = ...,
    rating_scale: tuple[float, float] = ...,
    rating_step: float | None = ...,
    return_truth: Literal[False] = ...,
) -> Ratings: ...


@overload
def low_rank(
    n_users: int = ...,
    n_items: int = ...,
    rank: int = ...,
    *,
    density: float = ...,
    noise: float = ...,
    seed: int | np.random.Generator = ...,
    rating_scale: tuple[float, float] = ...,
    rating_step: float | None = ...,
    return_truth: Literal[True],
) -> tuple[Ratings, np.ndarray]: ...


def low_rank(
    n_users: int = 300,
    n_items: int = 200,
    rank: int = 5,
    *,
    density: float = 0.2,
    noise: float = 0.0,
    seed: int | np.random.Generator = 0,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    rating_step: float | None = None,
    return_truth: bool = False,
) -> Ratings | tuple[Ratings, np.ndarray]:
    """A small set for model tests: uniformly observed entries of a biased rank-``rank`` matrix.

    The truth is ``mu + b_u + b_i + P Q^T``, shrunk affinely towards the middle of the scale if
    needed so that it lies inside the scale without clipping (its rank is at most ``rank + 3``);
    an observed rating is the truth plus Gaussian noise (std ``noise``), rounded to
    ``rating_step`` if given, clipped to the scale. About
    ``density`` of the cells are observed, every user and item at least once.

    Returns:
        The ratings, and with ``return_truth=True`` also the (n_users, n_items) float32 truth.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if n_users < 1 or n_items < 1:
        raise ValueError(f"need at least one user and one item, got {n_users} x {n_items}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scale = (float(rating_scale[0]), float(rating_scale[1]))
    model = _Model.draw(n_users, n_items, rank, scale, rng)
    # squeeze (affinely, so the rank stays <= rank + 3) into the scale instead of clipping
    mid, half = (scale[0] + scale[1]) / 2.0, (scale[1] - scale[0]) / 2.0
    dense = model.dense().astype(np.float64)
    spread = float(np.abs(dense - mid).max())
    truth = (mid + (dense - mid) * min(1.0, half / spread if spread else 1.0)).astype(np.float32)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    user_idx, item_idx = np.nonzero(mask)
    values = truth[user_idx, item_idx].astype(np.float64)
    if noise:
        values = values + rng.standard_normal(len(values)) * noise
    ratings = Ratings(
        user_idx=user_idx.astype(np.int32),
        item_idx=item_idx.astype(np.int32),
        rating=_quantise(values, scale, rating_step),
        users=IdIndex(np.arange(n_users, dtype=np.int64)),
        items=IdIndex(np.arange(n_items, dtype=np.int64)),
        rating_scale=scale,
    )
    return (ratings, truth) if return_truth else ratings
