"""Strong generalisation: new users folded in without retraining, against a full retrain.

    python experiments/fold_in.py                        # i-autorec and bias (about 10 min)
    python experiments/fold_in.py --models i-autorec,bias,biased-mf,u-autorec

Protocol (issue 15, section 3), on ML-1M (``$AUTOREC_DATA_DIR`` or ``../shared/data``):

* 10% of the users are held out entirely (seeded); each held-out user's ratings are cut at
  random into 80% "given" and 20% "hidden".
* **fold-in**: the model is trained on the other 90% of the users only; each held-out user is
  folded in from their given 80% (:meth:`Recommender.fold_in`), timed one user at a time on
  one CPU thread, and scored on their hidden 20%.
* **retrain**: the same model (same hyperparameters) trained on the other users plus every
  held-out user's given 80%, scored on the same hidden 20%.
* Metrics on the hidden ratings: RMSE of the predicted ratings, and NDCG@10 with binary
  relevance (hidden rating >= 4) over every item but the user's given ones (users with a
  relevant hidden item).
* Support shrinkage (``recommend_new_user(..., support_shrinkage=s)``): s is chosen on the
  NDCG@10 of one half of the held-out users (the *validation* half, seeded) and reported, with
  the raw ranking, on the other half (*test*). The RMSE and NDCG tables are over the test half.

Hyperparameters are the validation choices of ``docs/results/ml-1m/cells/<model>/seed0.json``
(no grid search here): I-AutoRec lambda = 300 for 90 epochs, U-AutoRec lambda = 300 for 64,
bias reg_user = 5 and reg_item = 1, biased MF reg = 0.07 for 10 sweeps. Writes
``docs/results/fold-in.md`` and ``docs/results/fold-in.json``.
"""

from __future__ import annotations

import os

# One thread for numpy's BLAS too (biased MF's and LLORMA's solves): on a shared machine, idle
# BLAS threads spinning for a core multiplied biased MF's CPU time per user by about 8.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from autorec.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from autorec.data import Ratings, load_dataset  # noqa: E402
from autorec.models import make_model  # noqa: E402

HYPERPARAMETERS = {
    "i-autorec": {"lam": 300.0, "n_epochs": 90},
    "u-autorec": {"lam": 300.0, "n_epochs": 64},
    "bias": {"reg_user": 5.0, "reg_item": 1.0},
    "biased-mf": {"reg": 0.07, "n_epochs": 10},
}
SHRINKAGE_GRID = (0.0, 3.0, 10.0, 30.0, 100.0, 300.0)
RELEVANCE = 4.0
K = 10


def holdout(ratings: Ratings, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(held-out user indices, mask of given ratings, mask of hidden ratings) with 10% of the
    users held out and each one's ratings cut 80/20 at random."""
    rng = np.random.default_rng(seed)
    n_held = ratings.n_users // 10
    held = np.sort(rng.choice(ratings.n_users, n_held, replace=False))
    is_held = np.zeros(ratings.n_users, dtype=bool)
    is_held[held] = True
    on_held = is_held[ratings.user_idx]
    given = np.zeros(ratings.n_ratings, dtype=bool)
    hidden = np.zeros(ratings.n_ratings, dtype=bool)
    positions = np.flatnonzero(on_held)
    by_user = positions[np.argsort(ratings.user_idx[positions], kind="stable")]
    bounds = np.searchsorted(ratings.user_idx[by_user], held)
    for start, stop in zip(bounds, [*bounds[1:], len(by_user)], strict=True):
        mine = rng.permutation(by_user[start:stop])
        n_given = int(round(0.8 * len(mine)))
        given[mine[:n_given]] = True
        hidden[mine[n_given:]] = True
    return held, given, hidden


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = K) -> float:
    """Binary NDCG@k of one ranking (``scores`` (n_items,), -inf = excluded)."""
    top = np.lexsort((np.arange(len(scores)), -scores))[:k]  # ties: lower index first
    gains = np.isin(top, relevant) / np.log2(np.arange(2, k + 2))
    ideal = (1.0 / np.log2(np.arange(2, min(k, len(relevant)) + 2))).sum()
    return float(gains.sum() / ideal)


