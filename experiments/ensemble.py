"""Ensembles (issue 18): the ``ensemble`` model through the evaluation protocol, with each member's
own test RMSE beside it for reference.

    python experiments/ensemble.py --dataset ml-100k --split u1            # 2 min (shared cores)
    python experiments/ensemble.py --dataset ml-1m --seeds 0,1,2,3,4 \\
        --members i-autorec,u-autorec:hidden=100,llorma,biased-mf   # docs/experiments.md

Data: ``$AUTOREC_DATA_DIR`` or ``../shared/data``. ``--split u1`` uses ML-100k's official fold
u1 with 10% of its train held out as validation (seeded, as ``autorec evaluate --split
official:u1`` does); without it each seed is the paper's random 90/10 split (Sec. 3). The
protocol (:func:`autorec.protocol.run_protocol`): members fitted on train, early-stopped on
validation, blend weights fitted on validation, then the members refitted on train + validation
for their chosen epochs with the validation-stage weights; the test set is scored once. The
members' test RMSEs are those of the retrained members inside the tested ensemble: they choose
nothing and are printed for comparison only.

Member hyperparameters are fixed by the specs: the default ones are the validation choices of
the ML-100k seed-0 cells (docs/results/ml-100k/cells/<model>/seed0.json: I-AutoRec and
U-AutoRec lambda = 100, biased MF reg = 0.1, item-kNN k = 40 with shrinkage 200, LLORMA's
defaults), never a test-set choice. Writes ``docs/results/ensemble-<dataset>[-<split>].json``
(``--out`` elsewhere) and prints one markdown row per run.
"""

from __future__ import annotations

import os

# One BLAS thread: biased MF's and LLORMA's small solves only spin extra threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from autorec.atomic import atomic_write_json  # noqa: E402
from autorec.data import load_dataset, official_split  # noqa: E402
from autorec.data.split import with_validation  # noqa: E402
from autorec.evaluation import evaluate, summary_ci95  # noqa: E402
from autorec.protocol import run_protocol  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ML100K_MEMBERS = (
    "i-autorec:lam=100",
    "u-autorec:hidden=100:lam=100",
    "biased-mf:reg=0.1",
    "llorma",
    "item-knn:k=40:shrinkage=200",
)
log = logging.getLogger("ensemble")


def _data_dir() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--split", default=None, help="an official fold (u1): else paper splits")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (validation draw)")
    parser.add_argument("--members", default=",".join(ML100K_MEMBERS))
    parser.add_argument("--blend", default="auto", choices=("auto", "ridge", "average"))
    parser.add_argument(
        "--blend-folds",
        type=int,
        default=1,
        help="1: weights on validation; K >= 2: on out-of-fold predictions of train + validation",
    )
    parser.add_argument("--fallback", default="bias", choices=("bias", "constant"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    data_dir = _data_dir()
    full = load_dataset(args.dataset, data_dir=data_dir).ratings
    members = tuple(m.strip() for m in args.members.split(","))
    overrides = {
        "members": members,
        "blend": args.blend,
        "fallback": args.fallback,
        "blend_folds": args.blend_folds,
    }
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        split = None
        if args.split:
            fold = official_split(args.dataset, args.split, data_dir=data_dir, full=full)
            split = with_validation(fold, seed=seed)
        started = time.perf_counter()
        result = run_protocol(full, "ensemble", seed=seed, overrides=overrides, split=split)
        seconds = time.perf_counter() - started
        model = result.model
        member_test = [evaluate(m, result.split.test)["rmse"] for m in model.members]
        record = {
            **result.record,
            "seconds": seconds,
            "members": list(members),
            "blend_weights": [float(w) for w in model.blend_weights],
            "member_epochs": list(model.member_epochs),
            "validation_blend": result.record["hyperparameters"],
            "member_test_rmse": member_test,
        }
        runs.append(record)
        weights = ", ".join(
            f"{spec} {w:+.3f}" for spec, w in zip(members, model.blend_weights[1:], strict=True)
        )
        print(
            f"| {args.dataset} {args.split or 'paper'} seed {seed} | {record['val_rmse']:.4f} | "
            f"{record['test_rmse']:.4f} | b {model.blend_weights[0]:+.3f}; {weights} | "
            f"{seconds:.0f} s |"
        )
        for spec, rmse in zip(members, member_test, strict=True):
            print(f"    member {spec}: test RMSE {rmse:.4f}")
    mean, ci = summary_ci95([r["test_rmse"] for r in runs])
    print(
        f"mean test RMSE {mean:.4f} +- {ci if ci is None else round(ci, 4)} over {len(runs)} run(s)"
    )
    stem = f"ensemble-{args.dataset}" + (f"-{args.split}" if args.split else "")
    out = args.out or REPO / "docs" / "results" / f"{stem}.json"
    atomic_write_json(
        out,
        {
            "dataset": args.dataset,
            "split": args.split or "paper",
            "overrides": {**overrides, "members": list(members)},
            "runs": runs,
            "test_rmse_mean": mean,
            "test_rmse_ci95": ci,
        },
        indent=1,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
