"""``autorec reproduce``: the paper's tables and figure into a resumable report folder."""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path
from typing import Any

from autorec.cli.options import (
    add_command,
    add_dataset_arguments,
    add_grid_run_arguments,
    dataset_from_args,
    dataset_stem,
    grid_run_options,
    positive_int,
)
from autorec.cli.outputs import check_output_dir

log = logging.getLogger("autorec")

EXAMPLES = """\
  autorec reproduce --quick                                          # ml-100k pipeline check
  autorec reproduce --dataset ml-1m --runs 5 --out docs/results/ml-1m
  autorec reproduce --dataset ml-1m --only table_1c --models llorma  # one table, one model
  autorec reproduce --dataset ml-1m --only beyond --out docs/results/ml-1m  # issue 18's models
  autorec reproduce --dataset ml-1m --out docs/results/ml-1m --report-only
"""


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


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "reproduce",
        help="re-run the paper's tables and figure; write report.md, results.json and figures",
        description="Run Table 1(a)-(c), Figure 2 and deep AutoRec with the paper's protocol "
        "and write report.md, results.json and PNG figures into the output folder. Every "
        "finished (setting, seed) cell is stored there, so an interrupted run resumes where it "
        "stopped when started again with the same options.",
        examples=EXAMPLES,
    )
    add_dataset_arguments(p, required=False, default_help=" (default ml-1m; ml-100k with --quick)")
    p.add_argument(
        "--runs", type=positive_int, metavar="R", help="seeds per cell (default 5; 2 with --quick)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default results/<dataset>[-quick])")
    p.add_argument(
        "--quick",
        action="store_true",
        help="pipeline check: 2 runs, <= 15 epochs, 3 sweep points, no tuning",
    )
    p.add_argument(
        "--only",
        type=_tables,
        metavar="TABLE[,TABLE]",
        help="table_1a, table_1b, table_1c, figure_2, deep (the paper's: the default) and/or "
        "beyond (later AutoRec-family models, issue 18; run only when named)",
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
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch")
    add_grid_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorec.protocol import run_protocol
    from autorec.reproduce import DEFAULT_TABLES, QUICK_RUNS, Plan, reproduce

    if args.dataset is None:
        args.dataset = "ml-100k" if args.quick else "ml-1m"
    runs = args.runs or (QUICK_RUNS if args.quick else 5)
    out_dir = Path(
        args.out or f"results/{dataset_stem(args.dataset)}{'-quick' if args.quick else ''}"
    )
    check_output_dir(out_dir, "--out")
    dataset = dataset_from_args(args)
    plan = Plan(
        dataset=dataset.name,
        tables=args.only or DEFAULT_TABLES,
        runs=runs,
        quick=args.quick,
        models=args.models,
    )
    command = " ".join(
        ["autorec reproduce", f"--dataset {args.dataset}", f"--runs {runs}", f"--out {out_dir}"]
        + (["--quick"] if args.quick else [])
        + ([f"--only {','.join(args.only)}"] if args.only else [])
        + ([f"--models {','.join(args.models)}"] if args.models else [])
        + (["--no-prune"] if args.no_prune else [])
        + ([f"--jobs {args.jobs}"] if args.jobs > 1 else [])
    )
    if not args.verbose:
        # Hundreds of fits: show the cells, not every epoch of every fit (-v shows them).
        for name in ("autorec.models", "autorec.protocol"):
            logging.getLogger(name).setLevel(logging.WARNING)
    log.info("reproducing %s on %s into %s", ", ".join(plan.tables), dataset.name, out_dir)
    outcome = reproduce(
        dataset.ratings,
        plan,
        out_dir,
        command=command,
        runner=functools.partial(run_protocol, **grid_run_options(args)),
        report_only=args.report_only,
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
