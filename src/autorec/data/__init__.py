"""Rating data: parsing, validation, splits and synthetic data."""

from __future__ import annotations

from autorec.data.download import ARCHIVES, download_dataset
from autorec.data.loaders import (
    KNOWN_DATASETS,
    DatasetInfo,
    LoadedDataset,
    dataset_files,
    load_dataset,
    load_file,
    official_split,
    resolve_data_dir,
)
from autorec.data.ratings import IdIndex, Ratings
from autorec.data.split import Split, holdout_validation, kfold, paper_split, random_split
from autorec.data.synthetic import SYNTHETIC_PRESETS, low_rank, synthetic_preset, synthetic_ratings

__all__ = [
    "ARCHIVES",
    "KNOWN_DATASETS",
    "SYNTHETIC_PRESETS",
    "DatasetInfo",
    "IdIndex",
    "LoadedDataset",
    "Ratings",
    "Split",
    "dataset_files",
    "download_dataset",
    "holdout_validation",
    "kfold",
    "load_dataset",
    "load_file",
    "low_rank",
    "official_split",
    "paper_split",
    "random_split",
    "resolve_data_dir",
    "synthetic_preset",
    "synthetic_ratings",
]
