"""``autorec evaluate``: the paper's protocol over R seeds, with the mean and its 95% CI."""

from __future__ import annotations

import argparse
import json
from typing import Any

from autorec.cli.options import (
    add_command,
    add_dataset_arguments,
    add_model_arguments,
    dataset_from_args,
    floats,
    model_overrides,
    positive_int,
)
from autorec.cli.outputs import (
    JSON_HELP,
    check_output_file,
    is_main_process,
    summary_json,
    write_json,
)
from autorec.cli.train import checked_split
from autorec.errors import ConfigError

EXAMPLES = """\
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --json ml1m.json
  autorec evaluate --dataset ml-1m --model u-autorec --hidden 100 --runs 5
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --lambdas 0.001,0.01,0.1,1,100,1000
  autorec evaluate --dataset ml-100k --model biased-mf --seed 3 --runs 2
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        help="the paper's protocol: R random splits, tuned on validation",
        description="The paper's protocol for seeds S..S+R-1: on each 90/10 split, fit every "
        "point of the model's tuning grid on train (extending AutoRec's lambda upward while "
        "validation picks the largest), keep the one with the lowest validation RMSE, retrain "
        "it on train + validation, and score the test set once. Prints each run and the mean "
        "test RMSE with its 95% confidence interval.",
        examples=EXAMPLES + "\n" + JSON_HELP,
    )
    add_dataset_arguments(p)
    add_model_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument(
        "--runs", type=positive_int, default=5, metavar="R", help="number of splits (default 5)"
    )
    g.add_argument(
        "--lambdas",
        type=floats,
        metavar="L[,L...]",
        help="lambda grid, searched exactly as given (default: the paper's plus 10 and 300, "
        "extended above 1000 while validation picks its top)",
    )
    g.add_argument(
        "--no-retrain",
        action="store_true",
        help="test the validation-stopped model instead of retraining on train+val",
    )
    g.add_argument("--json", metavar="FILE", help="write all runs and the summary as JSON (below)")
    p.set_defaults(func=run, distributed=True)


def _grid(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, tuple]:
    from autorec.models import get_model_class

    grid = dict(get_model_class(args.model).tuning_grid)
    if args.lambdas is not None:
        if "lam" not in grid:
            raise ConfigError(f"model {args.model!r} has no option lambdas (it has no lambda)")
        grid["lam"] = args.lambdas
    # A value fixed on the command line is not tuned.
    return {k: v for k, v in grid.items() if k not in overrides}


def run(args: argparse.Namespace) -> int:
    from autorec.evaluation import summary_ci95
    from autorec.models import make_model
    from autorec.protocol import run_protocol

    overrides = model_overrides(args)
    grid = _grid(args, overrides)
    check_output_file(args.json, "--json")
    # The full configuration (defaults included); tuned fields show their per-run choice in runs.
    config = make_model(args.model, **overrides).config
    reporter = args.progress

    dataset = dataset_from_args(args)
    runs = []
    for seed in range(args.seed, args.seed + args.runs):
        result = run_protocol(
            dataset.ratings,
            args.model,
            seed=seed,
            overrides={**overrides, "seed": seed},
            grid=grid,
            retrain=not args.no_retrain,
            split=checked_split(dataset, seed, "use a larger data set"),
            # A grid given on the command line is searched exactly as given.
            open_above=() if args.lambdas is not None else None,
            progress=reporter.phase_hook(f"seed {seed}: ") if reporter is not None else None,
        )
        runs.append(result.record)
        if reporter is not None:
            reporter.close()
        if not is_main_process():
            continue
        print(
            f"run {len(runs)}/{args.runs} seed {seed}: test RMSE {result.record['test_rmse']:.4f}"
            f"  MAE {result.record['test_mae']:.4f}  "
            f"chosen {json.dumps(result.record['hyperparameters'])}  "
            f"({result.record['train_seconds']:.1f} s)",
            flush=True,
        )
    if not is_main_process():
        return 0
    mean, ci = summary_ci95([r["test_rmse"] for r in runs])
    mae_mean, _ = summary_ci95([r["test_mae"] for r in runs])
    ci_text = "n/a (one run)" if ci is None else f"{ci:.4f}"
    print(
        f"{args.model} on {dataset.name}, {args.runs} run(s): test RMSE {mean:.4f} +- {ci_text} "
        f"(95% CI); MAE {mae_mean:.4f}"
    )
    write_json(args.json, summary_json(dataset.name, args.model, config.to_dict(), runs))
    return 0
