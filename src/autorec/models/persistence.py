"""Model folders: atomic saves, verified loads.

A model folder holds

* ``weights-<sha256[:16]>.safetensors``: every array, named by the hash of its content;
* ``model.json``: the commit point. It names the weights file and records its sha256, every
  tensor's dtype and shape, the vocabulary sizes, the config, the vocabularies, the rating scale
  and the versions, and ends with ``meta_sha256``, the sha256 of its own canonical JSON (sorted
  keys, no spaces) without that key;
* ``.lock``: taken (``flock``) by a writer for the whole save.

Saving writes the new weights file first, then replaces ``model.json`` with one atomic rename
(:mod:`autorec.atomic`), then removes weights files that neither the new nor the previous
``model.json`` names. A reader therefore sees the old model or the new one, never a mix: a crash
before the rename leaves the old ``model.json`` naming the old weights, and a reader that read
the previous ``model.json`` just before a save still finds its weights. A reader that lost the
race twice (two saves between its two reads) sees the weights file vanish and reads
``model.json`` again. A second writer waits for the lock (``lock_timeout``), then fails.

Loading refuses, with one :class:`~autorec.errors.ModelFileError` naming the file and the
problem, anything that is not exactly what a save wrote: a ``model.json`` that is not a JSON
object with the required keys and types, a config that does not parse into the model's config
class (types checked), vocabularies whose sizes differ from the saved ones, a rating scale that
is not ``low < high``, a weights file whose sha256, tensor names, dtypes or shapes differ from the
record, non-finite values, integer index arrays out of range, weights the model cannot use, and
finally any edit of ``model.json`` (``meta_sha256``) that the checks above cannot see (a changed
global mean, say). Format 1 folders (``weights.safetensors`` and a ``model.json`` without hashes,
written before format 2) still load, with every check that needs no recorded hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import re
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors.numpy
import torch

import autorec
from autorec.atomic import atomic_write_bytes, atomic_write_json
from autorec.data.ratings import IdIndex
from autorec.errors import AutorecError, ModelFileError
from autorec.models.base import FORMAT_VERSION, BaseConfig, FitHistory, Recommender

log = logging.getLogger(__name__)

META_NAME = "model.json"
LOCK_NAME = ".lock"
LEGACY_WEIGHTS_NAME = "weights.safetensors"  # format 1
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a second writer waits for the first one's save

_WEIGHTS_NAME = re.compile(r"weights-[0-9a-f]{16}\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Temporary files of autorec.atomic (".<target>.<12 hex>.tmp") for this folder's files, and the
# fixed temporary names format 1 used: left behind only by a writer that died mid-save.
_STALE_TEMPORARY = re.compile(
    r"\.(model\.json|weights-[0-9a-f]{16}\.safetensors)\.[0-9a-f]{12}\.tmp"
    r"|model\.json\.tmp|weights\.safetensors\.tmp"
)
_READ_ATTEMPTS = 5  # model.json re-reads when the weights it names vanish under a reader
_PROBE_PAIRS = 32  # training pairs scored once after loading (see _probe)
_MAX_MESSAGE = 300


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
def save_model(
    model: Recommender,
    path: str | Path,
    *,
    overwrite: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> Path:
    """Save a fitted ``model`` into the folder ``path`` (created when missing).

    Raises:
        ModelFileError: ``path`` is a file; it already holds a model and ``overwrite`` is False;
            another writer holds the folder's lock for longer than ``lock_timeout`` seconds.
    """
    model._check_fitted()
    path = Path(path)
    check_model_dir(path, overwrite=overwrite)
    arrays = _model_arrays(model)
    payload = safetensors.numpy.save(arrays)
    digest = hashlib.sha256(payload).hexdigest()
    weights_name = f"weights-{digest[:16]}.safetensors"
    meta = _model_meta(model, arrays, weights_name, len(payload), digest)
    path.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path, lock_timeout):
        # Checked again under the lock: two writers without overwrite must not both pass.
        replaced = (path / META_NAME).exists()
        if replaced and not overwrite:
            raise _exists_error(path)
        previous = _committed_weights_name(path / META_NAME)
        _remove_stale_temporaries(path)
        atomic_write_bytes(path / weights_name, payload)
        _fsync_dir(path)  # the weights are on disk before the model.json that names them
        atomic_write_json(path / META_NAME, meta, indent=1)
        _fsync_dir(path)
        _remove_unreferenced_weights(path, keep={weights_name, previous})
    if replaced:
        log.info("replaced the model in %s with a %s model", path, model.model_name)
    else:
        log.info("saved a %s model to %s", model.model_name, path)
    return path


def check_model_dir(path: str | Path, *, overwrite: bool = False) -> None:
    """Refuse, before any work, an output ``path`` that :func:`save_model` would refuse."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"{path}: exists and is not a folder; choose a model folder")
    if not overwrite and (path / META_NAME).exists():
        raise _exists_error(path)


