"""The one validated container every parser ends at: aligned index arrays plus vocabularies.

Raw ids (``user_id``, ``item_id``: whatever the file holds) are mapped once to contiguous
indices (``user_idx``, ``item_idx``: 0..n-1). Models only ever see indices; the
:class:`IdIndex` objects keep the mapping both ways so that the CLI and ``recommend`` can speak
raw ids again.

Memory is proportional to the number of ratings: int32 indices and float32 ratings, never a dense
matrix. :meth:`Ratings.csr` builds the compressed sparse row form in either orientation
(rows = users for U-AutoRec, rows = items for I-AutoRec).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Orientation = Literal["user", "item"]


class IdIndex:
    """Raw id <-> contiguous index vocabulary.

    Ids are kept as an int64 array when every id is an integer (MovieLens, Netflix), else as str.
    The order is the order of first appearance unless the caller passes sorted ids.
    """

    __slots__ = ("ids", "_lookup")

    def __init__(self, ids: Sequence[object] | np.ndarray) -> None:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
        if arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind in "OUS":
            arr = arr.astype(str)
        else:
            raise ValueError(f"ids must be integers or strings, got dtype {arr.dtype}")
        self.ids: np.ndarray = arr
        self._lookup: dict[object, int] | None = None
        if len(np.unique(arr)) != len(arr):
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdIndex)
            and self.ids.dtype.kind == other.ids.dtype.kind
            and np.array_equal(self.ids, other.ids)
        )

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)}, dtype={self.ids.dtype})"

    @property
    def is_integer(self) -> bool:
        return self.ids.dtype.kind == "i"

    def _table(self) -> dict[object, int]:
        if self._lookup is None:
            self._lookup = {v: i for i, v in enumerate(self.ids.tolist())}
        return self._lookup

    def coerce(self, raw_id: object) -> object:
        """Convert a raw id given as text (CLI) to this vocabulary's type."""
        if self.is_integer:
            try:
                return int(str(raw_id).strip())
            except ValueError:
                return None
        return str(raw_id)

    def index_of(self, raw_id: object) -> int:
        """Index of one raw id, or -1 when it is not in the vocabulary."""
        return self._table().get(self.coerce(raw_id), -1)

    def indices(self, raw_ids: Sequence[object] | np.ndarray) -> np.ndarray:
        """Indices (int32) of many raw ids; -1 marks an id not in the vocabulary."""
        table = self._table()
        return np.fromiter(
            (table.get(self.coerce(r), -1) for r in raw_ids), dtype=np.int32, count=len(raw_ids)
        )

    def to_list(self) -> list[object]:
        return self.ids.tolist()

    @classmethod
    def from_list(cls, ids: list[object]) -> IdIndex:
        if ids and all(isinstance(v, int) for v in ids):
            return cls(np.asarray(ids, dtype=np.int64))
        return cls(np.asarray([str(v) for v in ids], dtype=str))


