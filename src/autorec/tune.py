"""Hyperparameter search with Optuna (issue 16, part 3): the library behind ``autorec tune``.

A study searches one model's **space** (:data:`DEFAULT_SPACES`, data, not code; a JSON or TOML
file can replace any entry, :func:`load_space`). The **objective** of a trial is the validation
RMSE of one fit on the paper split's train (Sedhain et al. 2015, Sec. 3: 90% train of which 10%
is validation), early-stopped on validation exactly as the protocol's grid points are; the test
set is not read during the study. After the study, :func:`score_best` scores the test set
**once**, for the best trial only, with the protocol's last steps: retrain the best config on
train + validation for the number of epochs validation chose, then evaluate.

Sampler: TPE (Bergstra et al., NeurIPS 2011) with ``constant_liar`` (trials running in other
processes count as bad so two workers do not draw the same point), seeded per trial with
``seed`` and the trial's number, so a study run by one process is reproducible and two processes
do not draw the same random start-up points.

Pruner: :class:`optuna.pruners.MedianPruner` fed, after every epoch, the best validation RMSE so
far. After ``n_startup_trials`` (5) finished trials, a trial whose best-so-far is worse than the
median of the other trials' at the same epoch stops; never before the model's warm-up
(:attr:`ModelSpace.warmup`: AutoRec 20 epochs, the RBM its 15 minimum epochs, the ALS models 3
sweeps), because early epochs of RProp rank configurations poorly. Models that fit in one step
(bias, item-kNN) are never pruned.

Budget: ``n_trials`` is the study's total, not each process's. A trial *holds a slot* when it is
complete, pruned, diverged (a failed trial marked ``diverged``) or running. Each new trial
checks, once its number is assigned (the storage numbers trials under a lock), how many trials
with a smaller number hold a slot; from ``n_trials`` on, it is marked ``over_budget``, failed
without fitting anything, and the process looks again (a running trial it counted may itself
have been over the budget). So any number of processes on one storage finish exactly
``n_trials`` trials, none twice. A trial interrupted (Ctrl-C) or whose process died (its
heartbeat stopped, RDB storages) is failed and frees its slot: running the command again fills
it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autorec.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from autorec.data.split import Split
from autorec.errors import ConfigError, ModelFitError
from autorec.evaluation import evaluate
from autorec.models import get_model_class, make_model
from autorec.models.autorec import AutoRec
from autorec.models.training import Progress, is_iterative
from autorec.textconfig import read_config_file

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

#: Trials finished before the median pruner may stop one (Optuna's default).
PRUNER_STARTUP_TRIALS = 5
#: Random trials before TPE models the results (Optuna's default).
TPE_STARTUP_TRIALS = 10
#: Seconds between heartbeats of a running trial, and after how long without one it is failed
#: (RDB storages): a process killed without a chance to clean up frees its slot this way.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
#: Attempts to open an RDB storage (see :func:`open_storage`).
STORAGE_ATTEMPTS = 4


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("autorec tune needs Optuna: pip install 'autorec-cf[tune]'") from None
    # This module and the CLI report the trials; Optuna's own INFO lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


# -- search spaces -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One dimension of a space, named as Optuna records it (``name``).

    ``kind``: "int" or "float" (``low``..``high``, ``log`` scale, optional ``step``),
    "categorical" (``choices``) or "fixed" (``value``, not searched). ``field``: the config field
    it sets (default: ``name``; AutoRec's ``k`` and ``depth`` together set ``hidden``).
    ``when``: suggested only when earlier parameters have these values (the step size of each
    optimiser: ``lr_adam`` when ``optimizer`` is adam).
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    field: str = ""
    when: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.field or self.name

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        if self.kind == "float":
            return trial.suggest_float(
                self.name, float(self.low), float(self.high), step=self.step, log=self.log
            )
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.value

    def corners(self) -> list[Any]:
        """The values at the edges of the range (every choice), checked against the config."""
        if self.kind in ("int", "float"):
            cast = int if self.kind == "int" else float
            return [cast(self.low), cast(self.high)]
        if self.kind == "categorical":
            return list(self.choices)
        return [self.value]


@dataclass(frozen=True)
class ModelSpace:
    """A model's search space: its parameters in suggestion order, and the pruner's warm-up
    (epochs before a trial may be pruned)."""

    params: tuple[Param, ...]
    warmup: int = 0

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def _spec(name: str, raw: Any, where: str) -> Param:
    """A :class:`Param` from its JSON/TOML form (see docs/tuning.md):

    ``{"int": [LOW, HIGH], "log": true, "step": 1}``, ``{"float": [LOW, HIGH], "log": true}``,
    ``{"choices": [...]}``, or a plain value (fixed); each may add ``"field"`` and ``"when"``.
    """
    if not isinstance(raw, dict):
        return Param(name, "fixed", value=tuple(raw) if isinstance(raw, list) else raw)
    allowed = {"int", "float", "choices", "log", "step", "field", "when", "value"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: parameter {name!r} has unknown key(s) {', '.join(unknown)} "
            "(expected int, float, choices or value, and log, step, field, when)"
        )
    kinds = [k for k in ("int", "float", "choices", "value") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(
            f"{where}: parameter {name!r} needs exactly one of int, float, choices or value"
        )
    kind = kinds[0]
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}: 'when' of {name!r} must map parameter names to values")
    common = {"field": str(raw.get("field", "")), "when": dict(when)}
    if kind == "value":
        return Param(name, "fixed", value=raw["value"], **common)
    if kind == "choices":
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices of {name!r} must be a non-empty list")
        choices = [tuple(c) if isinstance(c, list) else c for c in choices]
        return Param(name, "categorical", choices=tuple(choices), **common)
    bounds = raw[kind]
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        or not all(math.isfinite(b) for b in bounds)
    ):
        raise ConfigError(f"{where}: {kind} of {name!r} must be [LOW, HIGH], two finite numbers")
    low, high = bounds
    if kind == "int" and not all(float(b).is_integer() for b in bounds):
        raise ConfigError(f"{where}: int range of {name!r} must be integers, got {bounds}")
    if not low < high:
        raise ConfigError(f"{where}: range of {name!r} needs LOW < HIGH, got {bounds}")
    log_scale = bool(raw.get("log", False))
    if log_scale and low <= 0:
        raise ConfigError(f"{where}: a log range of {name!r} must start above 0, got {low}")
    step = raw.get("step")
    if step is not None and log_scale:
        raise ConfigError(f"{where}: {name!r} cannot have both a step and a log scale")
    return Param(name, kind, low=low, high=high, log=log_scale, step=step, **common)


def space_from_dict(
    raw: dict[str, Any], where: str, warmup: int = 0, base: ModelSpace | None = None
) -> ModelSpace:
    """``raw`` (name -> spec) over ``base``: entries replace the base's parameter of the same
    name, new ones come after."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a space is a table of parameter name -> range")
    params = {p.name: p for p in base.params} if base is not None else {}
    for name, spec in raw.items():
        params[name] = _spec(str(name), spec, where)
    return ModelSpace(tuple(params.values()), warmup=base.warmup if base else warmup)


