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
    dataset_stem,
    model_overrides,
)
from autorec.cli.outputs import (
    JSON_HELP,
    check_model_dir,
    check_output_file,
    is_main_process,
    summary_json,
    write_json,
)
from autorec.cli.progress import end_phase, expect_epochs
from autorec.errors import ConfigError

EXAMPLES = """\
  autorec train --dataset ml-1m --model i-autorec --download
  autorec train --dataset ml-1m --model i-autorec --seed 0 --lambda 300 --json run.json
  autorec train --dataset ml-1m --model u-autorec --optimizer adam --epochs 200
  autorec train --dataset ml-1m --model i-autorec --hidden 500,250,500     # deep AutoRec
  autorec train --dataset my.csv --sep , --columns user,item,rating --header --model bias
  autorec train --dataset ml-1m --model i-autorec --no-test --output runs/all --overwrite
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "train",
        help="train one model on one paper split (or on all ratings)",
        description="Train one model on the paper split of seed S (90% train of which 10% is "
        "validation, 10% test): early-stop on validation, retrain on train + validation for the "
        "epochs validation chose, score the test set once, and save the model folder.",
        examples=EXAMPLES + "\n" + JSON_HELP,
    )
    add_dataset_arguments(p)
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
    p.set_defaults(func=run, distributed=True)


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


def run(args: argparse.Namespace) -> int:
    from autorec.models import make_model
    from autorec.protocol import run_protocol

    # Everything that can be refused is refused before the data is loaded.
    overrides = model_overrides(args)
    out_dir = Path(args.output or f"runs/{dataset_stem(args.dataset)}-{args.model}-{args.seed}")
    # The default folder belongs to this command (re-running the main job replaces its model and
    # says so); a folder the user named is replaced only with --overwrite.
    replacing = check_model_dir(out_dir, "--output", args.overwrite or args.output is None)
    check_output_file(args.json, "--json")
    expect_epochs(getattr(make_model(args.model, **overrides).config, "n_epochs", None))

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
        split = checked_split(
            dataset, args.seed, "use a larger data set, or --no-test to train on all ratings"
        )
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
            split=split,
        )
        model, record = result.model, result.record
        record["hyperparameters"] = {**overrides, **record["hyperparameters"]}
        seconds = record["train_seconds"]
    end_phase()
    if not is_main_process():
        return 0
    model.save(out_dir, overwrite=replacing)
    write_json(args.json, summary_json(dataset.name, args.model, model.config.to_dict(), [record]))
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
    print(
        f"model saved to {out_dir}" + (" (replaced the model that was there)" if replacing else "")
    )
    return 0
