"""Rating files: parsing of every supported format, the registry of named sets, ``load_dataset``.

Formats (Harper & Konstan 2015, "The MovieLens Datasets: History and Context", ACM TiiS 5(4);
Bennett & Lanning 2007, "The Netflix Prize", KDD Cup workshop):

* delimited text, one rating per line: ``user item rating [timestamp]`` with a separator
  (``\\t`` for ML-100K ``u.data``, ``::`` for ML-1M/ML-10M ``ratings.dat``, ``,`` with a header
  line for the ``ratings.csv`` of ML-20M/25M/latest, anything for custom files);
* the Netflix Prize layout: a ``MovieID:`` line followed by ``CustomerID,Rating,Date`` lines,
  either one file per movie (``training_set/mv_*.txt``) or the four ``combined_data_*.txt``.

The timestamp (or date) is optional everywhere; the shared ML-1M copy has three fields per line.

Parsing is vectorised: the file is read in blocks of whole lines, separators are normalised to a
tab, the structure of every line is checked with a few numpy passes over the bytes, and the numbers
are read with ``np.fromstring`` (integers when possible, which is about four times faster than
floats; half-star ratings such as ``3.5`` are read as two integers). A block that fails any check is
parsed again line by line by a careful slow path, which either accepts it (blank lines, spaces,
string ids) or raises a :class:`~autorec.errors.DataError` naming the file, the 1-based line number
and the offending value. The two paths give identical results on the blocks both accept.

Vocabularies: integer ids are sorted ascending (so ML-1M item index k is the k-th smallest rated
MovieID); string ids keep the order of first appearance. Memory is proportional to the number of
ratings (int32 indices, float32 ratings, optional int64 timestamps), never a dense matrix.
"""

from __future__ import annotations

import bisect
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from autorec.data.ratings import IdIndex, Ratings
from autorec.data.split import Split
from autorec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

Duplicates = Literal["error", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "mean")
COLUMN_NAMES: tuple[str, ...] = ("user", "item", "rating", "timestamp")
DEFAULT_COLUMNS: tuple[str, ...] = COLUMN_NAMES

#: Bytes read per block. Small blocks keep the temporaries (about 6x a block) in the allocator's
#: reuse lists instead of fresh pages, which is measurably faster than large ones.
CHUNK_BYTES = 4 << 20

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_EXACT_FLOAT_INT = 2.0**53  # float64 holds every integer below this exactly


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """A named data set: where its ratings live under the data directory and how they are written.

    Attributes:
        name: registry key, e.g. ``"ml-1m"``.
        folder: the folder the official archive extracts to, under the data directory.
        files: candidate file patterns relative to ``folder`` (globs allowed); the first pattern
            that matches at least one file is read.
        format: ``"delimited"`` or ``"netflix"``.
        sep: field separator of the delimited format.
        header: whether the first line is a header.
        rating_scale: the official (low, high) scale.
        archive: the official archive name (None: cannot be downloaded).
        description: one line for listings.
    """

    name: str
    folder: str
    files: tuple[str, ...]
    format: Literal["delimited", "netflix"]
    sep: str
    header: bool
    rating_scale: tuple[float, float]
    archive: str | None
    description: str


def _ml(
    name: str,
    folder: str,
    file: str,
    sep: str,
    header: bool,
    scale: tuple[float, float],
    description: str,
) -> DatasetInfo:
    return DatasetInfo(
        name, folder, (file,), "delimited", sep, header, scale, f"{name}.zip", description
    )


KNOWN_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        _ml(
            "ml-100k",
            "ml-100k",
            "u.data",
            "\t",
            False,
            (1.0, 5.0),
            "MovieLens 100K: 100,000 ratings, 943 users x 1,682 movies, 1..5 stars",
        ),
        _ml(
            "ml-1m",
            "ml-1m",
            "ratings.dat",
            "::",
            False,
            (1.0, 5.0),
            "MovieLens 1M: 1,000,209 ratings, 6,040 users x 3,706 movies, 1..5 stars",
        ),
        _ml(
            "ml-10m",
            "ml-10M100K",
            "ratings.dat",
            "::",
            False,
            (0.5, 5.0),
            "MovieLens 10M: 10,000,054 ratings, 69,878 users x 10,677 movies, 0.5..5 stars",
        ),
        _ml(
            "ml-20m",
            "ml-20m",
            "ratings.csv",
            ",",
            True,
            (0.5, 5.0),
            "MovieLens 20M: 20,000,263 ratings, 138,493 users x 26,744 movies, 0.5..5 stars",
        ),
        _ml(
            "ml-25m",
            "ml-25m",
            "ratings.csv",
            ",",
            True,
            (0.5, 5.0),
            "MovieLens 25M: 25,000,095 ratings, 162,541 users x 59,047 movies, 0.5..5 stars",
        ),
        _ml(
            "ml-latest-small",
            "ml-latest-small",
            "ratings.csv",
            ",",
            True,
            (0.5, 5.0),
            "MovieLens latest (small): about 100,000 ratings, 0.5..5 stars",
        ),
        _ml(
            "ml-latest",
            "ml-latest",
            "ratings.csv",
            ",",
            True,
            (0.5, 5.0),
            "MovieLens latest (full): rebuilt from time to time, 0.5..5 stars",
        ),
        DatasetInfo(
            "netflix",
            "netflix",
            ("combined_data_*.txt", "training_set/mv_*.txt"),
            "netflix",
            ",",
            False,
            (1.0, 5.0),
            None,
            "Netflix Prize: 100,480,507 ratings, 480,189 users x 17,770 movies, 1..5 stars "
            "(bring your own copy)",
        ),
    )
}


