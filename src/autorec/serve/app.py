"""The HTTP service: :func:`create_app` builds the FastAPI application around a model folder.

Endpoints (JSON in and out; OpenAPI page at ``/docs``; see docs/serving.md):

* ``GET /health``: liveness, never needs the token;
* ``GET /v1/model``: name, config, sizes, rating scale, versions, fingerprints;
* ``GET /v1/users/{user_id}/recommendations?k=10&exclude_seen=true``: a known user's top-k;
* ``POST /v1/predict``: ratings of up to ``MAX_PREDICT_PAIRS`` (user, item) pairs;
* ``POST /v1/recommendations``: a new user's top-k from their ratings (fold-in);
* ``GET /v1/items/{item_id}/similar?k=10``: cosine-nearest items by item code (I-AutoRec);
* ``POST /v1/admin/reload``: load a model folder and swap it in (SIGHUP does the same).

Errors: every 4xx and 5xx body is ``{"field", "problem", "errors": [{"field", "problem"}]}``.
Bad input is 4xx (401 token, 404 unknown id or route, 409 the model cannot answer this, 413
never: oversized batches are 422 naming the field, 422 anything malformed); a bug is a 500
whose body says only "internal error" (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from autorec import __version__
from autorec.errors import AutorecError
from autorec.serve import engine
from autorec.serve.engine import (
    CannotFoldIn,
    ModelHolder,
    NoItemEmbeddings,
    Snapshot,
    TopKBatcher,
    load_snapshot,
)
from autorec.serve.schemas import (
    MAX_K,
    ErrorBody,
    Health,
    ModelInfo,
    NewUserRequest,
    PredictRequest,
    PredictResponse,
    Recommendations,
    ReloadRequest,
    SimilarItems,
)

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})


class ApiError(Exception):
    """A 4xx answer: status, the field at fault and the problem."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        super().__init__(problem)
        self.status, self.field, self.problem = status, field, problem


def _body(errors: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "field": errors[0][0],
        "problem": errors[0][1],
        "errors": [{"field": f, "problem": p} for f, p in errors],
    }


def _error(status: int, errors: list[tuple[str, str]], **headers: str) -> JSONResponse:
    return JSONResponse(_body(errors), status_code=status, headers=headers or None)


