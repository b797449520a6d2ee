"""Model folders (autorec.models.persistence): atomic saves and verified loads.

Every damaged or edited folder must either load a model that predicts exactly as the saved one
or raise one ModelFileError: never another exception, never a silently different model.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from autorec.data.synthetic import synthetic_ratings
from autorec.errors import ModelFileError
from autorec.models import AutoRec, make_model, persistence
from autorec.models.base import Recommender

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def ratings():
    return synthetic_ratings(30, 20, 240, rank=3, seed=0)


def _autorec(seed: int = 0) -> Recommender:
    return make_model("i-autorec", hidden=(4,), n_epochs=5, lam=1.0, seed=seed)


class _Quiet(dict):
    """A dict that hypothesis reports by name, not by its (large) content."""

    def __repr__(self) -> str:
        return f"<{', '.join(self)}>"


@pytest.fixture(scope="module")
def models(ratings) -> dict[str, Recommender]:
    return _Quiet(
        {
            "bias": make_model("bias").fit(ratings),
            "i-autorec": _autorec().fit(ratings),
            "item-knn": make_model("item-knn", k=5).fit(ratings),
        }
    )


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Each model's folder as file name -> bytes, in format 2 and in format 1."""
    out = _Quiet()
    for name in MODEL_NAMES:
        model = models[name]
        for version, writer in ((2, lambda m, p: m.save(p)), (1, _save_format_1)):
            folder = tmp_path_factory.mktemp(f"{name}-v{version}")
            writer(model, folder)
            out[f"{name}-v{version}"] = {
                p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"
            }
    return out


def _save_format_1(model: Recommender, path: Path, mutate=None) -> None:
    """A folder as the format-1 writer (autorec before format 2) laid it out; ``mutate`` edits
    the arrays and the metadata before they are written (to make damaged format-1 files)."""
    arrays = persistence._model_arrays(model)
    meta = {
        "format_version": 1,
        "model": model.model_name,
        "config": model.config.to_dict(),
        "users": model.users.to_list(),
        "items": model.items.to_list(),
        "rating_scale": list(model.rating_scale),
        "global_mean": model.global_mean,
        "fallback_mean": model._fallback_mean,
        "history": dataclasses.asdict(model.history),
        "extra": model._extra_meta(),
        "versions": {},
    }
    if mutate is not None:
        arrays = {k: v.copy() for k, v in arrays.items()}
        mutate(arrays, meta)
    path.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path / "weights.safetensors"))
    (path / "model.json").write_text(json.dumps(meta, indent=1))


def _all_pairs(model: Recommender) -> tuple[np.ndarray, np.ndarray]:
    """Every user x item pair plus a row and a column of -1 (out of vocabulary: fallback)."""
    users = np.arange(-1, model.n_users)
    items = np.arange(-1, model.n_items)
    u, i = np.meshgrid(users, items, indexing="ij")
    return u.ravel(), i.ravel()


def _same_model(loaded: Recommender, saved: Recommender) -> bool:
    u, i = _all_pairs(saved)
    return (
        type(loaded) is type(saved)
        and loaded.config == saved.config
        and loaded.users == saved.users
        and loaded.items == saved.items
        and np.array_equal(loaded.predict(u, i), saved.predict(u, i))
    )


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _weights_name(files: dict[str, bytes]) -> str:
    return next(n for n in files if n.endswith(".safetensors"))


def _load_or_refuse(folder: Path) -> Recommender | None:
    """The loaded model, or None when loading raised ModelFileError (any other error fails)."""
    try:
        return Recommender.load(folder)
    except ModelFileError as exc:
        message = str(exc)
        assert "\n" not in message and str(folder) in message, message
        return None


