"""Token, fold-in and hot swap on a real server that serves a U-AutoRec folder with a bearer
token from --token-file: every endpoint but /health needs it; POST /v1/admin/reload and SIGHUP
swap models; a folder that fails to load leaves the old model serving."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autorec.models.base import Recommender
from tests.serve.conftest import Server, assert_error, httpx, running_server

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served_dir(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the u-autorec folder: the SIGHUP test saves another model over it."""
    return Path(shutil.copytree(model_dirs["u-autorec"], tmp_path_factory.mktemp("s") / "m"))


@pytest.fixture(scope="module")
def server(served_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve-admin")
    (root / "token").write_text(TOKEN + "\n")
    with running_server(served_dir, root / "server.log", "--token-file", str(root / "token")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture
def u_served(client: httpx.Client, served_dir: Path) -> None:
    """Each test starts from the u-autorec folder being served."""
    r = client.post("/v1/admin/reload", json={"model_dir": str(served_dir)})
    assert r.status_code == 200 and r.json()["model"] == "u-autorec", r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/model"),
        ("GET", "/v1/users/0/recommendations"),
        ("POST", "/v1/predict"),
        ("POST", "/v1/recommendations"),
        ("GET", "/v1/items/0/similar"),
        ("POST", "/v1/admin/reload"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ],
)
def test_every_endpoint_but_health_needs_the_token(server: Server, method: str, path: str) -> None:
    r = httpx.request(method, server.url + path, timeout=30)
    assert_error(r, 401, "header.authorization", "missing bearer token")
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = {"Authorization": f"Bearer {TOKEN}x"}
    r = httpx.request(method, server.url + path, headers=wrong, timeout=30)
    assert_error(r, 401, "header.authorization", "wrong bearer token")


def test_health_is_open(server: Server) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_with_the_token_the_model_answers(client: httpx.Client, u_served: None) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200 and r.json()["can_fold_in"] is True


def test_fold_in_equals_recommend_new_user(
    client: httpx.Client, served_dir: Path, u_served: None
) -> None:
    model = Recommender.load(served_dir)
    ratings = {"3": 5.0, "17": 1.0, "20": 4.0}
    r = client.post("/v1/recommendations", json={"ratings": ratings, "k": 6})
    assert r.status_code == 200, r.text
    expected = model.recommend_new_user({3: 5.0, 17: 1.0, 20: 4.0}, 6)
    assert r.json()["user_id"] is None
    assert [(x["item_id"], x["score"]) for x in r.json()["items"]] == [
        (i, pytest.approx(s, abs=1e-6)) for i, s in expected
    ]


def test_fold_in_bad_ratings(client: httpx.Client, u_served: None) -> None:
    r = client.post("/v1/recommendations", json={"ratings": {"3": 5, "4": 5.5}})
    assert_error(r, 422, "body.ratings.4", "outside the scale 1..5")
    r = client.post("/v1/recommendations", json={"ratings": {"3": 5, "x": 0.5}})
    assert_error(r, 404, "body.ratings.x", "unknown item id")


def test_similar_items_of_u_autorec_is_404_with_the_reason(
    client: httpx.Client, u_served: None
) -> None:
    r = client.get("/v1/items/0/similar")
    assert_error(r, 404, "path.item_id", "u-autorec has no item embeddings")


def test_reload_swaps_in_a_good_folder(
    client: httpx.Client, model_dirs: dict[str, Path], u_served: None
) -> None:
    r = client.post("/v1/admin/reload", json={"model_dir": str(model_dirs["i-autorec"])})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "i-autorec"
    assert client.get("/v1/model").json()["model"] == "i-autorec"
    expected = Recommender.load(model_dirs["i-autorec"]).recommend(2, 4)
    items = client.get("/v1/users/2/recommendations", params={"k": 4}).json()["items"]
    assert [x["item_id"] for x in items] == [i for i, _ in expected]


def test_reload_of_a_corrupt_folder_keeps_the_old_model(
    client: httpx.Client, model_dirs: dict[str, Path], tmp_path: Path, u_served: None
) -> None:
    before = client.get("/v1/model").json()
    broken = Path(shutil.copytree(model_dirs["i-autorec"], tmp_path / "broken"))
    weights = next(broken.glob("weights-*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-8:] = b"\x00" * 8  # a flipped tail: the recorded sha256 no longer matches
    weights.write_bytes(bytes(blob))
    r = client.post("/v1/admin/reload", json={"model_dir": str(broken)})
    body = assert_error(r, 422, "body.model_dir", "still serving the model from")
    assert "sha256" in body["problem"]
    assert client.get("/v1/model").json() == before
    assert client.get("/v1/users/2/recommendations").status_code == 200
    r = client.post("/v1/admin/reload", json={"model_dir": str(tmp_path / "absent")})
    assert_error(r, 422, "body.model_dir", "still serving")
    r = client.post("/v1/admin/reload", json={"model_dir": 3})
    assert_error(r, 422, "body.model_dir", "string")


def _wait_for(check, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sighup_reloads_the_folder_and_survives_a_broken_one(
    client: httpx.Client,
    server: Server,
    served_dir: Path,
    model_dirs: dict[str, Path],
    u_served: None,
) -> None:
    Recommender.load(model_dirs["i-autorec"]).save(served_dir, overwrite=True)
    server.signal(signal.SIGHUP)
    _wait_for(lambda: client.get("/v1/model").json()["model"] == "i-autorec", "the SIGHUP swap")
    info = client.get("/v1/model").json()

    (served_dir / "model.json").write_text("{not json")
    server.signal(signal.SIGHUP)
    _wait_for(lambda: "SIGHUP: reload failed" in server.log_text(), "the failed reload's log")
    assert client.get("/v1/model").json() == info
    shutil.rmtree(served_dir)
    shutil.copytree(model_dirs["u-autorec"], served_dir)