def _validation_errors(exc: RequestValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            where = f" at position {loc[1]}" if len(loc) > 1 else ""
            out.append(("body", f"malformed JSON{where}: {ctx.get('error', err['msg'])}"))
            continue
        problem = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            problem = "required field is missing"
        out.append((".".join(loc) or "request", problem))
    return out or [("request", "invalid request")]


class _BearerAuth:
    """Pure ASGI middleware: every path but ``OPEN_PATHS`` needs ``Authorization: Bearer T``
    (compared in constant time)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization")
        if given is not None and hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        problem = "missing bearer token" if given is None else "wrong bearer token"
        response = _error(
            401, [("header.authorization", problem)], **{"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)


def create_app(
    model_dir: str | Path,
    token: str | None = None,
    *,
    snapshot: Snapshot | None = None,
    handle_sighup: bool = True,
) -> FastAPI:
    """The FastAPI application serving the model folder ``model_dir``.

    Args:
        model_dir: a folder saved by ``Recommender.save``; loaded here unless ``snapshot``.
        token: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <token>``.
        snapshot: an already loaded :func:`~autorec.serve.engine.load_snapshot` of it.
        handle_sighup: reload the folder on SIGHUP (when the server runs in the main thread).

    Raises:
        ModelFileError: the folder does not hold a loadable model.
    """
    holder = ModelHolder(snapshot if snapshot is not None else load_snapshot(model_dir))
    batcher = TopKBatcher()

    async def reload(model_dir: str | None) -> Snapshot:
        return await asyncio.to_thread(holder.reload, model_dir)

    def on_sighup() -> None:
        async def run() -> None:
            try:
                snap = await reload(None)
                log.info("SIGHUP: now serving %s from %s", snap.model.model_name, snap.model_dir)
            except (AutorecError, OSError) as exc:
                log.error("SIGHUP: reload failed, the previous model keeps serving: %s", exc)

        asyncio.get_running_loop().create_task(run())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sighup = handle_sighup and threading.current_thread() is threading.main_thread()
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            yield
        finally:
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await batcher.close()

    app = FastAPI(
        title="autorec",
        version=__version__,
        description="Recommendations from a saved autorec model (docs/serving.md).",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (401, 404, 409, 422)},
    )
    app.state.holder = holder
    if token:
        app.add_middleware(_BearerAuth, token=token)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, [(exc.field, exc.problem)])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "path" if exc.status_code in (404, 405) else "request"
        problem = str(exc.detail)
        if exc.status_code == 404:
            problem = f"no endpoint {request.url.path}"
        elif exc.status_code == 405:
            problem = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, [(field, problem)], **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, [("server", "internal error (logged on the server)")])

    # -- routes ----------------------------------------------------------------------------------
    @app.get("/health", response_model=Health)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> dict[str, Any]:
        return holder.current.info

    @app.get("/v1/users/{user_id}/recommendations", response_model=Recommendations)
    async def user_recommendations(
        user_id: str,
        k: int = Query(10, ge=1, le=MAX_K, description="number of items"),
        exclude_seen: bool = Query(True, description="leave out items rated in training"),
    ) -> dict[str, Any]:
        snap = holder.current
        user_idx = _user_index(snap, user_id)
        recs = await batcher.top_k(snap, user_idx, k, exclude_seen)
        return {"user_id": snap.model.users.ids[user_idx].item(), "items": _scored(recs)}

    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> dict[str, Any]:
        snap = holder.current
        users = snap.model.users
        items = snap.model.items
        user_idx = np.array([users.index_of(p.user_id) for p in request.pairs], dtype=np.int64)
        item_idx = np.array([items.index_of(p.item_id) for p in request.pairs], dtype=np.int64)
        unknown = [
            (f"body.pairs.{i}.{name}", f"unknown {name[:-3]} id {raw!r}")
            for i, p in enumerate(request.pairs)
            for name, raw, idx in (
                ("user_id", p.user_id, user_idx[i]),
                ("item_id", p.item_id, item_idx[i]),
            )
            if idx < 0
        ]
        if unknown:
            return _error(404, unknown[:20])
        rating = await asyncio.to_thread(snap.model.predict, user_idx, item_idx)
        return {
            "predictions": [
                {"user_id": p.user_id, "item_id": p.item_id, "rating": float(r)}
                for p, r in zip(request.pairs, rating, strict=True)
            ]
        }

    @app.post("/v1/recommendations", response_model=Recommendations)
    async def new_user_recommendations(request: NewUserRequest) -> dict[str, Any]:
        snap = holder.current
        model = snap.model
        if not engine.can_fold_in(model):
            raise ApiError(409, "model", f"model {model.model_name} cannot fold in new users")
        low, high = model.rating_scale
        ratings: dict[object, float] = {}
        for raw, value in request.ratings.items():
            idx = model.items.index_of(raw)
            if idx < 0:
                raise ApiError(404, f"body.ratings.{raw}", f"unknown item id {raw!r}")
            if not low <= value <= high:
                raise ApiError(
                    422,
                    f"body.ratings.{raw}",
                    f"rating {value:g} is outside the scale {low:g}..{high:g}",
                )
            ratings[model.items.ids[idx].item()] = value
        try:
            recs = await asyncio.to_thread(engine.recommend_new_user, model, ratings, request.k)
        except CannotFoldIn as exc:
            raise ApiError(409, "model", str(exc)) from None
        return {"user_id": None, "items": _scored(recs)}

    @app.get("/v1/items/{item_id}/similar", response_model=SimilarItems)
    async def similar(
        item_id: str, k: int = Query(10, ge=1, le=MAX_K, description="number of items")
    ) -> dict[str, Any]:
        snap = holder.current
        item_idx = snap.model.items.index_of(item_id)
        if item_idx < 0:
            raise ApiError(404, "path.item_id", f"unknown item id {item_id!r}")
        try:
            recs = await asyncio.to_thread(engine.similar_items, snap, item_idx, k)
        except NoItemEmbeddings as exc:
            raise ApiError(404, "path.item_id", str(exc)) from None
        return {"item_id": snap.model.items.ids[item_idx].item(), "items": _scored(recs)}

    @app.post("/v1/admin/reload", response_model=ModelInfo)
    async def admin_reload(
        request: Annotated[ReloadRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        model_dir = request.model_dir if request is not None else None
        serving = holder.current.model_dir
        try:
            snap = await reload(model_dir)
        except (AutorecError, OSError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise ApiError(
                422, "body.model_dir", f"{message}; still serving the model from {serving}"
            ) from None
        return snap.info

    return app


def _user_index(snap: Snapshot, user_id: str) -> int:
    user_idx = snap.model.users.index_of(user_id)
    if user_idx < 0:
        raise ApiError(
            404,
            "path.user_id",
            f"unknown user id {user_id!r} (not among the model's {snap.model.n_users} users; "
            "POST /v1/recommendations folds in a new user)",
        )
    return user_idx


def _scored(recs: list[tuple[object, float]]) -> list[dict[str, Any]]:
    return [{"item_id": item_id, "score": score} for item_id, score in recs]


def app_from_environment() -> FastAPI:
    """The application of one worker of ``autorec serve --workers N`` (uvicorn's factory):
    the folder from ``$AUTOREC_SERVE_MODEL_DIR``, the token from ``$AUTOREC_TOKEN``, torch
    threads from ``$AUTOREC_SERVE_THREADS`` (a spawned worker does not inherit the parent's)."""
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("AUTOREC_SERVE_THREADS", "1")))
    return create_app(
        os.environ["AUTOREC_SERVE_MODEL_DIR"], os.environ.get("AUTOREC_TOKEN") or None
    )
