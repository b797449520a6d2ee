"""What the service computes, apart from HTTP: a loaded model and everything derived from it
(:class:`Snapshot`), the atomic swap of one snapshot for another (:class:`ModelHolder`), and the
batching of concurrent known-user requests into one ``_score_block`` call (:class:`TopKBatcher`).

Speed (issue 17). After loading, a snapshot computes once what every request would otherwise
recompute: AutoRec's codes of every training row (``_all_codes``, (n_rows, k)) and, for
I-AutoRec, the unit-norm item codes of "similar items". A known user's top-k is then one row of
scores, ``f(codes W[u]^T + b[u])`` for I-AutoRec: an (n_items x k) matrix-vector product.
Concurrent requests are *batched*, not cached: the batcher hands every request that arrived
while the previous batch was computing to one ``_score_block`` call (a matrix product with one
column per user), so there is no added queue delay (a lone request is computed at once) and the
batch grows with the load, up to :data:`MAX_BATCH` users. A per-user result cache would only pay
when the same user asks again with the same ``k`` and ``exclude_seen``, and would hold memory
per user; batching pays for every request under concurrency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autorec.errors import AutorecError, ConfigError
from autorec.models.base import Recommender
from autorec.ranking import top_k

log = logging.getLogger(__name__)

#: The most users one ``_score_block`` call of the batcher scores: about 16 bytes per
#: (user, item) cell, so 30 MB for ML-1M's 3,706 items.
MAX_BATCH = 512


class CannotFoldIn(AutorecError):
    """The model has no way to score a user it was not trained on."""


class NoItemEmbeddings(AutorecError):
    """The model has no item representation to compare items by."""


@dataclass(eq=False)
class Snapshot:
    """One loaded model and what is derived from it once; never changed after construction
    (a request keeps the snapshot it started with even when a reload swaps in another)."""

    model: Recommender
    model_dir: Path
    meta: dict[str, Any]
    loaded_at: float
    #: (n_items, k) unit-norm item codes, or None: the model answers no "similar items".
    item_vectors: torch.Tensor | None
    training_pairs_sha256: str
    info: dict[str, Any] = field(default_factory=dict)


def load_snapshot(model_dir: str | Path) -> Snapshot:
    """Load and verify the model folder and precompute what requests share.

    Raises:
        ModelFileError: anything wrong with the folder (from :meth:`Recommender.load`).
    """
    path = Path(model_dir).expanduser().resolve()
    model = Recommender.load(path)
    # The meta of the folder just loaded: Recommender.load verified model.json, and a save
    # racing with this read at worst reports the newer folder's versions.
    try:
        meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    item_vectors = _item_vectors(model)
    if hasattr(model, "_all_codes"):
        model._all_codes()  # AutoRec: the codes of every training row, computed once here
    snap = Snapshot(
        model=model,
        model_dir=path,
        meta=meta,
        loaded_at=time.time(),
        item_vectors=item_vectors,
        training_pairs_sha256=_training_pairs_sha256(model),
    )
    snap.info = _model_info(snap)
    log.info("loaded %s from %s", model.model_name, path)
    return snap


@torch.no_grad()
def _item_vectors(model: Recommender) -> torch.Tensor | None:
    """Unit-norm item embeddings for cosine similarity, or None.

    I-AutoRec: item i's code, its hidden representation ``h_i = g(V r_i + mu)`` (through every
    hidden layer) of its training rating column, the same codes ``_score_block`` decodes.
    Other models (U-AutoRec, whose codes are users', and the baselines) return None. Every other
    model with item vectors is one more branch here.
    """
    if getattr(model, "model_name", "") != "i-autorec":
        return None
    codes = model._all_codes().float()  # (n_items, k_last)
    norms = codes.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_items, 1)
    return codes / norms


def _training_pairs_sha256(model: Recommender) -> str:
    """sha256 of the vocabularies and the (user, item) pairs the model was trained on (the
    model folder keeps which items each user rated, not the ratings of every model)."""
    digest = hashlib.sha256()
    for arr in (model.users.ids, model.items.ids, model._seen_indptr, model._seen_item_idx):
        arr = np.ascontiguousarray(arr)
        digest.update(str(arr.dtype).encode())
        digest.update(arr.view(np.uint8) if arr.dtype.kind != "U" else arr.tobytes())
    return digest.hexdigest()


def _model_info(snap: Snapshot) -> dict[str, Any]:
    model, meta = snap.model, snap.meta
    weights = meta.get("weights") if isinstance(meta.get("weights"), dict) else {}
    return {
        "model": model.model_name,
        "config": model.config.to_dict(),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "n_ratings": int(len(model._seen_item_idx)),
        "rating_scale": [float(x) for x in model.rating_scale],
        "format_version": meta.get("format_version"),
        "versions": meta.get("versions", {}),
        "fingerprint": {
            "training_pairs_sha256": snap.training_pairs_sha256,
            "weights_sha256": weights.get("sha256"),
            "meta_sha256": meta.get("meta_sha256"),
        },
        "model_dir": str(snap.model_dir),
        "loaded_at": snap.loaded_at,
        "can_fold_in": can_fold_in(model),
        "has_item_embeddings": snap.item_vectors is not None,
    }


# -- fold-in ------------------------------------------------------------------------------------
def can_fold_in(model: Recommender) -> bool:
    """Whether the model implements the fold-in contract (every registered model does; an
    I-AutoRec with a non-identity output activation still refuses at the call: 409)."""
    return type(model)._fold_in_user is not Recommender._fold_in_user


def recommend_new_user(
    model: Recommender, ratings: dict[object, float], k: int
) -> list[tuple[object, float]]:
    """Top-``k`` unrated items for a user given only as raw item id -> rating, through the
    models' fold-in contract (:meth:`Recommender.recommend_new_user`). Ratings are checked
    (known items, on the scale) by the caller.

    Raises:
        CannotFoldIn: the model cannot score a user it was not trained on.
    """
    if not can_fold_in(model):
        raise CannotFoldIn(f"model {model.model_name} cannot fold in new users")
    try:
        return model.recommend_new_user(ratings, k)
    except ConfigError as exc:
        raise CannotFoldIn(f"model {model.model_name} cannot fold in this user: {exc}") from exc


@torch.no_grad()
def similar_items(snap: Snapshot, item_idx: int, k: int) -> list[tuple[object, float]]:
    """The ``k`` items whose codes have the highest cosine similarity to item ``item_idx``'s,
    best first (the item itself excluded; ties: lower index first).

    Raises:
        NoItemEmbeddings: the model has no item codes.
    """
    vectors = snap.item_vectors
    if vectors is None:
        raise NoItemEmbeddings(
            f"model {snap.model.model_name} has no item embeddings "
            "(only i-autorec answers: an item's code is its hidden representation)"
        )
    cosine = (vectors @ vectors[item_idx]).double().numpy()  # (n_items,)
    cosine[item_idx] = -np.inf
    n = min(k, len(cosine) - 1)
    if n < 1:
        return []
    top = top_k(cosine[None, :], n)[0]
    ids = snap.model.items.ids
    return [(ids[i].item(), float(cosine[i])) for i in top]


# -- known users: batched top-k ------------------------------------------------------------------
def top_k_block(
    model: Recommender, user_idx: np.ndarray, ks: list[int], exclude_seen: list[bool]
) -> list[list[tuple[object, float]]]:
    """``Recommender.recommend(..., by="score")`` for a block of users at once: one
    ``_score_block`` call, one ``top_k`` and one ``predict`` for the whole block.

    The same lists as ``recommend`` (ranked on the raw score, seen items excluded, equal scores
    by lower item index) with each item's predicted rating.
    """
    users = np.asarray(user_idx, dtype=np.int64)
    scores = np.array(model._score_block(users), dtype=np.float64)  # (n_block, n_items)
    for row, (u, drop) in enumerate(zip(users, exclude_seen, strict=True)):
        if drop:
            scores[row, model._seen_items(int(u))] = -np.inf
    top = top_k(scores, min(max(ks), model.n_items))  # (n_block, k_max)
    n_candidates = np.isfinite(scores).sum(axis=1)  # (n_block,)
    lengths = [min(k, int(n)) for k, n in zip(ks, n_candidates, strict=True)]
    flat_users = np.repeat(users, lengths)
    flat_items = np.concatenate([top[r, :n] for r, n in enumerate(lengths)])
    rating = model.predict(flat_users, flat_items) if len(flat_items) else np.empty(0)
    ids = model.items.ids
    out, at = [], 0
    for n in lengths:
        out.append(
            [
                (ids[i].item(), float(r))
                for i, r in zip(flat_items[at : at + n], rating[at : at + n], strict=True)
            ]
        )
        at += n
    return out


@dataclass(eq=False)
class _Pending:
    snap: Snapshot
    user_idx: int
    k: int
    exclude_seen: bool
    future: asyncio.Future[list[tuple[object, float]]]


class TopKBatcher:
    """Collects concurrent known-user requests and scores each batch in one worker-thread call.

    No timer: the worker takes everything queued (up to :data:`MAX_BATCH`), computes it, and
    takes the next lot, so the added delay is the time the previous batch still had to run.
    Requests against different snapshots (a reload in between) are scored per snapshot.
    """

    def __init__(self, compute: Callable[..., list[list[tuple[object, float]]]] = top_k_block):
        self._compute = compute
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def top_k(
        self, snap: Snapshot, user_idx: int, k: int, exclude_seen: bool
    ) -> list[tuple[object, float]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(snap, user_idx, k, exclude_seen, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_snapshot: dict[int, list[_Pending]] = {}
            for p in batch:
                by_snapshot.setdefault(id(p.snap), []).append(p)
            for group in by_snapshot.values():
                await self._score(group)

    async def _score(self, group: list[_Pending]) -> None:
        model = group[0].snap.model
        try:
            lists = await asyncio.to_thread(
                self._compute,
                model,
                np.array([p.user_idx for p in group]),
                [p.k for p in group],
                [p.exclude_seen for p in group],
            )
        except Exception as exc:  # a bug: every request of the batch gets it (a 500, logged)
            for p in group:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, recs in zip(group, lists, strict=True):
            if not p.future.done():  # the client may have gone away
                p.future.set_result(recs)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass


class ModelHolder:
    """The snapshot being served. ``current`` is one attribute read (atomic under the GIL): a
    reload builds the whole new snapshot first and then replaces the reference, so a request
    sees the old model or the new one, never a mix; loads are serialised by a lock."""

    def __init__(self, snap: Snapshot) -> None:
        self.current = snap
        self._reload_lock = threading.Lock()

    def reload(self, model_dir: str | Path | None = None) -> Snapshot:
        """Load ``model_dir`` (default: the folder being served, read again) and swap it in.

        Raises:
            ModelFileError, OSError: the folder did not load; the current model keeps serving.
        """
        with self._reload_lock:
            snap = load_snapshot(model_dir if model_dir is not None else self.current.model_dir)
            self.current = snap
            return snap
