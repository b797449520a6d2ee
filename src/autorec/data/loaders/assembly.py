"""From parsed rows to :class:`~autorec.data.ratings.Ratings`: vocabularies and duplicates.

Vocabularies: integer ids are sorted ascending (so ML-1M item index k is the k-th smallest rated
MovieID); string ids keep the order of first appearance.
"""

from __future__ import annotations

import logging

import numpy as np

from autorec.data.loaders.rows import Locator, Rows
from autorec.data.ratings import IdIndex, Ratings
from autorec.errors import DataError

logger = logging.getLogger(__name__)


def raw_id(vocabulary: np.ndarray, idx: int) -> int | str:
    """The raw id at ``idx`` as a Python int or str, so that a message shows ``9``, not
    ``np.int64(9)``."""
    return vocabulary[idx].item()


def _vocabulary(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary, int32 index of every entry). Integers sorted; strings by first appearance."""
    if raw.dtype.kind in "iu":
        n = len(raw)
        lo, hi = int(raw.min()), int(raw.max())
        if lo >= 0 and hi < max(4 * n, 1 << 22):
            present = np.zeros(hi + 1, dtype=bool)
            present[raw] = True
            lookup = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
            return np.flatnonzero(present).astype(np.int64), lookup[raw]
        vocab, inverse = np.unique(raw.astype(np.int64), return_inverse=True)
        return vocab, inverse.astype(np.int32)
    vocab, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return vocab[order], rank[inverse.ravel()]


def _resolve_duplicates(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray,
    n_items: int,
    policy: str,
    locate: Locator,
    users: np.ndarray,
    items: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(rows to keep in file order, their ratings) or (None, None) when there is no duplicate."""
    key = user_idx.astype(np.int64) * n_items + item_idx
    if bool((key[1:] > key[:-1]).all()):
        return None, None  # sorted by user, then item (ML-20M/25M files): no pair twice
    key.sort()  # in place: a second copy of 8 bytes a rating is not needed for the common case
    if not bool((key[1:] == key[:-1]).any()):
        return None, None
    key = user_idx.astype(np.int64) * n_items + item_idx
    order = np.argsort(key, kind="stable")
    sk = key[order]
    del key
    same_as_next = sk[1:] == sk[:-1]
    if policy == "error":
        at = np.flatnonzero(same_as_next)
        j = at[np.argmin(order[at + 1])]
        a, b = int(order[j]), int(order[j + 1])
        (file_a, line_a), (file_b, line_b) = locate(a), locate(b)
        place = (
            f"{file_a}, lines {line_a} and {line_b}"
            if file_a == file_b
            else f"{file_a}, line {line_a} and {file_b}, line {line_b}"
        )
        raise DataError(
            f"{place}: duplicate rating of item {raw_id(items, item_idx[a])!r} by user "
            f"{raw_id(users, user_idx[a])!r}; use duplicates 'last' or 'mean' (--duplicates) to "
            f"accept it"
        )
    is_last = np.ones(len(sk), dtype=bool)
    is_last[:-1] = ~same_as_next
    keep = order[is_last]
    if policy == "last":
        keep.sort()
        return keep, rating[keep]
    is_first = np.ones(len(sk), dtype=bool)
    is_first[1:] = ~same_as_next
    group = np.cumsum(is_first) - 1
    sums = np.bincount(group, weights=rating[order].astype(np.float64))
    counts = np.bincount(group)
    mean = sums / counts
    perm = np.argsort(keep)
    return keep[perm], mean[perm]


def assemble(
    rows: Rows,
    scale: tuple[float, float] | None,
    duplicates: str,
    source: str,
) -> tuple[Ratings, int]:
    if rows.n == 0:
        raise DataError(f"{source}: the file holds no ratings")
    locate = rows.locator()
    rating = rows.column("rating")
    timestamp = rows.column("timestamp")
    users, user_idx = _vocabulary(rows.column("user"))
    items, item_idx = _vocabulary(rows.column("item"))
    assert rating is not None
    keep, kept_rating = _resolve_duplicates(
        user_idx, item_idx, rating, len(items), duplicates, locate, users, items
    )
    n_dropped = 0
    if keep is not None:
        assert kept_rating is not None
        n_dropped = len(rating) - len(keep)
        logger.info("%s: %d duplicate ratings dropped (policy %r)", source, n_dropped, duplicates)
        user_idx, item_idx = user_idx[keep], item_idx[keep]
        rating = kept_rating.astype(np.float32)
        timestamp = None if timestamp is None else timestamp[keep]
    if scale is None:
        scale = (float(rating.min()), float(rating.max()))
    ratings = Ratings(
        user_idx=user_idx,
        item_idx=item_idx,
        rating=rating,
        users=IdIndex(users),
        items=IdIndex(items),
        rating_scale=scale,
        timestamp=timestamp,
    )
    return ratings, n_dropped
