"""The adaptive part of the validation search of ``autorec evaluate`` (issue 16, part 2).

The paper's protocol (:mod:`autorec.protocol`) fits a fixed grid. A grid chosen on ML-1M is
coarse exactly where the optimum of another data set lies (a set whose validation RMSE jumps
from 0.757 at lambda = 100 to 0.799 at lambda = 300), and a model tuned on a small set may lose
to a simpler one without anyone noticing. :class:`SearchPolicy` adds three things, all chosen on
validation, never on test:

1. **Refinement** of a continuous key (AutoRec's ``lam``, BiasedMF's ``reg``:
   :data:`REFINE_KEYS`) after the grid. Let ``b`` be the best value tried and ``l < b < u`` its
   nearest tried neighbours. Each gap whose ratio ``u / b`` (``b / l``) is at least
   ``min_ratio`` gets ``p`` log-spaced points, ``b * (n / b) ** (j / (p + 1))``, j = 1..p,
   rounded to 3 significant digits, fitted nearest to ``b`` first; ``p = points_per_gap`` (2)
   on small data (2.), ``points_per_gap_large`` (1, the geometric mean) otherwise, where a fit
   costs minutes. Rounds repeat around the new best until a round lowers the best validation
   RMSE by less than ``tolerance``, no gap is wide enough, or ``max_fits`` fits were spent on
   that key: a refinement costs at most ``max_fits`` fits per key and stage (default 6; the
   usual single round is 2 + 2 points on small data, 1 + 1 on ML-1M).
2. **Small-data grids**: when the training part has fewer than ``small_data`` ratings (200k: ML-100k
   and the 5k-150k sets of the issue, not ML-1M), the grid of the first key is widened
   (:data:`SMALL_DATA_WIDER`: BiasedMF's ``reg``) and, after the refinement, a second stage tries
   other values of a structural key (:data:`SMALL_DATA_STAGE`: AutoRec's ``hidden``, BiasedMF's
   ``rank``) one at a time at the best point so far (coordinate search, not the product); when
   one wins, the continuous key is refined again at it.
3. **The simpler-model check** (:func:`simpler_model_check`): the bias baseline is tuned over its
   own grid on the same train / validation parts (a few ALS sweeps each); when it is at least as
   good on validation as the tuned model, the run record says so.
4. **Model defaults** (:data:`SEARCH_DEFAULTS`, :func:`search_defaults`): I-AutoRec fits the
   residuals of the bias baseline (``baseline="bias"``) unless the caller sets ``baseline``
   or an output activation other than identity. When the search ends with the model no better
   than the tuned bias baseline on validation, it fits the model once more at its best point
   with that baseline's damping (:func:`baseline_regs`), unless the caller set the damping.
5. **Outward grid search** (:func:`outward_key`, :func:`outward_next`): AutoRec's lambda grid is
   not fitted point by point from 0.001 up but outward from the value nearest the config's
   default (300): that point and its two neighbours first, then each direction one point further
   while its last point ran to its end within ``outward_tolerance`` (1%) of the best validation
   RMSE so far, or was pruned (its final value is unknown). The validation RMSE of AutoRec is
   unimodal in lambda up to noise: replayed on the 150 committed AutoRec cells (ML-1M and
   ML-100k, every Table 1 / Figure 2 / deep row and seed), this search makes the same choice on
   every cell and skips 572 of their 1,200 grid fits, mostly the plateau of small lambdas
   (0.001-1) that over-fit after about 20 epochs (``benchmarks/check_pruning.py --outward``).
   With no tolerance it would miss one cell (deep AutoRec, ML-100k seed 4: 0.001 beats 10 by
   0.0008 across a plateau).

An explicit grid (``autorec evaluate --lambdas``) and ``--no-refine`` turn 1, 2, 4 and 5 off
(``adapt=False``), so the paper's grid and model are searched exactly; ``autorec reproduce``
does not use a policy at all (its committed cells stay bit for bit what they are).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autorec.data.split import Split
from autorec.errors import ConfigError
from autorec.evaluation import evaluate
from autorec.models import get_model_class, make_model, tuning_grid
from autorec.models.autorec import AutoRec
from autorec.models.biased_mf import BiasedMF

log = logging.getLogger(__name__)

#: The continuous keys refined after the grid, per model class: both are penalty weights whose
#: validation curve is smooth in log scale (docs/experiments.md, "Adaptive grids").
REFINE_KEYS: dict[type, tuple[str, ...]] = {AutoRec: ("lam",), BiasedMF: ("reg",)}

#: Values added to a key's grid on small data. BiasedMF's default grid (0.05, 0.07, 0.1) is
#: centred on ML-1M and ML-100k; on small sets validation wants stronger penalties (0.15-0.3 on
#: the 3,000 x 3,000 synthetic set: docs/experiments.md, "Adaptive grids").
SMALL_DATA_WIDER: dict[type, dict[str, tuple[Any, ...]]] = {
    BiasedMF: {"reg": (0.03, 0.15, 0.2, 0.3)},
}

#: Structural values tried one at a time after the refinement, on small data, per registered
#: model name (like SEARCH_DEFAULTS: the variants built on AutoRec, i-kernelnet and glocal-k, keep
#: their authors' two layers of 500, which a one-layer stage would replace). I/U-AutoRec: on
#: ML-100k, k = 100 to 500 reach the same validation RMSE (0.898-0.900, the committed
#: docs/results/ml-100k hidden=* cells) and k = 100 costs a third; BiasedMF: a rank of 100 over-fits
#: a set of 100k ratings (rank 10 is 0.03 better on the synthetic 3,000 x 3,000 set).
SMALL_DATA_STAGE: dict[str, dict[str, tuple[Any, ...]]] = {
    "i-autorec": {"hidden": ((100,), (300,))},
    "u-autorec": {"hidden": ((100,), (300,))},
    "biased-mf": {"rank": (10, 25, 50)},
}

#: Config values the search uses where the caller set none, per registered model name. I-AutoRec
#: on the residuals of the bias baseline: lower validation RMSE on ML-100k (u1 and seed 0), ML-1M
#: seed 0 and the small synthetic sets where the paper's model lost to the bias baseline
#: (docs/experiments.md, "I-AutoRec on bias-baseline residuals").
SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {"i-autorec": {"baseline": "bias"}}

#: The simpler model every tuned model is compared with on validation.
BASELINE = "bias"
#: Models no more complex than the baseline: not compared with it.
NOT_COMPARED = ("bias", "pop")


@dataclass(frozen=True)
class SearchPolicy:
    """How the protocol adapts its search to the data (module docstring); defaults are the
    search of ``autorec evaluate``."""

    # Refinement and small-data grids; False: the grid exactly as given (--lambdas, --no-refine).
    adapt: bool = True
    points_per_gap: int = 2  # log-spaced points per gap and round (issue 16 suggests 2)
    points_per_gap_large: int = 1  # the same on data that is not small (ML-1M: 2 fits a round)
    # A round that gains less validation RMSE than this ends the refinement: a tenth of the
    # seed-to-seed spread of ML-1M's validation RMSE (about 0.005).
    tolerance: float = 5e-4
    max_fits: int = 6  # refinement fits per key and stage: the bound on its cost
    min_ratio: float = 1.5  # gaps narrower than this factor are not split further
    small_data: int = 200_000  # training ratings below which the small-data grids apply
    compare_baseline: bool = True  # fit the bias baseline and report when it wins
    # The grid searched outward from the model's default (module docstring, 5); a direction
    # goes on past a point within this fraction of the best validation RMSE so far.
    outward: bool = True
    outward_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if (
            min(self.points_per_gap, self.points_per_gap_large) < 1
            or min(self.max_fits, self.small_data) < 0
        ):
            raise ConfigError(
                "points_per_gap(_large) must be >= 1, max_fits and small_data >= 0, got "
                f"{self.points_per_gap}, {self.points_per_gap_large}, {self.max_fits}, "
                f"{self.small_data}"
            )
        if not (self.outward_tolerance >= 0 and math.isfinite(self.outward_tolerance)):
            raise ConfigError(
                f"outward_tolerance must be a finite number >= 0, got {self.outward_tolerance}"
            )
        if not (self.min_ratio > 1 and self.tolerance >= 0):
            raise ConfigError(
                f"min_ratio must be > 1 and tolerance >= 0, got {self.min_ratio}, {self.tolerance}"
            )

    def is_small(self, n_train: int) -> bool:
        return self.adapt and n_train < self.small_data


def _table(table: dict[type, dict[str, tuple[Any, ...]]], model_name: str) -> dict[str, tuple]:
    cls = get_model_class(model_name)
    return next((v for k, v in table.items() if issubclass(cls, k)), {})


def search_defaults(
    policy: SearchPolicy, model_name: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """``overrides`` with :data:`SEARCH_DEFAULTS` filled in where the caller set nothing (module
    docstring, 4); as given when the policy does not adapt. A residual baseline needs
    f = identity, so a caller's other ``f`` keeps the paper's model."""
    defaults = SEARCH_DEFAULTS.get(model_name, {})
    if not policy.adapt or overrides.get("f", "identity") != "identity":
        return overrides
    return {**defaults, **overrides}


#: The keys searched outward (module docstring, 5), per model class: measured on AutoRec's cells.
OUTWARD_KEYS: dict[type, str] = {AutoRec: "lam"}


def outward_key(
    policy: SearchPolicy, model_name: str, grid: dict[str, tuple[Any, ...]]
) -> str | None:
    """The grid key to search outward (module docstring, 5): the model's :data:`OUTWARD_KEYS`
    entry when it is the grid's only key and has at least 3 positive values; else None (the
    grid is fitted point by point)."""
    if not (policy.adapt and policy.outward) or len(grid) != 1:
        return None
    cls = get_model_class(model_name)
    key = next((v for k, v in OUTWARD_KEYS.items() if issubclass(cls, k)), None)
    values = grid.get(key, ()) if key is not None else ()
    if len(values) < 3 or not all(v > 0 for v in values):
        return None
    return key


def outward_start(values: list[float], default: float) -> float:
    """The grid value nearest ``default`` in log scale (the middle one when ``default`` is not
    positive)."""
    if not default > 0:
        return values[len(values) // 2]
    return min(values, key=lambda v: (abs(math.log(v / default)), v))


def outward_next(
    values: list[float],
    start: float,
    results: dict[float, tuple[float, bool]],
    tolerance: float,
) -> list[float]:
    """The next values of the outward search over the sorted ``values`` (module docstring, 5).

    ``results``: value -> (validation RMSE, pruned) of the points fitted so far (a contiguous run
    of ``values`` around ``start``). Returns ``start`` and its neighbours first, then the next
    value below and/or above the run, each only while the run's end on that side was pruned or
    ended within ``tolerance`` of the best; [] when the search is over.
    """
    index = values.index(start)
    if not results:
        return [values[j] for j in (index, index - 1, index + 1) if 0 <= j < len(values)]
    best = min(rmse for rmse, _ in results.values())
    positions = sorted(values.index(v) for v in results)
    out = []
    for end, step in ((positions[0], -1), (positions[-1], 1)):
        rmse, pruned = results[values[end]]
        if 0 <= end + step < len(values) and (pruned or rmse <= best * (1 + tolerance)):
            out.append(values[end + step])
    return out


def refine_keys(model_name: str) -> tuple[str, ...]:
    cls = get_model_class(model_name)
    return next((v for k, v in REFINE_KEYS.items() if issubclass(cls, k)), ())


def widened_grid(
    policy: SearchPolicy,
    model_name: str,
    grid: dict[str, tuple[Any, ...]],
    n_train: int,
) -> dict[str, tuple[Any, ...]]:
    """``grid`` with the small-data values of :data:`SMALL_DATA_WIDER` merged in (sorted) when
    ``n_train`` is small; keys not in ``grid`` (fixed by the user) stay fixed."""
    if not policy.is_small(n_train):
        return grid
    out = dict(grid)
    for key, extra in _table(SMALL_DATA_WIDER, model_name).items():
        if key in out:
            out[key] = tuple(sorted(set(out[key]) | set(extra)))
    return out


def refine_values(
    best: float, tried: list[float], points_per_gap: int, min_ratio: float
) -> list[float]:
    """The log-spaced points between ``best`` and its nearest tried neighbours (module
    docstring, 1), nearest to ``best`` first, 3 significant digits, none already tried.
    Values <= 0 are no neighbours (no log scale through 0)."""
    if not best > 0:
        return []
    below = [v for v in tried if 0 < v < best]
    above = [v for v in tried if v > best]
    seen = set(tried)
    out: list[float] = []
    for neighbour in (max(below, default=None), min(above, default=None)):
        # 1e-9: 0.15 / 0.1 is 1.4999999999999998 in floats, and is a gap of 1.5.
        if neighbour is None or max(neighbour, best) / min(neighbour, best) < min_ratio - 1e-9:
            continue
        for j in range(1, points_per_gap + 1):
            value = best * (neighbour / best) ** (j / (points_per_gap + 1))
            value = float(f"{value:.3g}")
            if value not in seen and value not in out:
                out.append(value)
    # Nearest first, so a budget that cuts a round keeps the points closest to the optimum.
    return sorted(out, key=lambda v: (abs(math.log(v / best)), v))


#: ``fit(point, position)``: fit one grid point on train (the protocol's ``try_point``).
FitPoint = Callable[[dict[str, Any], str], None]
#: ``best()``: the validation RMSE and point of the best fit so far.
BestSoFar = Callable[[], tuple[float, dict[str, Any]]]


def _refine(
    policy: SearchPolicy,
    per_gap: int,
    key: str,
    fit: FitPoint,
    best: BestSoFar,
    candidates: list[dict[str, Any]],
) -> int:
    """Refine ``key`` around the best point (module docstring, 1); returns the fits spent."""
    spent = 0
    while spent < policy.max_fits:
        before, point = best()
        # Neighbours: every value of the key tried so far (at any other setting, so a new k is
        # refined inside the bracket found at the old one); new points: not yet tried here.
        tried = [float(c[key]) for c in candidates if key in c]
        here = {
            float(c[key])
            for c in candidates
            if all(c.get(k) == v for k, v in point.items() if k != key)
        }
        values = refine_values(point[key], tried, per_gap, policy.min_ratio)
        values = [v for v in values if v not in here][: policy.max_fits - spent]
        if not values:
            break
        for value in values:
            spent += 1
            fit({**point, key: value}, f"refining {key}")
        gain = before - best()[0]
        log.info("refining %s: %d point(s), validation gain %.5f", key, len(values), gain)
        if gain < policy.tolerance:
            break
    return spent


def adapt_search(
    policy: SearchPolicy,
    model_name: str,
    grid: dict[str, tuple[Any, ...]],
    n_train: int,
    fit: FitPoint,
    best: BestSoFar,
    candidates: list[dict[str, Any]],
    fixed: set[str],
    tuned_baseline: tuple[float, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything the policy fits after the protocol's grid (module docstring, 1, 2 and 4).

    ``grid``: the searched grid (a key not in it is neither refined nor staged); ``fixed``: the
    config fields the caller set (never staged); ``fit`` fits a point and updates ``best`` and
    ``candidates``; ``tuned_baseline``: :func:`tune_baseline`'s result, for a residual model
    whose damping the search chooses (:func:`wants_baseline_regs`). Returns what was done, for
    the run record: ``{"small_data", "refine_fits", "stage_fits", "baseline_fits"}``.
    """
    done = {
        "small_data": policy.is_small(n_train),
        "refine_fits": 0,
        "stage_fits": 0,
        "baseline_fits": 0,
    }
    if not policy.adapt:
        return done
    _refine_and_stage(policy, model_name, grid, fit, best, candidates, fixed, done)
    if tuned_baseline is not None and best()[0] >= tuned_baseline[0]:
        # The tuned bias baseline is not beaten: the model, at its best point, with that
        # baseline's damping (lambda -> infinity is then that baseline itself).
        done["baseline_fits"] += 1
        fit({**best()[1], **baseline_regs(tuned_baseline[1])}, "baseline damping")
    return done