def holds_model(path: str | Path) -> bool:
    """True when ``path`` is a folder with a committed ``model.json`` (valid or not)."""
    return (Path(path) / META_NAME).is_file()


def _exists_error(path: Path) -> ModelFileError:
    return ModelFileError(
        f"{path}: already holds a saved model; pass overwrite=True (--overwrite) to replace it"
    )


def _model_arrays(model: Recommender) -> dict[str, np.ndarray]:
    arrays = {
        "base.user_seen": model.user_seen.astype(np.uint8),
        "base.item_seen": model.item_seen.astype(np.uint8),
        "base.user_bias": model._user_bias,
        "base.item_bias": model._item_bias,
        "base.seen_indptr": model._seen_indptr,
        "base.seen_items": model._seen_item_idx,
    }
    for key, value in model._state().items():
        arrays[f"model.{key}"] = value
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _model_meta(
    model: Recommender, arrays: dict[str, np.ndarray], weights_name: str, size: int, digest: str
) -> dict[str, Any]:
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model.model_name,
        "config": model.config.to_dict(),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "users": model.users.to_list(),
        "items": model.items.to_list(),
        "rating_scale": list(model.rating_scale),
        "global_mean": model.global_mean,
        "fallback_mean": model._fallback_mean,
        "history": dataclasses.asdict(model.history),
        "extra": model._extra_meta(),
        "weights": {
            "file": weights_name,
            "size": size,
            "sha256": digest,
            "tensors": {
                k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()
            },
        },
        "versions": {
            "autorec": autorec.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    meta["meta_sha256"] = _meta_digest(meta)
    return meta


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``meta`` without ``meta_sha256``.

    Python's JSON writes the shortest repr of a float, which reads back to the same float, so
    the canonical text of a parsed model.json equals that of the dict that was saved.
    """
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _folder_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path/.lock``; poll until ``timeout``, then fail.

    ``flock`` locks belong to the open file, so two threads of one process exclude each other
    as two processes do; the lock goes with the file descriptor if the writer dies.
    """
    lock_file = path / LOCK_NAME
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ModelFileError(
                        f"{lock_file}: another process has been saving a model into {path} "
                        f"for over {timeout:g} s; wait for it to finish or choose another folder"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _committed_weights_name(meta_file: Path) -> str | None:
    """The weights file the current ``model.json`` names (None when absent or unreadable)."""
    try:
        meta = json.loads(meta_file.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("format_version") == 1:
        return LEGACY_WEIGHTS_NAME
    weights = meta.get("weights")
    name = weights.get("file") if isinstance(weights, dict) else None
    return name if isinstance(name, str) and _WEIGHTS_NAME.fullmatch(name) else None


def _remove_stale_temporaries(path: Path) -> None:
    # Only writers that hold the lock write here, and we hold it: these are a dead writer's.
    for entry in path.iterdir():
        if _STALE_TEMPORARY.fullmatch(entry.name):
            entry.unlink(missing_ok=True)


def _remove_unreferenced_weights(path: Path, keep: set[str | None]) -> None:
    for entry in path.iterdir():
        name = entry.name
        if name not in keep and (name == LEGACY_WEIGHTS_NAME or _WEIGHTS_NAME.fullmatch(name)):
            entry.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def load_model(cls: type[Recommender], path: str | Path) -> Recommender:
    """Load and verify the model saved in the folder ``path`` (see the module docstring).

    ``cls`` is the class ``load`` was called on: the saved model must be one of its subclasses
    (any registered model when it is :class:`Recommender`).

    Raises:
        ModelFileError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    meta_file = path / META_NAME
    meta_bytes = _read_meta_bytes(path, meta_file)
    for attempt in range(_READ_ATTEMPTS):
        meta = _parse_meta(meta_file, meta_bytes)
        weights_file = path / (
            meta["weights"]["file"] if meta["format_version"] >= 2 else LEGACY_WEIGHTS_NAME
        )
        try:
            blob = weights_file.read_bytes()
            break
        except FileNotFoundError:
            # A save may have committed a new model.json and removed these weights since we
            # read model.json: read it again. If it did not change, the weights are just gone.
            newer = _read_meta_bytes(path, meta_file)
            if newer == meta_bytes or attempt + 1 == _READ_ATTEMPTS:
                raise ModelFileError(
                    f"{weights_file}: missing ({meta_file.name} names it)"
                ) from None
            meta_bytes = newer
        except OSError as exc:
            raise ModelFileError(f"{weights_file}: cannot be read ({exc.strerror})") from None
    return _build(cls, meta_file, meta, weights_file, blob)


def _read_meta_bytes(path: Path, meta_file: Path) -> bytes:
    try:
        return meta_file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileError(f"no saved model in {path} (missing {META_NAME})") from None
    except OSError as exc:
        raise ModelFileError(f"{meta_file}: cannot be read ({exc.strerror})") from None


def _fail(file: Path, problem: str) -> ModelFileError:
    """One line: the file, then the problem (library messages can span lines)."""
    problem = " ".join(problem.split())
    if len(problem) > _MAX_MESSAGE:
        problem = problem[: _MAX_MESSAGE - 3] + "..."
    return ModelFileError(f"{file}: {problem}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_meta(meta_file: Path, meta_bytes: bytes) -> dict[str, Any]:
    """The parsed ``model.json``, with its structure and the types of its keys checked."""
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(meta_file, "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(meta_file, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise _fail(meta_file, "is not a model description (JSON nested too deeply)") from None
    if not isinstance(meta, dict):
        raise _fail(meta_file, f"must hold a JSON object, got a {type(meta).__name__}")
    version = meta.get("format_version")
    if not _is_int(version):
        raise _fail(meta_file, f"format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise _fail(
            meta_file,
            f"format_version {version} was written by a newer autorec; "
            f"this one ({autorec.__version__}) reads formats 1 to {FORMAT_VERSION}",
        )
    if version < 1:
        raise _fail(meta_file, f"format_version {version} is not a model format")
    required: dict[str, tuple[type | tuple[type, ...], str]] = {
        "model": (str, "a string"),
        "config": (dict, "an object"),
        "users": (list, "a list"),
        "items": (list, "a list"),
        "rating_scale": (list, "a list"),
        "global_mean": ((int, float), "a number"),
        "fallback_mean": ((int, float), "a number"),
    }
    optional = {"history": (dict, "an object"), "extra": (dict, "an object")}
    if version >= 2:
        required |= {
            "n_users": (int, "an integer"),
            "n_items": (int, "an integer"),
            "weights": (dict, "an object"),
            "meta_sha256": (str, "a string"),
            **optional,
        }
    for key, (kind, what) in (required | optional).items():
        if key not in meta:
            if key in required:
                raise _fail(meta_file, f"the key {key!r} is missing")
            continue
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _fail(meta_file, f"{key} must be {what}, got {_show(value)}")
    for key in ("global_mean", "fallback_mean"):
        if not math.isfinite(meta[key]):
            raise _fail(meta_file, f"{key} must be finite, got {meta[key]}")
    scale = meta["rating_scale"]
    if len(scale) != 2 or not all(_is_number(v) and math.isfinite(v) for v in scale):
        raise _fail(meta_file, f"rating_scale must be two finite numbers, got {_show(scale)}")
    if not scale[0] < scale[1]:
        raise _fail(meta_file, f"rating_scale {scale} must have low < high")
    if version >= 2:
        _check_weights_record(meta_file, meta["weights"])
    return meta


def _check_weights_record(meta_file: Path, weights: dict[str, Any]) -> None:
    name = weights.get("file")
    if not (isinstance(name, str) and _WEIGHTS_NAME.fullmatch(name)):
        # Also what keeps a reader inside the folder: no "../" or absolute path.
        raise _fail(meta_file, f"weights.file must be weights-<16 hex>.safetensors, got {name!r}")
    size = weights.get("size")
    if not (_is_int(size) and size >= 0):
        raise _fail(meta_file, f"weights.size must be a byte count, got {_show(size)}")
    digest = weights.get("sha256")
    if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise _fail(meta_file, f"weights.sha256 must be 64 hex digits, got {_show(digest)}")
    if not name.startswith(f"weights-{digest[:16]}"):
        raise _fail(meta_file, f"weights.file {name} does not match weights.sha256")
    tensors = weights.get("tensors")
    if not isinstance(tensors, dict):
        raise _fail(meta_file, f"weights.tensors must be an object, got {_show(tensors)}")
    for key, spec in tensors.items():
        ok = (
            isinstance(spec, dict)
            and isinstance(spec.get("dtype"), str)
            and isinstance(spec.get("shape"), list)
            and all(_is_int(n) and n >= 0 for n in spec["shape"])
        )
        if not ok:
            raise _fail(
                meta_file,
                f"weights.tensors[{key!r}] must be {{'dtype': str, 'shape': [int, ...]}}, "
                f"got {_show(spec)}",
            )


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _build(
    cls: type[Recommender],
    meta_file: Path,
    meta: dict[str, Any],
    weights_file: Path,
    blob: bytes,
) -> Recommender:
    from autorec.models import get_model_class

    version = meta["format_version"]
    try:
        model_cls = get_model_class(meta["model"])
    except AutorecError as exc:
        raise _fail(meta_file, str(exc)) from None
    if cls is not Recommender and not issubclass(model_cls, cls):
        raise _fail(meta_file, f"holds a {meta['model']} model, not a {cls.__name__}")
    config = _parse_config(meta_file, model_cls.config_class, meta["config"])
    users = _vocabulary(meta_file, "users", meta["users"])
    items = _vocabulary(meta_file, "items", meta["items"])
    n_users, n_items = len(users), len(items)
    if version >= 2 and (meta["n_users"], meta["n_items"]) != (n_users, n_items):
        raise _fail(
            meta_file,
            f"the vocabularies hold {n_users} users and {n_items} items but the model was "
            f"saved with {meta['n_users']} users and {meta['n_items']} items",
        )
    history = _history(meta_file, meta.get("history", {}))
    extra = meta.get("extra", {})

    if version >= 2:
        recorded = meta["weights"]["size"]
        if len(blob) != recorded:
            what = "truncated" if len(blob) < recorded else "damaged"
            raise _fail(
                weights_file,
                f"is {len(blob)} bytes but {meta_file.name} records {recorded}: the file is {what}",
            )
        actual = hashlib.sha256(blob).hexdigest()
        if actual != meta["weights"]["sha256"]:
            raise _fail(
                weights_file,
                f"sha256 is {actual[:16]}..., not the {meta['weights']['sha256'][:16]}... "
                f"recorded in {meta_file.name}: the file is damaged",
            )
    arrays = _parse_weights(weights_file, blob)
    if version >= 2:
        _check_recorded_tensors(weights_file, arrays, meta["weights"]["tensors"])
    _check_base_tensors(weights_file, arrays, n_users, n_items)
    _check_values(weights_file, arrays, n_users, n_items)

    model = model_cls(config)
    model.users, model.items = users, items
    model.n_users, model.n_items = n_users, n_items
    model.rating_scale = (float(meta["rating_scale"][0]), float(meta["rating_scale"][1]))
    model.global_mean = float(meta["global_mean"])
    model._fallback_mean = float(meta["fallback_mean"])
    model.user_seen = arrays["base.user_seen"].astype(bool)
    model.item_seen = arrays["base.item_seen"].astype(bool)
    model._user_bias = arrays["base.user_bias"]
    model._item_bias = arrays["base.item_bias"]
    model._seen_indptr = arrays["base.seen_indptr"]
    model._seen_item_idx = arrays["base.seen_items"]
    model.history = history
    state = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
    try:
        model._load_state(state, extra)
    except KeyError as exc:
        raise _fail(weights_file, f"has no tensor 'model.{exc.args[0]}'") from None
    except (RuntimeError, ValueError, IndexError, TypeError, AttributeError) as exc:
        raise _fail(
            weights_file,
            f"does not fit the {meta['model']} model described in {meta_file.name}: {exc}",
        ) from None
    model._fitted = True
    _probe(model, weights_file)
    if version >= 2 and _meta_digest(meta) != meta["meta_sha256"]:
        raise _fail(
            meta_file,
            "was changed after it was saved (its content does not match meta_sha256); "
            "save the model again rather than editing model.json",
        )
    if version < 2:
        log.warning(
            "%s: format 1 model folder: loaded without checksums; save it again to add them",
            meta_file,
        )
    return model


def _parse_config(meta_file: Path, config_class: type[BaseConfig], values: dict) -> BaseConfig:
    hints = _config_types(config_class)
    for name, value in values.items():
        if name in hints and not _conforms(value, hints[name]):
            raise _fail(
                meta_file,
                f"config.{name} = {_show(value)} is not a valid {_describe(hints[name])}",
            )
    try:
        return config_class.from_dict(values)
    except (AutorecError, TypeError, ValueError) as exc:
        raise _fail(meta_file, f"config: {exc}") from None


def _config_types(config_class: type[BaseConfig]) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


def _conforms(value: object, annotation: Any) -> bool:
    """Does the JSON ``value`` fit the config field type ``annotation``? Floats must be finite."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_conforms, value, args))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    # A field type this checker does not know: refuse rather than pass it through unchecked.
    return False


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "choice (" + ", ".join(repr(a) for a in typing.get_args(annotation)) + ")"
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "") + (" (finite)" if "float" in text else "")


def _vocabulary(meta_file: Path, key: str, ids: list) -> IdIndex:
    if not ids:
        raise _fail(meta_file, f"{key} is empty")
    if all(_is_int(v) for v in ids):
        if not all(-(2**63) <= v < 2**63 for v in ids):
            raise _fail(meta_file, f"{key}: an id does not fit in 64 bits")
        arr: np.ndarray = np.asarray(ids, dtype=np.int64)
    elif all(isinstance(v, str) for v in ids):
        arr = np.asarray(ids, dtype=str)
    else:
        odd = [v for v in ids if not (_is_int(v) or isinstance(v, str))]
        found = _show(odd[0]) if odd else "both"
        raise _fail(meta_file, f"{key} must be all integers or all strings, found {found}")
    try:
        return IdIndex(arr)
    except ValueError as exc:
        raise _fail(meta_file, f"{key}: {exc}") from None


def _history(meta_file: Path, values: dict) -> FitHistory:
    names = {f.name for f in dataclasses.fields(FitHistory)}
    for key, value in values.items():
        if key not in names:
            raise _fail(meta_file, f"history has an unknown key {key!r}")
        if key == "best_epoch":
            ok = _is_int(value) and value >= 0
        elif key == "pruned":
            ok = isinstance(value, bool)
        else:  # per-epoch lists; NaN is a real entry (no validation set: val_rmse is nan)
            ok = isinstance(value, list) and all(_is_number(v) for v in value)
        if not ok:
            raise _fail(meta_file, f"history.{key} has the wrong type: {_show(value)}")
    return FitHistory(**values)


def _parse_weights(weights_file: Path, blob: bytes) -> dict[str, np.ndarray]:
    if not blob:
        raise _fail(weights_file, "is empty")
    try:
        return dict(safetensors.numpy.load(blob))
    except Exception as exc:  # SafetensorError, or numpy's errors on a dtype it cannot view
        raise _fail(weights_file, f"is not a readable safetensors file ({exc})") from None


def _check_recorded_tensors(
    weights_file: Path, arrays: dict[str, np.ndarray], recorded: dict[str, Any]
) -> None:
    if set(arrays) != set(recorded):
        diff = sorted(set(arrays) ^ set(recorded))
        raise _fail(weights_file, f"tensors differ from the record: {', '.join(diff[:5])}")
    for key, spec in recorded.items():
        arr = arrays[key]
        if str(arr.dtype) != spec["dtype"] or list(arr.shape) != spec["shape"]:
            raise _fail(
                weights_file,
                f"tensor {key} is {arr.dtype} {list(arr.shape)}, "
                f"recorded as {spec['dtype']} {spec['shape']}",
            )


def _check_base_tensors(
    weights_file: Path, arrays: dict[str, np.ndarray], n_users: int, n_items: int
) -> None:
    """The arrays every model saves, against the vocabulary sizes and each other."""
    for key, shape, kind in (
        ("base.user_seen", (n_users,), "u"),
        ("base.item_seen", (n_items,), "u"),
        ("base.user_bias", (n_users,), "f"),
        ("base.item_bias", (n_items,), "f"),
        ("base.seen_indptr", (n_users + 1,), "iu"),
        ("base.seen_items", None, "iu"),
    ):
        if key not in arrays:
            raise _fail(weights_file, f"has no tensor {key!r}")
        arr = arrays[key]
        if arr.dtype.kind not in kind or (shape is not None and arr.shape != shape):
            want = f"shape {shape}" if shape is not None else "one dimension"
            raise _fail(
                weights_file,
                f"tensor {key} is {arr.dtype} {arr.shape}; the vocabularies "
                f"({n_users} users, {n_items} items) need {want}",
            )
    indptr = arrays["base.seen_indptr"].astype(np.int64)
    seen_items = arrays["base.seen_items"]
    if seen_items.ndim != 1:
        raise _fail(weights_file, f"tensor base.seen_items has shape {seen_items.shape}")
    if indptr[0] != 0 or indptr[-1] != len(seen_items) or (np.diff(indptr) < 0).any():
        raise _fail(
            weights_file,
            f"tensor base.seen_indptr is not offsets 0..{len(seen_items)} in increasing order",
        )
    if len(seen_items) and not (seen_items.min() >= 0 and seen_items.max() < n_items):
        raise _fail(weights_file, f"tensor base.seen_items holds an index outside 0..{n_items - 1}")
    user_seen = np.diff(indptr) > 0
    item_seen = np.bincount(seen_items.astype(np.int64), minlength=n_items) > 0
    if not np.array_equal(arrays["base.user_seen"], user_seen.astype(np.uint8)):
        raise _fail(weights_file, "tensor base.user_seen disagrees with base.seen_indptr")
    if not np.array_equal(arrays["base.item_seen"], item_seen.astype(np.uint8)):
        raise _fail(weights_file, "tensor base.item_seen disagrees with base.seen_items")


def _check_values(
    weights_file: Path, arrays: dict[str, np.ndarray], n_users: int, n_items: int
) -> None:
    """Every float finite; every integer array a plausible index or offset (>= 0, bounded).

    Integer arrays hold indices (< n_users or n_items) or offsets into other arrays (<= their
    length), so none exceeds the largest of those: a flipped high byte always does.
    """
    bound = max(n_users, n_items, *(arr.size for arr in arrays.values()))
    for key, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise _fail(weights_file, f"tensor {key} holds a non-finite value (NaN or inf)")
        if arr.dtype.kind in "iu" and arr.size and not (arr.min() >= 0 and arr.max() <= bound):
            raise _fail(weights_file, f"tensor {key} holds an index outside 0..{bound}")


def _probe(model: Recommender, weights_file: Path) -> None:
    """Score a few training pairs: weights that crash or give NaN are refused now, not later."""
    indptr, seen_items = model._seen_indptr, model._seen_item_idx
    n = len(seen_items)
    if n == 0:
        return
    pos = np.unique(np.linspace(0, n - 1, min(n, _PROBE_PAIRS)).astype(np.int64))
    users = np.searchsorted(indptr, pos, side="right") - 1
    try:
        scores = model.predict(users, seen_items[pos])
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise _fail(weights_file, f"gives a model that cannot predict: {exc}") from None
    if not np.isfinite(scores).all():
        raise _fail(weights_file, "gives a model that predicts NaN")
