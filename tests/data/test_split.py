"""Splits: determinism, disjointness and coverage; the official ML-100K folds on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autorec.data import Ratings, Split, holdout_validation, kfold, paper_split, random_split
from autorec.data.loaders import load_dataset, load_file, official_split
from autorec.data.split import union_split, with_validation
from autorec.data.synthetic import synthetic_ratings
from autorec.errors import DataError
from tests.data.conftest import need


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    return synthetic_ratings(200, 150, 5_001, seed=0)


def keys(r: Ratings) -> np.ndarray:
    return r.user_idx.astype(np.int64) * r.n_items + r.item_idx


def parts(split: Split) -> list[Ratings]:
    return [p for p in (split.train, split.val, split.test) if p is not None]


def assert_partition(whole: Ratings, split: Split) -> None:
    """Disjoint parts that together hold every rating once, with the whole set's vocabularies."""
    all_keys = np.concatenate([keys(p) for p in parts(split)])
    assert len(all_keys) == whole.n_ratings
    assert np.array_equal(np.sort(all_keys), np.sort(keys(whole)))
    for p in parts(split):
        assert p.users == whole.users and p.items == whole.items
        assert p.rating_scale == whole.rating_scale


def test_paper_split_sizes_and_partition(ratings: Ratings) -> None:
    split = paper_split(ratings, seed=1)
    assert_partition(ratings, split)
    n_test = round(0.1 * 5_001)
    assert split.test.n_ratings == n_test
    assert split.val.n_ratings == round(0.1 * (5_001 - n_test))
    # a rating keeps its value in its part
    lookup = dict(zip(keys(ratings).tolist(), ratings.rating.tolist(), strict=True))
    assert all(
        lookup[k] == v
        for k, v in zip(keys(split.test).tolist(), split.test.rating.tolist(), strict=True)
    )


def test_paper_split_determinism(ratings: Ratings) -> None:
    a, b, c = (paper_split(ratings, seed=s) for s in (7, 7, 8))
    for x, y in zip(parts(a), parts(b), strict=True):
        assert np.array_equal(keys(x), keys(y))
    assert not np.array_equal(keys(a.test), keys(c.test))


def test_kfold_each_rating_tested_once(ratings: Ratings) -> None:
    folds = list(kfold(ratings, 5, seed=3))
    assert len(folds) == 5
    for split in folds:
        assert_partition(ratings, split)
    tested = np.concatenate([keys(s.test) for s in folds])
    assert np.array_equal(np.sort(tested), np.sort(keys(ratings)))
    sizes = [s.test.n_ratings for s in folds]
    assert max(sizes) - min(sizes) <= 1
    again = list(kfold(ratings, 5, seed=3))
    assert all(
        np.array_equal(keys(x.test), keys(y.test)) for x, y in zip(folds, again, strict=True)
    )
    other = next(kfold(ratings, 5, seed=4))
    assert not np.array_equal(keys(folds[0].test), keys(other.test))


def test_random_split_and_holdout(ratings: Ratings) -> None:
    split = random_split(ratings, 0.2, seed=0)
    assert_partition(ratings, split)
    assert split.test.n_ratings == round(0.2 * 5_001)
    inner = holdout_validation(split.train, 0.1, seed=0)
    assert inner.train.n_ratings + inner.test.n_ratings == split.train.n_ratings
    assert np.array_equal(keys(random_split(ratings, 0.2, seed=0).test), keys(split.test))


def test_bad_fractions(ratings: Ratings) -> None:
    with pytest.raises(ValueError):
        paper_split(ratings, test_fraction=1.0)
    with pytest.raises(ValueError):
        list(kfold(ratings, 1))


# ---------------------------------------------------------------------------------------------
# official ML-100K folds
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(
    ("fold", "n_train", "n_test"),
    [
        ("u1", 80_000, 20_000),
        ("u2", 80_000, 20_000),
        ("u3", 80_000, 20_000),
        ("u4", 80_000, 20_000),
        ("u5", 80_000, 20_000),
        ("ua", 90_570, 9_430),
        ("ub", 90_570, 9_430),
    ],
)
def test_official_folds(shared_data_dir: Path, fold: str, n_train: int, n_test: int) -> None:
    need(shared_data_dir, f"ml-100k/{fold}.test")
    full = load_dataset("ml-100k", data_dir=shared_data_dir).ratings
    split = official_split("ml-100k", fold, data_dir=shared_data_dir)
    assert (split.train.n_ratings, split.test.n_ratings) == (n_train, n_test)
    assert split.val is None
    assert split.train.users == full.users and split.train.items == full.items
    assert_partition(full, split)
    # same ratings at the same indices as in u.data
    lookup = dict(zip(keys(full).tolist(), full.rating.tolist(), strict=True))
    for part in (split.train, split.test):
        assert all(
            lookup[k] == v for k, v in zip(keys(part).tolist(), part.rating.tolist(), strict=True)
        )
    if fold in ("ua", "ub"):
        assert set(split.test.user_counts().tolist()) == {10}