def _refine_and_stage(
    policy: SearchPolicy,
    model_name: str,
    grid: dict[str, tuple[Any, ...]],
    fit: FitPoint,
    best: BestSoFar,
    candidates: list[dict[str, Any]],
    fixed: set[str],
    done: dict[str, Any],
) -> None:
    """Module docstring, 1 and 2: the refinement of the continuous keys and the small-data
    stage, counted in ``done``."""
    keys = [k for k in refine_keys(model_name) if len(grid.get(k, ())) >= 2]
    per_gap = policy.points_per_gap if done["small_data"] else policy.points_per_gap_large
    for key in keys:
        done["refine_fits"] += _refine(policy, per_gap, key, fit, best, candidates)
    if not done["small_data"]:
        return
    fields = get_model_class(model_name).config_class.__dataclass_fields__
    for key, values in SMALL_DATA_STAGE.get(model_name, {}).items():
        if key not in fields or key in grid or key in fixed:
            continue  # searched by the grid already, or fixed by the caller
        start, default = best()[1], fields[key].default
        for value in values:
            if value != default:
                done["stage_fits"] += 1
                fit({**start, key: value}, f"small data: {key}")
        if best()[1].get(key, default) != default:
            for refine_key in keys:
                done["refine_fits"] += _refine(policy, per_gap, refine_key, fit, best, candidates)


