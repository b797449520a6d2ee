"""The one training loop of the iterative models: early stopping, checkpoints, progress.

A model that trains epoch by epoch (AutoRec, RBM, BiasedMF, LLORMA) derives its config from
:class:`IterativeConfig` and hands :func:`run_epochs` a :class:`TrainingSteps`: how to run one
epoch (returning its training and validation RMSE), how to copy and restore its parameters, and,
for checkpoints, how to export and import its whole training state. Everything else is here,
once:

* **Early stopping.** An epoch *improves* when its validation RMSE is below the best so far by
  more than ``min_delta``; it becomes the best epoch (its parameters are kept) and the patience
  clock restarts. With ``keep_small_gains`` a smaller gain still becomes the best epoch, but does
  not restart the clock. Training stops after ``patience`` epochs without an improvement, never
  before ``min_epochs``, and the best epoch's parameters are restored. Without validation every
  epoch runs and the last one is kept (the protocol's retrain for the chosen number of epochs).
* **Divergence.** A non-finite training or validation RMSE raises
  :class:`~autorec.errors.ModelFitError`.
* **History.** Each epoch is recorded in the model's :class:`~autorec.models.base.FitHistory`
  (no validation column when there is no validation set).
* **Progress.** ``progress(Progress)`` is called after every epoch with the epoch and total, the
  best validation RMSE so far, and the elapsed time, so a caller can draw a bar. A hook that
  returns True stops the fit after this epoch like early stopping does (the best epoch's
  parameters are restored) and marks the history ``pruned``: the protocol prunes a grid point
  that cannot beat the best one so far (:class:`autorec.protocol.PruneRule`).
* **Checkpoints and resume** (:class:`Checkpointer`): every ``every_epochs`` epochs and/or
  ``every_seconds`` seconds the training state (parameters, optimiser state including RProp step
  sizes, random generator states, history, epoch, the best epoch's parameters and the early
  stopping counters) is written atomically to ``DIR/checkpoint.safetensors``. ``resume=True``
  rebuilds the model's deterministic setup from the config and data, loads that state and goes
  on from the next epoch; with one torch thread the result is bit-identical to an uninterrupted
  fit. Under torch.distributed, rank 0 writes (with every rank's generator state) and every rank
  resumes. A successful fit removes its checkpoint.
* **Interruption.** SIGINT or SIGTERM during the loop finishes the current epoch, writes a
  checkpoint (when a :class:`Checkpointer` is given) and raises
  :class:`~autorec.errors.TrainingInterrupted` naming it; a second signal stops at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.numpy import save_file

from autorec.atomic import atomic_write_with
from autorec.errors import ConfigError, ModelFitError, TrainingInterrupted
from autorec.models.base import BaseConfig, FitHistory, FitOptions

if TYPE_CHECKING:
    from autorec.data.ratings import Ratings
    from autorec.models.base import Recommender

log = logging.getLogger(__name__)
#: The one line per epoch goes to its own logger, so that a front end drawing progress from the
#: hook (the CLI) can leave these lines out and still show every other message.
epoch_log = log.getChild("epochs")

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class IterativeConfig(BaseConfig):
    """Training length and early stopping, shared by every iterative model's config.

    Each model states its own defaults (the values below are only the fallbacks of a new model).
    """

    iterative: ClassVar[bool] = True

    n_epochs: int = 100  # upper bound on epochs; early stopping on validation usually ends sooner
    patience: int = 10  # epochs without an improvement of more than min_delta before stopping
    min_epochs: int = 0  # never stop before this many epochs
    min_delta: float = 0.0  # smallest validation RMSE gain that counts as an improvement
    # A gain of at most min_delta still becomes the best epoch (its weights are kept) but does
    # not restart the patience clock.
    keep_small_gains: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_epochs < 1 or self.patience < 1 or self.min_epochs < 0:
            raise ConfigError(
                f"n_epochs and patience must be >= 1 and min_epochs >= 0, got "
                f"{self.n_epochs}, {self.patience}, {self.min_epochs}"
            )
        if not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise ConfigError(f"min_delta must be a finite number >= 0, got {self.min_delta}")


def is_iterative(config_class: type[BaseConfig]) -> bool:
    """Whether models of this config train epoch by epoch (and so have ``n_epochs``,
    ``patience``, ...): its config derives from :class:`IterativeConfig`."""
    return issubclass(config_class, IterativeConfig)


@dataclass(frozen=True)
class EpochScores:
    """What one epoch reports: its training RMSE and, with a validation set, validation RMSE."""

    train_rmse: float
    val_rmse: float | None = None
    note: str = ""  # shown after the epoch number in the log, e.g. "CD-3"


@dataclass(frozen=True)
class Progress:
    """Passed to the progress hook after every epoch."""

    epoch: int
    n_epochs: int  # the upper bound: early stopping may end sooner
    train_rmse: float
    val_rmse: float | None
    best_val_rmse: float | None  # best so far; None without validation
    best_epoch: int
    epoch_seconds: float
    elapsed_seconds: float  # since the loop started (this process)
    stopping: bool  # this is the last epoch


#: Returns True to stop the fit after this epoch (pruning); None or False to go on.
ProgressHook = Callable[[Progress], bool | None]
State = dict[str, Any]  # nested dicts/lists of tensors, arrays and JSON scalars


@dataclass
class TrainingSteps:
    """What a model gives the loop.

    Attributes:
        run_epoch: runs epoch ``epoch`` (1-based) and returns its scores.
        snapshot: a copy of the parameters that ``restore`` needs, as a flat dict of tensors or
            arrays; ``into`` is the previous snapshot, whose buffers may be reused.
        restore: puts a snapshot back.
        state: everything an epoch reads that changes during training (parameters, optimiser
            state, random generators): a nested dict of tensors, arrays and JSON scalars.
            Needed only for checkpoints.
        load_state: the inverse of ``state``.
        rank_state / load_rank_state: state that differs across distributed ranks (a rank's
            random generator, :func:`generator_rank_state`); gathered from every rank into the
            checkpoint.
        divergence_hint: appended to the divergence error, e.g. "try a smaller lr".
    """

    run_epoch: Callable[[int], EpochScores]
    snapshot: Callable[[dict[str, Any] | None], dict[str, Any]]
    restore: Callable[[dict[str, Any]], None]
    state: Callable[[], State] | None = None
    load_state: Callable[[State], None] | None = None
    rank_state: Callable[[], State] | None = None
    load_rank_state: Callable[[State], None] | None = None
    divergence_hint: str = ""


def generator_rank_state(generator: torch.Generator) -> dict[str, Callable[..., Any]]:
    """``rank_state`` / ``load_rank_state`` for :class:`TrainingSteps` when a rank's own state is
    its random generator (dropout masks, Gibbs samples)."""
    return {
        "rank_state": lambda: {"generator": generator.get_state()},
        "load_rank_state": lambda saved: generator.set_state(saved["generator"]),
    }


@dataclass(frozen=True)
class Checkpointer:
    """Where and how often :func:`run_epochs` writes checkpoints.

    ``every_epochs`` and ``every_seconds`` may be combined (a checkpoint when either is due);
    with neither, only an interruption writes one.
    """

    directory: Path
    every_epochs: int | None = 1
    every_seconds: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.every_epochs is not None and self.every_epochs < 1:
            raise ConfigError(f"every_epochs must be >= 1, got {self.every_epochs}")
        if self.every_seconds is not None and not self.every_seconds > 0:
            raise ConfigError(f"every_seconds must be > 0, got {self.every_seconds}")

    @property
    def path(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    def due(self, epoch: int, since_last: float) -> bool:
        by_epochs = self.every_epochs is not None and epoch % self.every_epochs == 0
        by_time = self.every_seconds is not None and since_last >= self.every_seconds
        return by_epochs or by_time


@dataclass
class EarlyStopping:
    """The stopping rule of the module docstring, as state that a checkpoint can carry."""

    patience: int
    min_epochs: int
    min_delta: float
    keep_small_gains: bool
    best_val: float = math.inf
    best_epoch: int = 0
    stale: int = 0

    def update(self, epoch: int, val_rmse: float) -> tuple[bool, bool]:
        """(this epoch is the new best, training stops after it)."""
        is_best = False
        if val_rmse < self.best_val - self.min_delta:
            is_best, self.stale = True, 0
        elif self.keep_small_gains and val_rmse < self.best_val:
            is_best, self.stale = True, self.stale + 1
        else:
            self.stale += 1
        if is_best:
            self.best_val, self.best_epoch = val_rmse, epoch
        return is_best, self.stale >= self.patience and epoch >= self.min_epochs


# -- the loop -------------------------------------------------------------------------------------
def run_epochs(
    model: Recommender, steps: TrainingSteps, train: Ratings, val: Ratings | None
) -> None:
    """Train ``model`` epoch by epoch with ``steps`` (see the module docstring).

    ``val`` is used only to decide whether there is validation (a set with ratings); the scores
    come from ``steps.run_epoch``. Options (progress hook, checkpointer, resume) come from the
    ``fit`` call. Fills ``model.history`` and leaves the best epoch's parameters in place.

    Raises:
        ModelFitError: a non-finite RMSE (divergence).
        TrainingInterrupted: SIGINT or SIGTERM (after writing a checkpoint when asked to).
        ConfigError: ``resume`` with a checkpoint of another model, config or data set.
    """
    cfg = model.config
    if not isinstance(cfg, IterativeConfig):
        raise TypeError(f"{type(model).__name__} has no iterative config")
    options: FitOptions = getattr(model, "_fit_options", None) or FitOptions()
    has_val = val is not None and val.n_ratings > 0
    stopper = EarlyStopping(cfg.patience, cfg.min_epochs, cfg.min_delta, cfg.keep_small_gains)
    best: dict[str, Any] | None = None
    first_epoch = 1
    ckpt = options.checkpoint
    fingerprint = ratings_fingerprint(train, val) if ckpt is not None else ""
    if ckpt is not None and options.resume and ckpt.path.is_file():
        first_epoch, best = _resume(model, steps, stopper, ckpt.path, fingerprint)
    elif options.resume and ckpt is None:
        raise ConfigError("resume needs a checkpoint folder")
    started = last_saved = time.monotonic()
    last_path: Path | None = ckpt.path if ckpt is not None and first_epoch > 1 else None
    with _interrupt_flag() as interrupted:
        for epoch in range(first_epoch, cfg.n_epochs + 1):
            t0 = time.perf_counter()
            scores = steps.run_epoch(epoch)
            seconds = time.perf_counter() - t0
            val_rmse = scores.val_rmse if has_val else None
            for label, value in (("training", scores.train_rmse), ("validation", val_rmse)):
                if value is not None and not math.isfinite(value):
                    hint = f" ({steps.divergence_hint})" if steps.divergence_hint else ""
                    raise ModelFitError(
                        f"{model.model_name} diverged: {label} RMSE became {value} at epoch "
                        f"{epoch}{hint}"
                    )
            model.history.record(
                epoch_log, epoch, scores.train_rmse, val_rmse, seconds, scores.note
            )
            stop = False
            if val_rmse is None:
                stopper.best_epoch = epoch
            else:
                is_best, stop = stopper.update(epoch, val_rmse)
                if is_best:
                    best = steps.snapshot(best)
            stop = stop or epoch == cfg.n_epochs
            if options.progress is not None:
                prune = options.progress(
                    Progress(
                        epoch=epoch,
                        n_epochs=cfg.n_epochs,
                        train_rmse=scores.train_rmse,
                        val_rmse=val_rmse,
                        best_val_rmse=stopper.best_val if stopper.best_epoch and has_val else None,
                        best_epoch=stopper.best_epoch,
                        epoch_seconds=seconds,
                        elapsed_seconds=time.monotonic() - started,
                        stopping=stop,
                    )
                )
                if prune and not stop:
                    model.history.pruned = stop = True
            if stop:
                break
            due = ckpt is not None and ckpt.due(epoch, time.monotonic() - last_saved)
            signum, due = _agree(interrupted(), due)
            if ckpt is not None and (signum or due):
                _save(model, steps, stopper, best, epoch, ckpt.path, fingerprint)
                last_path, last_saved = ckpt.path, time.monotonic()
            if signum:
                raise TrainingInterrupted(signal.Signals(signum).name, epoch, last_path)
    if best is not None:
        steps.restore(best)
    model.history.best_epoch = stopper.best_epoch
    if ckpt is not None and _is_main_rank():
        ckpt.path.unlink(missing_ok=True)


# -- interruption ---------------------------------------------------------------------------------
@contextmanager
def _interrupt_flag() -> Iterator[Callable[[], int]]:
    """Catch SIGINT/SIGTERM while training: the first one is remembered (the loop stops after the
    epoch), a second one raises at once. Only the main thread can handle signals; elsewhere the
    default behaviour stays."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return

    def handler(signum: int, frame: object) -> None:
        if caught:
            raise TrainingInterrupted(signal.Signals(signum).name, None, None)
        caught.append(signum)
        log.warning("%s: stopping after this epoch", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: caught[0] if caught else 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _is_main_rank() -> bool:
    return not _distributed() or dist.get_rank() == 0


def _agree(signum: int, due: bool) -> tuple[int, bool]:
    """(a signal any rank saw, a checkpoint due on any rank): every rank stops and writes at the
    same epoch (writing is a collective, and ``every_seconds`` is measured per rank)."""
    if not _distributed():
        return signum, due
    buf = torch.tensor([signum, int(due)], dtype=torch.int64)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX)
    return int(buf[0]), bool(buf[1])


