"""``autorec tune``: an Optuna study over a model's search space (see :mod:`autorec.tune`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from autorec.cli.options import (
    SplitChoice,
    add_command,
    add_dataset_arguments,
    add_model_arguments,
    dataset_from_args,
    fixed_splits,
    model_overrides,
    positive_int,
    positive_number,
    split_choice,
    split_stem,
)
from autorec.cli.outputs import check_output_dir
from autorec.errors import ConfigError

EXAMPLES = """\
  autorec tune --dataset ml-1m --model i-autorec --trials 20
  autorec tune --dataset ml-100k --model biased-mf --trials 30 --space my-space.toml
  autorec tune --dataset ml-1m --model i-autorec --trials 20 --study ml1m   # resume it later
  autorec tune --dataset ml-100k --split official:u1 --model i-autorec --trials 40 --threads 1
  autorec evaluate --dataset ml-100k --split official:u1 --model i-autorec \\
      --config runs/tune-ml-100k-u1-i-autorec/best.json      # the same train/validation/test
  autorec tune --train a.csv --test b.csv --sep , --header --model biased-mf --trials 20
  autorec tune --dataset ml-1m --model i-autorec --trials 64 --no-test \\
      --storage postgresql://tuner@db-host/autorec --study shared     # on every machine
  autorec tune --dataset ml-1m --model i-autorec --trials 64 \\
      --storage postgresql://tuner@db-host/autorec --study shared     # then: score the best
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 \\
      --config runs/tune-ml-1m-i-autorec/best.json

Outputs in --output: study.db (the default storage), trials.csv and trials.json, best.json (for
train/evaluate --config), result.json (the best trial's test score), history.png and
importances.png. --trials is the study's total over every process that shares the storage.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "tune",
        help="search a model's hyperparameters with Optuna (validation RMSE)",
        description="Run an Optuna study (TPE sampler, median pruner fed the validation RMSE "
        "after every epoch) over the model's search space on the paper split of --seed, or on "
        "one fixed split (--split official:FOLD, or --train FILE --test FILE; validation: 10% "
        "of its train, drawn with --seed, as autorec evaluate draws it): each trial fits on "
        "train and early-stops on validation. After the study the best trial is retrained on "
        "train + validation and scored on the test set once. Model options given on the "
        "command line are fixed and not searched. Needs pip install 'autorec-cf[tune]'.",
        examples=EXAMPLES,
    )
    add_dataset_arguments(p, fixed_splits=True)
    add_model_arguments(p)
    g = p.add_argument_group("study")
    g.add_argument(
        "--trials",
        type=positive_int,
        required=True,
        metavar="N",
        help="the study's total number of finished trials, over all processes",
    )
    g.add_argument(
        "--space", metavar="FILE", help="JSON or TOML entries replacing the default space"
    )
    g.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: sqlite:///FILE, postgresql://USER@HOST/DB, ... or journal:PATH "
        "(default: sqlite:///OUTPUT/study.db)",
    )
    g.add_argument(
        "--study",
        metavar="NAME",
        help="study name; the same name resumes it (default from the data set, fold, model and "
        "seed)",
    )
    g.add_argument(
        "--output",
        metavar="DIR",
        help="output folder (default runs/tune-<dataset>[-<fold>]-<model>/)",
    )
    g.add_argument(
        "--timeout", type=positive_number, metavar="S", help="start no trial after S seconds"
    )
    g.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    g.add_argument(
        "--no-test",
        action="store_true",
        help="a worker: run trials only (another process scores the best on test at the end)",
    )
    p.set_defaults(func=run)


class TrialProgress:
    """Trials done of the total, the best validation RMSE and the time left: a tqdm bar on a
    terminal, one line per trial otherwise."""

    def __init__(self, reporter: Any, total: int, done: int) -> None:
        self.total, self.started, self.done_before = total, time.monotonic(), done
        self.stream = reporter.stream if reporter is not None else None
        self.bar = None
        if reporter is not None and reporter.interactive:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                desc="tune",
                unit="trial",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} trials |{bar}| [{elapsed}<{remaining}"
                "{postfix}]",
            )

    def __call__(self, study: Any, trial: Any) -> None:
        from autorec.tune import finished

        if self.stream is None:
            return
        trials = study.get_trials(deepcopy=False)
        done = sum(finished(t) for t in trials)
        # a pruned trial's value is its last report, not a result: only complete ones compete
        complete = [t.value for t in trials if t.state.name == "COMPLETE"]
        best = f"best val {min(complete):.4f}" if complete else "no complete trial yet"
        if trial.state.name == "COMPLETE":
            outcome = f"val {trial.value:.4f}"
        elif trial.state.name == "PRUNED":
            outcome = f"pruned after epoch {trial.user_attrs.get('epochs')}"
        else:
            outcome = "diverged"
        line = f"trial {trial.number}: {outcome}  ({json.dumps(trial.params)})"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
            self.bar.set_postfix_str(best, refresh=False)
            self.bar.update(min(done, self.total) - self.bar.n)
            return
        elapsed = time.monotonic() - self.started
        mine = max(done - self.done_before, 1)
        left = elapsed / mine * max(self.total - done, 0)
        print(
            f"{line}; {done}/{self.total} trials, {best} ({elapsed:.0f} s elapsed, about "
            f"{left:.0f} s left)",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _study(args: argparse.Namespace, space: Any, storage: Any, name: str, setup: dict) -> Any:
    """The study ``name`` in ``storage``, created or (same setup) resumed."""
    import optuna

    from autorec.tune import make_pruner, make_sampler

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=make_sampler(args.seed),
        pruner=make_pruner(space.warmup, prune=not args.no_prune),
        load_if_exists=True,
    )
    saved = study.user_attrs.get("setup")
    if saved is None:
        study.set_user_attr("setup", setup)
    elif saved != json.loads(json.dumps(setup)):
        changed = sorted(k for k in setup if saved.get(k) != json.loads(json.dumps(setup[k])))
        raise ConfigError(
            f"study {name!r} was started with other {', '.join(changed)}; give another --study "
            "name, or the same options to resume it"
        )
    return study