def _lr(low: float, high: float, optimizer: str) -> dict[str, Any]:
    return {"float": [low, high], "log": True, "field": "lr", "when": {"optimizer": optimizer}}


_AUTOREC_SPACE = {
    # k = 500 is the paper's (Sec. 3); Figure 2 explores 10..1000.
    "k": {"int": [50, 1000], "log": True},
    # 1: the paper's AutoRec; 3: its deep variant (k, k/2, k) (Sec. 3, "deeper").
    "depth": {"choices": [1, 3]},
    # The paper's grid spans 0.001..1000; with the summed loss the ML-1M optimum lies between
    # 100 and 1000 (docs/experiments.md), so the range reaches above it.
    "lam": {"float": [0.1, 3000.0], "log": True},
    "input_dropout": {"float": [0.0, 0.5]},
    # Table 1b's output / hidden activations.
    "f": {"choices": ["identity", "sigmoid"]},
    # The residuals of the bias baseline (what autorec train and evaluate fit by default; ML-1M
    # 0.8268 against the paper model's 0.8340, docs/experiments.md) or the paper's ratings. A
    # residual needs f = identity, so it is asked only then.
    "baseline": {"choices": ["bias", "none"], "when": {"f": "identity"}},
    "g": {"choices": ["sigmoid", "identity", "relu", "tanh", "elu", "selu"]},
    # L-BFGS is left out by default: its state is 172 bytes per parameter (memory_estimate).
    "optimizer": {"choices": ["rprop", "adam"]},
    # Around DEFAULT_LR (rprop 0.002, adam 0.001).
    "lr_rprop": _lr(2e-4, 2e-2, "rprop"),
    "lr_adam": _lr(1e-4, 1e-2, "adam"),
}
_RBM_SPACE = {
    "n_hidden": {"int": [100, 1000], "log": True},
    "lr": {"float": [0.005, 0.2], "log": True},
    "weight_decay": {"float": [1e-4, 0.05], "log": True},  # tuning_grid: 0.001, 0.01
}

