"""``autorec train``: one model on one paper split (or on all ratings with ``--no-test``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from autorec.cli.options import (
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
from autorec.cli.outputs import (
    JSON_HELP,
    check_model_dir,
    check_output_file,
    is_main_process,
    summary_json,
    write_json,
)
from autorec.errors import ConfigError, ModelFitError

#: How often a fit checkpoints by default. One checkpoint of I-AutoRec on ML-1M (hidden 500,
#: RProp) takes 0.06-0.2 s against 0.5 s per epoch on one CPU thread, so a checkpoint per epoch
#: would cost a quarter of the time; once a minute costs under 0.5% and loses at most a minute.
DEFAULT_CHECKPOINT_SECONDS = 60.0

EXAMPLES = """\
  autorec train --dataset ml-1m --model i-autorec --download
  autorec train --dataset ml-1m --model i-autorec --seed 0 --lambda 300 --json run.json
  autorec train --dataset ml-1m --model u-autorec --optimizer adam --epochs 200
  autorec train --dataset ml-1m --model i-autorec --hidden 500,250,500     # deep AutoRec
  autorec train --dataset my.csv --sep , --columns user,item,rating --header --model bias
  autorec train --dataset ml-100k --split official:u1 --model i-autorec
  autorec train --train a.csv --test b.csv --sep , --model biased-mf --fallback constant
  autorec train --dataset ml-1m --model i-autorec --no-test --output runs/all --overwrite
  autorec train --dataset ml-1m --model i-autorec --output runs/a --checkpoint-every 10
  autorec train --dataset ml-1m --model i-autorec --output runs/a --resume   # after Ctrl-C

Checkpoints: each fit (the validation-stopped fit, then the retrain) writes its training state
to OUTPUT.checkpoints/ (beside the model folder) every minute by default, and when Ctrl-C or
SIGTERM stops it after the current epoch. The same command with --resume skips what finished
and continues from the last checkpoint; with --threads 1 the result is bit-identical to an
uninterrupted run. The folder is removed once the model is saved.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "train",
        help="train one model on one paper split (or on all ratings)",
        description="Train one model on the paper split of seed S (90% train of which 10% is "
        "validation, 10% test), or on a fixed split (--split official:FOLD, or --train FILE "
        "--test FILE; 10% of its train is validation): early-stop on validation, retrain on "
        "train + validation for the epochs validation chose, score the test set once, and save "
        "the model folder. Test pairs whose user or item has no training rating get the "
        "fallback (--fallback, the same rule for every model) and are counted.",
        examples=EXAMPLES + "\n" + JSON_HELP,
    )
    add_dataset_arguments(p, fixed_splits=True)
    add_model_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument(
        "--output", metavar="DIR", help="model folder (default runs/<dataset>-<model>-<seed>/)"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model saved in the --output folder (the default folder is always replaced)",
    )
    g.add_argument("--json", metavar="FILE", help="also write the run's results as JSON (below)")
    g.add_argument("--no-test", action="store_true", help="train on all ratings, no evaluation")
    g.add_argument(
        "--no-retrain",
        action="store_true",
        help="keep the validation-stopped model instead of retraining on train + validation",
    )
    c = p.add_argument_group("checkpoints (models trained epoch by epoch)")
    c.add_argument(
        "--checkpoint-every",
        type=positive_int,
        metavar="N",
        help="checkpoint every N epochs (default: every "
        f"{DEFAULT_CHECKPOINT_SECONDS:g} seconds; give both options to combine them)",
    )
    c.add_argument(
        "--checkpoint-seconds",
        type=positive_number,
        metavar="S",
        help=f"checkpoint every S seconds (default {DEFAULT_CHECKPOINT_SECONDS:g})",
    )
    c.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same command from OUTPUT.checkpoints/ "
        "(starts afresh when there is none)",
    )
    p.set_defaults(func=run, distributed=True)


def checkpoint_dir(out_dir: Path) -> Path:
    """``runs/x.checkpoints`` beside the model folder ``runs/x``: the model folder itself only
    ever holds a model. The same on every rank of a distributed run (same command, same cwd)."""
    base = out_dir if out_dir.name not in ("", ".", "..") else out_dir.resolve()
    return base.with_name(base.name + ".checkpoints")


def _checkpoints(args: argparse.Namespace, out_dir: Path, iterative: bool) -> Any:
    """The run's :class:`~autorec.protocol.ProtocolCheckpoints`, checked before any work."""
    from autorec.cli.outputs import check_output_dir
    from autorec.protocol import ProtocolCheckpoints

    every, seconds = args.checkpoint_every, args.checkpoint_seconds
    if not iterative and (every or seconds):
        raise ConfigError(
            f"model {args.model!r} trains in one step: --checkpoint-every and "
            "--checkpoint-seconds do not apply"
        )
    folder = checkpoint_dir(out_dir)
    check_output_dir(folder, "checkpoint folder")
    if folder.is_dir() and any(folder.iterdir()) and not args.resume:
        raise ConfigError(
            f"{folder} holds the checkpoints of an interrupted run: add --resume to continue "
            "it, or remove that folder to start afresh"
        )
    if every is None and seconds is None:
        seconds = DEFAULT_CHECKPOINT_SECONDS
    return ProtocolCheckpoints(folder, every, seconds, resume=args.resume)


