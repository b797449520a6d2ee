"""GLocal-K (``glocal-k``): the cost of one round of each stage, and the run it implies.

The measurements themselves run through the protocol (docs/experiments.md, "GLocal-K"):

    # ML-100k u1, the authors' ML-100k settings, lambda fixed (one fit + the retrain)
    autorec evaluate --dataset ml-100k --split official:u1 --model glocal-k --threads 1 \
        --lambda 40 --set kernel_lam=0.012 --set pretrain_iters=5 --set finetune_iters=5 \
        --set pretrain_epochs=30 --set finetune_epochs=60 --set dot_scale=1 --no-refine
    # ML-1M, the paper protocol, 5 seeds (defaults: the authors' ML-1M settings)
    autorec evaluate --dataset ml-1m --model glocal-k --runs 5 --threads 1 --lambda 140 \
        --no-refine --json glocal-ml-1m.json

This script times one pre-training round and one fine-tuning round on a data set's training
split (no validation, so each stage runs exactly one round) and prints the worst case of a
protocol run: every round of both stages up to the caps, for the validation fit and again for
the retrain (early stopping usually ends sooner):

    python experiments/glocal.py --dataset ml-1m --threads 1
    python experiments/glocal.py --dataset ml-100k --threads 1 --set pretrain_iters=5 \
        --set finetune_iters=5 --set pretrain_epochs=30 --set finetune_epochs=60

Data: ``--data-dir``, else ``$AUTOREC_DATA_DIR``, else ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import torch

from autorec.data import load_dataset, paper_split
from autorec.models import make_model, model_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE (JSON value)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or "../shared/data"
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    split = paper_split(load_dataset(args.dataset, data_dir=data_dir).ratings, seed=args.seed)
    config = model_config("glocal-k", **overrides)
    model = make_model(
        "glocal-k", **{**overrides, "seed": args.seed, "pretrain_epochs": 1, "finetune_epochs": 1}
    )
    started = time.perf_counter()
    model.fit(split.train)
    total = time.perf_counter() - started
    pre, fine = model.history.epoch_seconds
    rounds = config.pretrain_epochs * pre + config.finetune_epochs * fine
    print(
        f"glocal-k on {args.dataset} ({split.train.n_ratings:,} training ratings, "
        f"{torch.get_num_threads()} torch threads): pre-training round "
        f"({config.pretrain_iters} L-BFGS iterations) {pre:.1f} s, fine-tuning round "
        f"({config.finetune_iters} iterations) {fine:.1f} s, whole probe {total:.1f} s; "
        f"a protocol run up to the caps ({config.pretrain_epochs} + {config.finetune_epochs} "
        f"rounds, fit + retrain, one lambda) about {2 * rounds / 60:.0f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
