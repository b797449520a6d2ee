"""``autorec evaluate``: the paper's protocol over R seeds, with the mean and its 95% CI."""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

from autorec.cli.options import (
    add_command,
    add_dataset_arguments,
    add_grid_run_arguments,
    add_model_arguments,
    dataset_from_args,
    fixed_splits,
    floats,
    grid_run_options,
    model_overrides,
    positive_int,
    split_choice,
)
from autorec.cli.outputs import (
    JSON_HELP,
    check_output_file,
    is_main_process,
    summary_json,
    write_json,
)
from autorec.cli.train import checked_split, cold_text
from autorec.errors import ConfigError
from autorec.ranking import RANKING_KINDS, RankingMetric, parse_metrics

EXAMPLES = """\
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --json ml1m.json
  autorec evaluate --dataset ml-1m --model u-autorec --hidden 100 --runs 5
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --lambdas 0.001,0.01,0.1,1,100,1000
  autorec evaluate --dataset ml-100k --model biased-mf --seed 3 --runs 2
  autorec evaluate --dataset ml-100k --split official:u1 --model i-autorec
  autorec evaluate --dataset ml-100k --split official:u1,u2,u3,u4,u5 --model i-autorec
  autorec evaluate --train a.csv --test b.csv --sep , --header --model bias
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --fallback constant  # paper rule
  autorec evaluate --dataset ml-1m --model i-autorec --runs 1 --metrics rmse,ndcg@10,recall@20
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --jobs 2
  autorec evaluate --dataset ml-1m --model i-autorec --runs 5 --no-prune  # every point in full
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
        "test RMSE with its 95% confidence interval. With --split official:FOLDS or --train "
        "FILE --test FILE the runs are the given folds instead, each run once (validation: 10% "
        "of its train, drawn with --seed). Every model answers test pairs whose user or item "
        "has no training rating with one rule, --fallback (default: the bias baseline), and "
        "their number is printed.",
        examples=EXAMPLES + "\n" + JSON_HELP + SEARCH_JSON_HELP + RANKING_JSON_HELP,
    )
    add_dataset_arguments(p, fixed_splits=True)
    add_model_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument(
        "--runs",
        type=positive_int,
        metavar="R",
        help="number of random splits, seeds S..S+R-1 (default 5); not with fixed splits, "
        "whose folds are the runs",
    )
    g.add_argument(
        "--lambdas",
        type=floats,
        metavar="L[,L...]",
        help="lambda grid, searched exactly as given (default: the paper's plus 10 and 300, "
        "extended above 1000 while validation picks its top, then refined around the best)",
    )
    g.add_argument(
        "--no-refine",
        action="store_true",
        help="search the model's grid as it is: no log-spaced refinement around the best "
        "point and no wider grids on small data (under 200k training ratings)",
    )
    g.add_argument(
        "--no-retrain",
        action="store_true",
        help="test the validation-stopped model instead of retraining on train+val",
    )
    add_grid_run_arguments(g)
    g.add_argument("--json", metavar="FILE", help="write all runs and the summary as JSON (below)")
    m = p.add_argument_group("metrics")
    m.add_argument(
        "--metrics",
        type=_metrics,
        default=_metrics("rmse,mae"),
        metavar="M[,M...]",
        help="what to report (default rmse,mae): rmse, mae and full-ranking metrics at a cutoff "
        "K, NAME@K with NAME in " + ", ".join(RANKING_KINDS) + ". Ranking metrics rank "
        "the whole catalogue for each test user with the tested model, train and validation "
        "items excluded, ties to the lower item index; they choose nothing",
    )
    m.add_argument(
        "--relevance",
        type=float,
        metavar="T",
        help="a test rating >= T is relevant (default: low + 0.75 (high - low) on the rating "
        "grid, 4 on 1..5)",
    )
    p.set_defaults(func=run, distributed=True)


def _metrics(text: str) -> tuple[tuple[str, ...], tuple[RankingMetric, ...]]:
    try:
        return parse_metrics(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SEARCH_JSON_HELP = """\
  runs[].search     the adaptive search: small_data (under 200k training ratings), refine_fits,
                    stage_fits (autorec.search)
  runs[].simpler_model_wins
                    null, or {model, val_rmse, hyperparameters, tuned_val_rmse} when the tuned
                    bias baseline is at least as good on validation
