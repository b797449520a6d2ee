"""The evaluation protocol of Sedhain et al. (2015), Sec. 3, for any registered model.

For one seed:

1. split the ratings at random into 90% train and 10% test, and hold out 10% of train as
   validation (:func:`autorec.data.paper_split`);
2. fit one model per point of the model's tuning grid (AutoRec: lambda in
   {0.001, 0.01, 0.1, 1, 100, 1000}, plus 10 and 300) on train, early-stopping on validation,
   and keep the point with the lowest validation RMSE. When the best point holds the largest
   value of a key the model declares open above (``open_above``: AutoRec's lambda), the grid was
   too short: the next value of the 1-3-10 sequence (1000 -> 3000 -> 10000 ...) is tried, up to
   :data:`MAX_EXTENSIONS` times, until one does no better. Validation, not the end of a list,
   then chooses lambda. An explicit grid (``autorec evaluate --lambdas``) is searched as given.
3. retrain that point on train + validation (all the 90%) for the number of epochs validation
   chose (``retrain=False`` keeps the validation-stopped model instead);
4. score the test set; test ratings whose user or item has no training rating get the model's
   fallback (one rule for every model, ``fallback``: the bias baseline by default, the paper's
   constant 3 with ``"constant"``) and are counted. With ``ranking`` metrics, the tested model
   also ranks the whole catalogue for every test user, train and validation items excluded (the
   retrained model saw both), and the lists are scored on the test set
   (:func:`autorec.ranking.evaluate_ranking`).

The test set is touched once, after every choice is made.

Progress: ``progress(phase, Progress)`` is called after every epoch of every fit, with the phase
named after its grid point (``"lam=300 (2/8)"``, ``"fit"`` without a grid) or ``"retrain"``.

Checkpoints (:class:`ProtocolCheckpoints`): every fit checkpoints into its own sub-folder of one
folder (``lam=300/``, ``retrain/``), and each finished grid point is recorded in
``candidates.json`` there (its validation RMSE, best epoch and curves; with ``retrain=False`` the
best model so far is saved beside it). Resuming skips the finished points and continues the
interrupted fit from its checkpoint, so with one torch thread an interrupted and resumed run ends
with the same model and test RMSE, bit for bit, as an uninterrupted one. A point that finished
just before its record was written is fitted again (same result, more time).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autorec.atomic import atomic_write_json
from autorec.data.ratings import Ratings
from autorec.data.split import Split, paper_split
from autorec.distributed import DistEnv
from autorec.errors import ConfigError
from autorec.evaluation import evaluate
from autorec.models import get_model_class, make_model
from autorec.models.base import FitHistory, Recommender
from autorec.models.training import Checkpointer, Progress, is_iterative, ratings_fingerprint
from autorec.ranking import RankingMetric, evaluate_ranking
from autorec.search import SearchPolicy, adapt_search, simpler_model_check, widened_grid

log = logging.getLogger(__name__)

# How many values beyond the top of a grid the protocol tries for an open-above key (1000 ->
# 3000 -> 10000 -> 30000 -> 100000), so a rising validation curve cannot run forever.
MAX_EXTENSIONS = 4

#: ``progress(phase, Progress)``: after every epoch of every fit of the protocol.
PhaseProgress = Callable[[str, Progress], None]

CANDIDATES_NAME = "candidates.json"


@dataclass
class ProtocolResult:
    record: dict[str, Any]  # one entry of the "runs" list of the evaluate JSON
    model: Recommender  # the model that was tested
    split: Split
    candidates: list[dict[str, Any]]  # every grid point with its validation RMSE
    # RankingResult.to_dict() of the tested model (also record["ranking"]); None: not asked
    ranking: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProtocolCheckpoints:
    """Checkpoints of one protocol run in ``directory`` (see the module docstring).

    ``every_epochs`` / ``every_seconds``: how often each iterative fit writes its checkpoint
    (either being due is enough; an interruption always writes one). ``resume``: skip the grid
    points recorded as finished and continue the interrupted fit; without it the folder is
    emptied first. The caller removes the folder (:meth:`remove`) once the result is stored.
    """

    directory: Path
    every_epochs: int | None = 5
    every_seconds: float | None = 300.0
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        # Refuse bad frequencies now, not at the first fit.
        Checkpointer(self.directory, self.every_epochs, self.every_seconds)

    def checkpointer(self, fit: str) -> Checkpointer:
        return Checkpointer(self.directory / fit, self.every_epochs, self.every_seconds)

    @property
    def candidates_path(self) -> Path:
        return self.directory / CANDIDATES_NAME

    def remove(self) -> None:
        if DistEnv.from_environ().is_main:
            shutil.rmtree(self.directory, ignore_errors=True)


def point_key(point: dict[str, Any]) -> str:
    """A file name for a grid point: ``lam=300.0``, ``fit`` without a grid."""
    if not point:
        return "fit"
    text = ",".join(f"{k}={v}" for k, v in sorted(point.items()))
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _phase_name(point: dict[str, Any], position: str) -> str:
    if not point:
        return "fit"
    shown = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
    )
    return f"{shown} ({position})"


def grid_points(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Cartesian product of a tuning grid, in a fixed order."""
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def next_above(value: float) -> float:
    """The next value of the 1-3-10 sequence above ``value`` (300 -> 1000, 1000 -> 3000)."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"cannot extend a grid above {value!r}: not a positive number")
    decade = 10.0 ** math.floor(math.log10(value) + 1e-9)
    step = 3 * decade if value < 3 * decade * (1 - 1e-9) else 10 * decade
    return float(f"{step:.12g}")  # 3000.0 in the record, not 3000.0000000000005


def needs_extension(chosen: float, tried: list[float], grid_values: tuple[float, ...]) -> bool:
    """Whether the protocol tries one more value of an open-above key: validation chose the
    largest value tried so far, and fewer than :data:`MAX_EXTENSIONS` lie above the grid."""
    top = max(grid_values)
    return chosen == max(tried) and sum(v > top for v in tried) < MAX_EXTENSIONS


def _val_rmse(model: Recommender, val: Ratings) -> float:
    if model.history.best_val_rmse is not None:
        return float(model.history.best_val_rmse)
    return evaluate(model, val)["rmse"]


def run_protocol(
    ratings: Ratings,
    model_name: str,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    grid: dict[str, tuple[Any, ...]] | None = None,
    retrain: bool = True,
    split: Split | None = None,
    open_above: tuple[str, ...] | None = None,
    progress: PhaseProgress | None = None,
    checkpoints: ProtocolCheckpoints | None = None,
    ranking: str | Sequence[str | RankingMetric] | None = None,
    relevance: float | None = None,
    search: SearchPolicy | None = None,
) -> ProtocolResult:
    """One run of the paper's protocol (see the module docstring).

    ``open_above``: the grid keys extended upward when validation picks their largest value;
    None takes the model's ``open_above``, ``()`` searches ``grid`` exactly as given.
    ``progress``: called after every epoch of every fit with its phase name.
    ``checkpoints``: checkpoint every fit and resume an interrupted run.
    ``ranking``: full-ranking metrics (``"ndcg@10,recall@20"``) of the tested model, at the
    ``relevance`` threshold (None: :func:`autorec.ranking.default_relevance`); they choose
    nothing, the test set is scored after every choice is made.
    ``search``: the adaptive search of :mod:`autorec.search` (refinement, small-data grids and
    the simpler-model check); None: the grid exactly as given (``autorec reproduce``).

    Raises:
        ConfigError: resuming from checkpoints of another run (model, options, seed or data).
        TrainingInterrupted: SIGINT or SIGTERM during a fit (checkpoint kept when asked for).
    """
    overrides = dict(overrides or {})
    overrides.setdefault("seed", seed)
    split = split if split is not None else paper_split(ratings, seed=seed)
    if split.val is None:
        raise ValueError("the protocol needs a split with a validation set")
    grid = dict(grid or {})
    if search is not None:
        grid = widened_grid(search, model_name, grid, split.train.n_ratings)
    if open_above is None:
        open_above = get_model_class(model_name).open_above
    started = time.perf_counter()
    candidates: list[dict[str, Any]] = []
    # (validation RMSE, point, its model (None: a point finished before a resume), its history)
    best: tuple[float, dict[str, Any], Recommender | None, FitHistory] | None = None
    iterative = is_iterative(get_model_class(model_name).config_class)
    options = {"overrides": overrides, "grid": grid, "retrain": retrain, "open_above": open_above}
    if search is not None:
        options["search"] = search
    store = _CandidateStore(checkpoints, model_name, options, split)
    points = grid_points(grid)

    def fit_options(phase: str, fit: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if progress is not None:
            options["progress"] = lambda p: progress(phase, p)
        if checkpoints is not None and iterative:
            options["checkpoint"] = checkpoints.checkpointer(fit)
            options["resume"] = checkpoints.resume
        return options

    # Grid points are chosen on validation RMSE, which an I-AutoRec ranking head (trained after
    # the rating model, on the implicit matrix) cannot change: only the model that is tested
    # gets one, so asking for it costs one head fit per run, not one per grid point.
    search_only: dict[str, Any] = {}
    fields = get_model_class(model_name).config_class.__dataclass_fields__
    if retrain and "ranking_head" in fields:
        if overrides.get("ranking_head", fields["ranking_head"].default):
            search_only["ranking_head"] = False

    def try_point(point: dict[str, Any], position: str) -> None:
        nonlocal best
        phase = _phase_name(point, position)
        done = store.finished(point)
        if done is not None:
            val_rmse, history = done["candidate"]["val_rmse"], FitHistory(**done["history"])
            model = store.best_model(point) if not retrain else None
            log.info("%s: finished before the interruption; not fitted again", phase)
        else:
            point_started = time.perf_counter()
            model = make_model(model_name, **{**overrides, **search_only, **point})
            model.fit(split.train, split.val, **fit_options(phase, point_key(point)))
            val_rmse, history = _val_rmse(model, split.val), model.history
        candidate = {**point, "val_rmse": val_rmse, "best_epoch": history.best_epoch}
        candidates.append(candidate)
        log.info("%s %s: validation RMSE %.4f", model_name, point or "(no tuning)", val_rmse)
        is_best = best is None or val_rmse < best[0]
        if is_best:
            best = (val_rmse, point, model, history)
        if done is None:
            seconds = time.perf_counter() - point_started
            store.record(
                point, candidate, history, seconds, model if is_best and not retrain else None
            )

    for number, point in enumerate(points, start=1):
        try_point(point, f"{number}/{len(points)}")
    assert best is not None
    for key in open_above:
        values = grid.get(key, ())
        if len(values) < 2:  # a single value is a choice, not a range
            continue
        while needs_extension(best[1][key], [c[key] for c in candidates], values):
            top = best[1][key]
            log.info("%s: validation chose the largest %s (%g); trying more", model_name, key, top)
            try_point({**best[1], key: next_above(top)}, "above the grid")
        if best[1][key] == max(c[key] for c in candidates):
            log.warning(
                "%s: validation still chose the largest %s (%g) after %d extensions",
                model_name,
                key,
                best[1][key],
                MAX_EXTENSIONS,
            )
    # -- the adaptive search (autorec.search): refinement and small-data stages after the grid.
    adapted = None
    if search is not None:
        adapted = adapt_search(
            search,
            model_name,
            grid,
            split.train.n_ratings,
            try_point,
            lambda: (best[0], best[1]),  # type: ignore[index]
            candidates,
            set(overrides),
        )
    # -- end of the adaptive search
    val_rmse, point, best_model, history = best
    chosen = {**point}
    # The curves of the run that chose the settings (train and validation RMSE per epoch).
    curve = {"train_rmse": list(history.train_rmse), "val_rmse": list(history.val_rmse)}
    if retrain:
        fixed = {**overrides, **point}
        if iterative and history.best_epoch:
            fixed["n_epochs"] = history.best_epoch
            chosen["n_epochs"] = history.best_epoch
        model = make_model(model_name, **fixed)
        model.fit(split.train.merge(split.val), **fit_options("retrain", "retrain"))
        # Keep the validation record of the run that chose the settings.
        model.history.val_rmse = history.val_rmse
        model.history.best_epoch = history.best_epoch
    else:
        # A finished point's saved model (retrain=False); fitted again if that file is gone.
        model = best_model or make_model(model_name, **{**overrides, **point}).fit(
            split.train, split.val
        )
        model.history = history
    seconds = time.perf_counter() - started + store.seconds_before
    metrics = evaluate(model, split.test)
    summary = split.summary()
    record = {
        "seed": seed,
        "test_rmse": metrics["rmse"],
        "test_mae": metrics["mae"],
        "val_rmse": val_rmse,
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "n_test": summary["n_test"],
        "n_test_fallback": metrics["n_fallback"],
        "fallback": model.config.fallback,  # the rule that answered them
        "hyperparameters": chosen,
        "candidates": candidates,
        "epochs": model.history.n_epochs,
        "best_epoch": model.history.best_epoch,  # chosen on validation (0: not iterative)
        "train_seconds": seconds,
        "epoch_seconds": model.history.epoch_seconds,
        "learning_curve": curve,
    }
    if search is not None:
        record["search"] = adapted
        record["simpler_model_wins"] = (
            simpler_model_check(model_name, split, val_rmse, overrides)
            if search.compare_baseline
            else None
        )
    ranked = None
    if ranking:
        # Every item the tested model saw is excluded: train, and validation (retrained on it,
        # or early-stopped on it).
        ranked = evaluate_ranking(
            model, split.train, split.test, val=split.val, metrics=ranking, relevance=relevance
        ).to_dict()
        record["ranking"] = ranked
    return ProtocolResult(
        record=record, model=model, split=split, candidates=candidates, ranking=ranked
    )


class _CandidateStore:
    """``candidates.json`` of a checkpoint folder: the grid points that finished, so a resumed
    run does not fit them again (a no-op without checkpoints). Only the main rank writes; every
    rank reads."""

    def __init__(
        self,
        checkpoints: ProtocolCheckpoints | None,
        model_name: str,
        options: dict[str, Any],
        split: Split,
    ) -> None:
        self.checkpoints = checkpoints
        self.entries: list[dict[str, Any]] = []
        self.writes = DistEnv.from_environ().is_main
        if checkpoints is None:
            self.run = ""
            return
        # Everything a finished point depends on: a record of another run is never reused.
        described = json.dumps({"model": model_name, **options}, sort_keys=True, default=repr)
        self.run = hashlib.sha256(described.encode()).hexdigest()
        self.run += ratings_fingerprint(split.train, split.val, split.test)
        path = checkpoints.candidates_path
        if checkpoints.resume and path.is_file():
            try:
                saved = json.loads(path.read_text())
                entries, run = saved["entries"], saved["run"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{path}: not a readable record of finished fits ({exc})"
                ) from None
            if run != self.run:
                raise ConfigError(
                    f"{checkpoints.directory} holds the checkpoints of another run (other data, "
                    "model, options or seed); remove that folder to start afresh"
                )
            self.entries = entries
            log.info(
                "resuming from %s: %d grid point(s) finished", checkpoints.directory, len(entries)
            )
            return
        if self.writes and checkpoints.directory.exists():
            shutil.rmtree(checkpoints.directory)  # not resuming: what is there is stale
        # Written before any fit, so every checkpoint in the folder is tied to this run.
        self._write()

    def _write(self) -> None:
        if self.checkpoints is None or not self.writes:
            return
        stored = [{k: v for k, v in e.items() if k != "reused"} for e in self.entries]
        atomic_write_json(self.checkpoints.candidates_path, {"run": self.run, "entries": stored})

    @property
    def seconds_before(self) -> float:
        """Training time of the reused points (spent before the interruption)."""
        return sum(e["seconds"] for e in self.entries if e.get("reused"))

    def finished(self, point: dict[str, Any]) -> dict[str, Any] | None:
        key = point_key(point)
        for entry in self.entries:
            if entry["key"] == key:
                entry["reused"] = True
                return entry
        return None

    def best_model(self, point: dict[str, Any]) -> Recommender | None:
        """The saved model of a finished point, when it was the best so far (retrain=False)."""
        assert self.checkpoints is not None
        folder = self.checkpoints.directory / f"{point_key(point)}.model"
        return Recommender.load(folder) if folder.is_dir() else None

    def record(
        self,
        point: dict[str, Any],
        candidate: dict[str, Any],
        history: FitHistory,
        seconds: float,
        best_model: Recommender | None,
    ) -> None:
        if self.checkpoints is None:
            return
        entry = {
            "key": point_key(point),
            "candidate": candidate,
            "history": asdict(history),
            "seconds": seconds,
        }
        self.entries.append(entry)
        if not self.writes:
            return
        folder = self.checkpoints.directory
        if best_model is not None:
            # The model tested without a retrain: kept while it is the best so far.
            best_model.save(folder / f"{entry['key']}.model", overwrite=True)
        self._write()
        if best_model is not None:
            for other in folder.glob("*.model"):
                if other.name != f"{entry['key']}.model":
                    shutil.rmtree(other, ignore_errors=True)
