"""``autorec data download|stats`` and the shared dataset options, end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.cli.data import register
from autorec.cli.options import add_dataset_arguments, dataset_from_args
from autorec.cli.stats import STATS_KEYS
from tests.data.conftest import Server, make_zip, pin


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_prints_and_writes_json(tmp_path: Path, write, capsys) -> None:
    path = write(tmp_path / "r.csv", "1,1,2\n1,2,4\n2,1,5\n1,2,3\n")
    out_json = tmp_path / "out" / "stats.json"
    code, out, _ = run(["data", "stats", "--dataset", str(path), "--json", str(out_json)], capsys)
    assert code == 0
    assert "n_ratings" in out and str(path) in out
    stats = json.loads(out_json.read_text())
    assert list(stats) == list(STATS_KEYS)
    assert stats == {
        "n_users": 2,
        "n_items": 2,
        "n_ratings": 3,
        "rating_min": 2.0,
        "rating_max": 5.0,
        "density": 0.75,
        "n_duplicates_dropped": 1,
    }


def test_stats_of_a_named_set(tmp_path: Path, write, capsys) -> None:
    write(tmp_path / "ml-1m" / "ratings.dat", "1::10::5\n2::10::3\n")
    code, out, _ = run(["data", "stats", "--dataset", "ml-1m", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and "ml-1m" in out and "n_users               2" in out


def test_custom_file_options(tmp_path: Path, write, capsys) -> None:
    path = write(tmp_path / "r.txt", "id|who|what|stars\n1|u1|i1|8\n2|u2|i1|10\n")
    out_json = tmp_path / "s.json"
    code, _, err = run(
        [
            "data",
            "stats",
            "--dataset",
            str(path),
            "--sep",
            "|",
            "--header",
            "--columns",
            "_,user,item,rating",
            "--rating-scale",
            "0,10",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert code == 0, err
    stats = json.loads(out_json.read_text())
    assert (stats["n_users"], stats["n_items"], stats["rating_max"]) == (2, 1, 10.0)


def test_synthetic_stats_with_seed(tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "s.json"
    code, _, _ = run(
        ["data", "stats", "--dataset", "synthetic:tiny", "--seed", "2", "--json", str(out_json)],
        capsys,
    )
    assert code == 0 and json.loads(out_json.read_text())["n_ratings"] == 6_000


@pytest.mark.parametrize(
    ("content", "extra", "expected"),
    [
        ("1,2,3\n1,3,x\n", [], ["line 2", "'x'"]),
        ("1,2,3\n1,2,4\n", ["--duplicates", "error"], ["lines 1 and 2"]),
        ("1,2,3\n1,3,9\n", ["--rating-scale", "1,5"], ["line 2", "'9'"]),
    ],
)
def test_data_errors_are_one_line_exit_2(
    tmp_path: Path, write, capsys, content: str, extra: list[str], expected: list[str]
) -> None:
    path = write(tmp_path / "r.csv", content)
    code, out, err = run(["data", "stats", "--dataset", str(path), *extra], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(path) in lines[0] and all(s in lines[0] for s in expected)


def test_unknown_and_missing_sets(tmp_path: Path, capsys) -> None:
    code, _, err = run(["data", "stats", "--dataset", "ml-2m"], capsys)
    assert code == 2 and "ml-100k" in err
    code, _, err = run(["data", "stats", "--dataset", "ml-1m", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "autorec data download ml-1m" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["data"],
        ["data", "stats"],
        ["data", "stats", "--dataset", "x", "--rating-scale", "5,1"],
        ["data", "stats", "--dataset", "x", "--duplicates", "first"],
        ["data", "download"],
    ],
)
def test_usage_errors(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_download_with_mirror_url(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    body = make_zip({"ml-100k/u.data": b"1\t2\t3\t4\n"})
    pin(monkeypatch, "ml-100k", body)
    server.routes["/m/ml-100k.zip"] = (body, "ok")
    code, out, err = run(
        [
            "data",
            "download",
            "ml-100k",
            "--url",
            server.url + "/m/ml-100k.zip",
            "--data-dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0
    assert str(tmp_path / "ml-100k") in out
    assert "ml-100k:" in err and "MiB" in err  # progress on stderr
    assert (tmp_path / "ml-100k" / "u.data").is_file()


def test_download_refusals_are_one_line(tmp_path: Path, capsys) -> None:
    for argv in (
        ["data", "download", "netflix", "--data-dir", str(tmp_path)],
        ["data", "download", "ml-latest", "--data-dir", str(tmp_path)],
    ):
        code, _, err = run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_register_on_a_plain_parser(tmp_path: Path, write, capsys) -> None:
    """The pieces work on any argparse parser, not only autorec's."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    path = write(tmp_path / "r.csv", "1,2,3\n")
    args = parser.parse_args(["data", "stats", "--dataset", str(path)])
    assert args.func(args) == 0 and "n_ratings" in capsys.readouterr().out


def test_dataset_from_args() -> None:
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    args = parser.parse_args(
        ["--dataset", "synthetic:tiny", "--columns", "user,item,rating", "--rating-scale", "1,5"]
    )
    assert args.columns == ["user", "item", "rating"] and args.rating_scale == (1.0, 5.0)
    assert args.duplicates == "last" and not args.download and not args.header
    args.columns = args.rating_scale = None
    assert dataset_from_args(args).name == "synthetic:tiny"
