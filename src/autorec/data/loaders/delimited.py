"""Delimited rating files, one rating per line: ``user item rating [timestamp]``.

The separator is ``\\t`` for ML-100K ``u.data``, ``::`` for ML-1M/ML-10M ``ratings.dat``, ``,``
with a header line for the ``ratings.csv`` of ML-20M/25M/latest, anything for custom files
(Harper & Konstan 2015, "The MovieLens Datasets: History and Context", ACM TiiS 5(4)). The
timestamp is optional; the shared ML-1M copy has three fields per line.

Parsing is vectorised (:func:`fast_delimited`): separators are normalised to a tab, the structure
of every line is checked with a few numpy passes over the bytes, and the numbers are read with
``np.fromstring`` (integers when possible, which is about four times faster than floats; half-star
ratings such as ``3.5`` are read as two integers). A block that fails any check is parsed again
line by line by :func:`slow_delimited`, which either accepts it (blank lines, spaces, string ids)
or raises a :class:`~autorec.errors.DataError` naming the file, the 1-based line number and the
offending value. The two paths give identical results on the blocks both accept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autorec.data.loaders.blocks import Origins, peek_lines, read_blocks
from autorec.data.loaders.fields import (
    INT64_MAX,
    INT64_MIN,
    bad_ratings,
    fromstring,
    parse_rating,
    saturated,
    show,
)
from autorec.data.loaders.rows import Rows
from autorec.data.registry import DatasetInfo
from autorec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_EXACT_FLOAT_INT = 2.0**53  # float64 holds every integer below this exactly

#: Follows a "not a number" message about line 1 of a custom file read without a header.
HEADER_HINT = " (does the file have a header? use --header)"


class NeedStringIds(Exception):
    """An id is not an integer: the whole file is parsed again with string ids."""


def _sep_name(sep: str | None) -> str:
    return {None: "whitespace", "\t": "tabs", " ": "spaces"}.get(sep, repr(sep))


def _parse_int_id(field: str) -> int:
    try:
        value = int(field)
    except ValueError:
        try:
            f = float(field)
        except ValueError:
            raise NeedStringIds from None
        if not (f.is_integer() and abs(f) < _EXACT_FLOAT_INT):
            raise NeedStringIds from None
        value = int(f)
    if not INT64_MIN < value < INT64_MAX:
        raise NeedStringIds
    return value


def _parse_timestamp(field: str, where: str, hint: str = "") -> int:
    try:
        return int(field)
    except ValueError:
        pass
    try:
        f = float(field)
    except ValueError:
        raise DataError(f"{where}: timestamp {field!r} is not an integer{hint}") from None
    if f.is_integer() and abs(f) < _EXACT_FLOAT_INT:
        return int(f)
    raise DataError(f"{where}: timestamp {field!r} is not an integer")


def _signs_ok(block: bytes) -> bool:
    """Every ``+``/``-`` is followed by a digit (np.fromstring reads a lone sign as a sign of the
    next number, or as 0)."""
    arr = np.frombuffer(block, dtype=np.uint8)
    signs = np.flatnonzero((arr == 43) | (arr == 45))
    following = arr[np.minimum(signs + 1, len(arr) - 1)]
    return bool(((following >= 48) & (following <= 57)).all())


@dataclass(frozen=True)
class Layout:
    sep: str | None  # None: runs of whitespace
    n_fields: int
    user: int
    item: int
    rating: int
    timestamp: int | None
    names: tuple[str, ...]
    # a custom file read without --header: a word on its line 1 may be a header line
    header_hint: bool = False

    def describe(self) -> str:
        return ", ".join(self.names[: self.n_fields])


def normalise_sep(sep: str | None) -> str | None:
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


def split_fields(line: str, sep: str | None) -> list[str]:
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


def delimited_layout(
    path: Path, sep: str | None, sniff: bool, columns: Sequence[str], header: bool
) -> Layout:
    user, item, rating, ts, names = _column_positions(columns)
    lines = peek_lines(path, 2)
    if not lines:
        raise DataError(f"{path}: the file is empty")
    if sniff:
        sep = _sniff_sep(lines[0][1])
    data = lines[1:] if header else lines
    if not data:
        raise DataError(f"{path}: no ratings after the header line")
    number, text = data[0]
    n_fields = len(split_fields(text, sep))
    required = max(user, item, rating) + 1
    if not required <= n_fields <= len(names):
        expected = f"{required}" if required == len(names) else f"{required} to {len(names)}"
        raise DataError(
            f"{path}, line {number}: expected {expected} fields ({', '.join(names)}) separated "
            f"by {_sep_name(sep)}, found {n_fields}: {show(text)}"
            + ("; use --columns to name the columns" if n_fields > len(names) else "")
        )
    return Layout(
        sep, n_fields, user, item, rating, ts if ts is not None and ts < n_fields else None, names
    )


def fast_delimited(
    block: bytes, layout: Layout, scale: tuple[float, float] | None
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
        vals = fromstring(numeric, np.int64)
        if vals is not None and len(vals) == n_lines * k and not saturated(vals):
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
        fvals = fromstring(text, np.float64)
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
    if bad_ratings(rating, scale):
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
    vals = fromstring(bytes(buffer), np.int64)
    del writable, buffer
    if vals is None or len(vals) != n_lines * k or saturated(vals):
        return None
    table = vals.reshape(n_lines, k)
    out = {j: table[:, j] for j in int_cols}
    rating = table[:, rating_col].astype(np.float64)
    rating[row] += digit / 10.0
    out[rating_col] = rating
    return out


def slow_delimited(
    block: bytes,
    origins: Origins,
    files: Sequence[str],
    layout: Layout,
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
        fields = split_fields(line, layout.sep)
        if len(fields) != k:
            raise DataError(
                f"{where}: expected {k} fields ({layout.describe()}) separated by "
                f"{_sep_name(layout.sep)}, found {len(fields)}: {show(raw)}"
            )
        for j, name in enumerate(layout.names[:k]):
            if fields[j] == "" and j in (layout.user, layout.item, layout.rating, layout.timestamp):
                raise DataError(f"{where}: empty {name} field: {show(raw)}")
        hint = HEADER_HINT if layout.header_hint and number == 1 else ""
        users.append(parse_id(fields[layout.user]))
        items.append(parse_id(fields[layout.item]))
        ratings.append(parse_rating(fields[layout.rating], where, scale, hint))
        if layout.timestamp is not None:
            stamps.append(_parse_timestamp(fields[layout.timestamp], where, hint))
        rows.append(i)
    id_dtype = str if string_ids else np.int64
    return (
        np.array(users, dtype=id_dtype),
        np.array(items, dtype=id_dtype),
        np.array(ratings, dtype=np.float64),
        None if layout.timestamp is None else np.array(stamps, dtype=np.int64),
        np.array(rows, dtype=np.int64),
    )


def read_delimited(
    paths: Sequence[Path], layout: Layout, header: bool, scale: tuple[float, float] | None
) -> Rows:
    """The rows of delimited files; integer ids unless some id is not an integer."""
    try:
        return _read_delimited_mode(paths, layout, header, scale, False)
    except NeedStringIds:
        logger.debug("%s: non-integer ids, parsing again with string ids", paths[0])
        return _read_delimited_mode(paths, layout, header, scale, True)


def _read_delimited_mode(
    paths: Sequence[Path],
    layout: Layout,
    header: bool,
    scale: tuple[float, float] | None,
    string_ids: bool,
) -> Rows:
    rows = Rows(paths)
    for block, origins in read_blocks(paths, header):
        parsed = None if string_ids else fast_delimited(block, layout, scale)
        if parsed is None:
            parsed = slow_delimited(block, origins, rows.files, layout, scale, string_ids)
        user, item, rating, ts, lines = parsed
        first = origins.locate(int(lines[0])) if len(lines) else (0, 0)
        rows.add(user, item, rating, ts, lines, origins, first, len(block))
    return rows


def read_dataset(info: DatasetInfo, files: Sequence[Path], scale: tuple[float, float]) -> Rows:
    """The rows of a named delimited set (the registry says separator, header and columns)."""
    if info.header:
        first = peek_lines(files[0], 1)
        if first and _looks_numeric(split_fields(first[0][1], info.sep)):
            raise DataError(
                f"{files[0]}, line {first[0][0]}: expected the header line 'userId,movieId,"
                f"rating,timestamp', found {show(first[0][1])}"
            )
    layout = delimited_layout(files[0], info.sep, False, info.columns, info.header)
    return read_delimited(files, layout, info.header, scale)


def _looks_numeric(fields: Sequence[str]) -> bool:
    try:
        for f in fields:
            float(f)
    except ValueError:
        return False
    return True