#: Each model's default space (JSON/TOML form) and pruning warm-up in epochs. The baselines'
#: ranges span their protocol grids (``tuning_grid``) with room on both sides.
DEFAULT_SPACES: dict[str, tuple[dict[str, Any], int]] = {
    "i-autorec": (_AUTOREC_SPACE, 20),
    "u-autorec": (_AUTOREC_SPACE, 20),
    "bias": (
        {
            "reg_user": {"float": [0.5, 50.0], "log": True},
            "reg_item": {"float": [0.5, 50.0], "log": True},
        },
        0,
    ),
    "biased-mf": (
        {"rank": {"int": [10, 300], "log": True}, "reg": {"float": [0.01, 0.3], "log": True}},
        3,
    ),
    "item-knn": (
        {"k": {"int": [10, 100]}, "shrinkage": {"float": [10.0, 1000.0], "log": True}},
        0,
    ),
    "llorma": (
        {
            "bandwidth": {"float": [0.5, 1.2]},
            "rank": {"int": [5, 30]},
            "reg": {"float": [0.005, 0.2], "log": True},
        },
        3,
    ),
    "i-rbm": (_RBM_SPACE, 15),
    "u-rbm": (_RBM_SPACE, 15),
}


def default_space(model_name: str) -> ModelSpace:
    get_model_class(model_name)  # an unknown model: the registry's error
    if model_name not in DEFAULT_SPACES:
        raise ConfigError(
            f"model {model_name!r} has nothing to tune by validation RMSE; tunable models: "
            f"{', '.join(DEFAULT_SPACES)}"
        )
    raw, warmup = DEFAULT_SPACES[model_name]
    return space_from_dict(raw, f"default space of {model_name}", warmup=warmup)


def load_space(model_name: str, path: str | Path | None) -> ModelSpace:
    """The model's default space, with the entries of the JSON or TOML file ``path`` (if any)
    replacing or adding parameters; checked with :func:`check_space`."""
    space = default_space(model_name)
    if path is not None:
        path = Path(path)
        raw = read_config_file(path, "--space")
        space = space_from_dict(raw, str(path), base=space)
    check_space(model_name, space, str(path) if path else f"default space of {model_name}")
    return space


def hidden_layers(k: int, depth: int) -> tuple[int, ...]:
    """AutoRec's hidden layer sizes for width ``k`` and ``depth`` layers: the outer layers have
    ``k`` units and each layer towards the middle half as many (depth 3: ``(k, k/2, k)``, the
    shape of the paper's deep AutoRec)."""
    if depth < 1 or k < 1:
        raise ConfigError(f"k and depth must be >= 1, got k={k}, depth={depth}")
    return tuple(max(1, k >> min(i, depth - 1 - i)) for i in range(depth))


