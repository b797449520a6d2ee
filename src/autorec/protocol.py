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
   fallback (paper: 3) and are counted. With ``ranking`` metrics, the tested model also ranks
   the whole catalogue for every test user, train and validation items excluded (the retrained
   model saw both), and the lists are scored on the test set
   (:func:`autorec.ranking.evaluate_ranking`).

The test set is touched once, after every choice is made.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autorec.data.ratings import Ratings
from autorec.data.split import Split, paper_split
from autorec.evaluation import evaluate
from autorec.models import get_model_class, make_model
from autorec.models.base import Recommender
from autorec.models.training import is_iterative
from autorec.ranking import RankingMetric, evaluate_ranking

log = logging.getLogger(__name__)

# How many values beyond the top of a grid the protocol tries for an open-above key (1000 ->
# 3000 -> 10000 -> 30000 -> 100000), so a rising validation curve cannot run forever.
MAX_EXTENSIONS = 4


@dataclass
class ProtocolResult:
    record: dict[str, Any]  # one entry of the "runs" list of the evaluate JSON
    model: Recommender  # the model that was tested
    split: Split
    candidates: list[dict[str, Any]]  # every grid point with its validation RMSE
    # RankingResult.to_dict() of the tested model (also record["ranking"]); None: not asked
    ranking: dict[str, Any] | None = None


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
    ranking: str | Sequence[str | RankingMetric] | None = None,
    relevance: float | None = None,
) -> ProtocolResult:
    """One run of the paper's protocol (see the module docstring).

    ``open_above``: the grid keys extended upward when validation picks their largest value;
    None takes the model's ``open_above``, ``()`` searches ``grid`` exactly as given.
    ``ranking``: full-ranking metrics (``"ndcg@10,recall@20"``) of the tested model, at the
    ``relevance`` threshold (None: :func:`autorec.ranking.default_relevance`); they choose
    nothing, the test set is scored after every choice is made.
    """
    overrides = dict(overrides or {})
    overrides.setdefault("seed", seed)
    split = split if split is not None else paper_split(ratings, seed=seed)
    if split.val is None:
        raise ValueError("the protocol needs a split with a validation set")
    grid = dict(grid or {})
    if open_above is None:
        open_above = get_model_class(model_name).open_above
    started = time.perf_counter()
    candidates: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], Recommender] | None = None

    def try_point(point: dict[str, Any]) -> None:
        nonlocal best
        model = make_model(model_name, **{**overrides, **point})
        model.fit(split.train, split.val)
        val_rmse = _val_rmse(model, split.val)
        candidates.append({**point, "val_rmse": val_rmse, "best_epoch": model.history.best_epoch})
        log.info("%s %s: validation RMSE %.4f", model_name, point or "(no tuning)", val_rmse)
        if best is None or val_rmse < best[0]:
            best = (val_rmse, point, model)

    for point in grid_points(grid):
        try_point(point)
    assert best is not None
    for key in open_above:
        values = grid.get(key, ())
        if len(values) < 2:  # a single value is a choice, not a range
            continue
        while needs_extension(best[1][key], [c[key] for c in candidates], values):
            top = best[1][key]
            log.info("%s: validation chose the largest %s (%g); trying more", model_name, key, top)
            try_point({**best[1], key: next_above(top)})
        if best[1][key] == max(c[key] for c in candidates):
            log.warning(
                "%s: validation still chose the largest %s (%g) after %d extensions",
                model_name,
                key,
                best[1][key],
                MAX_EXTENSIONS,
            )
    val_rmse, point, model = best
    chosen = {**point}
    # The curves of the run that chose the settings (train and validation RMSE per epoch).
    curve = {"train_rmse": list(model.history.train_rmse), "val_rmse": list(model.history.val_rmse)}
    if retrain:
        fixed = {**overrides, **point}
        if is_iterative(type(model).config_class) and model.history.best_epoch:
            fixed["n_epochs"] = model.history.best_epoch
            chosen["n_epochs"] = model.history.best_epoch
        history = model.history
        model = make_model(model_name, **fixed).fit(split.train.merge(split.val))
        # Keep the validation record of the run that chose the settings.
        model.history.val_rmse = history.val_rmse
        model.history.best_epoch = history.best_epoch
    seconds = time.perf_counter() - started
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
        "hyperparameters": chosen,
        "candidates": candidates,
        "epochs": model.history.n_epochs,
        "best_epoch": model.history.best_epoch,  # chosen on validation (0: not iterative)
        "train_seconds": seconds,
        "epoch_seconds": model.history.epoch_seconds,
        "learning_curve": curve,
    }
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