def per_user(ratings: Ratings, mask: np.ndarray, users: np.ndarray) -> dict[int, tuple]:
    """user -> (item indices, ratings) of the ratings at ``mask``."""
    out = {}
    sub = np.flatnonzero(mask)
    order = sub[np.argsort(ratings.user_idx[sub], kind="stable")]
    bounds = np.searchsorted(ratings.user_idx[order], users)
    for u, start, stop in zip(users, bounds, [*bounds[1:], len(order)], strict=True):
        at = order[start:stop]
        out[int(u)] = (ratings.item_idx[at], ratings.rating[at].astype(np.float64))
    return out


def evaluate(
    name: str, ratings: Ratings, held: np.ndarray, given: np.ndarray, hidden: np.ndarray, seed: int
) -> dict:
    log = logging.getLogger("fold_in")
    params = HYPERPARAMETERS[name]
    others = ~(given | hidden)
    given_by_user = per_user(ratings, given, held)
    hidden_by_user = per_user(ratings, hidden, held)
    halves = np.random.default_rng(seed + 1).permutation(held)
    val_users = set(halves[: len(held) // 2].tolist())

    t0 = time.perf_counter()
    base = make_model(name, seed=seed, **params).fit(ratings.subset(others))
    fit_seconds = time.perf_counter() - t0
    log.info("%s: trained without the held-out users in %.0f s", name, fit_seconds)
    t0 = time.perf_counter()
    full = make_model(name, seed=seed, **params).fit(ratings.subset(others | given))
    retrain_seconds = time.perf_counter() - t0
    log.info("%s: retrained with their 80%% in %.0f s", name, retrain_seconds)

    support = base.item_support()
    ids = ratings.items.ids
    rows = {"fold-in": [], "retrain": []}  # per user: (is_val, sse, n, {s: ndcg})
    seconds, cpu_seconds = [], []
    # The first call builds caches (AutoRec's item codes): not part of a user's time.
    first = given_by_user[int(held[0])]
    base.fold_in((ids[first[0]].tolist(), first[1].tolist()))
    for u in held.tolist():
        items, values = given_by_user[u]
        h_items, h_values = hidden_by_user[u]
        if not len(h_items):
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        folded = base.fold_in((ids[items].tolist(), values.tolist()))
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        relevant = h_items[h_values >= RELEVANCE]
        for kind in rows:
            if kind == "fold-in":
                pred = folded.predictions[h_items].astype(np.float64)
                raw, user_bias = folded.scores.copy(), folded.user_bias
            else:
                pred = full.predict(np.full(len(h_items), u), h_items).astype(np.float64)
                raw = full._score_block(np.array([u]))[0]
                user_bias = float(full._user_bias[u])
            ndcg = {}
            if len(relevant):
                for s in SHRINKAGE_GRID:
                    model = base if kind == "fold-in" else full
                    scores = raw if s == 0 else model.shrink_by_support(raw, user_bias, s)
                    scores = scores.copy()
                    scores[items] = -np.inf
                    ndcg[s] = ndcg_at_k(scores, relevant)
            sse = float(((pred - h_values) ** 2).sum())
            rows[kind].append((u in val_users, sse, len(h_values), ndcg))

    def summary(kind: str, val: bool) -> dict:
        part = [r for r in rows[kind] if r[0] == val]
        sse, n = sum(r[1] for r in part), sum(r[2] for r in part)
        ranked = [r[3] for r in part if r[3]]
        return {
            "n_users": len(part),
            "n_hidden_ratings": n,
            "rmse": math.sqrt(sse / n),
            "n_ranked_users": len(ranked),
            "ndcg@10": {str(s): float(np.mean([d[s] for d in ranked])) for s in SHRINKAGE_GRID},
        }

    result = {
        "model": name,
        "hyperparameters": params,
        "fit_seconds": fit_seconds,
        "retrain_seconds": retrain_seconds,
        "fold_in_ms_mean": 1000 * float(np.mean(seconds)),
        "fold_in_ms_median": 1000 * float(np.median(seconds)),
        "fold_in_ms_p95": 1000 * float(np.percentile(seconds, 95)),
        "fold_in_cpu_ms_mean": 1000 * float(np.mean(cpu_seconds)),
        "fold_in_cpu_ms_p95": 1000 * float(np.percentile(cpu_seconds, 95)),
        "load_average_1min": os.getloadavg()[0],
        "validation": {kind: summary(kind, True) for kind in rows},
        "test": {kind: summary(kind, False) for kind in rows},
        "median_item_support": float(np.median(support)),
    }
    for kind in rows:
        by_s = result["validation"][kind]["ndcg@10"]
        result[f"chosen_shrinkage_{kind}"] = float(max(SHRINKAGE_GRID, key=lambda s: by_s[str(s)]))
    log.info("%s: %s", name, json.dumps(result["test"]))
    return result


def report(results: list[dict], meta: dict) -> str:
    lines = [
        f"# New users without retraining (strong generalisation, {meta['dataset']})",
        "",
        f"Made by `{meta['command']}` ({meta['when']}, {meta['machine']}, one thread).",
        "",
        f"{meta['n_held']} of {meta['n_users']} users (10%, seed {meta['seed']}) held out "
        "entirely; each is folded in from a random 80% of their ratings and scored on the other "
        "20%. *Retrain*: the same model and hyperparameters trained with those users' 80%. "
        "NDCG@10: binary relevance (rating >= 4), every item but the user's given ones ranked. "
        "The shrinkage s is chosen on the NDCG@10 of a validation half of the held-out users; "
        "the tables are over the other (test) half.",
        "",
        "| model | fold-in RMSE | retrain RMSE | gap | fold-in NDCG@10 (raw) | "
        "retrain NDCG@10 (raw) | ms per user, wall (mean / p95) | CPU ms (mean / p95) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f, t = r["test"]["fold-in"], r["test"]["retrain"]
        lines.append(
            f"| {r['model']} | {f['rmse']:.4f} | {t['rmse']:.4f} | {f['rmse'] - t['rmse']:+.4f} | "
            f"{f['ndcg@10']['0.0']:.4f} | {t['ndcg@10']['0.0']:.4f} | "
            f"{r['fold_in_ms_mean']:.2f} / {r['fold_in_ms_p95']:.2f} | "
            f"{r['fold_in_cpu_ms_mean']:.2f} / {r['fold_in_cpu_ms_p95']:.2f} |"
        )
    lines += [
        "",
        "## Ranking: shrinking toward the bias baseline by item support",
        "",
        "`recommend_new_user(..., support_shrinkage=s)` / `autorec recommend --ratings ... "
        "--support-shrinkage S` ranks on `b_ui + n_i / (n_i + s) (r_hat_ui - b_ui)`, "
        "`b_ui = mu + b_u + b_i`, `n_i` the item's training ratings. NDCG@10 by s "
        "(validation half / test half):",
        "",
        "| model | users | " + " | ".join(f"s = {s:g}" for s in SHRINKAGE_GRID) + " | chosen s |",
        "|---|---|" + "---|" * (len(SHRINKAGE_GRID) + 1),
    ]
    for r in results:
        for kind in ("fold-in", "retrain"):
            v, t = r["validation"][kind]["ndcg@10"], r["test"][kind]["ndcg@10"]
            cells = " | ".join(f"{v[str(s)]:.4f} / {t[str(s)]:.4f}" for s in SHRINKAGE_GRID)
            chosen = r[f"chosen_shrinkage_{kind}"]
            lines.append(f"| {r['model']} | {kind} | {cells} | {chosen:g} |")
    lines += [
        "",
        "Training times (s): "
        + ", ".join(
            f"{r['model']} {r['fit_seconds']:.0f} (retrain {r['retrain_seconds']:.0f})"
            for r in results
        )
        + ". Full figures: `docs/results/fold-in.json`.",
        "",
        "Times are one user at a time on one thread, torch's and BLAS's (the first call, which "
        "builds the model's caches, excluded). The machine was shared: the 1-minute load "
        "average at the end of each model's loop was "
        + ", ".join(f"{r['model']} {r['load_average_1min']:.1f}" for r in results)
        + " on 2 cores, so wall times include waiting for a core; CPU time is the process's "
        "own.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="i-autorec,bias")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="ml-1m", help="ml-1m (the report) or ml-100k (a smoke run)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="docs/results/fold-in.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("autorec").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    data_dir = args.data_dir
    if data_dir is None and Path("../shared/data").is_dir():
        data_dir = "../shared/data"
    ratings = load_dataset(args.dataset, data_dir=data_dir).ratings
    held, given, hidden = holdout(ratings, args.seed)
    results = [
        evaluate(name, ratings, held, given, hidden, args.seed) for name in args.models.split(",")
    ]
    meta = {
        "command": "python experiments/fold_in.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "when": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}",
        "seed": args.seed,
        "dataset": args.dataset,
        "n_users": ratings.n_users,
        "n_held": len(held),
    }
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), {"meta": meta, "results": results})
    atomic_write_text(out, report(results, meta))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