@dataclass(frozen=True, eq=False)
class Ratings:
    """A set of explicit ratings over fixed user and item vocabularies.

    Attributes:
        user_idx: (n_ratings,) int32, index into ``users``.
        item_idx: (n_ratings,) int32, index into ``items``.
        rating: (n_ratings,) float32, finite and inside ``rating_scale``.
        users: vocabulary of raw user ids (n_users entries).
        items: vocabulary of raw item ids (n_items entries).
        rating_scale: (low, high) of the data set, used to clip predictions.
        timestamp: optional (n_ratings,) int64.

    The vocabularies may hold users or items with no rating in this particular set: splits of one
    data set share the vocabularies of the whole set, so indices mean the same thing in train,
    validation and test, and "not seen in training" is a property of the train split, not an index.

    Raises:
        ValueError: misaligned arrays, an index out of range, a non-finite rating or one outside
            the scale; the message names the field and the first offending position and value.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    users: IdIndex
    items: IdIndex
    rating_scale: tuple[float, float]
    timestamp: np.ndarray | None = None
    _csr_cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_idx", np.ascontiguousarray(self.user_idx, dtype=np.int32))
        object.__setattr__(self, "item_idx", np.ascontiguousarray(self.item_idx, dtype=np.int32))
        object.__setattr__(self, "rating", np.ascontiguousarray(self.rating, dtype=np.float32))
        low, high = (float(self.rating_scale[0]), float(self.rating_scale[1]))
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            # low, high: Python floats, so numpy scalars do not print as np.float64(5.0)
            raise ValueError(f"rating_scale must be finite with low <= high, got ({low}, {high})")
        object.__setattr__(self, "rating_scale", (low, high))
        n = len(self.rating)
        for name in ("user_idx", "item_idx"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries but rating has {n}"
                )
        if self.timestamp is not None:
            ts = np.ascontiguousarray(self.timestamp, dtype=np.int64)
            if len(ts) != n:
                raise ValueError(f"timestamp has {len(ts)} entries but rating has {n}")
            object.__setattr__(self, "timestamp", ts)
        for name, bound in (("user_idx", self.n_users), ("item_idx", self.n_items)):
            arr = getattr(self, name)
            bad = np.flatnonzero((arr < 0) | (arr >= bound))
            if len(bad):
                raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is outside 0..{bound - 1}")
        bad = np.flatnonzero(~np.isfinite(self.rating))
        if len(bad):
            raise ValueError(f"rating[{bad[0]}] = {self.rating[bad[0]]} is not finite")
        bad = np.flatnonzero((self.rating < low) | (self.rating > high))
        if len(bad):
            raise ValueError(
                f"rating[{bad[0]}] = {self.rating[bad[0]]} is outside the rating scale "
                f"{low}..{high}"
            )

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_ratings(self) -> int:
        return len(self.rating)

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.n_ratings / cells if cells else 0.0

    def __len__(self) -> int:
        return self.n_ratings

    def __repr__(self) -> str:
        return (
            f"Ratings(n_users={self.n_users}, n_items={self.n_items}, "
            f"n_ratings={self.n_ratings}, rating_scale={self.rating_scale})"
        )

    # -- derived views -----------------------------------------------------------------------
    def subset(self, selector: np.ndarray) -> Ratings:
        """The ratings at ``selector`` (boolean mask or positions), with the same vocabularies."""
        return Ratings(
            user_idx=self.user_idx[selector],
            item_idx=self.item_idx[selector],
            rating=self.rating[selector],
            users=self.users,
            items=self.items,
            rating_scale=self.rating_scale,
            timestamp=None if self.timestamp is None else self.timestamp[selector],
        )

    def merge(self, other: Ratings) -> Ratings:
        """This set's ratings followed by ``other``'s (e.g. train + validation for the retrain).

        Both must share the vocabularies and the rating scale, so that indices keep their meaning.
        Timestamps are kept when both sets have them, else dropped.

        Raises:
            ValueError: different vocabularies or rating scales.
        """
        if self.users != other.users or self.items != other.items:
            raise ValueError("cannot merge ratings with different vocabularies")
        if self.rating_scale != other.rating_scale:
            raise ValueError(
                f"cannot merge ratings with different rating scales {self.rating_scale} and "
                f"{other.rating_scale}"
            )
        timestamp = None
        if self.timestamp is not None and other.timestamp is not None:
            timestamp = np.concatenate([self.timestamp, other.timestamp])
        return Ratings(
            user_idx=np.concatenate([self.user_idx, other.user_idx]),
            item_idx=np.concatenate([self.item_idx, other.item_idx]),
            rating=np.concatenate([self.rating, other.rating]),
            users=self.users,
            items=self.items,
            rating_scale=self.rating_scale,
            timestamp=timestamp,
        )

    def user_counts(self) -> np.ndarray:
        """(n_users,) number of ratings of each user in this set."""
        return np.bincount(self.user_idx, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """(n_items,) number of ratings of each item in this set."""
        return np.bincount(self.item_idx, minlength=self.n_items)

    def rating_values(self) -> np.ndarray:
        """The distinct rating values present, sorted (e.g. 1..5, or half stars)."""
        return np.unique(self.rating)

    def csr(self, rows: Orientation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Compressed sparse rows with ``rows`` = "user" (U-AutoRec) or "item" (I-AutoRec).

        Returns:
            indptr (n_rows + 1,) int64, indices (n_ratings,) int32 column index,
            values (n_ratings,) float32, and order (n_ratings,) int64 such that
            ``values == rating[order]``. Columns are sorted within each row. Built once and
            cached, since both training and evaluation ask for it.
        """
        if rows not in ("user", "item"):
            raise ValueError(f"rows must be 'user' or 'item', got {rows!r}")
        if rows not in self._csr_cache:
            row_idx, col_idx, n_rows = (
                (self.user_idx, self.item_idx, self.n_users)
                if rows == "user"
                else (self.item_idx, self.user_idx, self.n_items)
            )
            order = np.lexsort((col_idx, row_idx)).astype(np.int64)
            counts = np.bincount(row_idx, minlength=n_rows)
            indptr = np.zeros(n_rows + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            self._csr_cache[rows] = (
                indptr,
                np.ascontiguousarray(col_idx[order]),
                np.ascontiguousarray(self.rating[order]),
                order,
            )
        return self._csr_cache[rows]

    def has_duplicates(self) -> bool:
        key = self.user_idx.astype(np.int64) * self.n_items + self.item_idx
        key.sort()  # numpy 2's hash-based np.unique is ~100x slower than a sort on int64
        return bool((key[1:] == key[:-1]).any())
