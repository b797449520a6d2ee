"""The ``autorec`` command line. The only module that prints to stdout.

Subcommands: ``data`` (download, stats), ``train``, ``evaluate``, ``reproduce``, ``predict``,
``recommend``.
Every user error (bad data, bad option, unknown id) is one ``error: ...`` line on stderr and exit
code 2, never a traceback. Progress (epochs, RMSE, seconds) goes to stderr; ``--quiet`` hides it.

Distributed runs (see :mod:`autorec.distributed`) use ``torchrun --nproc_per_node=N -m autorec
train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autorec import __version__
from autorec.errors import AutorecError, ConfigError

log = logging.getLogger("autorec")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2) like the rest of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


# -- model options ------------------------------------------------------------------------------
_MODEL_OPTIONS: dict[str, str] = {
    # CLI dest -> config field
    "lam": "lam",
    "hidden": "hidden",
    "f": "f",
    "g": "g",
    "optimizer": "optimizer",
    "epochs": "n_epochs",
    "patience": "patience",
    "lr": "lr",
    "batch_size": "batch_size",
    "dropout": "input_dropout",
    "engine": "engine",
    "device": "device",
    "precision": "precision",
    "fallback": "fallback",
}


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    from autorec.models import MODEL_NAMES

    p.add_argument("--model", required=True, choices=MODEL_NAMES, help="model to train")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    g = p.add_argument_group("model options (defaults: the paper's; only given ones are set)")
    g.add_argument("--lambda", dest="lam", type=float, help="weight decay lambda (AutoRec)")
    g.add_argument("--hidden", type=_ints, help="hidden layer sizes, e.g. 500 or 500,250,500")
    g.add_argument("--f", help="output activation: identity, sigmoid, relu, tanh, elu, selu")
    g.add_argument("--g", help="hidden activation: identity, sigmoid, relu, tanh, elu, selu")
    g.add_argument("--optimizer", choices=("rprop", "lbfgs", "adam"))
    g.add_argument("--epochs", type=_positive_int, help="maximum number of epochs")
    g.add_argument("--patience", type=_positive_int, help="early-stopping patience in epochs")
    g.add_argument("--lr", type=float, help="initial step (rprop) / learning rate (adam)")
    g.add_argument("--batch-size", type=_positive_int, help="rows per minibatch (adam)")
    g.add_argument("--dropout", type=float, help="input dropout (denoising), default 0")
    g.add_argument("--engine", choices=("auto", "sparse", "dense"))
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    g.add_argument(
        "--precision",
        choices=("fp32", "tf32", "bf16"),
        help="fp32 (default), tf32 CUDA matmuls, or bf16 autocast of the dense products",
    )
    g.add_argument(
        "--fallback",
        choices=("constant", "bias"),
        help="prediction for unseen users/items: constant mid-scale (paper) or biases",
    )
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other config field, e.g. --set min_epochs=50 (repeatable)",
    )
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch")


def _parse_override(key: str, text: str, field_type: Any) -> Any:
    raw = text
    type_name = str(field_type)
    try:
        if "tuple" in type_name:
            return _ints(raw)
        if type_name in ("int", "<class 'int'>"):
            return int(raw)
        if "float" in type_name:
            return float(raw)
        if type_name in ("bool", "<class 'bool'>"):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
    except (ValueError, argparse.ArgumentTypeError):
        raise ConfigError(f"--set {key}={text}: not a valid {type_name}") from None
    return raw


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from autorec.models import get_model_class

    overrides = {
        field: getattr(args, dest)
        for dest, field in _MODEL_OPTIONS.items()
        if getattr(args, dest, None) is not None
    }
    fields = get_model_class(args.model).config_class.__dataclass_fields__
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields:
            raise ConfigError(
                f"--set: model {args.model!r} has no option {key!r}; "
                f"options: {', '.join(sorted(fields))}"
            )
        overrides[key] = _parse_override(key, value, fields[key].type)
    overrides.setdefault("seed", args.seed)
    return overrides


# -- train / evaluate -----------------------------------------------------------------------------
def _summary_json(
    dataset: str, model_name: str, config: dict[str, Any], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    from autorec.evaluation import mean_ci95

    rmses = [r["test_rmse"] for r in runs if r["test_rmse"] is not None]
    mean, ci = mean_ci95(rmses) if rmses else (None, None)
    maes = [r["test_mae"] for r in runs if r["test_mae"] is not None]
    mae_mean, mae_ci = mean_ci95(maes) if maes else (None, None)
    return {
        "dataset": dataset,
        "model": model_name,
        "config": config,
        "runs": runs,
        "test_rmse_mean": mean,
        "test_rmse_ci95": None if ci is None or ci != ci else ci,
        "test_mae_mean": mae_mean,
        "test_mae_ci95": None if mae_ci is None or mae_ci != mae_ci else mae_ci,
        "autorec_version": __version__,
    }


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(target)


def _cmd_train(args: argparse.Namespace) -> int:
    from autorec.cli_data import dataset_from_args
    from autorec.models import make_model
    from autorec.protocol import run_protocol

    overrides = _model_overrides(args)
    dataset = dataset_from_args(args)
    started = time.perf_counter()
    if args.no_test:
        model = make_model(args.model, **overrides).fit(dataset.ratings)
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
        # One run of the protocol with nothing to tune: fit on train with early stopping on
        # validation, then (unless --no-retrain) retrain on train + validation for the chosen
        # number of epochs, and score the test set once.
        result = run_protocol(
            dataset.ratings,
            args.model,
            seed=args.seed,
            overrides=overrides,
            grid={},
            retrain=not args.no_retrain,
        )
        model, record = result.model, result.record
        record["hyperparameters"] = {**overrides, **record["hyperparameters"]}
        seconds = record["train_seconds"]
    stem = Path(dataset.name).name.replace(":", "-")  # synthetic:ml-1m -> synthetic-ml-1m
    out_dir = Path(args.output or f"runs/{stem}-{args.model}-{args.seed}")
    if _is_main_process():
        model.save(out_dir)
        _write_json(
            args.json, _summary_json(dataset.name, args.model, model.config.to_dict(), [record])
        )
        if not args.no_test:
            chosen = record["hyperparameters"]
            how = (
                f"retrained on train + validation for {chosen['n_epochs']} epochs"
                if "n_epochs" in chosen
                else "fitted on train"
            )
            print(
                f"{args.model} on {dataset.name} (seed {args.seed}): "
                f"test RMSE {record['test_rmse']:.4f}  MAE {record['test_mae']:.4f}  "
                f"({record['n_test_fallback']} of {record['n_test']} test ratings by fallback); "
                f"validation RMSE {record['val_rmse']:.4f}; {how}; {seconds:.1f} s"
            )
        else:
            print(
                f"{args.model} trained on all {dataset.ratings.n_ratings} ratings of "
                f"{dataset.name} in {seconds:.1f} s ({model.history.n_epochs} epochs)"
            )
        print(f"model saved to {out_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from autorec.cli_data import dataset_from_args
    from autorec.evaluation import mean_ci95
    from autorec.protocol import run_protocol

    overrides = _model_overrides(args)
    dataset = dataset_from_args(args)
    runs = []
    for seed in range(args.seed, args.seed + args.runs):
        result = run_protocol(
            dataset.ratings,
            args.model,
            seed=seed,
            overrides={**overrides, "seed": seed},
            grid=_grid_from_args(args, overrides),
            retrain=not args.no_retrain,
            # A grid given on the command line is searched exactly as given.
            open_above=() if args.lambdas is not None else None,
        )
        runs.append(result.record)
        if not _is_main_process():
            continue
        print(
            f"run {len(runs)}/{args.runs} seed {seed}: test RMSE {result.record['test_rmse']:.4f}"
            f"  MAE {result.record['test_mae']:.4f}  "
            f"chosen {json.dumps(result.record['hyperparameters'])}  "
            f"({result.record['train_seconds']:.1f} s)",
            flush=True,
        )
    if not _is_main_process():
        return 0
    rmses = [r["test_rmse"] for r in runs]
    mean, ci = mean_ci95(rmses)
    mae_mean, _ = mean_ci95([r["test_mae"] for r in runs])
    ci_text = "n/a (one run)" if ci != ci else f"{ci:.4f}"
    print(
        f"{args.model} on {dataset.name}, {args.runs} run(s): test RMSE {mean:.4f} +- {ci_text} "
        f"(95% CI); MAE {mae_mean:.4f}"
    )
    from autorec.models import make_model

    # The full configuration (defaults included); tuned fields show their per-run choice in runs.
    config = make_model(args.model, **overrides).config.to_dict()
    _write_json(args.json, _summary_json(dataset.name, args.model, config, runs))
    return 0


def _grid_from_args(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, tuple]:
    from autorec.models import get_model_class

    grid = dict(get_model_class(args.model).tuning_grid)
    if args.lambdas is not None:
        if "lam" not in grid:
            raise ConfigError(f"--lambdas: model {args.model!r} has no lambda")
        grid["lam"] = args.lambdas
    # A value fixed on the command line is not tuned.
    return {k: v for k, v in grid.items() if k not in overrides}


# -- reproduce ------------------------------------------------------------------------------------
def _tables(text: str) -> tuple[str, ...]:
    from autorec.reproduce import TABLES

    names = []
    for part in text.split(","):
        name = part.strip()
        name = f"table_{name}" if name in ("1a", "1b", "1c") else name
        if name not in TABLES:
            raise argparse.ArgumentTypeError(
                f"unknown table {part.strip()!r}; tables: {', '.join(TABLES)}"
            )
        names.append(name)
    return tuple(names)


def _model_names(text: str) -> tuple[str, ...]:
    from autorec.models import MODEL_NAMES

    names = tuple(part.strip() for part in text.split(","))
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown)}; models: {', '.join(MODEL_NAMES)}"
        )
    return names


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from autorec.cli_data import dataset_from_args
    from autorec.reproduce import QUICK_RUNS, TABLES, Plan, reproduce

    if args.dataset is None:
        args.dataset = "ml-100k" if args.quick else "ml-1m"
    runs = args.runs or (QUICK_RUNS if args.quick else 5)
    dataset = dataset_from_args(args)
    stem = Path(dataset.name).name.replace(":", "-")
    out_dir = Path(args.out or f"results/{stem}{'-quick' if args.quick else ''}")
    plan = Plan(
        dataset=dataset.name,
        tables=args.only or TABLES,
        runs=runs,
        quick=args.quick,
        models=args.models,
    )
    command = " ".join(
        ["autorec reproduce", f"--dataset {args.dataset}", f"--runs {runs}", f"--out {out_dir}"]
        + (["--quick"] if args.quick else [])
        + ([f"--only {','.join(args.only)}"] if args.only else [])
        + ([f"--models {','.join(args.models)}"] if args.models else [])
    )
    if not args.verbose:
        # Hundreds of fits: show the cells, not every epoch of every fit (-v shows them).
        for name in ("autorec.models", "autorec.protocol"):
            logging.getLogger(name).setLevel(logging.WARNING)
    log.info("reproducing %s on %s into %s", ", ".join(plan.tables), dataset.name, out_dir)
    outcome = reproduce(
        dataset.ratings, plan, out_dir, command=command, report_only=args.report_only
    )
    results = outcome.results
    for table in results["tables"]:
        print(f"{table}:")
        for e in results[table]:
            ours = (
                "not run"
                if e["test_rmse_mean"] is None
                else f"{e['test_rmse_mean']:.4f}"
                + (f" +- {e['test_rmse_ci95']:.4f}" if e["test_rmse_ci95"] is not None else "")
            )
            paper = "" if e["paper"] is None else f"  (paper {e['paper']:.3f})"
            print(f"  {e['model']:<32} {ours} [{e['n_runs']} run(s)]{paper}")
    print(f"report written to {out_dir / 'report.md'}")
    return 0 if outcome.complete else 3  # the skipped cells were logged


# -- predict / recommend --------------------------------------------------------------------------
def _load(model_dir: str) -> Any:
    from autorec.models.base import Recommender

    return Recommender.load(model_dir)


def _cmd_predict(args: argparse.Namespace) -> int:
    model = _load(args.model_dir)
    user_idx = model.users.index_of(args.user)
    item_idx = model.items.index_of(args.item)
    notes = []
    if user_idx < 0:
        notes.append(f"user {args.user!r} is not in the model's {model.n_users} users")
    if item_idx < 0:
        notes.append(f"item {args.item!r} is not in the model's {model.n_items} items")
    if notes and not args.allow_unknown:
        raise ConfigError("; ".join(notes) + " (pass --allow-unknown to get the fallback rating)")
    value = float(model.predict(np.array([user_idx]), np.array([item_idx]))[0])
    known = bool(model.known_mask(np.array([user_idx]), np.array([item_idx]))[0])
    print(f"{value:.4f}" if known else f"{value:.4f}\t(fallback)")
    return 0


def _parse_new_user(text: str) -> dict[str, float]:
    ratings: dict[str, float] = {}
    for part in text.split(","):
        item_id, sep, value = part.strip().rpartition(":")
        try:
            if not sep or not item_id:
                raise ValueError
            ratings[item_id] = float(value)
        except ValueError:
            raise ConfigError(
                f"--ratings expects ITEM:RATING[,ITEM:RATING...], got {part.strip()!r}"
            ) from None
    return ratings


def _cmd_recommend(args: argparse.Namespace) -> int:
    model = _load(args.model_dir)
    if args.ratings is not None:
        if not hasattr(model, "recommend_for_ratings"):
            raise ConfigError(f"a {model.model_name} model cannot fold in a new user")
        recs = model.recommend_for_ratings(_parse_new_user(args.ratings), args.k)
        for rank, (item_id, score) in enumerate(recs, start=1):
            print(f"{rank}\t{item_id}\t{score:.4f}")
        return 0
    if model.users.index_of(args.user) < 0:
        raise ConfigError(f"user {args.user!r} is not in the model's {model.n_users} users")
    for rank, (item_id, score) in enumerate(model.recommend(args.user, args.k), start=1):
        print(f"{rank}\t{item_id}\t{score:.4f}")
    return 0


# -- plumbing -------------------------------------------------------------------------------------
def _is_main_process() -> bool:
    from autorec.distributed import DistEnv

    return DistEnv.from_environ().is_main


def build_parser() -> argparse.ArgumentParser:
    from autorec.cli_data import add_dataset_arguments, register

    parser = _Parser(prog="autorec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"autorec {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # The same switches after the subcommand (``autorec train ... --quiet``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register(sub)

    p = sub.add_parser(
        "train", parents=[common], help="train one model on one paper split (or on all ratings)"
    )
    add_dataset_arguments(p)
    _add_model_arguments(p)
    p.add_argument("--output", help="model folder (default runs/<dataset>-<model>-<seed>/)")
    p.add_argument("--json", help="write the run's results as JSON")
    p.add_argument("--no-test", action="store_true", help="train on all ratings, no evaluation")
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="keep the validation-stopped model instead of retraining on train + validation",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="the paper's protocol: R random splits, tuned on validation",
    )
    add_dataset_arguments(p)
    _add_model_arguments(p)
    p.add_argument("--runs", type=_positive_int, default=5, help="number of splits (default 5)")
    p.add_argument(
        "--lambdas",
        type=_floats,
        help="lambda grid, searched exactly as given (default: the paper's plus 10 and 300, "
        "extended above 1000 while validation picks its top)",
    )
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="test the validation-stopped model instead of retraining on train+val",
    )
    p.add_argument("--json", help="write all runs and the summary as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "reproduce",
        parents=[common],
        help="re-run the paper's tables and figure; write report.md, results.json and figures",
    )
    add_dataset_arguments(p, required=False, default_help=" (default ml-1m; ml-100k with --quick)")
    p.add_argument("--runs", type=_positive_int, help="seeds per cell (default 5; 2 with --quick)")
    p.add_argument("--out", help="output folder (default results/<dataset>[-quick])")
    p.add_argument(
        "--quick",
        action="store_true",
        help="pipeline check: 2 runs, <= 15 epochs, 3 sweep points, no tuning",
    )
    p.add_argument(
        "--only",
        type=_tables,
        metavar="TABLE[,TABLE]",
        help="table_1a, table_1b, table_1c, figure_2 and/or deep (default all)",
    )
    p.add_argument(
        "--models",
        type=_model_names,
        metavar="NAME[,NAME]",
        help="only the rows of these models (e.g. to rerun one model's cells); default all",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite the report from the cells finished so far",
    )
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("predict", parents=[common], help="predict one rating with a saved model")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--user", required=True, help="raw user id")
    p.add_argument("--item", required=True, help="raw item id")
    p.add_argument(
        "--allow-unknown", action="store_true", help="answer unknown ids with the fallback"
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "recommend", parents=[common], help="top-k unseen items for a user with a saved model"
    )
    p.add_argument("--model-dir", required=True)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw user id")
    who.add_argument(
        "--ratings",
        metavar="ITEM:RATING,...",
        help="a new user's ratings, folded in without retraining (u-autorec models)",
    )
    p.add_argument("-k", type=_positive_int, default=10, help="number of items (default 10)")
    p.set_defaults(func=_cmd_recommend)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    from autorec.distributed import DistEnv

    level = logging.DEBUG if args.verbose else logging.INFO
    if args.quiet or not DistEnv.from_environ().is_main:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        if args.command in ("train", "evaluate"):
            from autorec.distributed import setup, teardown

            setup(getattr(args, "device", None))
            try:
                return int(args.func(args) or 0)
            finally:
                teardown()
        return int(args.func(args) or 0)
    except AutorecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, IndexError) as exc:
        # Anything else a user can trigger (an unwritable output folder, say): one line.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
