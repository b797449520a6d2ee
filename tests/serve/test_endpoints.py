"""Every endpoint and every bad-input answer of a real server (I-AutoRec, no token). Expected
values come from the same model folder loaded in this process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from autorec.models.base import Recommender
from autorec.serve.schemas import MAX_K, MAX_PREDICT_PAIRS
from tests.serve.conftest import Server, assert_error, httpx, running_server


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    log = tmp_path_factory.mktemp("serve-endpoints") / "server.log"
    with running_server(model_dirs["i-autorec"], log) as s:
        yield s


@pytest.fixture(scope="module")
def model(model_dirs: dict[str, Path]) -> Recommender:
    return Recommender.load(model_dirs["i-autorec"])


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_model_describes_the_folder(
    client: httpx.Client, model: Recommender, model_dirs: dict[str, Path]
) -> None:
    info = client.get("/v1/model").json()
    meta = json.loads((model_dirs["i-autorec"] / "model.json").read_text())
    assert info["model"] == "i-autorec"
    assert info["config"] == model.config.to_dict()
    assert (info["n_users"], info["n_items"], info["n_ratings"]) == (60, 40, 800)
    assert info["rating_scale"] == [1.0, 5.0]
    assert info["versions"] == meta["versions"]
    assert info["fingerprint"]["weights_sha256"] == meta["weights"]["sha256"]
    assert info["fingerprint"]["meta_sha256"] == meta["meta_sha256"]
    assert len(info["fingerprint"]["training_pairs_sha256"]) == 64
    assert info["can_fold_in"] is True and info["has_item_embeddings"] is True


def _expected(model: Recommender, user_id: int, k: int, exclude_seen: bool = True) -> list:
    return [
        {"item_id": i, "score": pytest.approx(s, abs=1e-6)}
        for i, s in model.recommend(user_id, k, exclude_seen=exclude_seen)
    ]


@pytest.mark.parametrize(("user_id", "k", "exclude_seen"), [(0, 10, True), (7, 3, False)])
def test_recommendations_equal_recommend(
    client: httpx.Client, model: Recommender, user_id: int, k: int, exclude_seen: bool
) -> None:
    r = client.get(
        f"/v1/users/{user_id}/recommendations",
        params={"k": k, "exclude_seen": str(exclude_seen).lower()},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": user_id, "items": _expected(model, user_id, k, exclude_seen)}


def test_k_above_the_candidates_returns_every_unseen_item(
    client: httpx.Client, model: Recommender
) -> None:
    items = client.get("/v1/users/0/recommendations", params={"k": MAX_K}).json()["items"]
    assert len(items) == 40 - len(model._seen_items(0))


def test_concurrent_requests_are_batched_without_mixing_users(
    server: Server, model: Recommender
) -> None:
    """60 users with mixed k and exclude_seen at once: the batcher scores them in shared
    ``_score_block`` calls; every answer must still be its own user's list."""
    cases = [(u, 1 + u % 7, u % 3 != 0) for u in range(60)]

    async def fetch_all() -> list:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            return await asyncio.gather(
                *(
                    c.get(
                        f"/v1/users/{u}/recommendations",
                        params={"k": k, "exclude_seen": str(x).lower()},
                    )
                    for u, k, x in cases
                )
            )

    for (u, k, x), r in zip(cases, asyncio.run(fetch_all()), strict=True):
        assert r.status_code == 200, r.text
        assert r.json()["items"] == _expected(model, u, k, x), (u, k, x)


def test_predict_equals_the_model(client: httpx.Client, model: Recommender) -> None:
    pairs = [(0, 1), (5, 39), (59, 0), (12, 12)]
    r = client.post(
        "/v1/predict",
        json={"pairs": [{"user_id": u, "item_id": str(i)} for u, i in pairs]},
    )
    assert r.status_code == 200, r.text
    expected = model.predict(np.array([u for u, _ in pairs]), np.array([i for _, i in pairs]))
    got = r.json()["predictions"]
    assert [(p["user_id"], p["item_id"]) for p in got] == [(u, str(i)) for u, i in pairs]
    assert [p["rating"] for p in got] == pytest.approx(expected.tolist(), abs=1e-6)


