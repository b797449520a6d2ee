"""The Netflix Prize layout: a ``MovieID:`` line followed by ``CustomerID,Rating,Date`` lines.

Either one file per movie (``training_set/mv_*.txt``) or the four ``combined_data_*.txt`` (Bennett
& Lanning 2007, "The Netflix Prize", KDD Cup workshop); the date is optional. Dates become Unix
timestamps at midnight UTC. As for delimited files, a vectorised parse (:func:`fast_netflix`)
handles clean blocks and a line-by-line parse (:func:`slow_netflix`) the rest, with messages that
name the file, line and value.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autorec.data.loaders.blocks import Origins, count_newlines, read_blocks
from autorec.data.loaders.fields import bad_ratings, fromstring, parse_rating, saturated, show
from autorec.data.loaders.rows import Rows
from autorec.data.registry import DatasetInfo
from autorec.errors import DataError

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
class NetflixState:
    movie: int | None = None  # the current movie at the end of the previous block
    n_fields: int | None = None  # 2 (customer, rating) or 3 (with date), fixed by the first line


def fast_netflix(
    block: bytes, origins: Origins, state: NetflixState, scale: tuple[float, float] | None
) -> tuple[np.ndarray, ...] | None:
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    if b"+" in block:
        return None
    arr0 = np.frombuffer(block, dtype=np.uint8)
    n_lines = count_newlines(block)
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
    vals = fromstring(norm, np.int64)
    if vals is None or len(vals) != n_header + n_data * per_data or saturated(vals):
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
    if bad_ratings(rating, scale):
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


def slow_netflix(
    block: bytes,
    origins: Origins,
    files: Sequence[str],
    state: NetflixState,
    scale: tuple[float, float] | None,
) -> tuple[np.ndarray, ...]:
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
            raise DataError(f"{where}: rating line before any 'MovieID:' line: {show(raw)}")
        fields = [f.strip() for f in line.split(",")]
        if state.n_fields is None and len(fields) in (2, 3):
            state.n_fields = len(fields)
        if len(fields) != state.n_fields:
            expected = "CustomerID,Rating,Date" if state.n_fields == 3 else "CustomerID,Rating"
            raise DataError(
                f"{where}: expected {state.n_fields or 3} fields ({expected}) separated by ',', "
                f"found {len(fields)}: {show(raw)}"
            )
        try:
            customer = int(fields[0])
        except ValueError:
            raise DataError(f"{where}: customer id {fields[0]!r} is not an integer") from None
        rating = parse_rating(fields[1], where, scale)
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


def read_netflix(paths: Sequence[Path], scale: tuple[float, float] | None) -> Rows:
    """The rows of Netflix files, read in order (a file must begin with a ``MovieID:`` line)."""
    rows = Rows(paths)
    state = NetflixState()
    for path in paths:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
    for block, origins in read_blocks(paths, False):
        saved = NetflixState(state.movie, state.n_fields)
        if origins.at_start[0]:
            state.movie = None
        parsed = fast_netflix(block, origins, state, scale)
        if parsed is None:
            state.movie, state.n_fields = saved.movie, saved.n_fields
            parsed = slow_netflix(block, origins, rows.files, state, scale)
        customer, movie, rating, ts, lines = parsed
        first = origins.locate(int(lines[0])) if len(lines) else (0, 0)
        rows.add(customer, movie, rating, ts, lines, origins, first, len(block))
    return rows


def read_dataset(info: DatasetInfo, files: Sequence[Path], scale: tuple[float, float]) -> Rows:
    """The rows of a named set in the Netflix layout."""
    return read_netflix(files, scale)