# -- saving -----------------------------------------------------------------------------------
def test_save_writes_content_addressed_weights_and_hashes(models, tmp_path) -> None:
    model = models["i-autorec"]
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    weights = tmp_path / "m" / meta["weights"]["file"]
    blob = weights.read_bytes()
    assert meta["format_version"] == 2
    assert meta["weights"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert meta["weights"]["size"] == len(blob)
    assert weights.name == f"weights-{meta['weights']['sha256'][:16]}.safetensors"
    # I-AutoRec encodes each item's vector of 30 user ratings into 4 hidden units.
    encoder = meta["weights"]["tensors"]["model.encoder"]
    assert encoder == {"dtype": "float32", "shape": [30, 4]}
    assert (meta["n_users"], meta["n_items"]) == (30, 20)
    assert meta["meta_sha256"] == persistence._meta_digest(meta)
    assert _same_model(Recommender.load(tmp_path / "m"), model)


def test_overwrite_is_required_and_old_weights_are_removed_one_save_later(
    models, ratings, tmp_path, caplog
) -> None:
    folder = tmp_path / "m"
    models["bias"].save(folder)
    first = {p.name for p in folder.glob("weights-*")}
    with pytest.raises(ModelFileError, match="already holds a saved model.*overwrite"):
        models["i-autorec"].save(folder)
    assert _same_model(Recommender.load(folder), models["bias"])
    with caplog.at_level(logging.INFO, logger="autorec.models.persistence"):
        models["i-autorec"].save(folder, overwrite=True)
    assert "replaced the model" in caplog.text
    # The previous weights stay for a reader that read the previous model.json ...
    second = {p.name for p in folder.glob("weights-*")}
    assert first < second and len(second) == 2
    other = _autorec(seed=1).fit(ratings)
    other.save(folder, overwrite=True)
    # ... and go one save later.
    third = {p.name for p in folder.glob("weights-*")}
    assert len(third) == 2 and not first & third
    assert _same_model(Recommender.load(folder), other)
    # The same content gets the same name: saving it again adds no file.
    other.save(folder, overwrite=True)
    fourth = {p.name for p in folder.glob("weights-*")}
    assert len(fourth) == 1 and fourth < third


def test_output_path_checks_before_any_work(models, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="is not a folder"):
        persistence.check_model_dir(tmp_path / "file")
    with pytest.raises(ModelFileError, match="is not a folder"):
        models["bias"].save(tmp_path / "file")
    persistence.check_model_dir(tmp_path / "new")  # a missing folder is fine
    models["bias"].save(tmp_path / "m")
    assert persistence.holds_model(tmp_path / "m")
    with pytest.raises(ModelFileError, match="already holds"):
        persistence.check_model_dir(tmp_path / "m")
    persistence.check_model_dir(tmp_path / "m", overwrite=True)


def test_a_second_writer_waits_for_the_lock_then_fails_clearly(models, tmp_path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(ModelFileError, match="another process has been saving"):
            persistence.save_model(models["bias"], folder, lock_timeout=0.3)
        assert time.monotonic() - start >= 0.3
    finally:
        os.close(fd)
    persistence.save_model(models["bias"], folder, lock_timeout=0.3)
    assert _same_model(Recommender.load(folder), models["bias"])


def test_a_crash_before_the_commit_leaves_the_old_model(models, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "m"
    models["bias"].save(folder)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        models["i-autorec"].save(folder, overwrite=True)
    # The new weights were written but model.json still names the old ones.
    assert len(list(folder.glob("weights-*"))) == 2
    assert _same_model(Recommender.load(folder), models["bias"])
    monkeypatch.undo()
    (folder / ".model.json.0123456789ab.tmp").write_text("{")  # a dead writer's temporary
    (folder / "weights.safetensors.tmp").write_text("")  # format 1's fixed temporary name
    models["i-autorec"].save(folder, overwrite=True)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 4 and names[:2] == [".lock", "model.json"]  # + old and new weights
    assert _same_model(Recommender.load(folder), models["i-autorec"])


def test_format_1_folders_load_and_are_replaced_by_format_2(models, tmp_path, caplog) -> None:
    folder = tmp_path / "m"
    _save_format_1(models["i-autorec"], folder)
    with caplog.at_level(logging.WARNING, logger="autorec.models.persistence"):
        assert _same_model(Recommender.load(folder), models["i-autorec"])
    assert "format 1" in caplog.text
    models["bias"].save(folder, overwrite=True)
    assert (folder / "weights.safetensors").exists()  # a reader may still be on format 1
    models["bias"].save(folder, overwrite=True)
    assert not (folder / "weights.safetensors").exists()
    assert _same_model(Recommender.load(folder), models["bias"])


def test_a_reader_whose_weights_vanish_reads_model_json_again(
    models, ratings, tmp_path, monkeypatch
) -> None:
    """A reader reads model.json, then two saves land before it opens the weights: the weights
    that model.json named are gone (each save keeps only the previous ones), so it re-reads."""
    folder = tmp_path / "m"
    models["bias"].save(folder)
    stale = (folder / "model.json").read_bytes()
    models["i-autorec"].save(folder, overwrite=True)
    newest = _autorec(seed=1).fit(ratings)
    newest.save(folder, overwrite=True)
    real = persistence._read_meta_bytes
    calls = []

    def first_read_is_stale(path, meta_file):
        calls.append(meta_file)
        return stale if len(calls) == 1 else real(path, meta_file)

    monkeypatch.setattr(persistence, "_read_meta_bytes", first_read_is_stale)
    assert _same_model(Recommender.load(folder), newest)
    assert len(calls) == 2


# -- loading: each damage of the issue, one line ----------------------------------------------
def _edit_meta(folder: Path, edit) -> None:
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _set(path: list, value):
    """An edit of model.json that sets the value at ``path`` (keys and list indices)."""

    def edit(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _weights(folder: Path) -> Path:
    return next(folder.glob("weights*.safetensors"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _weights(f).write_bytes(_weights(f).read_bytes()[:-7]), "file is truncated"),
        (lambda f: _weights(f).write_bytes(b""), "is 0 bytes .* truncated"),
        (lambda f: _weights(f).write_bytes(_weights(f).read_bytes() + b" "), "file is damaged"),
        (lambda f: _edit_meta(f, _set(["weights", "size"], -1)), "weights.size must be"),
        (lambda f: _weights(f).unlink(), "missing \\(model.json names it\\)"),
        (lambda f: (f / "model.json").unlink(), "no saved model"),
        (lambda f: (f / "model.json").write_text("[1, 2]"), "must hold a JSON object, got a list"),
        (lambda f: (f / "model.json").write_text('{"format_'), "is not valid JSON"),
        (lambda f: (f / "model.json").write_bytes(b"\xff\xfe"), "is not UTF-8"),
        (lambda f: _edit_meta(f, _set(["config", "lam"], "300")), 'config.lam = "300"'),
        (lambda f: _edit_meta(f, _set(["config", "hidden"], [5])), "does not fit the i-autorec"),
        (lambda f: _edit_meta(f, _set(["config", "hiden"], [4])), "unknown AutoRecConfig field"),
        (lambda f: _edit_meta(f, _set(["config", "f"], "relu6")), "f must be one of"),
        (lambda f: _edit_meta(f, lambda m: m["users"].pop()), "hold 29 users"),
        (lambda f: _edit_meta(f, _set(["users", 1], 0)), "ids must be unique"),
        (lambda f: _edit_meta(f, _set(["items", 0], "a")), "all integers or all strings"),
        (lambda f: _edit_meta(f, _set(["items", 0], 1.0)), "all integers or .* found 1.0"),
        (lambda f: _edit_meta(f, _set(["rating_scale"], [5, 1])), "must have low < high"),
        (lambda f: _edit_meta(f, _set(["rating_scale"], [1, math.inf])), "two finite numbers"),
        (lambda f: _edit_meta(f, _set(["global_mean"], 3.7)), "changed after it was saved"),
        (lambda f: _edit_meta(f, _set(["global_mean"], math.nan)), "global_mean must be finite"),
        (lambda f: _edit_meta(f, _set(["format_version"], 3)), "written by a newer autorec"),
        (lambda f: _edit_meta(f, _set(["model"], "bias")), "unknown BiasConfig field"),
        (lambda f: _edit_meta(f, _set(["model"], "svd")), "unknown model 'svd'"),
        (lambda f: _edit_meta(f, lambda m: m.pop("weights")), "'weights' is missing"),
        (
            lambda f: _edit_meta(f, _set(["weights", "file"], "../m/model.json")),
            "weights.file must be",
        ),
        (
            lambda f: _edit_meta(
                f, _set(["weights", "tensors", "model.encoder", "shape"], [4, 30])
            ),
            "recorded as float32 \\[4, 30\\]",
        ),
        (lambda f: _edit_meta(f, _set(["history", "best_epoch"], "3")), "history.best_epoch"),
    ],
)
def test_each_damage_is_one_model_file_error(models, tmp_path, damage, message) -> None:
    folder = tmp_path / "m"
    models["i-autorec"].save(folder)
    damage(folder)
    with pytest.raises(ModelFileError, match=message) as info:
        Recommender.load(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_flipped_exponent_bits_fail_the_digest(models, tmp_path) -> None:
    """The issue's case: flipped exponent bits of the decoder weights still predicted 5.0."""
    folder = tmp_path / "m"
    models["i-autorec"].save(folder)
    meta = json.loads((folder / "model.json").read_text())
    blob = bytearray(_weights(folder).read_bytes())
    header = 8 + int.from_bytes(blob[:8], "little")
    start, _ = json.loads(blob[8:header])["model.decoder"]["data_offsets"]
    blob[header + start + 3] ^= 0x40  # the top exponent bit of the first float32
    _weights(folder).write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match=f"{meta['weights']['file']}: sha256 is"):
        Recommender.load(folder)


def test_loading_a_model_of_another_class_is_refused(models, tmp_path) -> None:
    models["bias"].save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="holds a bias model, not a AutoRec"):
        AutoRec.load(tmp_path / "m")


# Format 1 has no hashes: the value checks alone must refuse these (the tracebacks).
def _arr(key, fn):
    return lambda arrays, meta: fn(arrays[key])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # A flipped high byte of a row index: gave a bincount RuntimeError.
        (_arr("model.train_row", lambda a: a.__setitem__(0, 1 << 24)), "index outside 0..240"),
        # An index below that bound but past the 20 item rows.
        (_arr("model.train_row", lambda a: a.__setitem__(0, 25)), "does not fit the i-autorec"),
        (_arr("model.decoder", lambda a: a.__setitem__((0, 0), np.nan)), "non-finite"),
        (_arr("model.train_value", lambda a: a.__setitem__(0, np.inf)), "non-finite"),
        (_arr("base.seen_items", lambda a: a.__setitem__(0, 20)), "outside 0..19"),
        (_arr("base.seen_indptr", lambda a: a.__setitem__(3, 0)), "increasing order"),
        (_arr("base.user_seen", lambda a: a.__setitem__(0, 0)), "disagrees"),
        (lambda arrays, meta: meta["users"].pop(), "need shape \\(29,\\)"),
        (lambda arrays, meta: meta["config"].update(hidden=[5]), "does not fit"),
        (lambda arrays, meta: arrays.pop("model.encoder_bias"), "does not fit"),
        (lambda arrays, meta: arrays.pop("model.train_col"), "no tensor 'model.train_col'"),
        (lambda arrays, meta: arrays.pop("base.item_bias"), "no tensor 'base.item_bias'"),
        (lambda arrays, meta: meta.update(rating_scale=[5, 1]), "low < high"),
    ],
)
def test_format_1_damage_is_one_model_file_error(ratings, tmp_path, mutate, message) -> None:
    # Format 1 predates the ranking head (on by default since): its files hold none, and the
    # index bound 240 is that of the rating model's own arrays.
    headless = make_model("i-autorec", hidden=(4,), n_epochs=5, lam=1.0, ranking_head=False)
    _save_format_1(headless.fit(ratings), tmp_path / "m", mutate)
    with pytest.raises(ModelFileError, match=message) as info:
        Recommender.load(tmp_path / "m")
    assert "\n" not in str(info.value)


