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
   chose, with whatever else the validation-stage model hands over
   (:meth:`~autorec.models.base.Recommender.retrain_overrides`: an ensemble's blend weights and
   member epochs) (``retrain=False`` keeps the validation-stopped model instead);
4. score the test set; test ratings whose user or item has no training rating get the model's
   fallback (one rule for every model, ``fallback``: the bias baseline by default, the paper's
   constant 3 with ``"constant"``) and are counted. With ``ranking`` metrics, the tested model
   also ranks the whole catalogue for every test user, train and validation items excluded (the
   retrained model saw both), and the lists are scored on the test set
   (:func:`autorec.ranking.evaluate_ranking`).

The test set is touched once, after every choice is made.

Pruning (``prune``, a :class:`PruneRule`; ``autorec evaluate`` uses :data:`DEFAULT_PRUNE`, off
with ``--no-prune``): a grid point whose validation curve cannot beat the best finished point is
stopped early. After ``warmup`` epochs, a point stops at the first epoch ``e`` where its best
validation RMSE so far exceeds the incumbent's by more than a relative margin that shrinks with
the epochs, ``best_e > incumbent * (1 + margin / e)``. A pruned point keeps the best RMSE it
reached, which is above the incumbent, so it is never chosen; it is recorded with
``"pruned": true`` and the epochs it ran. The rule is safe when it never stops a point that would
have become the best so far: then every choice (grid best, extensions, chosen point, its epoch
count) is the one of the unpruned protocol, bit for bit. ``benchmarks/check_pruning.py`` checks
that on the learning curves of every committed reproduce cell.

Parallel grid points (``jobs`` > 1, ``autorec evaluate --jobs N``): the grid runs in *waves* of
``prune.wave`` consecutive points (``jobs`` points without pruning), each wave's points fitted in
separate processes of one torch thread each, and every point of a wave is pruned against the
incumbent of the waves before it, never against a point of its own wave. What a point sees
therefore depends on the wave size only, not on ``jobs`` or on which process finishes first:
``jobs=1`` and ``jobs=N`` give the same record (same candidates, same choice, same test RMSE bit
for bit, as long as the sequential run also uses one torch thread). Extension points above the
grid depend on the choice before them and run one at a time. Without pruning the wave size does
not matter, and ``prune=None, jobs=1`` is the protocol as it was before pruning existed.

Progress: ``progress(phase, Progress)`` is called after every epoch of every fit, with the phase
named after its grid point (``"lam=300 (2/8)"``, ``"fit"`` without a grid) or ``"retrain"``;
points fitted in worker processes (``jobs`` > 1, two or more points in the wave) report none.

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
import multiprocessing
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from autorec.atomic import atomic_write_json
from autorec.data.ratings import Ratings
from autorec.data.split import Split, paper_split
from autorec.distributed import DistEnv
from autorec.errors import ConfigError
from autorec.evaluation import evaluate
from autorec.models import autorec_rank, get_model_class, make_model, model_config
from autorec.models.base import FitHistory, Recommender
from autorec.models.training import Checkpointer, Progress, is_iterative, ratings_fingerprint
from autorec.ranking import RankingMetric, evaluate_ranking
from autorec.search import (
    NOT_COMPARED,
    SearchPolicy,
    adapt_search,
    outward_key,
    outward_next,
    outward_start,
    search_defaults,
    simpler_model_check,
    tune_baseline,
    wants_baseline_regs,
    widened_grid,
)

log = logging.getLogger(__name__)

# How many values beyond the top of a grid the protocol tries for an open-above key (1000 ->
# 3000 -> 10000 -> 30000 -> 100000), so a rising validation curve cannot run forever.
MAX_EXTENSIONS = 4

#: ``progress(phase, Progress)``: after every epoch of every fit of the protocol.
PhaseProgress = Callable[[str, Progress], None]

CANDIDATES_NAME = "candidates.json"