@pytest.mark.realdata
def test_official_u_test_sets_cover_u_data(shared_data_dir: Path) -> None:
    need(shared_data_dir, "ml-100k/u5.test")
    full = load_dataset("ml-100k", data_dir=shared_data_dir).ratings
    tests = np.concatenate(
        [
            keys(official_split("ml-100k", f"u{k}", data_dir=shared_data_dir).test)
            for k in range(1, 6)
        ]
    )
    assert np.array_equal(np.sort(tests), np.sort(keys(full)))


def test_official_split_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no official splits"):
        official_split("ml-1m", "u1")
    with pytest.raises(DataError, match="u1, u2"):
        official_split("ml-100k", "u9")
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(DataError, match="u1.base"):
        official_split("ml-100k", "u1", data_dir=tmp_path)


def test_official_split_on_small_files(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("5\t7\t3\t1\n2\t7\t4\t2\n5\t9\t1\t3\n")
    (folder / "ua.base").write_text("2\t7\t4\t2\n5\t9\t1\t3\n")
    (folder / "ua.test").write_text("5\t7\t3\t1\n")
    split = official_split("ml-100k", "ua", data_dir=tmp_path)
    assert split.train.users.ids.tolist() == [2, 5]
    assert split.test.user_idx.tolist() == [1] and split.test.item_idx.tolist() == [0]
    (folder / "ua.test").write_text("6\t7\t3\t1\n")
    with pytest.raises(DataError, match="user 6 is not in"):
        official_split("ml-100k", "ua", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# fixed splits: validation carved from a given train, union vocabularies of two files
# ---------------------------------------------------------------------------------------------
def test_with_validation_carves_ten_percent_of_train_and_keeps_test(ratings: Ratings) -> None:
    fixed = random_split(ratings, 0.2, seed=3)
    carved = with_validation(fixed, seed=7)
    assert carved.test is fixed.test
    # round(0.1 * 4001) = 400 of the train ratings, the rest stays train
    assert (carved.val.n_ratings, carved.train.n_ratings) == (400, fixed.train.n_ratings - 400)
    assert np.array_equal(
        np.sort(np.concatenate([keys(carved.train), keys(carved.val)])), np.sort(keys(fixed.train))
    )
    again = with_validation(fixed, seed=7)
    assert np.array_equal(keys(again.val), keys(carved.val))
    assert not np.array_equal(keys(with_validation(fixed, seed=8).val), keys(carved.val))
    with pytest.raises(ValueError, match="already has a validation set"):
        with_validation(carved, seed=0)


def test_union_split_reindexes_both_files_over_the_union(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("u1,a,5\nu2,b,3\nu1,b,4\n")
    # u3 and item c only in test; u2 rates a only in test (both known: not cold)
    (tmp_path / "test.csv").write_text("u3,a,2\nu2,a,1\nu1,c,4\n")
    train = load_file(tmp_path / "train.csv").ratings
    test = load_file(tmp_path / "test.csv").ratings
    split = union_split(train, test)
    assert split.train.users.to_list() == ["u1", "u2", "u3"]
    assert split.train.items.to_list() == ["a", "b", "c"]
    assert split.test.users == split.train.users and split.test.items == split.train.items
    # train keeps its indices; the test pairs are (u3, a), (u2, a), (u1, c)
    assert split.train.user_idx.tolist() == train.user_idx.tolist()
    assert split.test.user_idx.tolist() == [2, 1, 0]
    assert split.test.item_idx.tolist() == [0, 0, 2]
    assert split.test_unseen.tolist() == [True, False, True]
    # scales: train's data spans 3..5, test's 1..4 -> the union 1..5
    assert split.train.rating_scale == split.test.rating_scale == (1.0, 5.0)


def test_union_split_joins_integer_and_text_ids_as_text(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("1,10,5\n2,10,3\n")
    (tmp_path / "test.csv").write_text("1,10,4\nx,10,2\n")
    split = union_split(
        load_file(tmp_path / "train.csv").ratings, load_file(tmp_path / "test.csv").ratings
    )
    assert split.train.users.to_list() == ["1", "2", "x"]  # "1" in both files is one user
    assert split.test.user_idx.tolist() == [0, 2]
