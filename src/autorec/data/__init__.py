"""Rating data: parsing, validation, splits and synthetic data."""

from __future__ import annotations

from autorec.data.ratings import IdIndex, Ratings
from autorec.data.split import Split, holdout_validation, kfold, paper_split, random_split

__all__ = [
    "IdIndex",
    "Ratings",
    "Split",
    "holdout_validation",
    "kfold",
    "paper_split",
    "random_split",
]