def run(args: argparse.Namespace) -> int:
    from autorec.atomic import atomic_write_json
    from autorec.cli.train import checked_split
    from autorec.tune import (
        StudySettings,
        best_config,
        best_trial,
        finished,
        load_space,
        open_storage,
        run_study,
        score_best,
        trial_rows,
        write_plots,
        write_trials,
    )

    # Everything that can be refused is refused before the data is loaded.
    choice = split_choice(args)
    if len(choice.folds) > 1:
        raise ConfigError(
            f"tune searches on one split: give one official fold, not {len(choice.folds)} "
            "(then autorec evaluate --split official:FOLDS --config best.json scores several)"
        )
    space = load_space(args.model, args.space)
    overrides = model_overrides(args)
    overrides.pop("seed", None)
    space = _without_fixed(space, overrides)
    stem = split_stem(args, choice)  # ml-100k-u1: a study per fold
    out_dir = Path(args.output or f"runs/tune-{stem}-{args.model}")
    check_output_dir(out_dir, "--output")
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(args.storage or f"sqlite:///{out_dir / 'study.db'}")
    name = args.study or f"{stem}-{args.model}-seed{args.seed}"
    setup = {
        "dataset": stem,
        "split": choice.to_dict(),
        "model": args.model,
        "seed": args.seed,
        "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "space": [p.name for p in space.params],
        "prune": not args.no_prune,
    }
    study = _study(args, space, storage, name, setup)
    if choice.fixed:
        # the same train / validation / test as `autorec evaluate` with these options
        dataset_name, ((_, split),) = fixed_splits(args, choice, args.seed)
    else:
        dataset = dataset_from_args(args)
        dataset_name = dataset.name
        split = checked_split(dataset, args.seed, "use a larger data set")
    settings = StudySettings(
        args.model, space, args.trials, seed=args.seed, overrides=overrides, timeout=args.timeout
    )
    done_before = sum(finished(t) for t in study.get_trials(deepcopy=False))
    bar = TrialProgress(args.progress, args.trials, done_before)
    try:
        ran = run_study(study, settings, split, on_trial=bar)
    finally:
        bar.close()
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(study)
    write_trials(rows, out_dir)
    states = [r["state"] for r in rows]
    counts = ", ".join(
        f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail") if s in states
    )
    print(
        f"study {name!r}: {sum(finished(t) for t in trials)} of {args.trials} trials finished "
        f"({counts}); {ran} run by this process"
    )
    best = best_trial(study)
    about = {"study": name, "dataset": dataset_name, "split": choice.to_dict(), "seed": args.seed}
    atomic_write_json(out_dir / "best.json", best_config(args.model, best, about))
    write_plots(study, out_dir)
    print(
        f"best trial {best.number}: validation RMSE {best.value:.4f}  "
        f"{json.dumps(best.params)}; config in {out_dir / 'best.json'}"
    )
    running = [
        t for t in trials if t.state.name == "RUNNING" and not t.user_attrs.get("over_budget")
    ]
    if args.no_test:
        return 0
    if running:
        print(
            f"{len(running)} trial(s) still running elsewhere: run the same command again when "
            "they finish to score the best trial on test"
        )
        return 0
    result_path = out_dir / "result.json"
    result = _saved_result(result_path, name, best.number)
    if result is None:
        progress = args.progress.fit_hook("retrain best") if args.progress is not None else None
        result = score_best(args.model, best, split, seed=args.seed, progress=progress)
        result.update(study=name, dataset=dataset_name, split=choice.to_dict())
        atomic_write_json(result_path, result)
    epochs = result["retrain_epochs"]
    how = (
        f"retrained on train + validation for {epochs} epochs"
        if epochs
        else "fitted on train + validation"
    )
    print(
        f"{args.model} on {dataset_name} ({split_text(choice, args.seed)}), best trial "
        f"{best.number}: test RMSE "
        f"{result['test_rmse']:.4f}  MAE {result['test_mae']:.4f} ({how}; "
        f"{result['n_test_fallback']} of {result['n_test']} test pairs cold)"
    )
    return 0


def split_text(choice: SplitChoice, seed: int) -> str:
    """``"fold u1, validation seed 0"`` / ``"seed 0"``: the split a result was scored on."""
    if choice.kind == "paper":
        return f"seed {seed}"
    where = f"fold {choice.folds[0]}" if choice.kind == "official" else "the --train/--test files"
    return f"{where}, validation seed {seed}"


def _saved_result(path: Path, study: str, trial: int) -> dict[str, Any] | None:
    """The test score already written for this study's best trial, so that running the command
    again does not score the test set again."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(saved, dict) and saved.get("study") == study and saved.get("trial") == trial
    return saved if same else None


def _without_fixed(space: Any, overrides: dict[str, Any]) -> Any:
    """The space without the parameters the command line fixed (``hidden`` fixes k and depth)."""
    from dataclasses import replace

    fixed = set(overrides) | ({"k", "depth"} if "hidden" in overrides else set())
    kept = tuple(
        replace(p, when={k: v for k, v in p.when.items() if k not in overrides})
        for p in space.params
        if p.target not in fixed and all(overrides.get(k, v) == v for k, v in p.when.items())
    )
    if not kept:
        raise ConfigError("the command line fixes every parameter of the space: nothing to tune")
    return replace(space, params=kept)
