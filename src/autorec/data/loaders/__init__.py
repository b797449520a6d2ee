"""Rating files: ``load_dataset`` by name, ``synthetic:PRESET`` or path; ``load_file``; the
official splits. Named sets are described by the registry (:mod:`autorec.data.registry`) and read
by the reader of their format:

* :mod:`~autorec.data.loaders.delimited`: one rating per line, ``user item rating [timestamp]``
  with a separator (MovieLens, custom files);
* :mod:`~autorec.data.loaders.netflix`: the Netflix Prize layout;

both read whole lines in blocks (:mod:`~autorec.data.loaders.blocks`), accumulate rows with their
file and line (:mod:`~autorec.data.loaders.rows`), and end in one
:class:`~autorec.data.ratings.Ratings` (:mod:`~autorec.data.loaders.assembly`). Every bad value
raises a :class:`~autorec.errors.DataError` naming the file, the 1-based line number and the value.
Memory is proportional to the number of ratings, never a dense matrix.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from autorec.data.download import download_dataset
from autorec.data.loaders import delimited, netflix
from autorec.data.loaders.assembly import assemble
from autorec.data.loaders.delimited import delimited_layout, normalise_sep, read_delimited
from autorec.data.loaders.rows import Rows
from autorec.data.ratings import Ratings
from autorec.data.registry import (
    DEFAULT_COLUMNS,
    KNOWN_DATASETS,
    SYNTHETIC_PRESETS,
    DatasetInfo,
    dataset_files,
    find_files,
    resolve_data_dir,
)
from autorec.data.split import Split
from autorec.data.synthetic import synthetic_preset
from autorec.errors import ConfigError, DataError

__all__ = [
    "DUPLICATE_POLICIES",
    "KNOWN_DATASETS",
    "DatasetInfo",
    "Duplicates",
    "LoadedDataset",
    "dataset_files",
    "load_dataset",
    "load_file",
    "check_official_fold",
    "official_folds",
    "official_split",
    "resolve_data_dir",
]

logger = logging.getLogger(__name__)

Duplicates = Literal["error", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "mean")

#: The reader of each format of the registry: (entry, its files, rating scale) -> rows.
_READERS: dict[str, Callable[[DatasetInfo, Sequence[Path], tuple[float, float]], Rows]] = {
    "delimited": delimited.read_dataset,
    "netflix": netflix.read_dataset,
}


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A loaded data set and where it came from.

    Attributes:
        ratings: the validated ratings.
        name: the registry name (``"ml-1m"``), ``"synthetic:PRESET"``, or the file path.
        source: the path(s) read, for reports.
        n_duplicates_dropped: ratings removed by the duplicate policy ("last" or "mean").
    """

    ratings: Ratings
    name: str
    source: str
    n_duplicates_dropped: int = 0

    def stats(self) -> dict[str, float | int]:
        r = self.ratings
        return {
            "n_users": r.n_users,
            "n_items": r.n_items,
            "n_ratings": r.n_ratings,
            "rating_min": float(r.rating.min()) if r.n_ratings else float("nan"),
            "rating_max": float(r.rating.max()) if r.n_ratings else float("nan"),
            "density": r.density,
            "n_duplicates_dropped": int(self.n_duplicates_dropped),
        }


def _missing_message(info: DatasetInfo, data_dir: Path) -> str:
    tried = " or ".join(str(data_dir / info.folder / f) for f in info.files)
    if info.archive is None:
        return (
            f"{info.name}: no rating files found (looked for {tried}). The Netflix Prize data "
            f"cannot be downloaded any more: put your copy's training_set/mv_*.txt (or "
            f"combined_data_*.txt) under {data_dir / info.folder}/, or pass --data-dir DIR "
            f"(or set AUTOREC_DATA_DIR) to the directory that holds a netflix/ folder"
        )
    return (
        f"{info.name}: file not found: {tried}. Get it with `autorec data download {info.name}` "
        f"(or add --download), or pass --data-dir DIR (or set AUTOREC_DATA_DIR) to the directory "
        f"that holds the {info.folder}/ folder"
    )


