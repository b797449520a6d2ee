"""Rating data: parsing, validation, splits and synthetic data."""

from __future__ import annotations

from autorec.data.download import download_dataset
from autorec.data.loaders import LoadedDataset, load_dataset, load_file, official_split
from autorec.data.ratings import IdIndex, Ratings
from autorec.data.registry import (
    KNOWN_DATASETS,
    SYNTHETIC_PRESETS,
    Archive,
    DatasetInfo,
    SyntheticPreset,
    dataset_files,
    resolve_data_dir,
)
from autorec.data.split import Split, holdout_validation, kfold, paper_split, random_split
from autorec.data.synthetic import low_rank, synthetic_preset, synthetic_ratings

__all__ = [
    "KNOWN_DATASETS",
    "SYNTHETIC_PRESETS",
    "Archive",
    "DatasetInfo",
    "IdIndex",
    "LoadedDataset",
    "Ratings",
    "Split",
    "SyntheticPreset",
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