def test_format_1_weights_that_crash_a_prediction_are_refused_at_load(models, tmp_path) -> None:
    """Item indices past the 20 items but within the generic bound: scoring a few training
    pairs once at load finds them (an IndexError at the first predict otherwise)."""

    def mutate(arrays, meta):
        arrays["model.user_items"][:] = 25

    _save_format_1(models["item-knn"], tmp_path / "m", mutate)
    with pytest.raises(ModelFileError, match="cannot predict: index 25 is out of bounds"):
        Recommender.load(tmp_path / "m")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda blob: blob[:100], "is not a readable safetensors"),
        (lambda blob: b"", "is empty"),
        (lambda blob: blob[:8] + b"{garbled" + blob[16:], "is not a readable safetensors"),
    ],
)
def test_format_1_unreadable_weights(models, tmp_path, damage, message) -> None:
    folder = tmp_path / "m"
    _save_format_1(models["bias"], folder)
    weights = folder / "weights.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelFileError, match=f"weights.safetensors: {message}"):
        Recommender.load(folder)


# -- properties: random damage never gives a traceback or a silent different model -----------
MODEL_NAMES = ("bias", "i-autorec")


def _check_outcome(folder: Path, model: Recommender, *, verified: bool = True) -> None:
    loaded = _load_or_refuse(folder)
    # --hypothesis-show-statistics shows how often each outcome came up.
    event(f"format {2 if verified else 1}: {'loaded' if loaded is not None else 'refused'}")
    if loaded is not None and verified:
        assert _same_model(loaded, model)