@dataclass(frozen=True)
class PruneRule:
    """Stop a grid point's fit when its validation curve cannot beat the incumbent (the lowest
    validation RMSE among the points finished before its wave; module docstring).

    Stop after epoch ``e >= warmup`` when ``best_e > incumbent * (1 + margin / e)``, ``best_e``
    the point's best validation RMSE up to epoch ``e``. The margin shrinks as ``1/e`` because a
    curve's remaining gain does: the slowest winner of the committed ML-1M / ML-100k cells
    (I-AutoRec 500-250-500, lambda = 100) is still 0.035 above the incumbent at epoch 50 and
    0.016 at epoch 100, i.e. 2.1% and 0.95% of 0.84, where the margin with the defaults allows
    8% and 4% (``benchmarks/check_pruning.py`` replays every committed cell). ``wave``: points
    run (in parallel with ``jobs``) between two updates of the incumbent.
    """

    warmup: int = 20  # epochs every point runs before it may be pruned
    margin: float = 4.0  # relative margin times epochs: 4% of the incumbent at epoch 100
    wave: int = 2  # the two cores of the reference machine

    def __post_init__(self) -> None:
        if (
            self.warmup < 1
            or self.wave < 1
            or not (self.margin >= 0 and math.isfinite(self.margin))
        ):
            raise ConfigError(
                f"prune rule needs warmup >= 1, wave >= 1 and a finite margin >= 0, got "
                f"{self.warmup}, {self.wave}, {self.margin}"
            )

    def prunes(self, epoch: int, best_val: float | None, incumbent: float | None) -> bool:
        """Whether a point whose best validation RMSE after ``epoch`` is ``best_val`` stops."""
        if incumbent is None or best_val is None or epoch < self.warmup:
            return False
        return best_val > incumbent * (1 + self.margin / epoch)

    def stop_epoch(self, val_curve: Sequence[float], incumbent: float | None) -> int | None:
        """The epoch at which a fit with this validation curve would be pruned (None: never)."""
        best = math.inf
        for epoch, value in enumerate(val_curve, start=1):
            best = min(best, value)
            if self.prunes(epoch, best, incumbent):
                return epoch
        return None


#: The rule ``autorec evaluate`` prunes with (``--no-prune``: none).
DEFAULT_PRUNE = PruneRule()

#: A retrain whose training RMSE ends more than this factor above the chosen fit's at the same
#: epoch did not get where that fit got: the optimiser stalled. Seen once: i-kernelnet with
#: baseline="bias" (L-BFGS) on ML-1M seed 0 sat at the bias baseline, training RMSE 0.897
#: against the chosen fit's 0.705, test 0.904 against a validation RMSE of 0.828. Adding the
#: validation ratings moves a healthy retrain's training RMSE by far less.
RETRAIN_STALL_RATIO = 1.1


def retrain_check(chosen: FitHistory, retrained: FitHistory) -> dict[str, Any] | None:
    """The retrain's last training RMSE against the chosen (validation-stopped) fit's at the same
    epoch; ``stalled`` when it is more than :data:`RETRAIN_STALL_RATIO` times higher. None when
    the two cannot be lined up (a model without epochs, or a retrain longer than the fit)."""
    n_epochs = len(retrained.train_rmse)
    if n_epochs == 0 or len(chosen.train_rmse) < n_epochs:
        return None
    reference, final = chosen.train_rmse[n_epochs - 1], retrained.train_rmse[-1]
    return {
        "train_rmse": final,
        "chosen_fit_train_rmse": reference,
        "stalled": bool(final > RETRAIN_STALL_RATIO * reference),
    }


