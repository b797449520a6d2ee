"""Parsing of every format, the registry, error messages, duplicates and vocabularies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autorec.data.loaders import LoadedDataset, blocks, delimited, load_dataset, netflix
from autorec.data.registry import DEFAULT_COLUMNS, KNOWN_DATASETS, resolve_data_dir
from autorec.errors import ConfigError, DataError
from tests.data.conftest import need

STATS_KEYS = {
    "n_users",
    "n_items",
    "n_ratings",
    "rating_min",
    "rating_max",
    "density",
    "n_duplicates_dropped",
}


def triples(d: LoadedDataset) -> list[tuple[object, object, float]]:
    r = d.ratings
    return list(
        zip(
            r.users.ids[r.user_idx].tolist(),
            r.items.ids[r.item_idx].tolist(),
            r.rating.tolist(),
            strict=True,
        )
    )


# ---------------------------------------------------------------------------------------------
# real data (../shared/data or $AUTOREC_DATA_DIR)
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_ml100k_real_counts(shared_data_dir: Path) -> None:
    need(shared_data_dir, "ml-100k/u.data")
    d = load_dataset("ml-100k", data_dir=shared_data_dir)
    r = d.ratings
    assert (r.n_users, r.n_items, r.n_ratings) == (943, 1682, 100_000)
    assert np.array_equal(r.users.ids, np.arange(1, 944))
    assert np.array_equal(r.items.ids, np.arange(1, 1683))
    assert r.rating_scale == (1.0, 5.0)
    values, counts = np.unique(r.rating, return_counts=True)
    assert values.tolist() == [1, 2, 3, 4, 5]
    assert counts.tolist() == [6_110, 11_370, 27_145, 34_174, 21_201]
    assert r.timestamp is not None
    assert (int(r.timestamp.min()), int(r.timestamp.max())) == (874_724_710, 893_286_638)
    assert d.n_duplicates_dropped == 0 and d.name == "ml-100k"


@pytest.mark.realdata
def test_ml1m_real_counts_and_row_order(shared_data_dir: Path) -> None:
    path = need(shared_data_dir, "ml-1m/ratings.dat")
    d = load_dataset("ml-1m", data_dir=shared_data_dir)
    r = d.ratings
    assert (r.n_users, r.n_items, r.n_ratings) == (6_040, 3_706, 1_000_209)
    assert d.stats()["rating_min"] == 1.0 and d.stats()["rating_max"] == 5.0
    assert r.timestamp is None  # the shared copy has three fields per line
    _, counts = np.unique(r.rating, return_counts=True)
    assert counts.tolist() == [56_174, 107_557, 261_197, 348_971, 226_310]
    assert r.user_counts().min() >= 20
    # independent parse (whitespace split), row for row in file order
    raw = np.array(path.read_text().replace("::", " ").split(), dtype=np.int64).reshape(-1, 3)
    assert np.array_equal(r.users.ids[r.user_idx], raw[:, 0])
    assert np.array_equal(r.items.ids[r.item_idx], raw[:, 1])
    assert np.array_equal(r.rating, raw[:, 2].astype(np.float32))
    # item index k is the k-th smallest rated MovieID
    assert np.array_equal(r.items.ids, np.unique(raw[:, 1]))


@pytest.mark.realdata
def test_ml1m_first100k_with_custom_options(shared_data_dir: Path) -> None:
    path = need(shared_data_dir, "ml-1m/ratings_first100k.dat")
    full = need(shared_data_dir, "ml-1m/ratings.dat")
    d = load_dataset(str(path), sep="::", columns=["user", "item", "rating", "timestamp"])
    r = d.ratings
    assert r.n_ratings == 100_000 and r.n_users == 669
    assert r.timestamp is not None and r.timestamp.min() > 9e8
    assert d.name == str(path)
    lines = full.read_text().split("\n")[:100_000]
    raw = np.array(" ".join(lines).replace("::", " ").split(), dtype=np.int64).reshape(-1, 3)
    assert np.array_equal(r.users.ids[r.user_idx], raw[:, 0])
    assert np.array_equal(r.items.ids[r.item_idx], raw[:, 1])
    assert np.array_equal(r.rating, raw[:, 2].astype(np.float32))


@pytest.mark.realdata
def test_ml1m_named_loader_reads_the_official_four_field_format(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    source = need(shared_data_dir, "ml-1m/ratings_first100k.dat")
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").symlink_to(source)
    d = load_dataset("ml-1m", data_dir=tmp_path)
    assert d.ratings.n_ratings == 100_000 and d.ratings.timestamp is not None


# ---------------------------------------------------------------------------------------------
# every format, on files the tests write
# ---------------------------------------------------------------------------------------------
def test_ml100k_tab_format(tmp_path: Path, write) -> None:
    write(tmp_path / "ml-100k" / "u.data", "7\t30\t4\t100\n3\t10\t2\t200\n7\t10\t5\t300\n")
    d = load_dataset("ml-100k", data_dir=tmp_path)
    assert triples(d) == [(7, 30, 4.0), (3, 10, 2.0), (7, 10, 5.0)]
    assert d.ratings.timestamp.tolist() == [100, 200, 300]
    assert d.ratings.rating_scale == (1.0, 5.0)  # official scale although the data has 2..5
    assert d.source == str(tmp_path / "ml-100k" / "u.data")


@pytest.mark.parametrize("timestamps", [True, False])
def test_ml1m_double_colon_format_with_and_without_timestamp(
    tmp_path: Path, write, timestamps: bool
) -> None:
    rows = [(1, 50, 5, 11), (1, 20, 3, 12), (2, 50, 1, 13)]
    text = "".join(
        f"{u}::{i}::{r}" + (f"::{t}" if timestamps else "") + "\n" for u, i, r, t in rows
    )
    write(tmp_path / "ml-1m" / "ratings.dat", text)
    d = load_dataset("ml-1m", data_dir=tmp_path)
    assert triples(d) == [(1, 50, 5.0), (1, 20, 3.0), (2, 50, 1.0)]
    assert (d.ratings.timestamp is not None) == timestamps
    assert d.ratings.items.ids.tolist() == [20, 50]


def test_ml10m_half_stars(tmp_path: Path, write) -> None:
    write(
        tmp_path / "ml-10M100K" / "ratings.dat",
        "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::838983392\n",
    )
    d = load_dataset("ml-10m", data_dir=tmp_path)
    assert [t[2] for t in triples(d)] == [5.0, 4.5, 0.5]
    assert d.ratings.rating_scale == (0.5, 5.0)


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-latest-small", "ml-latest"])
def test_movielens_csv_with_header(tmp_path: Path, write, name: str) -> None:
    write(
        tmp_path / KNOWN_DATASETS[name].folder / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.0,1112484676\n"
        "5,2,5.0,1112484819\n",
    )
    d = load_dataset(name, data_dir=tmp_path)
    assert triples(d) == [(1, 2, 3.5), (1, 29, 3.0), (5, 2, 5.0)]
    assert d.ratings.timestamp.tolist() == [1112486027, 1112484676, 1112484819]


def test_movielens_csv_without_header_is_refused(tmp_path: Path, write) -> None:
    path = write(tmp_path / "ml-20m" / "ratings.csv", "1,2,3.5,1112486027\n")
    with pytest.raises(DataError, match="header") as e:
        load_dataset("ml-20m", data_dir=tmp_path)
    assert str(path) in str(e.value) and "line 1" in str(e.value)


NETFLIX_MOVIE_1 = "1:\n30878,4,2005-12-26\n2647871,1,2005-12-30\n"
NETFLIX_MOVIE_2 = "2:\n30878,3,2004-02-29\n6,5,2005-01-01\n"
NETFLIX_EXPECTED = [(30878, 1, 4.0), (2647871, 1, 1.0), (30878, 2, 3.0), (6, 2, 5.0)]
NETFLIX_DAYS = ["2005-12-26", "2005-12-30", "2004-02-29", "2005-01-01"]


def _epoch_seconds(days: list[str]) -> list[int]:
    return (np.array(days, dtype="datetime64[D]").astype(np.int64) * 86400).tolist()


def test_netflix_training_set_layout(tmp_path: Path, write) -> None:
    write(tmp_path / "netflix" / "training_set" / "mv_0000001.txt", NETFLIX_MOVIE_1)
    write(tmp_path / "netflix" / "training_set" / "mv_0000002.txt", NETFLIX_MOVIE_2)
    d = load_dataset("netflix", data_dir=tmp_path)
    assert triples(d) == NETFLIX_EXPECTED
    assert d.ratings.timestamp.tolist() == _epoch_seconds(NETFLIX_DAYS)
    assert d.ratings.users.ids.tolist() == [6, 30878, 2647871]
    assert "2 files" in d.source


def test_netflix_combined_layout(tmp_path: Path, write) -> None:
    write(tmp_path / "netflix" / "combined_data_1.txt", NETFLIX_MOVIE_1)
    write(tmp_path / "netflix" / "combined_data_2.txt", NETFLIX_MOVIE_2.replace("\n", "\r\n"))
    d = load_dataset("netflix", data_dir=tmp_path)
    assert triples(d) == NETFLIX_EXPECTED
    assert d.ratings.timestamp.tolist() == _epoch_seconds(NETFLIX_DAYS)


def test_netflix_without_dates(tmp_path: Path, write) -> None:
    write(tmp_path / "netflix" / "combined_data_1.txt", "3:\n5,2\n6,1\n4:\n5,5\n")
    d = load_dataset("netflix", data_dir=tmp_path)
    assert triples(d) == [(5, 3, 2.0), (6, 3, 1.0), (5, 4, 5.0)]
    assert d.ratings.timestamp is None


def test_netflix_across_many_blocks(tmp_path: Path, write, small_chunks) -> None:
    rng = np.random.default_rng(3)
    lines, expected = [], []
    for movie in (4, 9, 2):
        lines.append(f"{movie}:")
        for customer in rng.choice(10_000, size=40, replace=False).tolist():
            rating = int(rng.integers(1, 6))
            lines.append(f"{customer},{rating},2005-0{movie % 9 + 1}-1{rating}")
            expected.append((customer, movie, float(rating)))
    write(tmp_path / "netflix" / "combined_data_1.txt", "\n".join(lines) + "\n")
    assert triples(load_dataset("netflix", data_dir=tmp_path)) == expected


def test_custom_string_ids_keep_first_appearance_order(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "bob,film-z,4\nalice,film-a,2\nbob,film-a,1\n")
    d = load_dataset(str(path))
    assert d.ratings.users.ids.tolist() == ["bob", "alice"]
    assert d.ratings.items.ids.tolist() == ["film-z", "film-a"]
    assert triples(d) == [("bob", "film-z", 4.0), ("alice", "film-a", 2.0), ("bob", "film-a", 1.0)]
    assert d.ratings.rating_scale == (1.0, 4.0)  # (min, max) of the data
    assert d.name == str(path)


def test_custom_integer_ids_are_sorted_ascending(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.txt", "30 7 1\n10 9 2\n20 8 3\n")
    d = load_dataset(str(path), sep=" ")
    assert d.ratings.users.ids.tolist() == [10, 20, 30]
    assert d.ratings.items.ids.tolist() == [7, 8, 9]
    assert d.ratings.user_idx.tolist() == [2, 0, 1]


def test_custom_columns_header_and_ignored_column(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.tsv", "item\tx\tuser\tscore\n5\tfoo\t1\t2.5\n6\tbar\t1\t4\n")
    d = load_dataset(str(path), sep="\t", columns=["item", "_", "user", "rating"], header=True)
    assert triples(d) == [(1, 5, 2.5), (1, 6, 4.0)]


def test_custom_separator_is_detected(tmp_path: Path, write) -> None:
    for name, text in {
        "a.dat": "1::2::3\n",
        "b.csv": "1,2,3\n",
        "c.tsv": "1\t2\t3\n",
        "d.txt": "1 2 3\n",
        "e.ssv": "1;2;3\n",
    }.items():
        assert triples(load_dataset(str(write(tmp_path / name, text)))) == [(1, 2, 3.0)], name


def test_blank_lines_crlf_spaces_and_missing_final_newline(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "1,2,3,10\r\n\r\n 4 , 5 ,1,11\r\n\n6,7,2,12\n\n\n")
    d = load_dataset(str(path))
    assert triples(d) == [(1, 2, 3.0), (4, 5, 1.0), (6, 7, 2.0)]
    assert d.ratings.timestamp.tolist() == [10, 11, 12]
    path = write(tmp_path / "s.csv", "1,2,3\n4,5,1")
    assert triples(load_dataset(str(path))) == [(1, 2, 3.0), (4, 5, 1.0)]


def test_given_rating_scale_is_used(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "1,2,3\n4,5,4\n")
    assert load_dataset(str(path), rating_scale=(1, 10)).ratings.rating_scale == (1.0, 10.0)


def test_large_file_matches_an_independent_parse(tmp_path: Path, write) -> None:
    """Half-star CSV over several blocks: the vectorised path against a plain split."""
    rng = np.random.default_rng(0)
    n = 20_000
    users = rng.integers(1, 500, n)
    items = rng.integers(1, 3_000, n)
    ratings = rng.integers(1, 11, n) / 2
    stamps = rng.integers(10**9, 2 * 10**9, n)
    text = "".join(
        f"{u},{i},{r:g},{t}\n"
        for u, i, r, t in zip(
            users.tolist(), items.tolist(), ratings.tolist(), stamps.tolist(), strict=True
        )
    )
    path = write(tmp_path / "big.csv", text)
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = 50_000
    try:
        d = load_dataset(str(path), duplicates="last")
    finally:
        blocks.CHUNK_BYTES = saved
    keep = np.sort(n - 1 - np.unique((users * 10_000 + items)[::-1], return_index=True)[1])
    r = d.ratings
    assert np.array_equal(r.users.ids[r.user_idx], users[keep])
    assert np.array_equal(r.items.ids[r.item_idx], items[keep])
    assert np.array_equal(r.rating, ratings[keep].astype(np.float32))
    assert np.array_equal(r.timestamp, stamps[keep])
    assert d.n_duplicates_dropped == n - len(keep) > 0


# ---------------------------------------------------------------------------------------------
# the vectorised path really runs (a silent fallback would only show up as slowness)
# ---------------------------------------------------------------------------------------------
LAYOUT4 = dict(user=0, item=1, rating=2, timestamp=3, names=DEFAULT_COLUMNS)


@pytest.mark.parametrize(
    ("sep", "block", "expected"),
    [
        ("\t", b"1\t2\t3\t4\n5\t6\t1\t7\n", [3.0, 1.0]),
        ("::", b"1::2::3::4\n5::6::1::7\n", [3.0, 1.0]),
        (",", b"1,2,3.5,4\n5,6,1,7\n", [3.5, 1.0]),
        (",", b"1,2,3.0,4\n5,6,1.5,7\n", [3.0, 1.5]),
        (",", b"1,2,3.25,4\n5,6,1e0,7\n", [3.25, 1.0]),  # float parse
        (None, b"1 2 3 4\n5\t6 1 7\n", [3.0, 1.0]),
        (",", b"1,2,nan,4\n5,6,1,7\n", None),  # parsed as floats, refused by the rating check
    ],
)
def test_fast_path_accepts_clean_blocks(
    sep: str | None, block: bytes, expected: list[float] | None
) -> None:
    layout = delimited.Layout(sep=sep, n_fields=4, **LAYOUT4)
    parsed = delimited.fast_delimited(block, layout, None)
    if expected is None:
        assert parsed is None
        return
    assert parsed is not None
    user, item, rating, ts, lines = parsed
    assert user.tolist() == [1, 5] and item.tolist() == [2, 6] and ts.tolist() == [4, 7]
    assert rating.tolist() == expected and lines.tolist() == [0, 1]


@pytest.mark.parametrize(
    "block",
    [
        b"1,2,3,4\n\n5,6,1,7\n",
        b"1,2,,4\n",
        b"1,2,3\n",
        b"1,2,3,4,5\n",
        b"a,2,3,4\n",
        b"1,2 ,3,4\n",
        b"1,2,3,4\n5,6,1,7,8\n9,9,1\n",
        b"99999999999999999999,2,3,4\n",
    ],
)
def test_fast_path_hands_irregular_blocks_to_the_slow_path(block: bytes) -> None:
    layout = delimited.Layout(sep=",", n_fields=4, **LAYOUT4)
    assert delimited.fast_delimited(block, layout, None) is None


def test_fast_netflix_path_accepts_a_clean_block() -> None:
    block = (NETFLIX_MOVIE_1 + NETFLIX_MOVIE_2).encode()
    origins = blocks.Origins()
    origins.add(0, 0, 1, True)
    parsed = netflix.fast_netflix(block, origins, netflix.NetflixState(), (1.0, 5.0))
    assert parsed is not None
    customer, movie, rating, ts, lines = parsed
    assert list(zip(customer.tolist(), movie.tolist(), rating.tolist(), strict=True)) == (
        NETFLIX_EXPECTED
    )
    assert ts.tolist() == _epoch_seconds(NETFLIX_DAYS)
    assert lines.tolist() == [1, 2, 4, 5]


# ---------------------------------------------------------------------------------------------
# error messages: file, 1-based line number, offending value
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "value", "what"),
    [
        ("1::2::x::5", "'x'", "not a number"),
        ("1::2::nan::5", "'nan'", "not a finite number"),
        ("1::2::inf::5", "'inf'", "not a finite number"),
        ("1::2::-inf::5", "'-inf'", "not a finite number"),
        ("1::2::3::noon", "'noon'", "timestamp"),
        ("1::2", "'1::2'", "expected 4 fields"),
        ("1::2::3::4::5", "'1::2::3::4::5'", "expected 4 fields"),
        ("1::::3::4", "'1::::3::4'", "empty item"),
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
def test_bad_line_is_named(
    tmp_path: Path, write, line: str, value: str, what: str, chunked: bool
) -> None:
    good = "".join(f"{u}::{u + 1}::3::{u}\n" for u in range(1, 30))
    path = write(tmp_path / "r.dat", good + line + "\n" + good.replace("::3::", "::4::"))
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = 64 if chunked else saved
    try:
        with pytest.raises(DataError) as e:
            load_dataset(str(path), sep="::")
    finally:
        blocks.CHUNK_BYTES = saved
    message = str(e.value)
    assert str(path) in message and "line 30" in message and value in message and what in message


def test_rating_outside_given_scale(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "1,2,3\n1,3,7\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path), rating_scale=(1, 5))
    assert all(s in str(e.value) for s in (str(path), "line 2", "'7'", "1..5"))
    assert load_dataset(str(path)).ratings.rating_scale == (3.0, 7.0)


def test_rating_outside_official_scale(tmp_path: Path, write) -> None:
    path = write(tmp_path / "ml-100k" / "u.data", "1\t2\t3\t4\n1\t3\t0\t5\n")
    with pytest.raises(DataError) as e:
        load_dataset("ml-100k", data_dir=tmp_path)
    assert all(s in str(e.value) for s in (str(path), "line 2", "'0'", "1..5"))


def test_field_count_fixed_by_the_first_line(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.dat", "1::2::3::4\n1::3::4\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert "line 2" in str(e.value) and "'1::3::4'" in str(e.value)


def test_too_many_fields_on_the_first_line(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "1,2,3,4,5\n")
    with pytest.raises(DataError, match="--columns") as e:
        load_dataset(str(path))
    assert "line 1" in str(e.value) and "'1,2,3,4,5'" in str(e.value)


def test_header_hint_for_a_header_line(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert "line 1" in str(e.value) and "'rating'" in str(e.value)
    assert triples(load_dataset(str(path), header=True)) == [(1, 2, 3.0)]


@pytest.mark.parametrize(("content", "what"), [("", "empty"), ("\n\n  \n", "empty")])
def test_empty_file(tmp_path: Path, write, content: str, what: str) -> None:
    path = write(tmp_path / "r.csv", content)
    with pytest.raises(DataError, match=what) as e:
        load_dataset(str(path))
    assert str(path) in str(e.value)


def test_header_only_file(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n")
    with pytest.raises(DataError, match="no ratings") as e:
        load_dataset(str(path), header=True)
    assert str(path) in str(e.value)


def test_unknown_dataset_lists_the_known_names() -> None:
    with pytest.raises(DataError) as e:
        load_dataset("ml-2m")
    assert "'ml-2m'" in str(e.value)
    assert all(name in str(e.value) for name in KNOWN_DATASETS)


def test_missing_named_set_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("ml-1m", data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "ml-1m" / "ratings.dat") in message
    assert "autorec data download ml-1m" in message and "--data-dir" in message


def test_missing_netflix_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("netflix", data_dir=tmp_path)
    message = str(e.value)
    assert "cannot be downloaded" in message and "training_set" in message
    assert str(tmp_path / "netflix") in message


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        ("10,3,2005-01-01\n", "line 1", "before any 'MovieID:'"),
        ("1:\n10,3,2005-02-30\n", "line 2", "'2005-02-30'"),
        ("1:\n10,3,2005-01-01\n11,x,2005-01-01\n", "line 3", "'x'"),
        ("1:\n10,3,2005-01-01\n11,6,2005-01-01\n", "line 3", "'6'"),
        ("1:\n10,3,2005-01-01\n11,3\n", "line 3", "expected 3 fields"),
        ("1:\nabc,3,2005-01-01\n", "line 2", "'abc'"),
        ("x:\n10,3,2005-01-01\n", "line 1", "'x'"),
    ],
)
def test_netflix_errors(tmp_path: Path, write, content: str, line: str, what: str) -> None:
    path = write(tmp_path / "netflix" / "combined_data_1.txt", content)
    with pytest.raises(DataError) as e:
        load_dataset("netflix", data_dir=tmp_path)
    assert str(path) in str(e.value) and line in str(e.value) and what in str(e.value)


def test_netflix_file_must_start_with_a_movie_line(tmp_path: Path, write) -> None:
    write(tmp_path / "netflix" / "training_set" / "mv_0000001.txt", "1:\n10,3,2005-01-01\n")
    path = write(tmp_path / "netflix" / "training_set" / "mv_0000002.txt", "11,3,2005-01-01\n")
    with pytest.raises(DataError, match="before any 'MovieID:'") as e:
        load_dataset("netflix", data_dir=tmp_path)
    assert str(path) in str(e.value) and "line 1" in str(e.value)


def test_options_for_custom_files_only() -> None:
    with pytest.raises(ConfigError):
        load_dataset("ml-1m", sep=",")


def test_bad_options(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "1,2,3\n")
    with pytest.raises(ConfigError):
        load_dataset(str(path), duplicates="first")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        load_dataset(str(path), rating_scale=(5, 1))
    with pytest.raises(ConfigError):
        load_dataset(str(path), columns=["user", "item"])


# ---------------------------------------------------------------------------------------------
# duplicates
# ---------------------------------------------------------------------------------------------
DUPES = "1,2,3\n4,5,1\n1,2,5\n6,6,2\n1,2,4\n"


def test_duplicates_last(tmp_path: Path, write) -> None:
    d = load_dataset(str(write(tmp_path / "r.csv", DUPES)), duplicates="last")
    assert triples(d) == [(4, 5, 1.0), (6, 6, 2.0), (1, 2, 4.0)]
    assert d.n_duplicates_dropped == 2 and d.stats()["n_duplicates_dropped"] == 2


def test_duplicates_mean(tmp_path: Path, write) -> None:
    d = load_dataset(str(write(tmp_path / "r.csv", DUPES)), duplicates="mean")
    assert triples(d) == [(4, 5, 1.0), (6, 6, 2.0), (1, 2, 4.0)]  # (3 + 5 + 4) / 3
    d = load_dataset(str(write(tmp_path / "s.csv", "1,2,3\n1,2,4\n")), duplicates="mean")
    assert triples(d) == [(1, 2, 3.5)] and d.n_duplicates_dropped == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_duplicates_error_names_both_lines(tmp_path: Path, write, chunked: bool) -> None:
    text = (
        "".join(f"{u},{u},3\n" for u in range(10, 40))
        + "1,2,3\n"
        + "".join(f"{u},{u},3\n" for u in range(50, 80))
        + "1,2,4\n"
    )
    path = write(tmp_path / "r.csv", text)
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = 64 if chunked else saved
    try:
        with pytest.raises(DataError) as e:
            load_dataset(str(path), duplicates="error")
    finally:
        blocks.CHUNK_BYTES = saved
    assert str(path) in str(e.value) and "lines 31 and 62" in str(e.value)


def test_duplicates_across_netflix_files_name_both_files(tmp_path: Path, write) -> None:
    a = write(tmp_path / "netflix" / "combined_data_1.txt", "1:\n10,3\n")
    b = write(tmp_path / "netflix" / "combined_data_2.txt", "2:\n10,3\n1:\n10,4\n")
    with pytest.raises(DataError) as e:
        load_dataset("netflix", data_dir=tmp_path, duplicates="error")
    assert f"{a}, line 2" in str(e.value) and f"{b}, line 4" in str(e.value)


# ---------------------------------------------------------------------------------------------
# data directory, result object
# ---------------------------------------------------------------------------------------------
def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("AUTOREC_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "autorec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "autorec"


def test_named_set_found_through_the_environment(
    tmp_path: Path, write, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "ml-100k" / "u.data", "1\t2\t3\t4\n")
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path))
    assert load_dataset("ml-100k").ratings.n_ratings == 1


def test_stats(tmp_path: Path, write) -> None:
    d = load_dataset(str(write(tmp_path / "r.csv", "1,1,2\n1,2,4\n2,1,5\n")))
    stats = d.stats()
    assert set(stats) == STATS_KEYS
    assert stats == {
        "n_users": 2,
        "n_items": 2,
        "n_ratings": 3,
        "rating_min": 2.0,
        "rating_max": 5.0,
        "density": 0.75,
        "n_duplicates_dropped": 0,
    }


def test_synthetic_spec() -> None:
    d = load_dataset("synthetic:tiny", seed=3)
    assert d.name == "synthetic:tiny" and d.ratings.n_ratings == 6_000
    assert np.array_equal(d.ratings.rating, load_dataset("synthetic:tiny", seed=3).ratings.rating)
    with pytest.raises(DataError, match="ml-1m"):
        load_dataset("synthetic:nope")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="directory"):
        load_dataset(str(tmp_path))


def test_copy_of_a_named_layout_loads_as_custom_file(tmp_path: Path, write) -> None:
    src = write(tmp_path / "ml-10M100K" / "ratings.dat", "1::2::3.5::4\n")
    dst = tmp_path / "copy.dat"
    shutil.copy(src, dst)
    assert triples(load_dataset(str(dst))) == [(1, 2, 3.5)]


# ---------------------------------------------------------------------------------------------
# byte-order marks, header hints, ids in messages (issue 13)
# ---------------------------------------------------------------------------------------------
BOM = "\ufeff"


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("sep", ["\t", ",", "::"])
def test_bom_on_a_headerless_file_is_stripped(
    tmp_path: Path, write, sep: str, chunked: bool
) -> None:
    """A BOM before user 1 used to make a string id '\\ufeff1' besides the 1 of a later line."""
    lines = [f"1{sep}10{sep}4", f"2{sep}10{sep}3", f"1{sep}11{sep}5"]
    path = write(tmp_path / "r.txt", BOM + "\n".join(lines) + "\n")
    saved = blocks.CHUNK_BYTES
    blocks.CHUNK_BYTES = 8 if chunked else saved
    try:
        d = load_dataset(str(path))
    finally:
        blocks.CHUNK_BYTES = saved
    assert d.ratings.users.ids.tolist() == [1, 2]  # integers, and user 1 once
    assert triples(d) == [(1, 10, 4.0), (2, 10, 3.0), (1, 11, 5.0)]


def test_bom_before_a_header_and_in_named_sets(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", BOM + "user,item,rating\n1,2,3\n")
    assert triples(load_dataset(str(path), header=True)) == [(1, 2, 3.0)]
    write(tmp_path / "ml-100k" / "u.data", BOM + "7\t8\t5\t100\n")
    d = load_dataset("ml-100k", data_dir=tmp_path)
    assert triples(d) == [(7, 8, 5.0)] and d.ratings.timestamp.tolist() == [100]
    write(tmp_path / "netflix" / "combined_data_1.txt", BOM + "3:\n5,2\n")
    assert triples(load_dataset("netflix", data_dir=tmp_path)) == [(5, 3, 2.0)]


def test_a_bom_alone_is_an_empty_file(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", BOM + "\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert str(e.value) == f"{path}: the file is empty"  # not "found 1 field: '\\ufeff'"


def test_header_without_header_option_suggests_it(tmp_path: Path, write) -> None:
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,10,4,100\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert str(e.value) == (
        f"{path}, line 1: rating 'rating' is not a number "
        f"(does the file have a header? use --header)"
    )
    # a timestamp header on a file whose ratings are numbers
    path = write(tmp_path / "s.csv", "1,10,4,when\n1,11,5,100\n")
    with pytest.raises(DataError, match=r"line 1: timestamp 'when' .*use --header\)$"):
        load_dataset(str(path))


@pytest.mark.parametrize(
    "content",
    [
        "1,10,4\n1,11,x\n",  # not a number, but not on line 1
        "1,10,9\n",  # line 1, but a number (outside the given scale)
        "1,10,nan\n",  # line 1, numeric spelling of a non-finite value
    ],
)
def test_no_header_hint_where_a_header_cannot_be_the_cause(
    tmp_path: Path, write, content: str
) -> None:
    path = write(tmp_path / "r.csv", content)
    with pytest.raises(DataError) as e:
        load_dataset(str(path), rating_scale=(1.0, 5.0))
    assert "--header" not in str(e.value)


def test_no_header_hint_for_named_sets(tmp_path: Path, write) -> None:
    """--header is refused for named sets (their format is fixed), so it is not suggested."""
    write(tmp_path / "ml-100k" / "u.data", "user\titem\trating\tts\n1\t2\t3\t4\n")
    with pytest.raises(DataError, match="rating 'rating' is not a number") as e:
        load_dataset("ml-100k", data_dir=tmp_path)
    assert "--header" not in str(e.value)


@pytest.mark.parametrize(
    ("content", "item", "user"),
    [("1,9,3\n1,9,4\n", "9", "1"), ("ann,film,3\nann,film,4\n", "'film'", "'ann'")],
)
def test_duplicate_message_shows_plain_ids(
    tmp_path: Path, write, content: str, item: str, user: str
) -> None:
    """numpy 2 writes repr(np.int64(9)) as 'np.int64(9)': the message must say 9."""
    path = write(tmp_path / "r.csv", content)
    with pytest.raises(DataError) as e:
        load_dataset(str(path), duplicates="error")
    assert f"duplicate rating of item {item} by user {user};" in str(e.value)
    assert "np." not in str(e.value)