def known_dataset_names() -> list[str]:
    return list(KNOWN_DATASETS)


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


def dataset_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The rating files of a named data set under the data directory; [] when absent."""
    return _find_files(_info(name), resolve_data_dir(data_dir))[1]


def _find_files(info: DatasetInfo, root: Path) -> tuple[str, list[Path]]:
    """(matched pattern, files): the first of ``info.files`` that matches a file."""
    folder = root / info.folder
    for pattern in info.files:
        found = [p for p in sorted(folder.glob(pattern)) if p.is_file()]
        if found:
            return pattern, found
    return "", []


def _info(name: str) -> DatasetInfo:
    try:
        return KNOWN_DATASETS[name.lower()]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known names: {', '.join(KNOWN_DATASETS)}"
        ) from None


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


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# reading whole lines in blocks
# ---------------------------------------------------------------------------------------------
class _Origins:
    """Where the lines of one block come from: pieces of one or more files.

    ``starts[k]`` is the block line index (0-based) of piece k's first line, ``files[k]`` its file
    index, ``lines[k]`` the 1-based line number of that line in its file, ``at_start[k]`` whether
    the piece begins its file.
    """

    __slots__ = ("starts", "files", "lines", "at_start")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.files: list[int] = []
        self.lines: list[int] = []
        self.at_start: list[bool] = []

    def add(self, start: int, file_idx: int, line: int, at_start: bool) -> None:
        self.starts.append(start)
        self.files.append(file_idx)
        self.lines.append(line)
        self.at_start.append(at_start)

    def locate(self, block_line: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, block_line) - 1
        return self.files[k], self.lines[k] + block_line - self.starts[k]

    def file_start_lines(self) -> list[int]:
        """Block line indices that are the first line of a file."""
        return [s for s, a in zip(self.starts, self.at_start, strict=True) if a]


def _file_pieces(path: Path, chunk_bytes: int, skip_header: bool) -> Iterator[tuple[bytes, int]]:
    """(piece, 1-based line number of its first line): whole lines, each ending in ``\\n``.

    Trailing whitespace at the end of the file (blank lines, a missing final newline) is dropped.
    """
    with open(path, "rb") as f:
        line = 1
        if skip_header:
            if f.readline():
                line = 2
        carry = b""
        block = f.read(chunk_bytes)
        while block:
            nxt = f.read(chunk_bytes)
            buf = carry + block if carry else block
            if not nxt:
                buf = buf.rstrip()
                if buf:
                    yield buf + b"\n", line
                return
            cut = buf.rfind(b"\n") + 1
            if cut:
                piece, carry = buf[:cut], buf[cut:]
                yield piece, line
                line += _count_newlines(piece)
            else:
                carry = buf
            block = nxt


def _blocks(
    paths: Sequence[Path], chunk_bytes: int, skip_header: bool
) -> Iterator[tuple[bytes, _Origins]]:
    """Blocks of about ``chunk_bytes`` bytes; small files are concatenated into one block."""
    parts: list[bytes] = []
    origins = _Origins()
    size = 0
    n_lines = 0
    for file_idx, path in enumerate(paths):
        first = True
        for piece, line in _file_pieces(path, chunk_bytes, skip_header):
            origins.add(n_lines, file_idx, line, first)
            first = False
            parts.append(piece)
            size += len(piece)
            n_lines += _count_newlines(piece)
            if size >= chunk_bytes:
                yield (parts[0] if len(parts) == 1 else b"".join(parts)), origins
                parts, origins, size, n_lines = [], _Origins(), 0, 0
    if parts:
        yield (parts[0] if len(parts) == 1 else b"".join(parts)), origins


def _count_newlines(buf: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8) == 10))


def _peek_lines(path: Path, max_lines: int = 2) -> list[tuple[int, str]]:
    """The first ``max_lines`` non-blank lines of a file as (1-based line number, text)."""
    out: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.decode("utf-8", "surrogateescape").strip()
            if text:
                out.append((number, text))
                if len(out) >= max_lines:
                    break
    return out


# ---------------------------------------------------------------------------------------------
# accumulated rows and their line numbers
# ---------------------------------------------------------------------------------------------
class _Column:
    """One column filled block by block.

    Numbers go into one buffer sized from the first block (file size / bytes per row) and grown
    by a quarter when short, so the parsed blocks are never held twice for a final concatenate.
    Integer ids stay int32 while they fit. Strings (custom files) are concatenated at the end.
    """

    __slots__ = ("buf", "n", "parts")

    def __init__(self) -> None:
        self.buf: np.ndarray | None = None
        self.n = 0
        self.parts: list[np.ndarray] = []

    def append(self, values: np.ndarray, capacity: int) -> None:
        if values.dtype.kind in "US":
            self.parts.append(values)
            return
        if self.buf is None:
            self.buf = np.empty(max(capacity, len(values)), dtype=values.dtype)
        elif np.result_type(self.buf.dtype, values.dtype) != self.buf.dtype:
            self.buf = self.buf.astype(np.result_type(self.buf.dtype, values.dtype))
        end = self.n + len(values)
        if end > len(self.buf):
            grown = np.empty(max(end, len(self.buf) + len(self.buf) // 4), dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : end] = values
        self.n = end

    def result(self) -> np.ndarray | None:
        if self.parts:
            return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        if self.buf is None:
            return None
        out = self.buf
        self.buf = None
        if len(out) != self.n:
            try:
                out.resize(self.n, refcheck=False)  # in place: no copy of the kept part
            except ValueError:  # pragma: no cover - not the owner of its data
                out = out[: self.n].copy()
        return out


class _Rows:
    """Parsed columns of many blocks, plus a compressed table mapping a row to (file, line)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [str(p) for p in files]
        self.total_bytes = sum(p.stat().st_size for p in files)
        self.cols: dict[str, _Column] = {
            name: _Column() for name in ("user", "item", "rating", "timestamp")
        }
        self.seg_row: list[np.ndarray] = []
        self.seg_file: list[np.ndarray] = []
        self.seg_line: list[np.ndarray] = []
        self.n = 0
        self.has_timestamp: bool | None = None

    def add(
        self,
        user: np.ndarray,
        item: np.ndarray,
        rating: np.ndarray,
        timestamp: np.ndarray | None,
        block_lines: np.ndarray,
        origins: _Origins,
        where: tuple[int, int],
        block_bytes: int,
    ) -> None:
        if len(rating) == 0:
            return
        has_ts = timestamp is not None
        if self.has_timestamp is None:
            self.has_timestamp = has_ts
        elif self.has_timestamp != has_ts:
            file_idx, line = where
            raise DataError(
                f"{self.files[file_idx]}, line {line}: "
                f"{'has a timestamp' if has_ts else 'has no timestamp'} but earlier lines "
                f"{'do not' if has_ts else 'do'}; every line needs the same fields"
            )
        capacity = int(self.total_bytes / max(block_bytes, 1) * len(rating) * 1.02) + 1024
        self.cols["user"].append(_compact_ids(user), capacity)
        self.cols["item"].append(_compact_ids(item), capacity)
        self.cols["rating"].append(np.asarray(rating, dtype=np.float32), capacity)
        if timestamp is not None:
            self.cols["timestamp"].append(np.asarray(timestamp, dtype=np.int64), capacity)
        # rows -> (file, line), compressed into runs of consecutive lines of one file
        block_lines = np.asarray(block_lines, dtype=np.int64)
        if len(origins.starts) == 1:
            file_idx = np.full(len(block_lines), origins.files[0], dtype=np.int64)
            line = block_lines + origins.lines[0]
        else:
            starts = np.asarray(origins.starts, dtype=np.int64)
            piece = np.searchsorted(starts, block_lines, side="right") - 1
            file_idx = np.asarray(origins.files, dtype=np.int64)[piece]
            line = np.asarray(origins.lines, dtype=np.int64)[piece] + block_lines - starts[piece]
        brk = np.ones(len(line), dtype=bool)
        brk[1:] = (np.diff(line) != 1) | (np.diff(file_idx) != 0)
        at = np.flatnonzero(brk)
        self.seg_row.append(self.n + at)
        self.seg_file.append(file_idx[at])
        self.seg_line.append(line[at])
        self.n += len(rating)

    def column(self, name: str) -> np.ndarray | None:
        return self.cols[name].result()

    def locator(self) -> _Locator:
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        return _Locator(
            tuple(self.files), cat(self.seg_row), cat(self.seg_file), cat(self.seg_line)
        )


