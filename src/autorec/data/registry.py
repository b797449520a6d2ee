"""The one table of named data sets: where their files live, how they are written, where their
official archive comes from, their official folds; and the synthetic presets that mimic them.

Both the loaders (:mod:`autorec.data.loaders`) and the downloader (:mod:`autorec.data.download`)
read this module and nothing of each other's, so a new data set is one entry here.

MovieLens (Harper & Konstan 2015, "The MovieLens Datasets: History and Context", ACM TiiS 5(4)):
the archives live at ``https://files.grouplens.org/datasets/movielens/``; their sizes and SHA-256
digests are pinned (source: TensorFlow Datasets' ``url_checksums/movielens.txt`` and GroupLens'
``.md5`` side files, collected in the project's data notes). ``ml-latest.zip`` is rebuilt by
GroupLens from time to time and has no stable digest (``sha256=None``). The Netflix Prize data
(Bennett & Lanning 2007, "The Netflix Prize", KDD Cup workshop) has no official download any more
(``archive=None``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autorec.errors import DataError

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/"

#: The columns of every named delimited set, and the default of custom files.
DEFAULT_COLUMNS: tuple[str, ...] = ("user", "item", "rating", "timestamp")

Format = Literal["delimited", "netflix"]


@dataclass(frozen=True)
class Archive:
    """An official archive: file name, pinned size and SHA-256 (None: not pinned), and the
    folder URL it is served from."""

    filename: str
    size: int | None
    sha256: str | None
    base_url: str = MOVIELENS_URL

    @property
    def url(self) -> str:
        return self.base_url + self.filename


@dataclass(frozen=True)
class DatasetInfo:
    """A named data set: where its ratings live under the data directory and how they are written.

    Attributes:
        name: registry key, e.g. ``"ml-1m"``.
        folder: the folder the official archive extracts to, under the data directory.
        files: candidate file patterns relative to ``folder`` (globs allowed); the first pattern
            that matches at least one file is read.
        format: ``"delimited"`` or ``"netflix"`` (the reader the loaders dispatch to).
        sep: field separator of the delimited format.
        header: whether the first line is a header.
        columns: the fields of a line, in order (a trailing timestamp may be absent).
        rating_scale: the official (low, high) scale.
        rating_step: the distance between two rating values (1 star, or half stars).
        archive: the official archive (None: cannot be downloaded).
        official_folds: names of the official train/test splits ``<fold>.base`` and
            ``<fold>.test`` in ``folder``, which use the same format as the ratings.
        sizes: (n_users, n_items, n_ratings) as published with the set; None when the set is
            rebuilt from time to time.
        description: one line for listings.
    """

    name: str
    folder: str
    files: tuple[str, ...]
    format: Format
    sep: str
    header: bool
    columns: tuple[str, ...]
    rating_scale: tuple[float, float]
    rating_step: float
    archive: Archive | None
    official_folds: tuple[str, ...]
    sizes: tuple[int, int, int] | None
    description: str


def _movielens(
    name: str,
    folder: str,
    file: str,
    sep: str,
    scale: tuple[float, float],
    archive: tuple[int, str] | None,
    sizes: tuple[int, int, int] | None,
    description: str,
    *,
    folds: tuple[str, ...] = (),
) -> DatasetInfo:
    """A MovieLens entry: one delimited file; a ``.csv`` has a header line; half stars when the
    scale starts at 0.5; ``archive`` is the pinned (size, sha256) of ``<name>.zip``."""
    size, sha256 = archive if archive is not None else (None, None)
    return DatasetInfo(
        name=name,
        folder=folder,
        files=(file,),
        format="delimited",
        sep=sep,
        header=file.endswith(".csv"),
        columns=DEFAULT_COLUMNS,
        rating_scale=scale,
        rating_step=scale[0],
        archive=Archive(f"{name}.zip", size, sha256),
        official_folds=folds,
        sizes=sizes,
        description=description,
    )


KNOWN_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        _movielens(
            "ml-100k",
            "ml-100k",
            "u.data",
            "\t",
            (1.0, 5.0),
            (4_924_029, "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
            (943, 1_682, 100_000),
            "MovieLens 100K: 100,000 ratings, 943 users x 1,682 movies, 1..5 stars",
            folds=("u1", "u2", "u3", "u4", "u5", "ua", "ub"),
        ),
        _movielens(
            "ml-1m",
            "ml-1m",
            "ratings.dat",
            "::",
            (1.0, 5.0),
            (5_917_549, "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
            (6_040, 3_706, 1_000_209),
            "MovieLens 1M: 1,000,209 ratings, 6,040 users x 3,706 movies, 1..5 stars",
        ),
        _movielens(
            "ml-10m",
            "ml-10M100K",
            "ratings.dat",
            "::",
            (0.5, 5.0),
            (65_566_137, "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862"),
            (69_878, 10_677, 10_000_054),
            "MovieLens 10M: 10,000,054 ratings, 69,878 users x 10,677 movies, 0.5..5 stars",
        ),
        _movielens(
            "ml-20m",
            "ml-20m",
            "ratings.csv",
            ",",
            (0.5, 5.0),
            (198_702_078, "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"),
            (138_493, 26_744, 20_000_263),
            "MovieLens 20M: 20,000,263 ratings, 138,493 users x 26,744 movies, 0.5..5 stars",
        ),
        _movielens(
            "ml-25m",
            "ml-25m",
            "ratings.csv",
            ",",
            (0.5, 5.0),
            (261_978_986, "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"),
            (162_541, 59_047, 25_000_095),
            "MovieLens 25M: 25,000,095 ratings, 162,541 users x 59,047 movies, 0.5..5 stars",
        ),
        _movielens(
            "ml-latest-small",
            "ml-latest-small",
            "ratings.csv",
            ",",
            (0.5, 5.0),
            (978_202, "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
            None,
            "MovieLens latest (small): about 100,000 ratings, 0.5..5 stars",
        ),
        _movielens(
            "ml-latest",
            "ml-latest",
            "ratings.csv",
            ",",
            (0.5, 5.0),
            None,
            None,
            "MovieLens latest (full): rebuilt from time to time, 0.5..5 stars",
        ),
        DatasetInfo(
            name="netflix",
            folder="netflix",
            files=("combined_data_*.txt", "training_set/mv_*.txt"),
            format="netflix",
            sep=",",
            header=False,
            columns=("user", "rating", "timestamp"),  # under a "MovieID:" line
            rating_scale=(1.0, 5.0),
            rating_step=1.0,
            archive=None,
            official_folds=(),
            sizes=(480_189, 17_770, 100_480_507),
            description="Netflix Prize: 100,480,507 ratings, 480,189 users x 17,770 movies, "
            "1..5 stars (bring your own copy)",
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (any case)."""
    try:
        return KNOWN_DATASETS[name.lower()]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known names: {', '.join(KNOWN_DATASETS)}"
        ) from None