def tune_baseline(split: Split, overrides: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Tune the bias baseline over its grid (:func:`autorec.models.tuning_grid`) on
    ``split.train``; return its best validation RMSE and point (``reg_user``, ``reg_item``). The
    test set is not touched. A few ALS sweeps a point: seconds on ML-1M."""
    shared = {k: overrides[k] for k in ("fallback", "seed") if k in overrides}
    grid = tuning_grid(BASELINE)
    keys = sorted(grid)
    scored = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        model = make_model(BASELINE, **shared, **point).fit(split.train, split.val)
        scored.append((evaluate(model, split.val)["rmse"], point))
    return min(scored, key=lambda s: s[0])


#: The damping of a residual model's baseline, and the bias model's fields it is tuned as.
BASELINE_REGS = {"bias_reg_user": "reg_user", "bias_reg_item": "reg_item"}


def wants_baseline_regs(policy: SearchPolicy, model_name: str, overrides: dict[str, Any]) -> bool:
    """Whether the search chooses the damping of the model's baseline (module docstring, 4):
    the model fits the residuals of the bias baseline, the policy adapts and the caller set
    neither of :data:`BASELINE_REGS`."""
    return (
        policy.adapt
        and overrides.get("baseline") == "bias"
        and not any(k in overrides for k in BASELINE_REGS)
        and issubclass(get_model_class(model_name), AutoRec)
    )


def baseline_regs(tuned_point: dict[str, Any]) -> dict[str, Any]:
    """The residual model's ``bias_reg_user``, ``bias_reg_item`` from the tuned bias model's
    point (:func:`tune_baseline`). With them, lambda -> infinity is the tuned baseline itself.
    They are tried only when the model has not beaten that baseline (:func:`adapt_search`): the
    bias model's damping is not the residual model's best where the model wins (ML-1M seed 0,
    lambda 300: validation 0.8305 with the bias model's (5, 1) against 0.8299 with (15, 10)),
    but on the noisy synthetic set the defaults left it 0.0014 behind the tuned baseline."""
    return {field: tuned_point[key] for field, key in BASELINE_REGS.items()}


def simpler_model_check(
    model_name: str,
    split: Split,
    val_rmse: float,
    overrides: dict[str, Any],
    tuned: tuple[float, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Tune the bias baseline over its grid on ``split.train`` (or take ``tuned``, what
    :func:`tune_baseline` returned), score it on ``split.val``, and return ``{"model",
    "val_rmse", "hyperparameters", "tuned_val_rmse"}`` when it is at least as good as the tuned
    model's ``val_rmse``; None when the tuned model is better, or is no more complex than the
    baseline (:data:`NOT_COMPARED`). The test set is not touched."""
    if model_name in NOT_COMPARED or split.val is None:
        return None
    base_rmse, point = tuned if tuned is not None else tune_baseline(split, overrides)
    if val_rmse < base_rmse:
        return None
    log.warning(
        "%s: the bias baseline is at least as good on validation (%.4f against %.4f)",
        model_name,
        base_rmse,
        val_rmse,
    )
    return {
        "model": BASELINE,
        "val_rmse": base_rmse,
        "hyperparameters": point,
        "tuned_val_rmse": val_rmse,
    }
