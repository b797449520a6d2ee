"""Issue 16, part 2: the adaptive search (:mod:`autorec.search`) against the fixed grid.

For each data set: I-AutoRec and BiasedMF with the grid as it was (``search=None``, what
``autorec reproduce`` still runs) and with the default :class:`~autorec.search.SearchPolicy`
(what ``autorec evaluate`` runs now), and the tuned bias baseline; validation and test RMSE,
the chosen hyperparameters, the number of fits and the seconds of each. One seed (0).

Data sets: synthetic sets with the shapes of the issue (3,000 x 3,000 with 137k ratings on
1..5; 0.5..4 and 0.5..5 half stars; 1..100), a low-noise set (small lambda wins) and a noisy one
(large lambda wins), and ML-100k (the paper split of seed 0, and the official u1 fold with 10% of
its train as validation) when it is found under ``$AUTOREC_DATA_DIR`` or ``../shared/data``.

    python experiments/adaptive_grid.py --out adaptive_grid.json            # everything
    python experiments/adaptive_grid.py --sets synth-3k,ml-100k-u1 --models i-autorec
    python experiments/adaptive_grid.py --models i-autorec --baseline bias --searches adaptive \
        --out resid.json

``--baseline bias`` runs I-AutoRec on the residuals of the bias baseline (``baseline="bias"``,
:mod:`autorec.models.autorec`); its rows are keyed ``i-autorec+bias``, so both kinds can share
one ``--out`` file.

Everything on one torch thread. About 40 minutes on a quiet 2-core machine (the 3,000 x 3,000 set
and ML-100k dominate); each (set, model, search) result is appended to ``--out`` as it finishes
and skipped when the script is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autorec.atomic import atomic_write_json
from autorec.data import load_dataset, official_split, paper_split, synthetic_ratings
from autorec.data.split import Split, with_validation
from autorec.models import get_model_class
from autorec.protocol import run_protocol
from autorec.search import SearchPolicy


def _synthetic(n_users: int, n_items: int, n_ratings: int, **kw: Any) -> Callable[[], Split]:
    return lambda: paper_split(synthetic_ratings(n_users, n_items, n_ratings, seed=1, **kw), seed=0)


def _data_dir() -> Path:
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("AUTOREC_DATA_DIR", root.parent / "shared" / "data"))


def _ml100k(fold: str | None) -> Callable[[], Split]:
    def make() -> Split:
        full = load_dataset("ml-100k", data_dir=_data_dir())
        if fold is None:
            return paper_split(full.ratings, seed=0)
        split = official_split("ml-100k", fold, data_dir=_data_dir(), full=full.ratings)
        return with_validation(split, seed=0)

    return make


def _ml100k_subsample(fraction: float) -> Callable[[], Split]:
    """A random ``fraction`` of ML-100k's ratings (drawn with seed 0), then the paper split."""

    def make() -> Split:
        full = load_dataset("ml-100k", data_dir=_data_dir()).ratings
        keep = np.random.default_rng(0).random(full.n_ratings) < fraction
        return paper_split(full.subset(keep), seed=0)

    return make


SETS: dict[str, Callable[[], Split]] = {
    # The set where I-AutoRec lost to the bias baseline: 3,000 x 3,000, 137k ratings.
    "synth-3k": _synthetic(3000, 3000, 137_000),
    "synth-0.5-4": _synthetic(
        2000, 1500, 60_000, rating_scale=(0.5, 4.0), rating_step=0.5, noise=0.6
    ),
    "synth-0.5-5": _synthetic(
        1500, 2000, 40_000, rating_scale=(0.5, 5.0), rating_step=0.5, noise=0.5
    ),
    "synth-1-100": _synthetic(1000, 1000, 20_000, rating_scale=(1.0, 100.0), noise=0.5),
    # Far from ML-1M's lambda = 300: little noise wants a small lambda, much noise a large one.
    "synth-lownoise": _synthetic(1000, 800, 50_000, noise=0.05, rating_step=None),
    "synth-noisy": _synthetic(1000, 800, 50_000, noise=1.5),
    "ml-100k-seed0": _ml100k(None),
    "ml-100k-u1": _ml100k("u1"),
    # The "ML-100k subsamples": a quarter of its ratings (about 25k), sparser per user.
    "ml-100k-sub25": _ml100k_subsample(0.25),
}

MODELS = ("i-autorec", "biased-mf")


def _run(
    split: Split, model: str, search: SearchPolicy | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    grid = dict(get_model_class(model).tuning_grid)
    started = time.perf_counter()
    record = run_protocol(
        split.train, model, seed=0, overrides=overrides, grid=grid, split=split, search=search
    ).record
    return {
        "val_rmse": record["val_rmse"],
        "test_rmse": record["test_rmse"],
        "chosen": record["hyperparameters"],
        "n_fits": len(record["candidates"]),
        "seconds": time.perf_counter() - started,
        "search": record.get("search"),
        "simpler_model_wins": record.get("simpler_model_wins"),
        "candidates": record["candidates"],
    }


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table, one row per (set, model, search)."""
    lines = [
        "| set | model | search | val RMSE | test RMSE | chosen | fits | s | simpler wins |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        name, model, how = key.split("/")
        chosen = ", ".join(f"{k}={v}" for k, v in r["chosen"].items() if k != "n_epochs")
        wins = r["simpler_model_wins"]
        lines.append(
            f"| {name} | {model} | {how} | {r['val_rmse']:.4f} | {r['test_rmse']:.4f} | "
            f"{chosen} | {r['n_fits']} | {r['seconds']:.0f} | "
            f"{'-' if wins is None else format(wins['val_rmse'], '.4f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS)
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=Path("adaptive_grid.json"))
    parser.add_argument("--table", action="store_true", help="print --out as a table and exit")
    parser.add_argument(
        "--baseline",
        choices=("none", "bias"),
        default="none",
        help="AutoRec's baseline option: bias fits the residuals of the bias baseline",
    )
    parser.add_argument(
        "--searches", default="grid,adaptive", help="which searches to run: grid, adaptive or both"
    )
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.sets.split(","):
        split = SETS[name]()
        jobs = [("bias", "grid", None)]
        for model in args.models.split(","):
            searches = {"grid": None, "adaptive": SearchPolicy()}
            jobs += [(model, how, searches[how]) for how in args.searches.split(",")]
        for model, how, search in jobs:
            resid = args.baseline != "none" and model.endswith("autorec")
            overrides = {"baseline": args.baseline} if resid else {}
            key = f"{name}/{model}+{args.baseline}/{how}" if resid else f"{name}/{model}/{how}"
            if key in results:
                continue
            results[key] = {
                "n_train": split.train.n_ratings,
                **_run(split, model, search, overrides),
            }
            atomic_write_json(args.out, results)
            r = results[key]
            print(
                f"{key}: val {r['val_rmse']:.4f} test {r['test_rmse']:.4f} "
                f"chosen {json.dumps(r['chosen'])} fits {r['n_fits']} {r['seconds']:.0f} s",
                flush=True,
            )
    print(table(results))


if __name__ == "__main__":
    main()