def downloadable_names() -> list[str]:
    """The names that have an official archive."""
    return [name for name, info in KNOWN_DATASETS.items() if info.archive is not None]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$AUTOREC_DATA_DIR``, else
    ``$XDG_CACHE_HOME/autorec``, else ``~/.cache/autorec``. Not created here."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("AUTOREC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "autorec"
    return Path.home() / ".cache" / "autorec"


def find_files(info: DatasetInfo, root: Path) -> tuple[str, list[Path]]:
    """(matched pattern, files): the first of ``info.files`` that matches a file under ``root``."""
    folder = root / info.folder
    for pattern in info.files:
        found = [p for p in sorted(folder.glob(pattern)) if p.is_file()]
        if found:
            return pattern, found
    return "", []


def dataset_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The rating files of a named data set under the data directory; [] when absent."""
    return find_files(dataset_info(name), resolve_data_dir(data_dir))[1]


# ---------------------------------------------------------------------------------------------
# synthetic presets
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticPreset:
    """Sizes (and scale) of a named synthetic data set that mimics a real one."""

    n_users: int
    n_items: int
    n_ratings: int
    rating_scale: tuple[float, float] = (1.0, 5.0)
    rating_step: float = 1.0
    min_per_user: int = 1
    description: str = ""


def _mimic(name: str, min_per_user: int, description: str) -> SyntheticPreset:
    """A preset with the published sizes, scale and step of a named set."""
    info = KNOWN_DATASETS[name]
    assert info.sizes is not None
    n_users, n_items, n_ratings = info.sizes
    return SyntheticPreset(
        n_users,
        n_items,
        n_ratings,
        rating_scale=info.rating_scale,
        rating_step=info.rating_step,
        min_per_user=min_per_user,
        description=description,
    )


SYNTHETIC_PRESETS: dict[str, SyntheticPreset] = {
    "tiny": SyntheticPreset(
        200, 150, 6_000, min_per_user=5, description="200 x 150, 6,000 ratings: for smoke tests"
    ),
    "ml-100k": _mimic("ml-100k", 20, "the sizes of MovieLens 100K"),
    "ml-1m": _mimic("ml-1m", 20, "the sizes of MovieLens 1M"),
    "ml-10m": _mimic("ml-10m", 20, "the sizes of MovieLens 10M, half stars"),
    "netflix": _mimic("netflix", 1, "the sizes of the Netflix Prize training set"),
}
