"""Train / validation / test splits of a :class:`Ratings` set.

All splits are functions of an explicit seed (``numpy.random.default_rng``, PCG64: the same
permutation on every platform). Every split keeps the data set's vocabularies, so an index means
the same user or item in every part. A test rating whose user or item has no training rating is
kept, never dropped; :attr:`Split.test_unseen` flags it and the model's fallback answers it
(Sedhain et al. 2015 predict the default rating 3 for those).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from autorec.data.ratings import IdIndex, Ratings

Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@dataclass(frozen=True, eq=False)
class Split:
    """A split of one data set. ``val`` is None when no validation set was held out."""

    train: Ratings
    test: Ratings
    val: Ratings | None = None

    def unseen(self, part: Ratings) -> np.ndarray:
        """(len(part),) bool: the rating's user or item has no rating in ``train``."""
        user_seen = self.train.user_counts() > 0
        item_seen = self.train.item_counts() > 0
        return ~(user_seen[part.user_idx] & item_seen[part.item_idx])

    @property
    def test_unseen(self) -> np.ndarray:
        return self.unseen(self.test)

    def summary(self) -> dict[str, int]:
        return {
            "n_train": self.train.n_ratings,
            "n_val": 0 if self.val is None else self.val.n_ratings,
            "n_test": self.test.n_ratings,
            "n_test_unseen": int(self.test_unseen.sum()),
        }


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def random_split(ratings: Ratings, test_fraction: float = 0.1, *, seed: Seed = 0) -> Split:
    """Uniformly random split of the ratings: round(test_fraction * n) of them go to test."""
    _check_fraction("test_fraction", test_fraction)
    perm = _rng(seed).permutation(ratings.n_ratings)
    n_test = int(round(test_fraction * ratings.n_ratings))
    return Split(
        train=ratings.subset(np.sort(perm[n_test:])),
        test=ratings.subset(np.sort(perm[:n_test])),
    )


def paper_split(
    ratings: Ratings,
    *,
    seed: Seed = 0,
    test_fraction: float = 0.1,
    val_fraction: float = 0.1,
) -> Split:
    """The protocol of Sedhain et al. (2015), Sec. 3.

    A random ``test_fraction`` (paper: 10%) of all ratings is the test set; a random
    ``val_fraction`` (paper: 10%) of the remaining training ratings is held out as validation
    for hyperparameter selection and early stopping. Same seed, same three sets.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    rng = _rng(seed)
    perm = rng.permutation(ratings.n_ratings)
    n_test = int(round(test_fraction * ratings.n_ratings))
    rest = perm[n_test:]
    n_val = int(round(val_fraction * len(rest)))
    return Split(
        train=ratings.subset(np.sort(rest[n_val:])),
        val=ratings.subset(np.sort(rest[:n_val])),
        test=ratings.subset(np.sort(perm[:n_test])),
    )


def kfold(ratings: Ratings, n_folds: int = 5, *, seed: Seed = 0) -> Iterator[Split]:
    """K-fold cross-validation over ratings: each rating is in exactly one test fold."""
    if not 2 <= n_folds <= ratings.n_ratings:
        raise ValueError(f"n_folds must be in 2..{ratings.n_ratings}, got {n_folds}")
    perm = _rng(seed).permutation(ratings.n_ratings)
    folds = np.array_split(perm, n_folds)
    for k in range(n_folds):
        test = np.sort(folds[k])
        train = np.sort(np.concatenate([folds[j] for j in range(n_folds) if j != k]))
        yield Split(train=ratings.subset(train), test=ratings.subset(test))


def holdout_validation(train: Ratings, val_fraction: float = 0.1, *, seed: Seed = 0) -> Split:
    """Split a training set further into train and validation (``Split.test`` is the validation)."""
    return random_split(train, val_fraction, seed=seed)


def with_validation(split: Split, *, seed: Seed = 0, val_fraction: float = 0.1) -> Split:
    """A fixed train/test split with a random ``val_fraction`` (paper: 10%) of its train held
    out as validation, drawn with ``seed`` exactly as :func:`paper_split` draws its validation
    from the rest: the test set is never touched."""
    _check_fraction("val_fraction", val_fraction)
    if split.val is not None:
        raise ValueError("the split already has a validation set")
    train = split.train
    perm = _rng(seed).permutation(train.n_ratings)
    n_val = int(round(val_fraction * train.n_ratings))
    return Split(
        train=train.subset(np.sort(perm[n_val:])),
        val=train.subset(np.sort(perm[:n_val])),
        test=split.test,
    )


def _union_vocabulary(a: IdIndex, b: IdIndex) -> IdIndex:
    """``a``'s ids in their order, then ``b``'s ids that ``a`` lacks, in ``b``'s order. Integer
    ids stay integers only when both sides are integers (``7`` and ``"7"`` are one id)."""
    if a.is_integer != b.is_integer:
        a, b = IdIndex(a.ids.astype(str)), IdIndex(b.ids.astype(str))
    extra = b.ids[a.indices(b.ids) < 0]
    return IdIndex(np.concatenate([a.ids, extra]))


def union_split(train: Ratings, test: Ratings) -> Split:
    """A split of two separately loaded rating sets (``--train A --test B``), both re-indexed
    over the union of their vocabularies (train's ids keep their indices; ids only the test set
    has follow) and over the union of their rating scales. A test rating whose user or item has
    no training rating is kept: the model's fallback answers it (:attr:`Split.test_unseen`)."""
    users = _union_vocabulary(train.users, test.users)
    items = _union_vocabulary(train.items, test.items)
    scale = (
        min(train.rating_scale[0], test.rating_scale[0]),
        max(train.rating_scale[1], test.rating_scale[1]),
    )

    def reindexed(part: Ratings) -> Ratings:
        return Ratings(
            users.indices(part.users.ids)[part.user_idx],
            items.indices(part.items.ids)[part.item_idx],
            part.rating,
            users,
            items,
            scale,
            part.timestamp,
        )

    return Split(train=reindexed(train), test=reindexed(test))