def replay_pruning(curves: Sequence[Sequence[float]], rule: PruneRule) -> dict[str, Any]:
    """The grid search over points with these validation curves (in protocol order), with and
    without ``rule``: ``{"chosen", "chosen_unpruned", "epochs", "pruned"}`` (chosen: index of the
    lowest recorded validation RMSE, the first on ties, as :func:`run_protocol`; epochs: per
    point, epochs run with the rule). The analysis of ``benchmarks/check_pruning.py`` and of the
    tests; the protocol itself prunes through the training loop's progress hook."""
    finals = [min(c) for c in curves]
    recorded: list[float] = []
    epochs: list[int] = []
    pruned: list[bool] = []
    for start in range(0, len(curves), rule.wave):
        incumbent = min(recorded) if recorded else None
        for curve in curves[start : start + rule.wave]:
            stop = rule.stop_epoch(curve, incumbent)
            ran = len(curve) if stop is None else stop
            recorded.append(min(curve[:ran]))
            epochs.append(ran)
            pruned.append(ran < len(curve))  # stopping where early stopping does is no pruning
    return {
        "chosen": recorded.index(min(recorded)),
        "chosen_unpruned": finals.index(min(finals)),
        "epochs": epochs,
        "pruned": pruned,
    }


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
    prune: PruneRule | None = None,
    jobs: int = 1,
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
    ``prune``: stop grid points that cannot win (None: every point runs to its end).
    ``jobs``: processes fitting the points of one wave in parallel (module docstring).
    ``search``: the adaptive search of :mod:`autorec.search` (refinement, small-data grids and
    the simpler-model check); None: the grid exactly as given (``autorec reproduce``).

    Raises:
        ConfigError: resuming from checkpoints of another run (model, options, seed or data).
        TrainingInterrupted: SIGINT or SIGTERM during a fit (checkpoint kept when asked for).
    """
    overrides = dict(overrides or {})
    overrides.setdefault("seed", seed)
    defaulted: dict[str, Any] = {}
    if search is not None:
        given = overrides
        overrides = search_defaults(search, model_name, overrides)
        defaulted = {k: v for k, v in overrides.items() if k not in given}
    split = split if split is not None else paper_split(ratings, seed=seed)
    if split.val is None:
        raise ValueError("the protocol needs a split with a validation set")
    grid = dict(grid or {})
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if jobs > 1 and DistEnv.from_environ().is_distributed:
        raise ConfigError("parallel grid points (jobs > 1) cannot run under torch.distributed")
    tuned_baseline: tuple[float, dict[str, Any]] | None = None
    damps = search is not None and wants_baseline_regs(search, model_name, overrides)
    if search is not None:
        grid = widened_grid(search, model_name, grid, split.train.n_ratings)
        # The bias baseline tuned on validation: the simpler model the check compares with, and
        # the damping the search tries when that model is not beaten (search.adapt_search).
        if damps or (search.compare_baseline and model_name not in NOT_COMPARED):
            tuned_baseline = tune_baseline(split, overrides)
    if open_above is None:
        open_above = get_model_class(model_name).open_above
    started = time.perf_counter()
    candidates: list[dict[str, Any]] = []
    # (validation RMSE, point, its model (None: a point finished before a resume), its history)
    best: tuple[float, dict[str, Any], Recommender | None, FitHistory] | None = None
    iterative = is_iterative(get_model_class(model_name).config_class)
    described: dict[str, Any] = {
        "overrides": overrides,
        "grid": grid,
        "retrain": retrain,
        "open_above": open_above,
    }
    if prune is not None:  # a pruned point's record is not the unpruned one's
        described["prune"] = asdict(prune)
    if search is not None:
        described["search"] = search
    store = _CandidateStore(checkpoints, model_name, described, split)
    points = grid_points(grid)

    def fit_options(phase: str, fit: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if progress is not None:
            options["progress"] = lambda p: progress(phase, p)
        if checkpoints is not None and iterative:
            options["checkpoint"] = checkpoints.checkpointer(fit)
            options["resume"] = checkpoints.resume
        return options

    def point_fit(point: dict[str, Any], phase: str, incumbent: float | None) -> _PointFit:
        return _PointFit(
            model_name=model_name,
            params={**overrides, **search_only, **point},
            phase=phase,
            checkpoint=(
                checkpoints.checkpointer(point_key(point))
                if checkpoints is not None and iterative
                else None
            ),
            resume=checkpoints is not None and checkpoints.resume,
            prune=prune if iterative else None,
            incumbent=incumbent,
            # The chosen point's validation-stopped model is used again: tested (no retrain),
            # given the ranking head, or handing the retrain its state (an ensemble's weights, a
            # warm start). In-process it costs nothing to keep; from a worker it is sent back.
            keep_model=not retrain or pool is None or with_head or hands_over,
        )

    # Grid points are chosen on validation RMSE, which an I-AutoRec ranking head (trained after
    # the rating model, on the implicit matrix) cannot change: the search fits none, and the
    # tested setting gets one, fitted once on its validation-stopped model (epochs and beta
    # chosen on validation), then carried over to the retrained model (transfer_head).
    fields = get_model_class(model_name).config_class.__dataclass_fields__
    config = model_config(model_name, **overrides)
    with_head = "ranking_head" in fields and autorec_rank.head_wanted(
        config, distributed=DistEnv.from_environ().is_distributed
    )
    search_only: dict[str, Any] = {"ranking_head": False} if with_head else {}
    # A model with warm_retrain_epochs = N > 0 (AutoRec) continues from the validation-stopped
    # weights for N epochs instead of training from scratch for the chosen number.
    warm = int(getattr(config, "warm_retrain_epochs", 0))
    hands_over = bool(warm) or get_model_class(model_name).hands_over(config)

    def try_wave(wave: list[tuple[dict[str, Any], str]]) -> None:
        """Fit (or take from a resumed run) each point of ``wave``, all pruned against the
        incumbent before the wave, and record them in protocol order."""
        nonlocal best
        incumbent = best[0] if best is not None else None
        done = [store.finished(point) for point, _ in wave]
        tasks = {
            n: point_fit(point, _phase_name(point, position), incumbent)
            for n, (point, position) in enumerate(wave)
            if done[n] is None
        }
        if pool is not None and len(tasks) > 1:
            futures = {n: pool.submit(_fit_in_worker, task) for n, task in tasks.items()}
            fitted = {n: _from_worker(future.result()) for n, future in futures.items()}
        else:
            fitted = {
                n: _fit_point(task, split.train, split.val, progress) for n, task in tasks.items()
            }
        for n, (point, position) in enumerate(wave):
            entry = done[n]
            if entry is not None:
                val_rmse, history = entry["candidate"]["val_rmse"], FitHistory(**entry["history"])
                model = store.best_model(point) if not retrain else None
                log.info(
                    "%s: finished before the interruption; not fitted again",
                    _phase_name(point, position),
                )
            else:
                val_rmse, history, model, seconds = fitted[n]
            candidate = {**point, "val_rmse": val_rmse, "best_epoch": history.best_epoch}
            if prune is not None:
                candidate["epochs"] = history.n_epochs
                if history.pruned:
                    candidate["pruned"] = True
            candidates.append(candidate)
            log.info(
                "%s %s: validation RMSE %.4f%s",
                model_name,
                point or "(no tuning)",
                val_rmse,
                f" (pruned after {history.n_epochs} epochs)" if history.pruned else "",
            )
            is_best = best is None or val_rmse < best[0]
            if is_best:
                best = (val_rmse, point, model, history)
            if entry is None:
                store.record(
                    point, candidate, history, seconds, model if is_best and not retrain else None
                )

    # Points of one wave do not see each other: without pruning nothing depends on the wave size.
    wave_size = prune.wave if prune is not None and iterative else jobs
    pool = _worker_pool(jobs, split) if jobs > 1 and len(points) > 1 else None
    outward = outward_key(search, model_name, grid) if search is not None else None
    skipped: list[Any] = []
    try:
        if outward is None:
            for start in range(0, len(points), wave_size):
                numbered = enumerate(points[start : start + wave_size], start=start + 1)
                try_wave([(point, f"{number}/{len(points)}") for number, point in numbered])
        else:
            skipped = _search_outward(
                outward, grid, model_name, search.outward_tolerance, wave_size, try_wave, candidates
            )
    finally:
        if pool is not None:
            pool.shutdown()
    assert best is not None
    for key in open_above:
        values = grid.get(key, ())
        if len(values) < 2:  # a single value is a choice, not a range
            continue
        while needs_extension(best[1][key], [c[key] for c in candidates], values):
            top = best[1][key]
            log.info("%s: validation chose the largest %s (%g); trying more", model_name, key, top)
            try_wave([({**best[1], key: next_above(top)}, "above the grid")])
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
            lambda point, position: try_wave([(point, position)]),
            lambda: (best[0], best[1]),  # type: ignore[index]
            candidates,
            set(overrides),
            tuned_baseline if damps else None,
        )
    if outward is not None:
        adapted = {**(adapted or {}), "outward_skipped": skipped}
    # -- end of the adaptive search
    val_rmse, point, best_model, history = best
    chosen = {**point}
    # The curves of the run that chose the settings (train and validation RMSE per epoch).
    curve = {"train_rmse": list(history.train_rmse), "val_rmse": list(history.val_rmse)}
    if with_head or not retrain:
        # The validation-stopped model of the chosen point: kept from the search, else (a point
        # finished before a resume, or its saved model gone) fitted again.
        best_model = best_model or make_model(
            model_name, **{**overrides, **search_only, **point}
        ).fit(split.train, split.val)
    head: dict[str, Any] | None = None
    if with_head:
        head_started = time.perf_counter()
        autorec_rank.attach_head(best_model, split.train, split.val)
        scorer = best_model._head
        head = {
            "epoch": scorer.epoch,
            "beta": scorer.beta,
            "val_ndcg@10": scorer.val_ndcg,
            "seconds": time.perf_counter() - head_started,
        }
    if retrain:
        fixed = {**overrides, **search_only, **point}
        if iterative and history.best_epoch:
            fixed["n_epochs"] = warm or history.best_epoch
            chosen["n_epochs"] = fixed["n_epochs"]
        # None: a point finished before a resume (no model kept); the model copes without.
        carried = best_model.retrain_overrides() if best_model is not None else {}
        fixed.update(carried)
        chosen.update(carried)

        def chosen_fit() -> Recommender:
            # The chosen point's model is gone only after a resume that skipped its fit, or when
            # nothing asked to keep it: fit it again (the same weights, bit for bit, with one
            # torch thread).
            if best_model is not None:
                return best_model
            return make_model(model_name, **{**overrides, **search_only, **point}).fit(
                split.train, split.val
            )

        model = make_model(model_name, **fixed)
        if warm:
            model.start_from(chosen_fit())
        merged = split.train.merge(split.val)
        model.fit(merged, **fit_options("retrain", "retrain"))
        # A warm retrain continues from the chosen weights: its epochs do not line up.
        checked = None if warm else retrain_check(history, model.history)
        if checked is not None and checked["stalled"]:
            # Repaired where the model can start from trained weights (AutoRec): the same
            # epochs again, continuing from the chosen fit, which the stall cannot undo.
            repairable = "warm_retrain_epochs" in fields
            log.warning(
                "%s: the retrain on train + validation ended at training RMSE %.4f, against "
                "%.4f for the chosen fit at the same epoch: the optimiser stalled; %s",
                model_name,
                checked["train_rmse"],
                checked["chosen_fit_train_rmse"],
                "retraining from the chosen fit's weights instead"
                if repairable
                else "the test RMSE below is not what this setting reaches",
            )
            if repairable:
                model = make_model(model_name, **fixed).start_from(chosen_fit())
                # A checkpoint folder of its own: an interrupted repair resumes as the repair.
                model.fit(merged, **fit_options("retrain", "retrain-repair"))
                checked["repaired_train_rmse"] = model.history.train_rmse[-1]
        # Keep the validation record of the run that chose the settings.
        model.history.val_rmse = history.val_rmse
        model.history.best_epoch = history.best_epoch
        if with_head:
            autorec_rank.transfer_head(best_model, model, merged)
    else:
        model = best_model
        model.history = history
        checked = None
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
    if checked is not None:
        record["retrain_check"] = checked
    if head is not None:
        # Chosen on validation (the head of the validation-stopped model), carried to the tested
        # model.
        record["ranking_head"] = head
    if prune is not None:
        record["pruning"] = asdict(prune)
    if search is not None:
        record["search"] = {**adapted, "model_defaults": defaulted}
        record["simpler_model_wins"] = (
            simpler_model_check(model_name, split, val_rmse, overrides, tuned_baseline)
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


def _search_outward(
    key: str,
    grid: dict[str, tuple[Any, ...]],
    model_name: str,
    tolerance: float,
    wave_size: int,
    try_wave: Callable[[list[tuple[dict[str, Any], str]]], None],
    candidates: list[dict[str, Any]],
) -> list[Any]:
    """Fit ``grid[key]`` outward from the value nearest the model's default
    (:func:`autorec.search.outward_next`), ``wave_size`` points at a time; return the grid
    values it did not need."""
    values = sorted(grid[key])
    default = getattr(model_config(model_name), key, None)
    start = outward_start(values, default if isinstance(default, int | float) else 0.0)
    results: dict[float, tuple[float, bool]] = {}
    while batch := outward_next(values, start, results, tolerance):
        for first in range(0, len(batch), wave_size):
            wave = batch[first : first + wave_size]
            try_wave([({key: v}, f"{values.index(v) + 1}/{len(values)}, outward") for v in wave])
        for candidate in candidates[-len(batch) :]:
            results[candidate[key]] = (candidate["val_rmse"], bool(candidate.get("pruned")))
    return [v for v in values if v not in results]


@dataclass(frozen=True)
class _PointFit:
    """One grid point's fit, picklable for a worker process."""

    model_name: str
    params: dict[str, Any]  # overrides and the point
    phase: str
    checkpoint: Checkpointer | None
    resume: bool
    prune: PruneRule | None
    incumbent: float | None  # the best validation RMSE before the point's wave
    keep_model: bool  # return the fitted model (tested without a retrain)