def _check_scale(rating_scale: tuple[float, float] | None) -> tuple[float, float] | None:
    if rating_scale is None:
        return None
    try:
        low, high = (float(rating_scale[0]), float(rating_scale[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(
            f"rating scale must be two numbers LOW,HIGH, got {rating_scale!r}"
        ) from None
    if len(rating_scale) != 2 or not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ConfigError(f"rating scale must be finite with LOW < HIGH, got {rating_scale!r}")
    return low, high


def load_file(
    path: str | Path,
    *,
    sep: str | None = None,
    columns: Sequence[str] | None = None,
    header: bool = False,
    rating_scale: tuple[float, float] | None = None,
    duplicates: Duplicates = "last",
) -> LoadedDataset:
    """Load a custom delimited rating file.

    Args:
        path: the file.
        sep: field separator (``"::"``, ``","``, ``"\\t"`` or ``"tab"``, ``" "``/``"whitespace"``
            for runs of whitespace); None detects it from the first line.
        columns: column names in file order among user, item, rating, timestamp; any other name
            marks a column to ignore (e.g. ``_``). Default ``user,item,rating,timestamp``; trailing
            optional columns (timestamp, ignored ones) may be absent from the file.
        header: skip the first line.
        rating_scale: (low, high); a rating outside it is an error. Default: (min, max) of the data.
        duplicates: "last" keeps the last rating of a (user, item) pair, "mean" averages them,
            "error" raises naming both lines.
    """
    path = Path(path)
    scale = _check_scale(rating_scale)
    _check_duplicates(duplicates)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    layout = delimited_layout(
        path, normalise_sep(sep), sep is None, columns or DEFAULT_COLUMNS, header
    )
    # without --header, a word on line 1 may be a header line: its message says so
    layout = dataclasses.replace(layout, header_hint=not header)
    rows = read_delimited([path], layout, header, scale)
    ratings, dropped = assemble(rows, scale, duplicates, str(path))
    return LoadedDataset(ratings, str(path), str(path), dropped)


def _check_duplicates(duplicates: str) -> None:
    if duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(
            f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}"
        )


def _load_named(
    info: DatasetInfo,
    data_dir: str | Path | None,
    rating_scale: tuple[float, float] | None,
    duplicates: Duplicates,
    download: bool,
) -> LoadedDataset:
    root = resolve_data_dir(data_dir)
    pattern, files = find_files(info, root)
    if not files and download and info.archive is not None:
        download_dataset(info.name, data_dir=root)
        pattern, files = find_files(info, root)
    if not files:
        raise DataError(_missing_message(info, root))
    scale = rating_scale if rating_scale is not None else info.rating_scale
    rows = _READERS[info.format](info, files, scale)
    source = (
        str(files[0]) if len(files) == 1 else f"{root / info.folder / pattern} ({len(files)} files)"
    )
    ratings, dropped = assemble(rows, scale, duplicates, source)
    logger.info("loaded %s from %s: %r", info.name, source, ratings)
    return LoadedDataset(ratings, info.name, source, dropped)


def load_dataset(
    spec: str,
    *,
    data_dir: str | Path | None = None,
    sep: str | None = None,
    columns: Sequence[str] | None = None,
    header: bool = False,
    rating_scale: tuple[float, float] | None = None,
    duplicates: Duplicates = "last",
    download: bool = False,
    seed: int = 0,
) -> LoadedDataset:
    """Load a data set by name, ``synthetic:PRESET``, or path to a delimited rating file.

    Named sets (see :data:`KNOWN_DATASETS`) are read from ``<data dir>/<folder>/`` where the data
    directory is :func:`resolve_data_dir` (``data_dir``, ``$AUTOREC_DATA_DIR``, the XDG cache).
    ``sep``, ``columns`` and ``header`` describe custom files only (see :func:`load_file`).
    ``rating_scale`` defaults to the official scale for named sets and to the data's (min, max)
    for custom files. ``download`` fetches a missing named set first. ``seed`` only affects
    synthetic presets.

    Raises:
        DataError: unknown name, missing file, or bad content (file, line and value named).
        ConfigError: invalid options.
    """
    _check_duplicates(duplicates)
    scale = _check_scale(rating_scale)
    spec = str(spec)
    if spec.lower().startswith("synthetic:"):
        preset = spec.split(":", 1)[1]
        ratings = synthetic_preset(preset, seed=seed)
        return LoadedDataset(
            ratings,
            f"synthetic:{preset.lower()}",
            f"synthetic preset {preset.lower()} (seed {seed})",
            0,
        )
    if spec.lower() in KNOWN_DATASETS:
        if sep is not None or columns is not None or header:
            raise ConfigError(
                f"--sep, --columns and --header describe custom files; {spec} has a fixed format"
            )
        return _load_named(KNOWN_DATASETS[spec.lower()], data_dir, scale, duplicates, download)
    path = Path(spec).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give the rating file inside it")
    if not path.is_file():
        raise DataError(
            f"unknown data set {spec!r}: not a file, and not a known name (known: "
            f"{', '.join(KNOWN_DATASETS)}, or synthetic:PRESET with PRESET one of "
            f"{', '.join(SYNTHETIC_PRESETS)})"
        )
    return load_file(
        path, sep=sep, columns=columns, header=header, rating_scale=scale, duplicates=duplicates
    )


def official_folds(spec: str) -> tuple[str, ...]:
    """The official folds of the named set ``spec`` (ML-100K: u1..u5, ua, ub).

    Raises:
        DataError: ``spec`` is not a named set with official folds (the message lists those).
    """
    info = KNOWN_DATASETS.get(spec.lower())
    if info is None or not info.official_folds:
        listing = "; ".join(
            f"{k}: {', '.join(v.official_folds)}"
            for k, v in KNOWN_DATASETS.items()
            if v.official_folds
        )
        raise DataError(f"{spec!r} has no official splits; sets with official folds: {listing}")
    return info.official_folds


def check_official_fold(spec: str, fold: str) -> None:
    """Raise a one-line :class:`DataError` unless ``fold`` is an official fold of ``spec``."""
    folds = official_folds(spec)
    if fold not in folds:
        raise DataError(f"{spec.lower()} has no official fold {fold!r}; folds: {', '.join(folds)}")


def official_split(
    spec: str, fold: str, *, data_dir: str | Path | None = None, full: Ratings | None = None
) -> Split:
    """The official train/test split ``fold`` of a named set (ML-100K: u1..u5, ua, ub).

    Train is ``<fold>.base``, test ``<fold>.test``; both use the vocabularies of the whole
    ``u.data`` (``full``: that set already loaded, else it is read), so indices agree with
    ``load_dataset("ml-100k")``. No validation set (:func:`autorec.data.split.with_validation`
    carves one from train).
    """
    check_official_fold(spec, fold)
    name = spec.lower()
    info = KNOWN_DATASETS[name]
    if full is None:
        full = load_dataset(name, data_dir=data_dir, duplicates="error").ratings
    folder = resolve_data_dir(data_dir) / info.folder
    parts: list[Ratings] = []
    for suffix in ("base", "test"):
        path = folder / f"{fold}.{suffix}"
        if not path.is_file():
            raise DataError(
                f"{name}: file not found: {path}. The official {name} archive holds it: get it "
                f"with `autorec data download {name}`, or pass --data-dir DIR"
            )
        rows = _READERS[info.format](info, [path], full.rating_scale)
        locate = rows.locator()
        rating = rows.column("rating")
        timestamp = rows.column("timestamp")
        idx = []
        for name_, vocab in (("user", full.users), ("item", full.items)):
            raw = rows.column(name_).astype(np.int64)
            pos = np.searchsorted(vocab.ids, raw)
            pos = np.minimum(pos, len(vocab.ids) - 1)
            bad = np.flatnonzero(vocab.ids[pos] != raw)
            if len(bad):
                file_, line = locate(int(bad[0]))
                raise DataError(
                    f"{file_}, line {line}: {name_} {int(raw[bad[0]])} is not in "
                    f"{folder / info.files[0]}"
                )
            idx.append(pos.astype(np.int32))
        part = Ratings(idx[0], idx[1], rating, full.users, full.items, full.rating_scale, timestamp)
        if part.has_duplicates():
            raise DataError(f"{path}: duplicate (user, item) pairs")
        parts.append(part)
    return Split(train=parts[0], test=parts[1])