@dataclass(frozen=True)
class _Locator:
    files: tuple[str, ...]
    seg_row: np.ndarray
    seg_file: np.ndarray
    seg_line: np.ndarray

    def __call__(self, row: int) -> tuple[str, int]:
        k = int(np.searchsorted(self.seg_row, row, side="right")) - 1
        return self.files[int(self.seg_file[k])], int(self.seg_line[k] + row - self.seg_row[k])


def _compact_ids(ids: np.ndarray) -> np.ndarray:
    """int32 when the integer ids fit (halves memory on huge sets); strings unchanged."""
    if ids.dtype.kind == "i" and len(ids):
        lo, hi = ids.min(), ids.max()
        if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
            return ids.astype(np.int32)
    return ids


# ---------------------------------------------------------------------------------------------
# errors and small helpers
# ---------------------------------------------------------------------------------------------
class _NeedStringIds(Exception):
    """An id is not an integer: the whole file is parsed again with string ids."""


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _show(text: str, limit: int = 80) -> str:
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _sep_name(sep: str | None) -> str:
    return {None: "whitespace", "\t": "tabs", " ": "spaces"}.get(sep, repr(sep))


def _parse_rating(field: str, where: str, scale: tuple[float, float] | None) -> float:
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{where}: rating {field!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: rating {field!r} is not a finite number")
    if scale is not None and not scale[0] <= value <= scale[1]:
        raise DataError(
            f"{where}: rating {field!r} is outside the rating scale "
            f"{_fmt(scale[0])}..{_fmt(scale[1])}"
        )
    return value


def _parse_int_id(field: str) -> int:
    try:
        value = int(field)
    except ValueError:
        try:
            f = float(field)
        except ValueError:
            raise _NeedStringIds from None
        if not (f.is_integer() and abs(f) < _EXACT_FLOAT_INT):
            raise _NeedStringIds from None
        value = int(f)
    if not _INT64_MIN < value < _INT64_MAX:
        raise _NeedStringIds
    return value


def _parse_timestamp(field: str, where: str) -> int:
    try:
        return int(field)
    except ValueError:
        pass
    try:
        f = float(field)
    except ValueError:
        f = float("nan")
    if f.is_integer() and abs(f) < _EXACT_FLOAT_INT:
        return int(f)
    raise DataError(f"{where}: timestamp {field!r} is not an integer")


def _fromstring(buf: bytes, dtype: type) -> np.ndarray | None:
    """Whitespace-separated numbers, or None when some token is not a number of that type."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(buf, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _signs_ok(block: bytes) -> bool:
    """Every ``+``/``-`` is followed by a digit (np.fromstring reads a lone sign as a sign of the
    next number, or as 0)."""
    arr = np.frombuffer(block, dtype=np.uint8)
    signs = np.flatnonzero((arr == 43) | (arr == 45))
    following = arr[np.minimum(signs + 1, len(arr) - 1)]
    return bool(((following >= 48) & (following <= 57)).all())


def _saturated(vals: np.ndarray) -> bool:
    """np.fromstring clamps integers that overflow int64: treat the extremes as overflow."""
    return bool(((vals == _INT64_MAX) | (vals == _INT64_MIN)).any())


def _bad_ratings(rating: np.ndarray, scale: tuple[float, float] | None) -> bool:
    if scale is None:
        return not bool(np.isfinite(rating).all())
    # comparisons with nan are False, so this also catches nan; inf is outside any finite scale
    return not bool(((rating >= scale[0]) & (rating <= scale[1])).all())


# ---------------------------------------------------------------------------------------------
# delimited files
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    sep: str | None  # None: runs of whitespace
    n_fields: int
    user: int
    item: int
    rating: int
    timestamp: int | None
    names: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(self.names[: self.n_fields])


def _normalise_sep(sep: str | None) -> str | None:
    if sep is None:
        return None
    aliases = {"\\t": "\t", "tab": "\t", "space": None, "whitespace": None, "\\s+": None}
    if sep in aliases:
        return aliases[sep]
    if sep == "":
        raise ConfigError("the separator must not be empty")
    if sep.isspace() and sep != "\t":
        return None
    if "\n" in sep or "\r" in sep:
        raise ConfigError(f"invalid separator {sep!r}")
    return sep


def _sniff_sep(line: str) -> str | None:
    for candidate in ("::", "\t", ",", ";", "|"):
        if candidate in line:
            return candidate
    return None


def _split(line: str, sep: str | None) -> list[str]:
    return line.split() if sep is None else [f.strip() for f in line.split(sep)]


def _column_positions(columns: Sequence[str]) -> tuple[int, int, int, int | None, tuple[str, ...]]:
    names = tuple(str(c).strip() for c in columns)
    lowered = [n.lower() for n in names]
    for needed in ("user", "item", "rating"):
        if lowered.count(needed) != 1:
            raise ConfigError(
                f"columns must name 'user', 'item' and 'rating' exactly once (others: "
                f"'timestamp', or any other name for a column to ignore), got {','.join(names)}"
            )
    if lowered.count("timestamp") > 1:
        raise ConfigError(f"columns name 'timestamp' twice: {','.join(names)}")
    ts = lowered.index("timestamp") if "timestamp" in lowered else None
    return lowered.index("user"), lowered.index("item"), lowered.index("rating"), ts, names


def _delimited_layout(
    path: Path, sep: str | None, sniff: bool, columns: Sequence[str], header: bool
) -> _Layout:
    user, item, rating, ts, names = _column_positions(columns)
    lines = _peek_lines(path, 2)
    if not lines:
        raise DataError(f"{path}: the file is empty")
    if sniff:
        sep = _sniff_sep(lines[0][1])
    data = lines[1:] if header else lines
    if not data:
        raise DataError(f"{path}: no ratings after the header line")
    number, text = data[0]
    n_fields = len(_split(text, sep))
    required = max(user, item, rating) + 1
    if not required <= n_fields <= len(names):
        expected = f"{required}" if required == len(names) else f"{required} to {len(names)}"
        raise DataError(
            f"{path}, line {number}: expected {expected} fields ({', '.join(names)}) separated "
            f"by {_sep_name(sep)}, found {n_fields}: {_show(text)}"
            + ("; use --columns to name the columns" if n_fields > len(names) else "")
        )
    return _Layout(
        sep, n_fields, user, item, rating, ts if ts is not None and ts < n_fields else None, names
    )


def _fast_delimited(
    block: bytes, layout: _Layout, scale: tuple[float, float] | None
) -> tuple[np.ndarray, ...] | None:
    """Vectorised parse of a block of whole lines; None when the slow path must look at it.

    Returns (user, item, rating, timestamp-or-None, block line index of each row).
    """
    k = layout.n_fields
    sep = layout.sep
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    if sep is not None and sep != "\t" and b"\t" in block:
        return None  # a tab inside a field: the slow path decides
    if (b"-" in block or b"+" in block) and not _signs_ok(block):
        return None
    has_dot = b"." in block
    # ``pre``: separators normalised, dots kept; ``numeric``: dots read as separators too
    if sep is None:
        pre = block
        numeric = block.translate(_DOT_TO_TAB) if has_dot else block
    elif len(sep.encode()) == 1:
        sep_byte = sep.encode()
        pre = block
        numeric = (
            block.translate(bytes.maketrans(sep_byte + b".", b"\t\t"))
            if has_dot
            else (block if sep == "\t" else block.translate(bytes.maketrans(sep_byte, b"\t")))
        )
    else:
        pre = block.replace(sep.encode(), b"\t")
        numeric = pre.translate(_DOT_TO_TAB) if has_dot else pre
    arr = np.frombuffer(numeric, dtype=np.uint8)
    ws = arr <= 32
    # empty fields, blank lines, leading separators: two whitespace bytes in a row
    if ws[0] or bool((ws[1:] & ws[:-1]).any()):
        return None
    pos = np.flatnonzero(ws)
    kinds = np.frombuffer(pre, dtype=np.uint8)[pos]
    if has_dot:
        is_dot = kinds == 46
        dots = pos[is_dot]
        pos = pos[~is_dot]
        kinds = kinds[~is_dot]
    if len(pos) % k:
        return None
    n_lines = len(pos) // k
    kinds = kinds.reshape(n_lines, k)
    if not bool((kinds[:, -1] == 10).all()):
        return None
    inner = kinds[:, :-1]
    if sep is None:
        ok = bool(((inner == 9) | (inner == 32)).all())
    else:
        ok = bool((inner == (sep.encode()[0] if len(sep.encode()) == 1 else 9)).all())
    if not ok:
        return None
    field_end = pos.reshape(n_lines, k)
    rating_col = layout.rating
    int_cols = (layout.user, layout.item) + (
        () if layout.timestamp is None else (layout.timestamp,)
    )
    columns: dict[int, np.ndarray] | None = None
    if not has_dot:
        vals = _fromstring(numeric, np.int64)
        if vals is not None and len(vals) == n_lines * k and not _saturated(vals):
            table = vals.reshape(n_lines, k)
            columns = {j: table[:, j] for j in (*int_cols, rating_col)}
    elif b"-" not in block:
        columns = _half_star_columns(numeric, dots, field_end, rating_col, int_cols)
    if columns is not None:
        rating = columns[rating_col].astype(np.float64)
    else:
        if sep is None:
            text = block
        elif len(sep.encode()) == 1:
            text = block.translate(bytes.maketrans(sep.encode(), b"\t"))
        else:
            text = pre
        if text.translate(None, _FLOAT_BYTES):
            return None  # hex floats, "infinity", letters: the C parser is laxer than Python
        fvals = _fromstring(text, np.float64)
        if fvals is None or len(fvals) != n_lines * k:
            return None
        ftable = fvals.reshape(n_lines, k)
        columns = {}
        for j in int_cols:
            c = ftable[:, j]
            if not bool(((np.abs(c) < _EXACT_FLOAT_INT) & (c == np.floor(c))).all()):
                return None
            columns[j] = c.astype(np.int64)
        rating = ftable[:, rating_col]
    if _bad_ratings(rating, scale):
        return None
    ts = None if layout.timestamp is None else columns[layout.timestamp]
    return (
        columns[layout.user],
        columns[layout.item],
        rating,
        ts,
        np.arange(n_lines, dtype=np.int64),
    )


_DOT_TO_TAB = bytes.maketrans(b".", b"\t")
_FLOAT_BYTES = b"0123456789+-.eE \t\n"  # all a block of plain decimal numbers can hold


def _half_star_columns(
    numeric: bytes,
    dots: np.ndarray,
    field_end: np.ndarray,
    rating_col: int,
    int_cols: tuple[int, ...],
) -> dict[int, np.ndarray] | None:
    """Integer parse of a block whose ratings have at most one decimal digit (``3.5``, ``4``).

    Every dot must sit in the rating field with a digit before it and exactly one digit after
    it; ``numeric`` has the dots turned into separators, the digit after each dot is read
    directly and blanked, so ``3.5`` reads as the integer 3 plus 5 tenths. Returns the integer
    columns and the rating column (float64), or None (use the float parse).
    """
    n_lines, k = field_end.shape
    end = field_end[:, rating_col]
    if rating_col:
        start = field_end[:, rating_col - 1] + 1
    else:
        start = np.zeros(n_lines, dtype=np.int64)
        start[1:] = field_end[:-1, -1] + 1
    row = np.arange(n_lines) if len(dots) == n_lines else np.searchsorted(end, dots)
    if not (
        row[-1] < n_lines
        and bool((np.diff(row) > 0).all())
        and bool((end[row] - dots == 2).all())
        and bool((dots > start[row]).all())
    ):
        return None
    # read the digit after each dot here, and blank it so that every line has k numbers
    buffer = bytearray(numeric)
    writable = np.frombuffer(buffer, dtype=np.uint8)
    digit = writable[dots + 1].astype(np.int64) - 48
    if not bool(((digit >= 0) & (digit <= 9)).all()):
        return None
    writable[dots + 1] = 9
    vals = _fromstring(bytes(buffer), np.int64)
    del writable, buffer
    if vals is None or len(vals) != n_lines * k or _saturated(vals):
        return None
    table = vals.reshape(n_lines, k)
    out = {j: table[:, j] for j in int_cols}
    rating = table[:, rating_col].astype(np.float64)
    rating[row] += digit / 10.0
    out[rating_col] = rating
    return out


def _slow_delimited(
    block: bytes,
    origins: _Origins,
    files: Sequence[str],
    layout: _Layout,
    scale: tuple[float, float] | None,
    string_ids: bool,
) -> tuple[np.ndarray, ...]:
    """Line-by-line parse of one block: the reference behaviour, and the source of messages."""
    text = block.decode("utf-8", "surrogateescape")
    users: list[object] = []
    items: list[object] = []
    ratings: list[float] = []
    stamps: list[int] = []
    rows: list[int] = []
    k = layout.n_fields
    parse_id = str if string_ids else _parse_int_id
    for i, raw in enumerate(text.split("\n")[:-1]):
        line = raw.strip()
        if not line:
            continue
        file_idx, number = origins.locate(i)
        where = f"{files[file_idx]}, line {number}"
        fields = _split(line, layout.sep)
        if len(fields) != k:
            raise DataError(
                f"{where}: expected {k} fields ({layout.describe()}) separated by "
                f"{_sep_name(layout.sep)}, found {len(fields)}: {_show(raw)}"
            )
        for j, name in enumerate(layout.names[:k]):
            if fields[j] == "" and j in (layout.user, layout.item, layout.rating, layout.timestamp):
                raise DataError(f"{where}: empty {name} field: {_show(raw)}")
        users.append(parse_id(fields[layout.user]))
        items.append(parse_id(fields[layout.item]))
        ratings.append(_parse_rating(fields[layout.rating], where, scale))
        if layout.timestamp is not None:
            stamps.append(_parse_timestamp(fields[layout.timestamp], where))
        rows.append(i)
    id_dtype = str if string_ids else np.int64
    return (
        np.array(users, dtype=id_dtype),
        np.array(items, dtype=id_dtype),
        np.array(ratings, dtype=np.float64),
        None if layout.timestamp is None else np.array(stamps, dtype=np.int64),
        np.array(rows, dtype=np.int64),
    )


def _read_delimited(
    paths: Sequence[Path],
    layout: _Layout,
    header: bool,
    scale: tuple[float, float] | None,
    chunk_bytes: int | None = None,
) -> _Rows:
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        return _read_delimited_mode(paths, layout, header, scale, False, chunk_bytes)
    except _NeedStringIds:
        logger.debug("%s: non-integer ids, parsing again with string ids", paths[0])
        return _read_delimited_mode(paths, layout, header, scale, True, chunk_bytes)


def _read_delimited_mode(
    paths: Sequence[Path],
    layout: _Layout,
    header: bool,
    scale: tuple[float, float] | None,
    string_ids: bool,
    chunk_bytes: int,
) -> _Rows:
    rows = _Rows(paths)
    for block, origins in _blocks(paths, chunk_bytes, header):
        parsed = None if string_ids else _fast_delimited(block, layout, scale)
        if parsed is None:
            parsed = _slow_delimited(block, origins, rows.files, layout, scale, string_ids)
        user, item, rating, ts, lines = parsed
        first = origins.locate(int(lines[0])) if len(lines) else (0, 0)
        rows.add(user, item, rating, ts, lines, origins, first, len(block))
    return rows


# ---------------------------------------------------------------------------------------------
# Netflix Prize layout
# ---------------------------------------------------------------------------------------------
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _valid_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> bool:
    if not bool(((m >= 1) & (m <= 12) & (y >= 1) & (y <= 9999) & (d >= 1)).all()):
        return False
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = _DAYS_IN_MONTH[m] - ((m == 2) & ~leap)
    return bool((d <= dim).all())


_NETFLIX_TABLE = bytes.maketrans(b",-", b"\t\t")


@dataclass
class _NetflixState:
    movie: int | None = None  # the current movie at the end of the previous block
    n_fields: int | None = None  # 2 (customer, rating) or 3 (with date), fixed by the first line


def _fast_netflix(
    block: bytes, origins: _Origins, state: _NetflixState, scale: tuple[float, float] | None
) -> tuple[np.ndarray, ...] | None:
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    if b"+" in block:
        return None
    arr0 = np.frombuffer(block, dtype=np.uint8)
    n_lines = _count_newlines(block)
    colons = np.flatnonzero(arr0 == 58)
    commas = np.flatnonzero(arr0 == 44)
    dashes = np.flatnonzero(arr0 == 45)
    # "123:" -> "123", commas and dashes -> tabs: every line becomes whitespace-separated integers
    norm = block.translate(_NETFLIX_TABLE, b":")
    arr = np.frombuffer(norm, dtype=np.uint8)
    ws = arr <= 32
    if ws[0] or bool((ws[1:] & ws[:-1]).any()):
        return None  # blank lines, empty fields
    nl = np.flatnonzero(arr0 == 10)
    n_ws = int(np.count_nonzero(ws))
    if n_ws != n_lines + len(commas) + len(dashes):
        return None  # spaces or tabs: the slow path decides
    # header lines: "123:" -- the colon right before the newline
    if len(colons) and not bool((arr0[colons + 1] == 10).all()):
        return None
    is_header = np.zeros(n_lines, dtype=bool)
    is_header[np.searchsorted(nl, colons)] = True
    n_header = len(colons)
    n_data = n_lines - n_header
    for s in origins.file_start_lines():
        if not is_header[s]:
            return None  # a file must begin with "MovieID:"
    if not is_header[0] and state.movie is None:
        return None
    data_lines = np.flatnonzero(~is_header)
    if n_data == 0:
        kd = state.n_fields or 3
    else:
        comma_line = np.searchsorted(nl, commas)
        per_line = np.bincount(comma_line, minlength=n_lines)
        if bool(per_line[is_header].any()):
            return None
        n_commas = int(per_line[data_lines[0]])
        kd = n_commas + 1
        if kd not in (2, 3) or (state.n_fields is not None and kd != state.n_fields):
            return None
        if not bool((per_line[data_lines] == n_commas).all()):
            return None
        if kd == 3:
            # exactly two dashes per data line, both after the second comma
            if len(dashes) != 2 * n_data:
                return None
            dash_line = np.searchsorted(nl, dashes)
            if not (
                bool((dash_line[0::2] == data_lines).all())
                and bool((dash_line[1::2] == data_lines).all())
            ):
                return None
            # YYYY-MM-DD exactly: ten characters after the second comma, dashes at 4 and 7
            after = commas[1::2]
            if not (
                bool((dashes[0::2] == after + 5).all())
                and bool((dashes[1::2] == after + 8).all())
                and bool((nl[data_lines] == after + 11).all())
            ):
                return None
        elif len(dashes):
            return None
    per_data = 5 if kd == 3 else 2
    vals = _fromstring(norm, np.int64)
    if vals is None or len(vals) != n_header + n_data * per_data or _saturated(vals):
        return None
    counts = np.where(is_header, 1, per_data)
    start = np.zeros(n_lines, dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    movies = vals[start[is_header]]
    ordinal = np.cumsum(is_header)[data_lines] - 1
    if n_header:
        movie = np.where(ordinal >= 0, movies[np.maximum(ordinal, 0)], state.movie or 0)
    else:
        movie = np.full(n_data, state.movie or 0, dtype=np.int64)
    s = start[data_lines]
    customer = vals[s]
    rating = vals[s + 1].astype(np.float64)
    if _bad_ratings(rating, scale):
        return None
    ts = None
    if kd == 3:
        y, m, d = vals[s + 2], vals[s + 3], vals[s + 4]
        if not _valid_dates(y, m, d):
            return None
        ts = _days_from_civil(y, m, d) * 86400
    state.n_fields = kd if n_data else state.n_fields
    state.movie = int(movies[-1]) if n_header else state.movie
    return customer, movie, rating, ts, data_lines


def _slow_netflix(
    block: bytes,
    origins: _Origins,
    files: Sequence[str],
    state: _NetflixState,
    scale: tuple[float, float] | None,
) -> tuple[np.ndarray, ...]:
    import datetime as _dt

    text = block.decode("utf-8", "surrogateescape")
    starts = set(origins.file_start_lines())
    epoch = _dt.date(1970, 1, 1)
    customers: list[int] = []
    movies: list[int] = []
    ratings: list[float] = []
    stamps: list[int] = []
    rows: list[int] = []
    for i, raw in enumerate(text.split("\n")[:-1]):
        if i in starts:
            state.movie = None
        line = raw.strip()
        if not line:
            continue
        file_idx, number = origins.locate(i)
        where = f"{files[file_idx]}, line {number}"
        if line.endswith(":"):
            head = line[:-1].strip()
            try:
                state.movie = int(head)
            except ValueError:
                raise DataError(f"{where}: movie id {head!r} is not an integer") from None
            continue
        if state.movie is None:
            raise DataError(f"{where}: rating line before any 'MovieID:' line: {_show(raw)}")
        fields = [f.strip() for f in line.split(",")]
        if state.n_fields is None and len(fields) in (2, 3):
            state.n_fields = len(fields)
        if len(fields) != state.n_fields:
            expected = "CustomerID,Rating,Date" if state.n_fields == 3 else "CustomerID,Rating"
            raise DataError(
                f"{where}: expected {state.n_fields or 3} fields ({expected}) separated by ',', "
                f"found {len(fields)}: {_show(raw)}"
            )
        try:
            customer = int(fields[0])
        except ValueError:
            raise DataError(f"{where}: customer id {fields[0]!r} is not an integer") from None
        rating = _parse_rating(fields[1], where, scale)
        if state.n_fields == 3:
            try:
                date = _dt.date.fromisoformat(fields[2])
            except ValueError:
                raise DataError(f"{where}: date {fields[2]!r} is not a YYYY-MM-DD date") from None
            stamps.append((date - epoch).days * 86400)
        customers.append(customer)
        movies.append(state.movie)
        ratings.append(rating)
        rows.append(i)
    return (
        np.array(customers, dtype=np.int64),
        np.array(movies, dtype=np.int64),
        np.array(ratings, dtype=np.float64),
        np.array(stamps, dtype=np.int64) if state.n_fields == 3 else None,
        np.array(rows, dtype=np.int64),
    )


def _read_netflix(
    paths: Sequence[Path], scale: tuple[float, float] | None, chunk_bytes: int | None = None
) -> _Rows:
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    rows = _Rows(paths)
    state = _NetflixState()
    for path in paths:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
    for block, origins in _blocks(paths, chunk_bytes, False):
        saved = _NetflixState(state.movie, state.n_fields)
        if origins.at_start[0]:
            state.movie = None
        parsed = _fast_netflix(block, origins, state, scale)
        if parsed is None:
            state.movie, state.n_fields = saved.movie, saved.n_fields
            parsed = _slow_netflix(block, origins, rows.files, state, scale)
        customer, movie, rating, ts, lines = parsed
        first = origins.locate(int(lines[0])) if len(lines) else (0, 0)
        rows.add(customer, movie, rating, ts, lines, origins, first, len(block))
    return rows


# ---------------------------------------------------------------------------------------------
# vocabularies, duplicates, assembly
# ---------------------------------------------------------------------------------------------
def _vocabulary(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary, int32 index of every entry). Integers sorted; strings by first appearance."""
    if raw.dtype.kind in "iu":
        n = len(raw)
        lo, hi = int(raw.min()), int(raw.max())
        if lo >= 0 and hi < max(4 * n, 1 << 22):
            present = np.zeros(hi + 1, dtype=bool)
            present[raw] = True
            lookup = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
            return np.flatnonzero(present).astype(np.int64), lookup[raw]
        vocab, inverse = np.unique(raw.astype(np.int64), return_inverse=True)
        return vocab, inverse.astype(np.int32)
    vocab, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return vocab[order], rank[inverse.ravel()]


def _resolve_duplicates(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray,
    n_items: int,
    policy: str,
    locate: _Locator,
    users: np.ndarray,
    items: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(rows to keep in file order, their ratings) or (None, None) when there is no duplicate."""
    key = user_idx.astype(np.int64) * n_items + item_idx
    if bool((key[1:] > key[:-1]).all()):
        return None, None  # sorted by user, then item (ML-20M/25M files): no pair twice
    key.sort()  # in place: a second copy of 8 bytes a rating is not needed for the common case
    if not bool((key[1:] == key[:-1]).any()):
        return None, None
    key = user_idx.astype(np.int64) * n_items + item_idx
    order = np.argsort(key, kind="stable")
    sk = key[order]
    del key
    same_as_next = sk[1:] == sk[:-1]
    if policy == "error":
        at = np.flatnonzero(same_as_next)
        j = at[np.argmin(order[at + 1])]
        a, b = int(order[j]), int(order[j + 1])
        (file_a, line_a), (file_b, line_b) = locate(a), locate(b)
        place = (
            f"{file_a}, lines {line_a} and {line_b}"
            if file_a == file_b
            else f"{file_a}, line {line_a} and {file_b}, line {line_b}"
        )
        raise DataError(
            f"{place}: duplicate rating of item {items[item_idx[a]]!r} by user "
            f"{users[user_idx[a]]!r}; use duplicates 'last' or 'mean' (--duplicates) to accept it"
        )
    is_last = np.ones(len(sk), dtype=bool)
    is_last[:-1] = ~same_as_next
    keep = order[is_last]
    if policy == "last":
        keep.sort()
        return keep, rating[keep]
    is_first = np.ones(len(sk), dtype=bool)
    is_first[1:] = ~same_as_next
    group = np.cumsum(is_first) - 1
    sums = np.bincount(group, weights=rating[order].astype(np.float64))
    counts = np.bincount(group)
    mean = sums / counts
    perm = np.argsort(keep)
    return keep[perm], mean[perm]


def _assemble(
    rows: _Rows,
    scale: tuple[float, float] | None,
    duplicates: str,
    source: str,
) -> tuple[Ratings, int]:
    if rows.n == 0:
        raise DataError(f"{source}: the file holds no ratings")
    locate = rows.locator()
    rating = rows.column("rating")
    timestamp = rows.column("timestamp")
    users, user_idx = _vocabulary(rows.column("user"))
    items, item_idx = _vocabulary(rows.column("item"))
    assert rating is not None
    keep, kept_rating = _resolve_duplicates(
        user_idx, item_idx, rating, len(items), duplicates, locate, users, items
    )
    n_dropped = 0
    if keep is not None:
        assert kept_rating is not None
        n_dropped = len(rating) - len(keep)
        logger.info("%s: %d duplicate ratings dropped (policy %r)", source, n_dropped, duplicates)
        user_idx, item_idx = user_idx[keep], item_idx[keep]
        rating = kept_rating.astype(np.float32)
        timestamp = None if timestamp is None else timestamp[keep]
    if scale is None:
        scale = (float(rating.min()), float(rating.max()))
    ratings = Ratings(
        user_idx=user_idx,
        item_idx=item_idx,
        rating=rating,
        users=IdIndex(users),
        items=IdIndex(items),
        rating_scale=scale,
        timestamp=timestamp,
    )
    return ratings, n_dropped


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
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
    layout = _delimited_layout(
        path, _normalise_sep(sep), sep is None, columns or DEFAULT_COLUMNS, header
    )
    rows = _read_delimited([path], layout, header, scale)
    ratings, dropped = _assemble(rows, scale, duplicates, str(path))
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
    pattern, files = _find_files(info, root)
    if not files and download and info.archive is not None:
        from autorec.data.download import download_dataset

        download_dataset(info.name, data_dir=root)
        pattern, files = _find_files(info, root)
    if not files:
        raise DataError(_missing_message(info, root))
    scale = rating_scale if rating_scale is not None else info.rating_scale
    if info.format == "netflix":
        rows = _read_netflix(files, scale)
        source = (
            str(files[0])
            if len(files) == 1
            else f"{root / info.folder / pattern} ({len(files)} files)"
        )
    else:
        if info.header:
            first = _peek_lines(files[0], 1)
            if first and _looks_numeric(_split(first[0][1], info.sep)):
                raise DataError(
                    f"{files[0]}, line {first[0][0]}: expected the header line 'userId,movieId,"
                    f"rating,timestamp', found {_show(first[0][1])}"
                )
        layout = _delimited_layout(files[0], info.sep, False, DEFAULT_COLUMNS, info.header)
        rows = _read_delimited(files, layout, info.header, scale)
        source = str(files[0])
    ratings, dropped = _assemble(rows, scale, duplicates, source)
    logger.info("loaded %s from %s: %r", info.name, source, ratings)
    return LoadedDataset(ratings, info.name, source, dropped)


def _looks_numeric(fields: Sequence[str]) -> bool:
    try:
        for f in fields:
            float(f)
    except ValueError:
        return False
    return True


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
        from autorec.data.synthetic import synthetic_preset

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
        from autorec.data.synthetic import SYNTHETIC_PRESETS

        raise DataError(
            f"unknown data set {spec!r}: not a file, and not a known name (known: "
            f"{', '.join(KNOWN_DATASETS)}, or synthetic:PRESET with PRESET one of "
            f"{', '.join(SYNTHETIC_PRESETS)})"
        )
    return load_file(
        path, sep=sep, columns=columns, header=header, rating_scale=scale, duplicates=duplicates
    )


OFFICIAL_FOLDS: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u1", "u2", "u3", "u4", "u5", "ua", "ub"),
}


def official_split(spec: str, fold: str, *, data_dir: str | Path | None = None) -> Split:
    """The official train/test split ``fold`` of a named set (ML-100K: u1..u5, ua, ub).

    Train is ``<fold>.base``, test ``<fold>.test``; both use the vocabularies of the whole
    ``u.data``, so indices agree with ``load_dataset("ml-100k")``. No validation set.
    """
    name = spec.lower()
    if name not in OFFICIAL_FOLDS:
        listing = "; ".join(f"{k}: {', '.join(v)}" for k, v in OFFICIAL_FOLDS.items())
        raise DataError(f"{spec!r} has no official splits; sets with official folds: {listing}")
    if fold not in OFFICIAL_FOLDS[name]:
        raise DataError(
            f"{name} has no official fold {fold!r}; folds: {', '.join(OFFICIAL_FOLDS[name])}"
        )
    info = KNOWN_DATASETS[name]
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
        layout = _delimited_layout(path, info.sep, False, DEFAULT_COLUMNS, False)
        rows = _read_delimited([path], layout, False, full.rating_scale)
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
