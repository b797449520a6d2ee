"""Download against a local HTTP server: success, digest mismatch, short transfer, bad archives."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from autorec.data.download import download_dataset
from autorec.data.loaders import load_dataset
from autorec.data.registry import KNOWN_DATASETS, Archive
from autorec.errors import ConfigError, DataError
from tests.data.conftest import Server, make_zip, need, pin

U_DATA = b"1\t10\t4\t100\n2\t10\t3\t101\n2\t11\t5\t102\n"


def test_download_success(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    body = make_zip({"ml-100k/u.data": U_DATA, "ml-100k/README": b"test\n"})
    pin(monkeypatch, "ml-100k", body)
    server.routes["/mirror/ml-100k.zip"] = (body, "ok")
    calls: list[tuple[int, int | None]] = []
    folder = download_dataset(
        "ml-100k",
        data_dir=tmp_path,
        url=server.url + "/mirror/ml-100k.zip",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert folder == tmp_path / "ml-100k"
    assert (folder / "u.data").read_bytes() == U_DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"]  # no temporary leftovers
    assert calls[-1] == (len(body), len(body))
    assert load_dataset("ml-100k", data_dir=tmp_path).ratings.n_ratings == 3
    # already there: no second request
    assert download_dataset("ml-100k", data_dir=tmp_path, url=server.url + "/x") == folder
    assert server.hits == ["/mirror/ml-100k.zip"]


def test_load_dataset_downloads_a_missing_set(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_zip({"ml-100k/u.data": U_DATA})
    pin(monkeypatch, "ml-100k", body, base_url=server.url + "/movielens/")
    server.routes["/movielens/ml-100k.zip"] = (body, "ok")
    with pytest.raises(DataError, match="autorec data download ml-100k"):
        load_dataset("ml-100k", data_dir=tmp_path)
    assert server.hits == []
    d = load_dataset("ml-100k", data_dir=tmp_path, download=True)
    assert d.ratings.n_ratings == 3 and server.hits == ["/movielens/ml-100k.zip"]


def test_wrong_sha256_leaves_nothing(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_zip({"ml-100k/u.data": U_DATA})
    pinned = "ab" * 32
    pin(monkeypatch, "ml-100k", body, digest=pinned)
    server.routes["/ml-100k.zip"] = (body, "ok")
    with pytest.raises(DataError) as e:
        download_dataset("ml-100k", data_dir=tmp_path, url=server.url + "/ml-100k.zip")
    message = str(e.value)
    assert "sha256" in message and pinned in message
    assert hashlib.sha256(body).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_leaves_nothing(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_zip({"ml-100k/u.data": U_DATA * 200})
    pin(monkeypatch, "ml-100k", body)
    server.routes["/ml-100k.zip"] = (body, "short")
    with pytest.raises(DataError, match="interrupted"):
        download_dataset("ml-100k", data_dir=tmp_path, url=server.url + "/ml-100k.zip")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="autorec data download"):
        load_dataset("ml-100k", data_dir=tmp_path)


def test_http_error(tmp_path: Path, server: Server) -> None:
    with pytest.raises(DataError, match="404"):
        download_dataset("ml-1m", data_dir=tmp_path, url=server.url + "/missing.zip")
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path: Path, server: Server) -> None:
    url = server.url + "/ml-1m.zip"
    server.close()
    with pytest.raises(DataError, match="failed"):
        download_dataset("ml-1m", data_dir=tmp_path, url=url)
    assert list(tmp_path.iterdir()) == []


def test_zip_path_traversal_is_refused(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_zip({"ml-100k/u.data": U_DATA, "ml-100k/../../evil.txt": b"gotcha"})
    pin(monkeypatch, "ml-100k", body)
    server.routes["/ml-100k.zip"] = (body, "ok")
    data_dir = tmp_path / "a" / "data"
    with pytest.raises(DataError, match="unsafe"):
        download_dataset("ml-100k", data_dir=data_dir, url=server.url + "/ml-100k.zip")
    assert not list(tmp_path.rglob("evil.txt"))
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("members", "what"),
    [({"other/u.data": U_DATA}, "no ml-100k/ folder"), (None, "not a valid zip")],
)
def test_bad_archive_leaves_nothing(
    tmp_path: Path,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    members: dict[str, bytes] | None,
    what: str,
) -> None:
    body = make_zip(members) if members else b"this is not a zip archive"
    pin(monkeypatch, "ml-100k", body)
    server.routes["/ml-100k.zip"] = (body, "ok")
    with pytest.raises(DataError, match=what):
        download_dataset("ml-100k", data_dir=tmp_path, url=server.url + "/ml-100k.zip")
    assert list(tmp_path.iterdir()) == []


def test_ml_latest_needs_an_explicit_digest(tmp_path: Path, server: Server) -> None:
    body = make_zip({"ml-latest/ratings.csv": b"userId,movieId,rating,timestamp\n1,2,4.5,3\n"})
    server.routes["/ml-latest.zip"] = (body, "ok")
    with pytest.raises(DataError, match="no pinned sha256"):
        download_dataset("ml-latest", data_dir=tmp_path, url=server.url + "/ml-latest.zip")
    assert server.hits == []
    with pytest.raises(DataError, match="sha256 mismatch"):
        download_dataset(
            "ml-latest", data_dir=tmp_path, url=server.url + "/ml-latest.zip", sha256="0" * 64
        )
    download_dataset(
        "ml-latest",
        data_dir=tmp_path,
        url=server.url + "/ml-latest.zip",
        sha256=hashlib.sha256(body).hexdigest(),
    )
    assert load_dataset("ml-latest", data_dir=tmp_path).ratings.rating.tolist() == [4.5]


def test_given_digest_must_match_the_pinned_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pinned"):
        download_dataset("ml-1m", data_dir=tmp_path, sha256="0" * 64)
    with pytest.raises(ConfigError, match="64 hex"):
        download_dataset("ml-1m", data_dir=tmp_path, sha256="xyz")


def test_netflix_and_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be downloaded"):
        download_dataset("netflix", data_dir=tmp_path)
    with pytest.raises(DataError, match="ml-100k"):
        download_dataset("ml-7m", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_without_ratings_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="move it away"):
        download_dataset("ml-1m", data_dir=tmp_path, url="http://127.0.0.1:9/ml-1m.zip")
    assert (tmp_path / "ml-1m" / "notes.txt").read_text() == "mine"


def test_official_urls_and_pins() -> None:
    assert KNOWN_DATASETS["ml-1m"].archive.url == (
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    )
    archives = {n: i.archive for n, i in KNOWN_DATASETS.items() if i.archive is not None}
    assert archives["ml-latest"].sha256 is None
    assert all(len(a.sha256) == 64 for n, a in archives.items() if n != "ml-latest")


@pytest.mark.realdata
def test_pins_match_the_data_notes(shared_data_dir: Path) -> None:
    """The pinned sizes and digests are those of shared/data/CHECKSUMS.md."""
    notes = need(shared_data_dir, "CHECKSUMS.md").read_text()
    rows = re.findall(r"\| `([\w.-]+)\.zip` \| ([\d,]+) \| `([0-9a-f]{64})`", notes)
    assert len(rows) == 6
    for name, size, digest in rows:
        assert KNOWN_DATASETS[name].archive == Archive(
            f"{name}.zip", int(size.replace(",", "")), digest
        )