def _fit_point(
    task: _PointFit, train: Ratings, val: Ratings, progress: PhaseProgress | None
) -> tuple[float, FitHistory, Recommender | None, float]:
    """(validation RMSE, history, the model when asked for, seconds) of one grid point."""
    started = time.perf_counter()
    prune, incumbent = task.prune, task.incumbent

    def hook(p: Progress) -> bool:
        stop = prune is not None and prune.prunes(p.epoch, p.best_val_rmse, incumbent)
        if progress is not None:
            progress(task.phase, replace(p, stopping=True) if stop else p)
        return stop

    options: dict[str, Any] = {}
    if progress is not None or (prune is not None and incumbent is not None):
        options["progress"] = hook
    if task.checkpoint is not None:
        options["checkpoint"], options["resume"] = task.checkpoint, task.resume
    model = make_model(task.model_name, **task.params)
    model.fit(train, val, **options)
    kept = model if task.keep_model else None
    return _val_rmse(model, val), model.history, kept, time.perf_counter() - started


# The split of a worker process, sent once when the pool starts (not with every point).
_WORKER_SPLIT: list[Ratings] = []


def _init_worker(train: Ratings, val: Ratings) -> None:
    import torch

    # One thread per process: parallel points do not compete for cores, and a point's result
    # is the one of a sequential one-thread run, bit for bit.
    torch.set_num_threads(1)
    _WORKER_SPLIT[:] = [train, val]


def _fit_in_worker(task: _PointFit) -> tuple[float, FitHistory, str | None, float]:
    """:func:`_fit_point` in a worker; a kept model comes back as a saved model folder (a model
    does not pickle: its activations are module-level lambdas), which the parent loads."""
    train, val = _WORKER_SPLIT
    val_rmse, history, model, seconds = _fit_point(task, train, val, None)
    folder = None
    if model is not None:
        folder = str(Path(tempfile.mkdtemp(prefix="autorec-point-")) / "model")
        model.save(folder)
    return val_rmse, history, folder, seconds


def _from_worker(
    result: tuple[float, FitHistory, str | None, float],
) -> tuple[float, FitHistory, Recommender | None, float]:
    val_rmse, history, folder, seconds = result
    model = None
    if folder is not None:
        model = Recommender.load(folder)
        model.history = history
        shutil.rmtree(Path(folder).parent, ignore_errors=True)
    return val_rmse, history, model, seconds


def _worker_pool(jobs: int, split: Split) -> ProcessPoolExecutor:
    # spawn, not fork: a forked child of a process whose OpenMP pool already ran can hang.
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(split.train, split.val),
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