"""

RANKING_JSON_HELP = """\
  with ranking metrics (--metrics ndcg@10,...):
  runs[].ranking    metrics (name -> mean over the test users), relevance, n_users,
                    n_users_skipped (no relevant test item), n_relevant, n_relevant_excluded,
                    block_users, seconds, tie_break
  ranking           relevance, and per metric {mean, ci95} over the runs
"""


def _test_line(record: dict[str, Any], rating: tuple[str, ...], ranking: tuple) -> str:
    parts = [f"{name.upper()} {record['test_' + name]:.4f}" for name in rating]
    parts += [f"{m} {record['ranking']['metrics'][str(m)]:.4f}" for m in ranking]
    return "test " + "  ".join(parts)


def _grid(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, tuple]:
    from autorec.models import tuning_grid

    grid = tuning_grid(args.model)
    if args.lambdas is not None:
        if "lam" not in grid:
            raise ConfigError(f"model {args.model!r} has no option lambdas (it has no lambda)")
        grid["lam"] = args.lambdas
    # A value fixed on the command line is not tuned.
    return {k: v for k, v in grid.items() if k not in overrides}


def _defaults_text(record: dict[str, Any]) -> str:
    """The model settings the search chose for the user (``baseline=bias`` for I-AutoRec),
    which the chosen hyperparameters do not show."""
    defaults = (record.get("search") or {}).get("model_defaults") or {}
    if not defaults:
        return ""
    return " with " + ", ".join(f"{k}={v}" for k, v in defaults.items()) + " (search default)"


def run(args: argparse.Namespace) -> int:
    from autorec.evaluation import summary_ci95
    from autorec.models import get_model_class, make_model
    from autorec.protocol import run_protocol
    from autorec.search import SearchPolicy

    choice = split_choice(args)
    if choice.fixed and args.runs is not None:
        raise ConfigError(
            "--runs counts random splits; with --split or --train/--test each fold runs once "
            "(--seed draws its validation set)"
        )
    overrides = model_overrides(args)
    grid = _grid(args, overrides)
    rating_metrics, ranking_metrics = args.metrics
    if args.relevance is not None and not ranking_metrics:
        raise ConfigError("--relevance sets the threshold of ranking metrics; --metrics has none")
    check_output_file(args.json, "--json")
    fields = get_model_class(args.model).config_class.__dataclass_fields__
    if not ranking_metrics and "ranking_head" in fields and "ranking_head" not in overrides:
        # I-AutoRec's ranking head changes no rating: an evaluation without ranking metrics
        # would fit it for nothing.
        overrides["ranking_head"] = False
    # The full configuration (defaults included); tuned fields show their per-run choice in runs.
    config = make_model(args.model, **overrides).config
    reporter = args.progress
    # A grid given on the command line is searched exactly as given.
    search = SearchPolicy(adapt=args.lambdas is None and not args.no_refine)

    if choice.fixed:
        dataset_name, folds = fixed_splits(args, choice, args.seed)
        # one run per fold, all with --seed: the folds are what varies
        plan = [(args.seed, fold, lambda split=split: split) for fold, split in folds]
        low, high = folds[0][1].train.rating_scale
    else:
        dataset = dataset_from_args(args)
        dataset_name = dataset.name
        n_runs = 5 if args.runs is None else args.runs
        # each split made when its run starts: one at a time in memory (Netflix: 100M ratings)
        plan = [
            (seed, None, functools.partial(checked_split, dataset, seed, "use a larger data set"))
            for seed in range(args.seed, args.seed + n_runs)
        ]
        low, high = dataset.ratings.rating_scale
    if args.relevance is not None and not low <= args.relevance <= high:
        raise ConfigError(
            f"--relevance {args.relevance:g} is outside the rating scale {low}..{high}"
        )
    runs = []
    for seed, fold, make_split in plan:
        name = f"seed {seed}" if fold is None else f"fold {fold}"
        split = make_split()
        result = run_protocol(
            split.train,
            args.model,
            seed=seed,
            overrides={**overrides, "seed": seed},
            grid=grid,
            retrain=not args.no_retrain,
            split=split,
            # A grid given on the command line is searched exactly as given.
            open_above=() if args.lambdas is not None else None,
            progress=reporter.phase_hook(f"{name}: ") if reporter is not None else None,
            ranking=ranking_metrics,
            relevance=args.relevance,
            **grid_run_options(args),
            search=search,
        )
        if fold is not None:
            result.record["fold"] = fold
        runs.append(result.record)
        if reporter is not None:
            reporter.close()
        if not is_main_process():
            continue
        print(
            f"run {len(runs)}/{len(plan)} {name}: "
            f"{_test_line(result.record, rating_metrics, ranking_metrics)}  "
            f"({cold_text(result.record, config.fallback)})  "
            f"chosen {json.dumps(result.record['hyperparameters'])}"
            f"{_defaults_text(result.record)}  "
            f"({result.record['train_seconds']:.1f} s)",
            flush=True,
        )
        if result.record["simpler_model_wins"]:
            print(f"  {_simpler_text(args.model, result.record['simpler_model_wins'])}")
    if not is_main_process():
        return 0
    mean, ci = summary_ci95([r["test_rmse"] for r in runs])
    mae_mean, _ = summary_ci95([r["test_mae"] for r in runs])
    ci_text = "n/a (one run)" if ci is None else f"{ci:.4f}"
    over = f"{len(runs)} run(s)" if not choice.fixed else f"{len(runs)} fold(s)"
    if choice.kind == "official":
        over += f" ({','.join(choice.folds)})"
    n_cold = sum(r["n_test_fallback"] for r in runs)
    n_test = sum(r["n_test"] for r in runs)
    if rating_metrics:
        print(
            f"{args.model} on {dataset_name}, {over}: test RMSE {mean:.4f} +- "
            f"{ci_text} (95% CI); MAE {mae_mean:.4f}; {n_cold} of {n_test} test pairs cold, "
            f"answered by the {config.fallback} fallback"
        )
    simpler = [r for r in runs if r["simpler_model_wins"]]
    if simpler:
        print(
            f"the simpler model wins on validation in {len(simpler)} of {len(runs)} run(s): "
            f"prefer `--model {simpler[0]['simpler_model_wins']['model']}` on this data"
        )
    payload = summary_json(dataset_name, args.model, config.to_dict(), runs, choice)
    if ranking_metrics:
        payload["ranking"] = _ranking_summary(runs, ranking_metrics)
        print(_ranking_line(args.model, dataset_name, over, payload["ranking"]))
    write_json(args.json, payload)
    return 0


def _simpler_text(model: str, wins: dict[str, Any]) -> str:
    return (
        f"the {wins['model']} baseline is at least as good on validation: RMSE "
        f"{wins['val_rmse']:.4f} ({json.dumps(wins['hyperparameters'])}) against {model}'s "
        f"{wins['tuned_val_rmse']:.4f}"
    )


def _ranking_summary(runs: list[dict[str, Any]], metrics: tuple) -> dict[str, Any]:
    """Mean and 95% CI half-width (None for one run) of each ranking metric over the runs."""
    from autorec.evaluation import summary_ci95

    out: dict[str, Any] = {"relevance": runs[0]["ranking"]["relevance"], "metrics": {}}
    for m in metrics:
        mean, ci = summary_ci95([r["ranking"]["metrics"][str(m)] for r in runs])
        out["metrics"][str(m)] = {"mean": mean, "ci95": ci}
    return out


def _ranking_line(model: str, dataset: str, over: str, summary: dict[str, Any]) -> str:
    parts = [
        f"{name} {v['mean']:.4f} +- {'n/a' if v['ci95'] is None else format(v['ci95'], '.4f')}"
        for name, v in summary["metrics"].items()
    ]
    return (
        f"{model} on {dataset}, {over}, full ranking (relevance >= "
        f"{summary['relevance']:g}, train and validation items excluded): "
        + "; ".join(parts)
        + " (95% CI)"
    )