def config_options(model_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Config fields of the parameter values of a trial (``values`` keyed by config field)."""
    options = dict(values)
    if issubclass(get_model_class(model_name), AutoRec) and ({"k", "depth"} & set(options)):
        if "hidden" in options:
            raise ConfigError("a space sets hidden directly, or k and depth: not both")
        k = int(options.pop("k", 500))
        options["hidden"] = hidden_layers(k, int(options.pop("depth", 1)))
    return options


def _active(param: Param, chosen: dict[str, Any]) -> bool:
    return all(chosen.get(k) == v for k, v in param.when.items())


def check_space(model_name: str, space: ModelSpace, where: str) -> None:
    """Refuse a space that names no field of the model's config, a ``when`` on a later or
    unknown parameter, or an edge of a range the config rejects."""
    fields = set(get_model_class(model_name).config_class.__dataclass_fields__)
    if issubclass(get_model_class(model_name), AutoRec):
        fields |= {"k", "depth"}
    seen: dict[str, Param] = {}
    for p in space.params:
        if p.target not in fields:
            raise ConfigError(
                f"{where}: {p.name!r} is not an option of model {model_name!r}; its fields: "
                f"{', '.join(sorted(fields))}"
            )
        for key, value in p.when.items():
            earlier = seen.get(key)
            if earlier is None:
                raise ConfigError(
                    f"{where}: {p.name!r} depends on {key!r}, not an earlier parameter"
                )
            if earlier.kind == "categorical" and value not in earlier.choices:
                raise ConfigError(f"{where}: {p.name!r} depends on {key}={value!r}, not a choice")
        seen[p.name] = p
    targets = [p.target for p in space.params if not p.when]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ConfigError(f"{where}: {', '.join(repeated)} set by more than one parameter")
    # Each edge of each range, with every other parameter at its default, must make a config.
    for p in space.params:
        for value in p.corners():
            values = {**p.when, p.target: value}
            try:
                make_model(model_name, **config_options(model_name, values))
            except (ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {p.name}={value!r} is refused: {exc}") from None


def suggest(trial: optuna.Trial, space: ModelSpace) -> dict[str, Any]:
    """The trial's values, keyed by config field (inactive conditional parameters left out)."""
    chosen: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for p in space.params:
        if not _active(p, chosen):
            continue
        chosen[p.name] = values[p.target] = p.suggest(trial)
    return values


# -- storage and study ---------------------------------------------------------------------------
def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``: an RDB URL (``sqlite:///study.db``,
    ``postgresql://user@host/db``, ``mysql://...``) with heartbeats, or ``journal:PATH`` for
    Optuna's journal file (a shared disk without a database server)."""
    optuna = _optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:")
        if not path:
            raise ConfigError("--storage journal:PATH needs a file path")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: expected a database URL (sqlite:///FILE, postgresql://...) or "
            "journal:PATH"
        )
    failure: Exception | None = None
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            with _quiet_experimental():  # heartbeats are experimental in Optuna 4
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                )
        except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable server: one line
            # Workers started together on a new database race to create its tables: the loser
            # gets a unique-key error, and finds the tables made when it tries again.
            failure = exc
            time.sleep(0.5 * (attempt + 1))
    raise ConfigError(
        f"--storage {url}: cannot open ({type(failure).__name__}: {failure})"
    ) from None


def make_sampler(seed: int) -> Any:
    optuna = _optuna()
    with _quiet_experimental():  # constant_liar is experimental in Optuna 4
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, constant_liar=True
        )


def make_pruner(warmup: int, prune: bool = True) -> Any:
    optuna = _optuna()
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=warmup, interval_steps=1
    )


def holds_slot(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts towards the study's total (see the module docstring)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state == TrialState.RUNNING:
        return not trial.user_attrs.get("over_budget", False)
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("diverged"))


def finished(trial: optuna.trial.FrozenTrial) -> bool:
    from optuna.trial import TrialState

    return holds_slot(trial) and trial.state != TrialState.RUNNING


class _OverBudget(Exception):
    """The trial was numbered after the study's total was reached: nothing is fitted."""


@dataclass
class StudySettings:
    """What one ``autorec tune`` process runs (see :func:`run_study`)."""

    model_name: str
    space: ModelSpace
    n_trials: int
    seed: int = 0
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # fixed config fields
    timeout: float | None = None  # seconds after which no new trial starts