def test_similar_items_are_the_nearest_codes(client: httpx.Client, model: Recommender) -> None:
    codes = model._all_codes().double().numpy()  # (n_items, k): the items' hidden codes
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    cosine = unit @ unit[4]
    cosine[4] = -np.inf
    order = np.lexsort((np.arange(40), -cosine))[:5]
    r = client.get("/v1/items/4/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == 4
    assert [x["item_id"] for x in body["items"]] == order.tolist()
    assert [x["score"] for x in body["items"]] == pytest.approx(cosine[order], abs=1e-5)


def test_fold_in_on_i_autorec_equals_the_model(client: httpx.Client, model: Recommender) -> None:
    r = client.post("/v1/recommendations", json={"ratings": {"1": 4, "7": 2}, "k": 5})
    assert r.status_code == 200, r.text
    expected = model.recommend_new_user({1: 4.0, 7: 2.0}, 5)
    assert [(x["item_id"], x["score"]) for x in r.json()["items"]] == [
        (i, pytest.approx(s, abs=1e-6)) for i, s in expected
    ]


def test_a_model_that_cannot_fold_in_is_409(model_dirs: dict[str, Path]) -> None:
    from autorec.data.synthetic import synthetic_ratings
    from autorec.models import make_model
    from autorec.serve.engine import CannotFoldIn, recommend_new_user

    # I-AutoRec folds a user in by a closed-form decoder row, which needs f = identity.
    sigmoid_out = make_model("i-autorec", hidden=(4,), n_epochs=2, f="sigmoid", seed=0)
    sigmoid_out.fit(synthetic_ratings(30, 20, 300, seed=1))
    with pytest.raises(CannotFoldIn, match="i-autorec cannot fold in"):
        recommend_new_user(sigmoid_out, {0: 4.0}, 5)


def test_openapi_docs(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/users/{user_id}/recommendations" in paths and "/v1/admin/reload" in paths


PAIR = {"user_id": 0, "item_id": 1}
BAD_REQUESTS = [
    ("GET", "/v1/users/999/recommendations", None, 404, "path.user_id", "unknown user id"),
    ("GET", "/v1/users/abc/recommendations", None, 404, "path.user_id", "unknown user id"),
    ("GET", "/v1/users/0/recommendations?k=0", None, 422, "query.k", "greater than"),
    ("GET", f"/v1/users/0/recommendations?k={MAX_K + 1}", None, 422, "query.k", "less than"),
    ("GET", "/v1/users/0/recommendations?k=ten", None, 422, "query.k", "integer"),
    ("GET", "/v1/users/0/recommendations?exclude_seen=maybe", None, 422, "query.exclude_seen", ""),
    ("GET", "/v1/items/999/similar", None, 404, "path.item_id", "unknown item id"),
    ("GET", "/v1/items/1/similar?k=-3", None, 422, "query.k", ""),
    (
        "POST",
        "/v1/predict",
        {"pairs": [{"user_id": 999, "item_id": 1}]},
        404,
        "body.pairs.0.user_id",
        "unknown user id",
    ),
    (
        "POST",
        "/v1/predict",
        {"pairs": [PAIR, {"user_id": 0, "item_id": 40}]},
        404,
        "body.pairs.1.item_id",
        "unknown item id",
    ),
    (
        "POST",
        "/v1/predict",
        {"pairs": [PAIR] * (MAX_PREDICT_PAIRS + 1)},
        422,
        "body.pairs",
        f"at most {MAX_PREDICT_PAIRS}",
    ),
    ("POST", "/v1/predict", {"pairs": []}, 422, "body.pairs", "at least 1"),
    (
        "POST",
        "/v1/predict",
        {"pairs": [{"user_id": 0.5, "item_id": 1}]},
        422,
        "body.pairs.0.user_id",
        "integer or a string",
    ),
    (
        "POST",
        "/v1/predict",
        {"pairs": [{"user_id": True, "item_id": 1}]},
        422,
        "body.pairs.0.user_id",
        "integer or a string",
    ),
    ("POST", "/v1/predict", {"pairs": [{"user_id": 0}]}, 422, "body.pairs.0.item_id", "missing"),
    ("POST", "/v1/predict", {"pairs": "all"}, 422, "body.pairs", "list"),
    ("POST", "/v1/predict", {"pairs": [PAIR], "extra": 1}, 422, "body.extra", "not permitted"),
    ("POST", "/v1/predict", b'{"pairs": [', 422, "body", "malformed JSON"),
    ("POST", "/v1/predict", None, 422, "body", "missing"),
    ("POST", "/v1/recommendations", {"ratings": {"1": "five"}}, 422, "body.ratings.1", "number"),
    ("POST", "/v1/recommendations", {"ratings": {}}, 422, "body.ratings", "at least 1"),
    ("POST", "/v1/recommendations", b'{"ratings": {"1": NaN}}', 422, "body.ratings.1", "finite"),
    ("POST", "/v1/recommendations", {"ratings": {"1": 4}, "k": 0}, 422, "body.k", ""),
    ("GET", "/v1/nothing", None, 404, "path", "no endpoint"),
    ("DELETE", "/v1/model", None, 405, "path", "not allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field", "word"), BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_field(
    client: httpx.Client,
    method: str,
    path: str,
    body: object,
    status: int,
    field: str,
    word: str,
) -> None:
    kwargs = {}
    if isinstance(body, bytes):
        kwargs = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    assert_error(client.request(method, path, **kwargs), status, field, word)