# -- checkpoints ----------------------------------------------------------------------------------
def ratings_fingerprint(*parts: Ratings | None) -> str:
    """sha256 of rating sets (None: absent): a checkpoint resumes only on the same data."""
    digest = hashlib.sha256()
    for part in parts:
        if part is None:
            digest.update(b"none")
            continue
        for arr in (part.user_idx, part.item_idx, part.rating):
            digest.update(np.ascontiguousarray(arr).view(np.uint8))
    return digest.hexdigest()


def _flatten(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of a nested state; its tensors and arrays go into ``arrays``."""
    if isinstance(obj, torch.Tensor | np.ndarray):
        arr = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        # np.ascontiguousarray would turn a 0-d array (L-BFGS's scalars) into shape (1,).
        arrays[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return {"tensor": key, "torch": isinstance(obj, torch.Tensor)}
    if isinstance(obj, dict):
        # Keys may be ints (an optimiser's state is keyed by parameter number).
        return {"dict": [[k, _flatten(v, f"{key}.{k}", arrays)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_flatten(v, f"{key}.{i}", arrays) for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    if obj is None or isinstance(obj, bool | int | float | str):
        return {"value": obj}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {key}")


def _unflatten(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if "tensor" in node:
        arr = arrays[node["tensor"]]
        arr = np.array(arr)  # a writable copy: the loop updates these in place
        return torch.from_numpy(arr) if node["torch"] else arr
    if "dict" in node:
        return {k: _unflatten(v, arrays) for k, v in node["dict"]}
    if "list" in node:
        return [_unflatten(v, arrays) for v in node["list"]]
    if "tuple" in node:
        return tuple(_unflatten(v, arrays) for v in node["tuple"])
    return node["value"]


def _gather_rank_states(steps: TrainingSteps) -> list[State]:
    own = steps.rank_state() if steps.rank_state is not None else {}
    if not _distributed():
        return [own]
    # Generator states are a few KB: pickled objects through the process group are fine.
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, own)
    return gathered


def _save(
    model: Recommender,
    steps: TrainingSteps,
    stopper: EarlyStopping,
    best: dict[str, Any] | None,
    epoch: int,
    path: Path,
    fingerprint: str,
) -> None:
    if steps.state is None:
        raise ConfigError(f"{model.model_name} cannot write checkpoints")
    ranks = _gather_rank_states(steps)  # a collective: every rank takes part
    if not _is_main_rank():
        return
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": model.model_name,
        "config": model.config.to_dict(),
        "data_sha256": fingerprint,
        "epoch": epoch,
        "history": dataclasses.asdict(model.history),
        "stopper": {
            "best_val": stopper.best_val,
            "best_epoch": stopper.best_epoch,
            "stale": stopper.stale,
        },
        "state": _flatten(steps.state(), "state", arrays),
        "ranks": _flatten(ranks, "ranks", arrays),
        "best": None if best is None else _flatten(best, "best", arrays),
    }
    text = json.dumps(meta)
    atomic_write_with(path, lambda tmp: save_file(arrays, str(tmp), metadata={"autorec": text}))
    log.info("checkpoint after epoch %d written to %s", epoch, path)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint file; ConfigError naming the file if unreadable."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["autorec"])
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # noqa: BLE001 - any damage is reported as one line
        raise ConfigError(f"{path}: not a readable autorec checkpoint ({exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: checkpoint format {meta.get('format')} is not supported")
    return meta, arrays


def _resume(
    model: Recommender,
    steps: TrainingSteps,
    stopper: EarlyStopping,
    path: Path,
    fingerprint: str,
) -> tuple[int, dict[str, Any] | None]:
    meta, arrays = read_checkpoint(path)
    if meta["model"] != model.model_name:
        raise ConfigError(f"{path} is a checkpoint of {meta['model']}, not {model.model_name}")
    if meta["config"] != json.loads(json.dumps(model.config.to_dict())):
        raise ConfigError(f"{path} was written with another configuration; start afresh")
    if meta["data_sha256"] != fingerprint:
        raise ConfigError(f"{path} was written on other training data; start afresh")
    if steps.load_state is None:
        raise ConfigError(f"{model.model_name} cannot resume from checkpoints")
    steps.load_state(_unflatten(meta["state"], arrays))
    ranks = _unflatten(meta["ranks"], arrays)
    rank = dist.get_rank() if _distributed() else 0
    if steps.load_rank_state is not None:
        if rank >= len(ranks):
            raise ConfigError(f"{path} was written by {len(ranks)} rank(s); this is rank {rank}")
        steps.load_rank_state(ranks[rank])
    model.history = FitHistory(**meta["history"])
    stopper.best_val = float(meta["stopper"]["best_val"])
    stopper.best_epoch = int(meta["stopper"]["best_epoch"])
    stopper.stale = int(meta["stopper"]["stale"])
    best = None if meta["best"] is None else _unflatten(meta["best"], arrays)
    log.info("resuming %s from %s after epoch %d", model.model_name, path, meta["epoch"])
    return int(meta["epoch"]) + 1, best
