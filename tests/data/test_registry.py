"""The one table of named data sets: its entries, and that loaders and downloader both obey it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from autorec.data.loaders import load_dataset, official_split
from autorec.data.registry import (
    DEFAULT_COLUMNS,
    KNOWN_DATASETS,
    SYNTHETIC_PRESETS,
    SyntheticPreset,
    dataset_info,
    downloadable_names,
)
from autorec.errors import DataError
from tests.data.conftest import need


def test_every_movielens_entry_names_its_archive_and_format() -> None:
    for name, info in KNOWN_DATASETS.items():
        assert info.name == name
        if name == "netflix":
            assert info.archive is None and info.format == "netflix"
            continue
        assert info.format == "delimited" and info.columns == DEFAULT_COLUMNS
        assert info.archive.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        # the csv files of ML-20M and later have a header line (Harper & Konstan 2015)
        assert info.header == (info.files[0] == "ratings.csv")
        assert info.rating_step == (0.5 if info.rating_scale[0] == 0.5 else 1.0)
    assert downloadable_names() == [n for n in KNOWN_DATASETS if n != "netflix"]
    assert dataset_info("ML-1M") is KNOWN_DATASETS["ml-1m"]
    with pytest.raises(DataError, match="known names"):
        dataset_info("ml-2m")


def test_official_folds_are_those_of_ml100k_only() -> None:
    """ML-100K's README lists u1..u5 (five-fold) and ua, ub (ten test ratings a user)."""
    with_folds = {n: i.official_folds for n, i in KNOWN_DATASETS.items() if i.official_folds}
    assert with_folds == {"ml-100k": ("u1", "u2", "u3", "u4", "u5", "ua", "ub")}


def test_synthetic_presets_keep_their_sizes_and_scales() -> None:
    """The presets as they were before they were derived from the registry entries."""
    expected = {
        "tiny": SyntheticPreset(200, 150, 6_000, (1.0, 5.0), 1.0, 5),
        "ml-100k": SyntheticPreset(943, 1_682, 100_000, (1.0, 5.0), 1.0, 20),
        "ml-1m": SyntheticPreset(6_040, 3_706, 1_000_209, (1.0, 5.0), 1.0, 20),
        "ml-10m": SyntheticPreset(69_878, 10_677, 10_000_054, (0.5, 5.0), 0.5, 20),
        "netflix": SyntheticPreset(480_189, 17_770, 100_480_507, (1.0, 5.0), 1.0, 1),
    }
    got = {n: dataclasses.replace(p, description="") for n, p in SYNTHETIC_PRESETS.items()}
    assert got == expected


def test_a_new_entry_is_read_through_the_table(
    tmp_path: Path, write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format, folder, file, separator and folds come from the entry alone."""
    entry = dataclasses.replace(
        KNOWN_DATASETS["ml-1m"],
        name="mine",
        folder="my-set",
        files=("r.txt",),
        sep="|",
        official_folds=("f1",),
    )
    monkeypatch.setitem(KNOWN_DATASETS, "mine", entry)
    write(tmp_path / "my-set" / "r.txt", "1|5|4\n2|5|2\n1|6|3\n")
    write(tmp_path / "my-set" / "f1.base", "1|5|4\n2|5|2\n")
    write(tmp_path / "my-set" / "f1.test", "1|6|3\n")
    d = load_dataset("mine", data_dir=tmp_path)
    assert d.ratings.n_ratings == 3 and d.source == str(tmp_path / "my-set" / "r.txt")
    split = official_split("mine", "f1", data_dir=tmp_path)
    assert (split.train.n_ratings, split.test.n_ratings) == (2, 1)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ml-100k", "ml-1m"])
def test_published_sizes_match_the_real_files(shared_data_dir: Path, name: str) -> None:
    info = KNOWN_DATASETS[name]
    need(shared_data_dir, f"{info.folder}/{info.files[0]}")
    r = load_dataset(name, data_dir=shared_data_dir).ratings
    assert (r.n_users, r.n_items, r.n_ratings) == info.sizes
