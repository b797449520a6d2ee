"""Speed and memory of full-ranking evaluation on real ML-1M (prints one JSON object).

    python benchmarks/bench_ranking.py             # I-AutoRec (k = 500, 3 epochs), pop, EASE
    python benchmarks/bench_ranking.py --epochs 10 --threads 2

``load_dataset("ml-1m")`` (``$AUTOREC_DATA_DIR`` or ``../shared/data``), ``paper_split(seed=0)``.
For each model:

* ``fit_seconds``: fitting on train (I-AutoRec: ``--epochs`` Rprop epochs with the paper's
  k = 500 hidden units and lambda = 300, validation early stopping unused at this length: the
  scoring cost does not depend on how well the model is trained);
* ``all_pairs_seconds``: :func:`autorec.ranking.rank_users` for every one of the 6,040 users:
  all 6,040 x 3,706 = 22.4 M pairs scored, train and validation items excluded, top 20 kept;
* ``evaluate_seconds``: :func:`autorec.ranking.evaluate_ranking` with every metric at 10 and 20
  (the users with a relevant test item);
* ``ndcg@10`` and ``recall_trunc@10`` of that evaluation, relevance >= 4.

I-AutoRec is measured through its dense ``AutoRec._score_block`` (``codes @ W[users]^T +
b[users]``, one matrix product per block of users); the benchmark checks that it gives
``_score``'s numbers on every known pair of 300 random users. ``--pairwise`` also times the
base class's pair route (``_score`` on 22.4 M gathered pairs).

``peak_rss_mib`` is the process's peak resident set size at the end (all models, the data, the
I-AutoRec training included), ``block_users`` the users per scored block (64 MiB bound).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_model  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=3, help="I-AutoRec Rprop epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--pairwise", action="store_true", help="also time I-AutoRec through _score pairs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from autorec.data import load_dataset, paper_split
    from autorec.models.autorec import AutoRec, AutoRecConfig
    from autorec.models.base import Recommender
    from autorec.models.ease import Ease
    from autorec.models.popularity import Popularity
    from autorec.ranking import block_size, evaluate_ranking, rank_users, score_block

    data_dir = _data_dir()
    if not (data_dir / "ml-1m" / "ratings.dat").is_file():
        print(json.dumps({"skipped": f"no ml-1m/ratings.dat under {data_dir}"}))
        return
    split = paper_split(load_dataset("ml-1m", data_dir=data_dir).ratings, seed=0)
    train, val, test = split.train, split.val, split.test
    models = {
        "i-autorec": lambda: AutoRec(AutoRecConfig(n_epochs=args.epochs, seed=0)),
        "pop": Popularity,
        # lambda = 1000: the value validation NDCG@10 picks on this split from 50..5000.
        "ease": lambda: Ease(lam=1000.0),
    }
    out: dict[str, object] = {
        "machine": {
            "cpu": cpu_model(),
            "threads": args.threads,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "n_users": train.n_users,
        "n_items": train.n_items,
        "block_users": block_size(train.n_items),
    }
    all_users = np.arange(train.n_users)
    for name, make in models.items():
        started = time.perf_counter()
        model = make().fit(train, val)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        top = rank_users(model, all_users, 20, exclude=[train, val])
        all_pairs = time.perf_counter() - started
        result = evaluate_ranking(model, train, test, val=val)
        extra: dict[str, object] = {}
        if name == "i-autorec":
            # The dense route against _score on every known pair of 300 random users.
            users = np.random.default_rng(0).choice(train.n_users, 300, replace=False)
            block = score_block(model, users)  # (300, n_items)
            pair_users = np.repeat(users, train.n_items)
            pair_items = np.tile(np.arange(train.n_items), len(users))
            known = model.known_mask(pair_users, pair_items)
            direct = model._score(pair_users[known], pair_items[known])
            extra["block_vs_score_max_abs_diff"] = float(
                np.abs(block.reshape(-1)[known] - direct).max()
            )
            if args.pairwise:
                # The base class's pair route: _rank_score (= _score) on the flattened grid.
                model._score_block = functools.partial(Recommender._score_block, model)
                started = time.perf_counter()
                rank_users(model, all_users, 20, exclude=[train, val])
                del model._score_block
                extra["all_pairs_seconds_via_score"] = round(time.perf_counter() - started, 2)
        out[name] = {
            **extra,
            "fit_seconds": round(fit_seconds, 2),
            "all_pairs_seconds": round(all_pairs, 2),
            "evaluate_seconds": round(result.seconds, 2),
            "n_users_evaluated": result.n_users,
            "n_users_skipped": result.n_users_skipped,
            "ndcg@10": round(result.metrics["ndcg@10"], 4),
            "recall@10": round(result.metrics["recall@10"], 4),
            "recall_trunc@10": round(result.metrics["recall_trunc@10"], 4),
            "lists": list(top.shape),
        }
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
