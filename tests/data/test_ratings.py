"""The Ratings container and IdIndex vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from autorec.data import IdIndex, Ratings


def make(user_idx, item_idx, rating, n_users=3, n_items=4, scale=(1.0, 5.0), **kw) -> Ratings:
    return Ratings(
        np.asarray(user_idx),
        np.asarray(item_idx),
        np.asarray(rating, dtype=float),
        IdIndex(np.arange(n_users) + 100),
        IdIndex(np.arange(n_items) + 200),
        scale,
        **kw,
    )


def test_idindex_integer_and_string_ids() -> None:
    ints = IdIndex(np.array([30, 10, 20]))
    assert ints.is_integer and ints.index_of(10) == 1 and ints.index_of("20") == 2
    assert ints.index_of(99) == -1 and ints.index_of("abc") == -1
    assert ints.indices([20, 30, 5]).tolist() == [2, 0, -1]
    strs = IdIndex(["b", "a"])
    assert not strs.is_integer and strs.index_of("a") == 1 and strs.index_of(1) == -1
    assert IdIndex.from_list(ints.to_list()) == ints and IdIndex.from_list(["b", "a"]) == strs
    assert ints != IdIndex(np.array([30, 10, 21]))
    with pytest.raises(ValueError, match="unique"):
        IdIndex([1, 1])


def test_dtypes_and_sizes() -> None:
    r = make([0, 2, 2], [1, 3, 0], [5, 1, 2])
    assert r.user_idx.dtype == np.int32 and r.item_idx.dtype == np.int32
    assert r.rating.dtype == np.float32
    assert (r.n_users, r.n_items, r.n_ratings, len(r)) == (3, 4, 3, 3)
    assert r.density == 3 / 12
    assert r.user_counts().tolist() == [1, 0, 2] and r.item_counts().tolist() == [1, 1, 0, 1]
    assert r.rating_values().tolist() == [1, 2, 5]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(user_idx=[0, 3], item_idx=[0, 0], rating=[1, 1]), "user_idx"),
        (dict(user_idx=[0, 0], item_idx=[0, -1], rating=[1, 1]), "item_idx"),
        (dict(user_idx=[0, 1], item_idx=[0, 0], rating=[1, np.nan]), "not finite"),
        (dict(user_idx=[0, 1], item_idx=[0, 0], rating=[1, 6]), "rating scale"),
        (dict(user_idx=[0], item_idx=[0, 0], rating=[1, 1]), "entries"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_csr_both_orientations() -> None:
    r = make([2, 0, 2, 1], [3, 1, 0, 3], [4, 5, 1, 2])
    dense = np.zeros((3, 4))
    dense[r.user_idx, r.item_idx] = r.rating
    for rows, matrix in (("user", dense), ("item", dense.T)):
        indptr, indices, values, order = r.csr(rows)
        rebuilt = np.zeros_like(matrix)
        for row in range(matrix.shape[0]):
            cols = indices[indptr[row] : indptr[row + 1]]
            assert np.all(np.diff(cols) > 0)
            rebuilt[row, cols] = values[indptr[row] : indptr[row + 1]]
        assert np.array_equal(rebuilt, matrix)
        assert np.array_equal(values, r.rating[order])
    with pytest.raises(ValueError):
        r.csr("rows")  # type: ignore[arg-type]


def test_subset_keeps_vocabularies_and_timestamps() -> None:
    r = make([0, 1, 2], [0, 1, 2], [1, 2, 3], timestamp=np.array([7, 8, 9]))
    s = r.subset(np.array([True, False, True]))
    assert s.users is r.users and s.items is r.items
    assert s.rating.tolist() == [1, 3] and s.timestamp.tolist() == [7, 9]


def test_has_duplicates() -> None:
    assert not make([0, 0, 1], [0, 1, 0], [1, 1, 1]).has_duplicates()
    assert make([0, 1, 0], [1, 0, 1], [1, 1, 1]).has_duplicates()


def test_merge_appends_over_the_same_vocabularies() -> None:
    a = make([0, 1], [0, 1], [1, 2], timestamp=np.array([7, 8]))
    b = a.subset(np.array([False, True])).merge(a.subset(np.array([True, False])))
    assert b.users is a.users and b.items is a.items and b.rating_scale == a.rating_scale
    assert b.user_idx.tolist() == [1, 0] and b.item_idx.tolist() == [1, 0]
    assert b.rating.tolist() == [2, 1] and b.timestamp.tolist() == [8, 7]
    # one side without timestamps: the merged set has none rather than misaligned ones
    c = make([2], [3], [5])  # equal vocabularies, other objects
    assert a.merge(c).timestamp is None and a.merge(c).rating.tolist() == [1, 2, 5]


def test_merge_refuses_other_vocabularies_or_scales() -> None:
    a = make([0], [0], [1])
    with pytest.raises(ValueError, match="vocabularies"):
        a.merge(make([0], [0], [1], n_items=5))
    with pytest.raises(ValueError, match="rating scales"):
        a.merge(make([0], [0], [1], scale=(0.5, 5.0)))


def test_validation_messages_show_plain_numbers() -> None:
    """A tuple of numpy scalars prints as (np.float64(5.0), ...); the message says (5.0, 1.0)."""
    with pytest.raises(ValueError) as e:
        make([0], [0], [1], scale=(np.float64(5), np.float64(1)))
    assert str(e.value) == "rating_scale must be finite with low <= high, got (5.0, 1.0)"
    with pytest.raises(ValueError) as e:
        make([0, 7], [0, 0], [1, 1])
    assert str(e.value) == "user_idx[1] = 7 is outside 0..2"