@pytest.mark.parametrize("name", MODEL_NAMES)
@SETTINGS
@given(data=st.data())
def test_truncated_weights_are_refused(models, saved, name, data) -> None:
    for version in (2, 1):
        files = dict(saved[f"{name}-v{version}"])
        weights = _weights_name(files)
        files[weights] = files[weights][: data.draw(st.integers(0, len(files[weights]) - 1))]
        with tempfile.TemporaryDirectory() as tmp:
            # Format 1 has no digest: refusal is not guaranteed, but never a traceback.
            _check_outcome(_write(Path(tmp), files), models[name], verified=version == 2)


@pytest.mark.parametrize("name", MODEL_NAMES)
@SETTINGS
@given(data=st.data())
def test_flipped_weight_bytes_are_refused(models, saved, name, data) -> None:
    for version in (2, 1):
        files = dict(saved[f"{name}-v{version}"])
        weights = _weights_name(files)
        blob = bytearray(files[weights])
        for pos in data.draw(st.sets(st.integers(0, len(blob) - 1), min_size=1, max_size=4)):
            blob[pos] ^= data.draw(st.integers(1, 255))
        files[weights] = bytes(blob)
        with tempfile.TemporaryDirectory() as tmp:
            folder = _write(Path(tmp), files)
            if version == 2:  # the digest refuses every flip
                with pytest.raises(ModelFileError, match="sha256 is .* damaged"):
                    Recommender.load(folder)
            else:
                _check_outcome(folder, models[name], verified=False)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _mutate(data, meta):
    """One random edit somewhere in the JSON tree: delete, replace, retype or change a number."""
    if data.draw(st.integers(0, 19)) == 0:
        return data.draw(JSON_VALUES)  # the whole document replaced
    parent, key = None, None
    node = meta
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 3)) > 0:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, data.draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return data.draw(JSON_VALUES)
    action = data.draw(st.sampled_from(["delete", "replace", "retype", "number"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = data.draw(JSON_VALUES)
    elif action == "retype":
        parent[key] = data.draw(st.sampled_from([str(node), [node], {"v": node}, None]))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        parent[key] = node + data.draw(st.sampled_from([1, -1, 0.5, 1e-9, -(2**31), 10**6]))
    else:  # "number" on a value that is not one: a random leaf instead
        parent[key] = data.draw(JSON_LEAVES)
    return meta


@pytest.mark.parametrize("name", MODEL_NAMES)
@SETTINGS
@given(data=st.data())
def test_json_mutations_are_refused_or_harmless(models, saved, name, data) -> None:
    for version in (2, 1):
        files = dict(saved[f"{name}-v{version}"])
        meta = _mutate(data, copy.deepcopy(json.loads(files["model.json"])))
        files["model.json"] = json.dumps(meta).encode()
        with tempfile.TemporaryDirectory() as tmp:
            # Format 1 records no hash of model.json: a changed global mean cannot be seen.
            _check_outcome(_write(Path(tmp), files), models[name], verified=version == 2)


# -- concurrency ------------------------------------------------------------------------------
STRESS_SECONDS = 2.0


def test_concurrent_writers_and_readers_see_whole_models(ratings, tmp_path) -> None:
    """Three writers save two models (same shapes, so a mix would load silently) into one
    folder in a loop while three readers load in a loop. The format-1 writer failed this:
    FileNotFoundError on the shared .tmp names and loads that matched neither model."""
    a, b = _autorec(seed=0).fit(ratings), _autorec(seed=1).fit(ratings)
    u, i = _all_pairs(a)
    expected = [a.predict(u, i), b.predict(u, i)]
    assert not np.array_equal(*expected)
    folder = tmp_path / "m"
    a.save(folder)
    stop = time.monotonic() + STRESS_SECONDS
    errors: list[str] = []
    counts = {"saves": 0, "loads": 0, "a": 0, "b": 0}
    lock = threading.Lock()

    def writer(k: int) -> None:
        n = 0
        while time.monotonic() < stop and not errors:
            try:
                (a if (n + k) % 2 else b).save(folder, overwrite=True)
            except Exception as exc:  # noqa: BLE001 - any failure is what the test reports
                errors.append(f"save: {type(exc).__name__}: {exc}")
            n += 1
            with lock:
                counts["saves"] += 1

    def reader() -> None:
        while time.monotonic() < stop and not errors:
            try:
                pred = Recommender.load(folder).predict(u, i)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"load: {type(exc).__name__}: {exc}")
                continue
            which = [k for k, e in zip("ab", expected, strict=True) if np.array_equal(pred, e)]
            if not which:
                errors.append("load: a model that is neither of the two saved")
            with lock:
                counts["loads"] += 1
                for k in which:
                    counts[k] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} failures in {counts}: {errors[:3]}"
    assert counts["saves"] >= 10 and counts["loads"] >= 10, counts
    # Whatever the interleaving, the folder ends with the last model and at most two weights.
    assert len(list(folder.glob("weights-*"))) <= 2
    final = Recommender.load(folder).predict(u, i)
    assert any(np.array_equal(final, e) for e in expected)