def seed_for_trial(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: distinct per trial, reproducible per study."""
    return (seed * 1_000_003 + number) % (2**32)


def run_study(
    study: optuna.Study,
    settings: StudySettings,
    split: Split,
    *,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial | None], None] | None = None,
) -> int:
    """Run trials of ``study`` until it holds ``settings.n_trials`` (all processes together),
    the timeout passes, or an interruption. Returns how many trials this process finished.
    ``on_trial(study, trial)`` after each (the progress bar)."""
    optuna = _optuna()
    started = time.monotonic()
    ran = 0
    cfg_class = get_model_class(settings.model_name).config_class
    iterative = is_iterative(cfg_class)

    def objective(trial: optuna.Trial) -> float:
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(holds_slot(t) for t in before) >= settings.n_trials:
            trial.set_user_attr("over_budget", True)
            raise _OverBudget
        study.sampler = make_sampler(seed_for_trial(settings.seed, trial.number))
        values = suggest(trial, settings.space)
        options = {**settings.overrides, **config_options(settings.model_name, values)}
        options["seed"] = settings.seed
        trial.set_user_attr("config", _jsonable(options))
        model = make_model(settings.model_name, **rating_only(settings.model_name, options))

        def report(progress: Progress) -> None:
            if progress.best_val_rmse is None:
                return
            trial.report(progress.best_val_rmse, progress.epoch)
            if not progress.stopping and trial.should_prune():
                trial.set_user_attr("epochs", progress.epoch)
                # Raised out of the training loop, which restores its signal handlers on
                # the way out: nothing else is left behind.
                raise optuna.TrialPruned(f"pruned after epoch {progress.epoch}")

        try:
            if iterative:
                model.fit(split.train, split.val, progress=report)
            else:
                model.fit(split.train, split.val)
        except ModelFitError as exc:
            trial.set_user_attr("diverged", str(exc))
            raise
        history = model.history
        if history.best_val_rmse is not None:
            val_rmse = float(history.best_val_rmse)
        else:
            val_rmse = evaluate(model, split.val)["rmse"]
        trial.set_user_attr("best_epoch", history.best_epoch)
        trial.set_user_attr("epochs", history.n_epochs)
        return val_rmse

    while True:
        trials = study.get_trials(deepcopy=False)
        if sum(holds_slot(t) for t in trials) >= settings.n_trials:
            break
        if settings.timeout is not None and time.monotonic() - started >= settings.timeout:
            log.info("--timeout %gs reached: no new trial", settings.timeout)
            break
        done: list[optuna.trial.FrozenTrial] = []
        study.optimize(
            objective,
            n_trials=1,
            catch=(ModelFitError, _OverBudget),
            callbacks=[lambda _study, trial, done=done: done.append(trial)],
        )
        if not done or done[0].user_attrs.get("over_budget"):
            continue
        ran += 1
        _log_trial(done[0])
        if on_trial is not None:
            on_trial(study, done[0])
    return ran


def _log_trial(trial: optuna.trial.FrozenTrial) -> None:
    from optuna.trial import TrialState

    shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.COMPLETE:
        log.debug("trial %d: validation RMSE %.4f (%s)", trial.number, trial.value, shown)
    elif trial.state == TrialState.PRUNED:
        log.debug(
            "trial %d: pruned after epoch %s (%s)",
            trial.number,
            trial.user_attrs.get("epochs"),
            shown,
        )
    else:
        log.warning("trial %d: %s (%s)", trial.number, trial.user_attrs.get("diverged"), shown)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


# -- after the study -----------------------------------------------------------------------------
def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The complete trial with the lowest validation RMSE (ConfigError when none completed)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(
            f"study {study.study_name!r} has no complete trial (all pruned or diverged): "
            "nothing to score"
        )
    return min(complete, key=lambda t: (t.value, t.number))


def rating_only(model_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with I-AutoRec's ranking head off unless they set it: the head changes no
    rating (autorec.models.autorec_rank), so a study scored by RMSE would fit it for nothing
    (``autorec evaluate`` leaves it out the same way). best.json keeps the model's default."""
    fields = get_model_class(model_name).config_class.__dataclass_fields__
    if "ranking_head" in fields and "ranking_head" not in options:
        return {**options, "ranking_head": False}
    return options


def best_options(model_name: str, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The config fields of ``trial`` (the seed left out: it is the command's)."""
    options = {k: v for k, v in trial.user_attrs["config"].items() if k != "seed"}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def score_best(
    model_name: str,
    trial: optuna.trial.FrozenTrial,
    split: Split,
    *,
    seed: int,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Test RMSE / MAE of the best trial's config, the protocol's way (Sedhain et al. 2015,
    Sec. 3): retrain on train + validation for the epochs validation chose (the trial's best
    epoch), then score the test set, the only time this module reads it."""
    options = {**best_options(model_name, trial), "seed": seed}
    best_epoch = int(trial.user_attrs.get("best_epoch") or 0)
    if is_iterative(get_model_class(model_name).config_class) and best_epoch:
        options["n_epochs"] = best_epoch
    started = time.perf_counter()
    model = make_model(model_name, **rating_only(model_name, options))
    fit_options = {"progress": progress} if progress is not None and best_epoch else {}
    model.fit(split.train.merge(split.val), **fit_options)
    metrics = evaluate(model, split.test)
    summary = split.summary()
    return {
        "trial": trial.number,
        "seed": seed,
        "val_rmse": trial.value,
        "test_rmse": metrics["rmse"],
        "test_mae": metrics["mae"],
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "n_test": summary["n_test"],
        "n_test_fallback": metrics["n_fallback"],
        "retrain_epochs": best_epoch or None,
        "retrain_seconds": time.perf_counter() - started,
        "hyperparameters": _jsonable(options),
    }


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial of the study (over-budget placeholders left out), by number."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.user_attrs.get("over_budget"):
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "val_rmse": t.value,
                "epochs": t.user_attrs.get("epochs"),
                "best_epoch": t.user_attrs.get("best_epoch"),
                "seconds": t.duration.total_seconds() if t.duration is not None else None,
                "params": dict(t.params),
                "config": t.user_attrs.get("config"),
                "note": t.user_attrs.get("diverged", ""),
            }
        )
    return rows


def write_trials(rows: list[dict[str, Any]], out_dir: Path) -> None:
    """``trials.json`` (every field) and ``trials.csv`` (one column per parameter)."""
    atomic_write_json(out_dir / "trials.json", {"trials": rows})
    names: list[str] = []
    for row in rows:
        names += [n for n in row["params"] if n not in names]
    columns = ["number", "state", "val_rmse", "epochs", "best_epoch", "seconds", *names, "note"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        flat = {**row, **row["params"]}
        writer.writerow(["" if flat.get(c) is None else flat.get(c) for c in columns])
    atomic_write_text(out_dir / "trials.csv", buffer.getvalue())


def best_config(model_name: str, trial: optuna.trial.FrozenTrial, about: dict[str, Any]) -> dict:
    """``best.json``: the file ``autorec train --config`` and ``evaluate --config`` read
    (``model`` and ``options``; ``tuned`` says where it comes from and is not read)."""
    return {
        "model": model_name,
        "options": _jsonable(best_options(model_name, trial)),
        "tuned": {**about, "trial": trial.number, "val_rmse": trial.value},
    }


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances as PNGs; a plot Optuna cannot
    draw yet (fewer than two complete trials, nothing varied) is skipped with a log line."""
    optuna = _optuna()
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    drawings: dict[str, Callable[[], Any]] = {
        "history.png": lambda: plots.plot_optimization_history(study),
        # PED-ANOVA needs no scikit-learn (fANOVA, Optuna's default, does).
        "importances.png": lambda: plots.plot_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        ),
    }
    with _quiet_experimental():
        for name, draw in drawings.items():
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                log.info("%s not drawn: %s", name, exc)
                continue
            fig = axes.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            path = out_dir / name
            atomic_write_with(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110), suffix=".png")
            plt.close(fig)
            written.append(path)
    return written


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    import warnings

    optuna = _optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
