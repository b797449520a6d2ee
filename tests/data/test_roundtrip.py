"""Property tests: parse(write(x)) == x in every format, and the vectorised parse never disagrees
with the line-by-line one."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autorec.data.loaders import blocks, delimited, load_dataset
from autorec.data.registry import DEFAULT_COLUMNS
from autorec.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def chunk_bytes(size: int):
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = size
    try:
        yield
    finally:
        blocks.CHUNK_BYTES = saved


def rows_of(d) -> list[tuple]:
    r = d.ratings
    cols = [r.users.ids[r.user_idx].tolist(), r.items.ids[r.item_idx].tolist(), r.rating.tolist()]
    if r.timestamp is not None:
        cols.append(r.timestamp.tolist())
    return list(zip(*cols, strict=True))


int_ids = st.integers(0, 10**12)
str_ids = st.text("abcxyzABC0123456789_.-", min_size=0, max_size=6).map(lambda s: "u" + s)
stars = st.integers(1, 5).map(float)
half_stars = st.integers(1, 10).map(lambda k: k / 2)
stamps = st.integers(0, 2**40)


@st.composite
def rating_rows(draw, ids=int_ids, ratings=stars, min_size=1, max_size=40):
    pairs = draw(st.lists(st.tuples(ids, ids), min_size=min_size, max_size=max_size, unique=True))
    values = draw(st.lists(ratings, min_size=len(pairs), max_size=len(pairs)))
    times = draw(st.lists(stamps, min_size=len(pairs), max_size=len(pairs)))
    return [(u, i, r, t) for (u, i), r, t in zip(pairs, values, times, strict=True)]


def fmt_rating(r: float, style: int) -> str:
    if style == 0:
        return f"{r:g}"  # "4", "4.5"
    if style == 1:
        return f"{r:.1f}"  # "4.0", "4.5"
    return repr(float(r))


line_endings = st.sampled_from(["\n", "\r\n"])
chunks = st.sampled_from([16, 97, 4 << 20])


@SETTINGS
@given(
    rows=rating_rows(ratings=half_stars),
    sep=st.sampled_from(["\t", "::", ",", " ", ";"]),
    with_ts=st.booleans(),
    style=st.integers(0, 2),
    eol=line_endings,
    size=chunks,
    blank=st.booleans(),
)
def test_delimited_roundtrip(rows, sep, with_ts, style, eol, size, blank) -> None:
    lines = [
        sep.join([str(u), str(i), fmt_rating(r, style)] + ([str(t)] if with_ts else []))
        for u, i, r, t in rows
    ]
    if blank:
        lines.insert(len(lines) // 2, "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.txt"
        path.write_bytes((eol.join(lines) + eol).encode())
        with chunk_bytes(size):
            d = load_dataset(str(path), sep=sep)
    expected = [(u, i, r, t) if with_ts else (u, i, r) for u, i, r, t in rows]
    assert rows_of(d) == expected


@SETTINGS
@given(
    rows=rating_rows(
        ids=str_ids,
        ratings=st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: float(np.float32(x))),
    ),
    sep=st.sampled_from(["\t", ",", "::"]),
    size=chunks,
)
def test_string_ids_and_arbitrary_ratings_roundtrip(rows, sep, size) -> None:
    lines = [sep.join([u, i, repr(r)]) for u, i, r, _ in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.txt"
        path.write_text("\n".join(lines) + "\n")
        with chunk_bytes(size):
            d = load_dataset(str(path), sep=sep, columns=["user", "item", "rating"])
    assert rows_of(d) == [(u, i, r) for u, i, r, _ in rows]
    assert d.ratings.users.ids.tolist() == list(dict.fromkeys(u for u, _, _, _ in rows))


@SETTINGS
@given(rows=rating_rows(ratings=half_stars), style=st.integers(0, 1), size=chunks)
def test_movielens_csv_roundtrip(rows, style, size) -> None:
    text = "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{fmt_rating(r, style)},{t}\n" for u, i, r, t in rows
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ml-25m" / "ratings.csv"
        path.parent.mkdir()
        path.write_text(text)
        with chunk_bytes(size):
            d = load_dataset("ml-25m", data_dir=tmp)
    assert rows_of(d) == rows
    assert d.ratings.rating_scale == (0.5, 5.0)


dates = st.dates(
    min_value=np.datetime64("1998-01-01").astype(object),
    max_value=np.datetime64("2006-12-31").astype(object),
)


@SETTINGS
@given(
    rows=rating_rows(ids=st.integers(1, 3_000_000)),
    when=st.lists(dates, min_size=40, max_size=40),
    with_dates=st.booleans(),
    per_movie_files=st.booleans(),
    size=chunks,
    eol=line_endings,
)
def test_netflix_roundtrip(rows, when, with_dates, per_movie_files, size, eol) -> None:
    by_movie: dict[int, list[str]] = {}
    expected = []
    for k, (customer, movie, rating, _) in enumerate(rows):
        date = when[k]
        by_movie.setdefault(movie, []).append(
            f"{customer},{int(rating)}" + (f",{date.isoformat()}" if with_dates else "")
        )
        expected.append(
            (customer, movie, rating)
            + (
                (int((np.datetime64(date) - np.datetime64("1970-01-01")).astype(int)) * 86400,)
                if with_dates
                else ()
            )
        )
    movies = sorted(by_movie)
    order = {m: [e for e in expected if e[1] == m] for m in movies}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "netflix"
        if per_movie_files:
            (root / "training_set").mkdir(parents=True)
            for m in movies:
                (root / "training_set" / f"mv_{m:012d}.txt").write_bytes(
                    eol.join([f"{m}:", *by_movie[m]]).encode() + eol.encode()
                )
        else:
            root.mkdir()
            half = len(movies) // 2
            for n, group in enumerate((movies[:half], movies[half:]), start=1):
                lines = [line for m in group for line in (f"{m}:", *by_movie[m])]
                if lines:
                    (root / f"combined_data_{n}.txt").write_bytes((eol.join(lines) + eol).encode())
        with chunk_bytes(size):
            d = load_dataset("netflix", data_dir=tmp)
    assert rows_of(d) == [e for m in movies for e in order[m]]


# ---------------------------------------------------------------------------------------------
# the vectorised parse and the line-by-line parse agree wherever the vectorised one answers
# ---------------------------------------------------------------------------------------------
good_ids = st.integers(0, 10**6).map(str)
good_ratings = st.sampled_from(["1", "2", "3", "4", "5", "3.5", "4.0", "0.5", "2.5"])
junk = st.sampled_from(
    [
        "3.25",
        ".5",
        "5.",
        "1e3",
        "1.5e0",
        "-2.5",
        "+3",
        "nan",
        "inf",
        "-inf",
        "0x10",
        "1_0",
        "",
        " 4",
        "4 ",
        "abc",
        "007",
        "99999999999999999999",
        "1.0",
        "2.5.",
        "..",
        "-",
        "e",
        "3.5x",
        "6",
        "0",
        "-1",
        "1e400",
        "Infinity",
        "\u0663",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    sep=st.sampled_from([",", "::", "\t", None]),
    with_ts=st.booleans(),
    scale=st.sampled_from([None, (1.0, 5.0)]),
    n_rows=st.integers(1, 6),
    n_junk=st.integers(0, 2),
)
def test_fast_path_agrees_with_slow_path(data, sep, with_ts, scale, n_rows, n_junk) -> None:
    """Clean blocks with up to two odd cells (and now and then a short or long row): whenever
    the vectorised parse answers, the line-by-line parse accepts the block and agrees."""
    k = 4 if with_ts else 3
    columns = [good_ids, good_ids, good_ratings] + ([good_ids] if with_ts else [])
    rows = [[data.draw(c) for c in columns] for _ in range(n_rows)]
    for _ in range(n_junk):
        rows[data.draw(st.integers(0, n_rows - 1))][data.draw(st.integers(0, k - 1))] = data.draw(
            junk
        )
    if data.draw(st.integers(0, 9)) == 0:  # a missing or an extra field
        r = data.draw(st.integers(0, n_rows - 1))
        rows[r] = rows[r][:-1] if data.draw(st.booleans()) else [*rows[r], "7"]
    joiner = " " if sep is None else sep
    block = ("\n".join(joiner.join(row) for row in rows) + "\n").encode()
    layout = delimited.Layout(
        sep=sep,
        n_fields=k,
        user=0,
        item=1,
        rating=2,
        timestamp=3 if with_ts else None,
        names=DEFAULT_COLUMNS,
    )
    fast = delimited.fast_delimited(block, layout, scale)
    if fast is None:
        return  # the slow path decides: always allowed
    origins = blocks.Origins()
    origins.add(0, 0, 1, True)
    try:
        slow = delimited.slow_delimited(block, origins, ["f"], layout, scale, string_ids=False)
    except (DataError, delimited.NeedStringIds) as exc:  # pragma: no cover - the bug itself
        pytest.fail(f"fast path accepted {block!r}, slow path refused it: {exc!r}")
    for a, b in zip(fast, slow, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