def checked_split(dataset: Any, seed: int, hint: str) -> Any:
    """The paper split of ``dataset`` for ``seed``, refused when a part of it is empty."""
    from autorec.data import paper_split

    split = paper_split(dataset.ratings, seed=seed)
    sizes = split.summary()
    if min(sizes["n_train"], sizes["n_val"], sizes["n_test"]) == 0:
        # 10% test, then 10% of the rest as validation, each rounded half to even:
        # round(0.1 n) >= 1 needs n >= 6 and round(0.1 (n - 1)) >= 1 then needs n >= 7.
        raise ConfigError(
            f"{dataset.name}: the paper split of its {dataset.ratings.n_ratings} ratings leaves "
            f"{sizes['n_train']} training, {sizes['n_val']} validation and {sizes['n_test']} "
            "test ratings, so no validation or test ratings; it needs at least 7 ratings "
            f"(10% test, 10% of the rest validation): {hint}"
        )
    return split


def cold_text(record: dict[str, Any], fallback: str) -> str:
    """``"32 of 20000 test pairs cold: fallback bias"`` for a run's record."""
    return f"{record['n_test_fallback']} of {record['n_test']} test pairs cold: fallback {fallback}"


def run(args: argparse.Namespace) -> int:
    from autorec.models import get_model_class, make_model
    from autorec.models.training import is_iterative
    from autorec.protocol import run_protocol
    from autorec.search import SearchPolicy, search_defaults

    # Everything that can be refused is refused before the data is loaded.
    choice = split_choice(args)
    if choice.fixed and args.no_test:
        raise ConfigError(
            "--no-test trains on all ratings of --dataset; --split and --train/--test give a "
            "test set"
        )
    if len(choice.folds) > 1:
        raise ConfigError(
            f"train fits one model: give one official fold, not {len(choice.folds)} "
            "(autorec evaluate runs several)"
        )
    # The model evaluate's search defaults to (autorec.search.SEARCH_DEFAULTS: I-AutoRec on the
    # residuals of the bias baseline, 0.007 lower test RMSE on ML-1M), unless the options or
    # --config set those fields (--set baseline=none trains the paper's model).
    overrides = search_defaults(SearchPolicy(), args.model, model_overrides(args))
    out_dir = Path(args.output or f"runs/{split_stem(args, choice)}-{args.model}-{args.seed}")
    # The default folder belongs to this command (re-running the main job replaces its model and
    # says so); a folder the user named is replaced only with --overwrite.
    replacing = check_model_dir(out_dir, "--output", args.overwrite or args.output is None)
    check_output_file(args.json, "--json")
    iterative = is_iterative(get_model_class(args.model).config_class)
    checkpoints = _checkpoints(args, out_dir, iterative)
    args.checkpoint_dir = checkpoints.directory  # named by the message of an interruption
    reporter = args.progress

    if choice.fixed:
        dataset_name, ((fold, split),) = fixed_splits(args, choice, args.seed)
    else:
        dataset = dataset_from_args(args)
        dataset_name, fold = dataset.name, None
    started = time.perf_counter()
    if args.no_test:
        fit_options: dict[str, Any] = {}
        if reporter is not None:
            fit_options["progress"] = reporter.fit_hook("train on all ratings")
        if iterative:
            fit_options["checkpoint"] = checkpoints.checkpointer("all")
            fit_options["resume"] = args.resume
        model = make_model(args.model, **overrides).fit(dataset.ratings, **fit_options)
        seconds = time.perf_counter() - started
        record = {
            "seed": args.seed,
            "hyperparameters": overrides,
            "epochs": model.history.n_epochs,
            "train_seconds": seconds,
            "epoch_seconds": model.history.epoch_seconds,
            "n_train": dataset.ratings.n_ratings,
            **dict.fromkeys(("test_rmse", "test_mae", "val_rmse", "n_test_fallback")),
            "n_val": 0,
            "n_test": 0,
        }
    else:
        if not choice.fixed:
            split = checked_split(
                dataset, args.seed, "use a larger data set, or --no-test to train on all ratings"
            )
        # One run of the protocol with nothing to tune: fit on train with early stopping on
        # validation, then (unless --no-retrain) retrain on train + validation for the chosen
        # number of epochs, and score the test set once.
        try:
            result = run_protocol(
                split.train,  # unused: the split is given
                args.model,
                seed=args.seed,
                overrides=overrides,
                grid={},
                retrain=not args.no_retrain,
                split=split,
                progress=reporter.phase_hook() if reporter is not None else None,
                checkpoints=checkpoints,
            )
        except ModelFitError:
            checkpoints.remove()  # a diverged run is not resumed: the same options diverge again
            raise
        model, record = result.model, result.record
        record["hyperparameters"] = {**overrides, **record["hyperparameters"]}
        if fold is not None:
            record["fold"] = fold
        seconds = record["train_seconds"]
    if reporter is not None:
        reporter.close()
    if not is_main_process():
        return 0
    model.save(out_dir, overwrite=replacing)
    payload = summary_json(dataset_name, args.model, model.config.to_dict(), [record], choice)
    write_json(args.json, payload)
    checkpoints.remove()
    if not args.no_test:
        chosen = record["hyperparameters"]
        how = (
            f"retrained on train + validation for {chosen['n_epochs']} epochs"
            if "n_epochs" in chosen
            else "fitted on train"
        )
        on = dataset_name if fold is None or fold == "files" else f"{dataset_name} {fold}"
        residual = (
            " on bias-baseline residuals" if getattr(model.config, "baseline", "") == "bias" else ""
        )
        print(
            f"{args.model}{residual} on {on} (seed {args.seed}): "
            f"test RMSE {record['test_rmse']:.4f}  MAE {record['test_mae']:.4f}  "
            f"({cold_text(record, model.config.fallback)}); "
            f"validation RMSE {record['val_rmse']:.4f}; {how}; {seconds:.1f} s"
        )
    else:
        print(
            f"{args.model} trained on all {dataset.ratings.n_ratings} ratings of "
            f"{dataset_name} in {seconds:.1f} s ({model.history.n_epochs} epochs)"
        )
    print(
        f"model saved to {out_dir}" + (" (replaced the model that was there)" if replacing else "")
    )
    return 0
