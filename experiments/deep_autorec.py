"""Deep AutoRec (500-250-500) and U-AutoRec k = 500 against the paper (issue 18): one attempt
per process, on one split, chosen on validation, the test set scored once for the report.

    # an AutoRec config as given (any AutoRecConfig field by --set, a JSON value)
    python experiments/deep_autorec.py fit --threads 1 --set 'hidden=[500,250,500]' \
        --set lam=100 --set 'optimizer="lbfgs"' --set n_epochs=300 --out deep-lbfgs.json
    # greedy layer-wise pre-training, then the stack fine-tuned (see below)
    python experiments/deep_autorec.py pretrain --threads 1 --set lam=100 --out deep-pre.json

Data: ML-1M (``--dataset``), the paper's random 90/10 split with seed ``--seed`` (default 0)
and its validation (10% of train, same seed): :func:`autorec.data.paper_split`. Each attempt
fits on train, early-stops on validation (``patience``), keeps the validation-best weights and
scores the test set once with them (no retrain on train + validation unless ``--retrain``: the
figures compare attempts, not the protocol). Data: ``--data-dir``, else ``$AUTOREC_DATA_DIR``,
else ``../shared/data``.

``pretrain`` is ``fit`` with the model's own option ``pretrain="layerwise"``
(:mod:`autorec.models.pretrain`: a one-layer I-AutoRec with k1 units, lambda ``--pre-lam``,
early-stopped on validation; a dense autoencoder on its item codes, ``--pre-epochs`` RProp
epochs with lambda ``--pre-lam2``; the stack fine-tuned with the config given by ``--set``) and
hidden (500, 250, 500) unless ``--set`` says otherwise. ``autorec evaluate --set
pretrain=layerwise`` runs the same model under the protocol.

Writes one JSON (``--out``) with the config, validation RMSE, best epoch, test RMSE, the
validation curve, the pre-training stages' record and the seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from autorec.atomic import atomic_write_json
from autorec.data import load_dataset, paper_split
from autorec.data.ratings import Ratings
from autorec.data.split import Split
from autorec.evaluation import evaluate
from autorec.models.autorec import AutoRec, AutoRecConfig

log = logging.getLogger("deep_autorec")


def _report(model: AutoRec, test: Ratings, seconds: float) -> dict[str, Any]:
    h = model.history
    best = h.best_epoch
    return {
        "val_rmse": h.val_rmse[best - 1] if h.val_rmse else None,
        "best_epoch": best,
        "epochs_run": h.n_epochs,
        "test_rmse": evaluate(model, test)["rmse"],
        "seconds": seconds,
        "val_curve": h.val_rmse,
        "pretrained": model.pretrained,
    }


def run(cfg: AutoRecConfig, split: Split, retrain: bool) -> dict[str, Any]:
    """Fit ``cfg`` on ``split.train``, early-stopped on ``split.val``, and score the test set:
    ``{"final": report}``; with ``retrain`` also ``"retrain"``: the protocol's refit on train +
    validation (Sedhain et al. 2015, Sec. 3) for the epochs validation chose, every stage's
    (``AutoRec.retrain_overrides`` hands over the pre-training's)."""
    assert split.val is not None
    started = time.perf_counter()
    model = AutoRec(cfg).fit(split.train, split.val)
    record: dict[str, Any] = {"final": _report(model, split.test, time.perf_counter() - started)}
    log.info("final: %s", {k: v for k, v in record["final"].items() if k != "val_curve"})
    if retrain:
        started = time.perf_counter()
        fixed = cfg.replace(n_epochs=model.history.best_epoch, **model.retrain_overrides())
        again = AutoRec(fixed).fit(split.train.merge(split.val))
        record["retrain"] = _report(again, split.test, time.perf_counter() - started)
        record["retrain"]["config"] = fixed.to_dict()
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("attempt", choices=("fit", "pretrain"))
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an AutoRecConfig field (JSON value); pretrain: of the fine-tuned deep net",
    )
    defaults = AutoRecConfig()
    p.add_argument(
        "--pre-lam", type=float, default=defaults.pretrain_lam, help="pretrain: step 1's lambda"
    )
    p.add_argument(
        "--pre-lam2",
        type=float,
        default=defaults.pretrain_middle_lam,
        help="pretrain: step 2's lambda",
    )
    p.add_argument(
        "--pre-epochs",
        type=int,
        default=defaults.pretrain_middle_epochs,
        help="pretrain: step 2's epochs",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="also retrain on train + validation for the epochs validation chose (every stage)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or "../shared/data"
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    overrides.setdefault("ranking_head", False)  # rating RMSE only: the head changes none of it
    if args.attempt == "pretrain":
        overrides.setdefault("hidden", [500, 250, 500])
        overrides.setdefault("pretrain", "layerwise")
        overrides.setdefault("pretrain_lam", args.pre_lam)
        overrides.setdefault("pretrain_middle_lam", args.pre_lam2)
        overrides.setdefault("pretrain_middle_epochs", args.pre_epochs)
    cfg = AutoRecConfig(seed=args.seed, **overrides)
    split = paper_split(load_dataset(args.dataset, data_dir=data_dir).ratings, seed=args.seed)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "attempt": args.attempt,
        "dataset": args.dataset,
        "seed": args.seed,
        "config": cfg.to_dict(),
        "machine": f"{platform.node()}, {torch.get_num_threads()} torch threads, shared",
        **run(cfg, split, args.retrain),
    }
    record["seconds"] = time.perf_counter() - started
    final = record["final"]
    if "retrain" in record:
        print(f"retrained: test RMSE {record['retrain']['test_rmse']:.4f}")
    print(
        f"{args.attempt}: validation RMSE {final['val_rmse']:.4f} at epoch {final['best_epoch']} "
        f"of {final['epochs_run']}, test RMSE {final['test_rmse']:.4f}, {record['seconds']:.0f} s",
        flush=True,
    )
    atomic_write_json(Path(args.out), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
