"""I-AutoRec with its ranking head against popularity and EASE on ML-1M (full ranking).

One seed per call (seeds can run as parallel processes), then a summary over the seeds::

    python experiments/ranking_autorec.py run --seed 0 --threads 1
    python experiments/ranking_autorec.py summary --seeds 0 1 2 3 4

Per seed s: ``paper_split(ml-1m, seed=s)`` (train / val / test); relevance >= 4; each user's
train and validation items are excluded from their lists (:func:`autorec.ranking
.evaluate_ranking`). Every choice is made on validation, none on test:

* ``pop``: nothing to choose;
* ``ease``: lambda from :data:`autorec.models.ease.LAMBDA_GRID` by validation NDCG@10
  (:func:`autorec.ranking.select_on_validation`);
* ``i-autorec (rating order)``: the default I-AutoRec (k = 500, lambda = 300, Rprop, early
  stopping on validation RMSE), ranked by its unclipped predicted rating;
* ``i-autorec + ranking head``: the same fitted rating model plus the head
  (``AutoRecConfig(ranking_head=True)``): epochs and beta chosen on validation NDCG@10 inside
  the fit; with ``--head-grid`` each listed head configuration is fitted and the one with the
  best validation NDCG@10 is kept. The head is fitted after, and independently of, the rating
  model (``AutoRec._fit`` does exactly this when the option is on), so the rating model is
  trained once per seed and its test RMSE is the plain I-AutoRec's by construction (the
  bit-identity is a unit test, tests/models/test_autorec_rank.py).

Writes ``<out>/seed<s>.json`` (atomically); ``summary`` writes ``<out>/summary.json`` with the
mean and 95% CI over the seeds (:func:`autorec.evaluation.summary_ci95`) and prints a table.

The default ``recommend`` (issue 14: the head on by default, the protocol with retrain) is
measured by ``autorec evaluate`` itself, one seed per call, then summarised::

    python experiments/ranking_autorec.py default --seed 0 --threads 1
    python experiments/ranking_autorec.py default-summary --seeds 0 1 2 3 4

(``default`` runs ``autorec evaluate --dataset ml-1m --model i-autorec --seed s --runs 1
--metrics rmse,ndcg@10,recall@10,recall_trunc@10 --json <out>/default-seed<s>.json``; options
after ``--extra`` are passed on, e.g. ``--extra --lambdas 300``.) The head's own settings are
swept on validation only by ``head-sweep`` (seconds and validation NDCG@10 per configuration)::

    python experiments/ranking_autorec.py head-sweep --seed 0 --threads 2 \\
        --rating-model /tmp/i-autorec-seed0 --configs "" "rank_hidden=100"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from autorec.atomic import atomic_write_json
from autorec.data import load_dataset, paper_split
from autorec.evaluation import rmse, summary_ci95
from autorec.models import autorec_rank
from autorec.models.autorec import AutoRec, AutoRecConfig
from autorec.models.ease import LAMBDA_GRID, Ease
from autorec.models.popularity import Popularity
from autorec.ranking import evaluate_ranking, select_on_validation

REPO = Path(__file__).resolve().parents[1]
METRICS = "ndcg@10,recall@10,recall_trunc@10,ndcg@20,recall@20"
DEFAULT_METRICS = "rmse,ndcg@10,recall@10,recall_trunc@10"
MODELS = ("pop", "ease", "i-autorec (rating order)", "i-autorec + ranking head")
log = logging.getLogger("ranking_autorec")


def _data_dir() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _parse_head(spec: str) -> dict[str, object]:
    """``"rank_lam=100,rank_hidden=200"`` -> keyword overrides of AutoRecConfig."""
    out: dict[str, object] = {}
    for part in filter(None, spec.split(",")):
        key, value = part.split("=")
        default = getattr(AutoRecConfig(), key)
        out[key] = value if isinstance(default, str) else type(default or 0.0)(value)
    return out


def run_seed(seed: int, head_grid: list[str], out: Path, dataset: str) -> dict[str, object]:
    ratings = load_dataset(dataset, data_dir=_data_dir()).ratings
    split = paper_split(ratings, seed=seed)
    train, val, test = split.train, split.val, split.test
    result: dict[str, object] = {
        "dataset": dataset,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
    }

    def ranking(model) -> dict[str, float]:
        return evaluate_ranking(model, train, test, val=val, metrics=METRICS).metrics

    started = time.perf_counter()
    pop = Popularity().fit(train)
    result["pop"] = {"test": ranking(pop), "seconds": time.perf_counter() - started}

    started = time.perf_counter()
    lam, val_scores = select_on_validation(lambda v: Ease(lam=v), LAMBDA_GRID, train, val)
    ease = Ease(lam=lam).fit(train)
    result["ease"] = {
        "lam": lam,
        "val_ndcg@10": val_scores,
        "test": ranking(ease),
        "seconds": time.perf_counter() - started,
    }
    del ease

    started = time.perf_counter()
    model = AutoRec(AutoRecConfig(seed=seed)).fit(train, val)
    rating_seconds = time.perf_counter() - started
    pred = model.predict(test.user_idx, test.item_idx)
    test_rmse = rmse(test.rating, pred)
    result["i-autorec (rating order)"] = {
        "test": ranking(model),
        "test_rmse": test_rmse,
        "best_epoch": model.history.best_epoch,
        "seconds": rating_seconds,
    }

    plain_config = model.config
    heads = []
    for spec in head_grid:
        started = time.perf_counter()
        model.config = plain_config.replace(ranking_head=True, **_parse_head(spec))
        model._head = autorec_rank.fit_ranking_head(model, train, val)
        heads.append(
            {
                "head": spec or "defaults",
                "val_ndcg@10": model._head.val_ndcg,
                "epoch": model._head.epoch,
                "beta": model._head.beta,
                "scorer": model._head,
                "config": model.config,
                "seconds": time.perf_counter() - started,
            }
        )
        log.info("seed %d head %r: validation ndcg@10 %.4f", seed, spec, heads[-1]["val_ndcg@10"])
    best = max(heads, key=lambda h: h["val_ndcg@10"])  # the first of equal scores
    model.config, model._head = best["config"], best["scorer"]
    after = model.predict(test.user_idx, test.item_idx)
    result["i-autorec + ranking head"] = {
        "test": ranking(model),
        "test_rmse": rmse(test.rating, after),
        "rmse_unchanged": bool(np.array_equal(pred, after)),
        "chosen": best["head"],
        "candidates": [
            {k: v for k, v in h.items() if k not in ("scorer", "config")} for h in heads
        ],
        "seconds": rating_seconds + sum(h["seconds"] for h in heads),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"seed{seed}.json", result)
    return result


def head_sweep(
    seed: int, specs: list[str], rating_model: Path, out: Path, dataset: str
) -> list[dict[str, object]]:
    """The head's cost and validation NDCG@10 for each configuration of ``specs``, on the
    validation-stopped rating model of ``paper_split(seed)`` (loaded from ``rating_model``,
    fitted and saved there first when missing). Validation only: the test set is not read.

    Each configuration: the whole head fit as the protocol runs it (epochs on the sampled
    validation users, beta over every validation user), its seconds, and the validation
    NDCG@10 at every beta. Configurations run back to back, so their seconds compare."""
    ratings = load_dataset(dataset, data_dir=_data_dir()).ratings
    split = paper_split(ratings, seed=seed)
    if (rating_model / "model.json").is_file():
        model = AutoRec.load(rating_model)
    else:
        model = AutoRec(AutoRecConfig(seed=seed, ranking_head=False)).fit(split.train, split.val)
        model.save(rating_model)
    plain = model.config.replace(ranking_head=False)
    rows = []
    for spec in specs:
        model.config = plain.replace(ranking_head=True, **_parse_head(spec))
        started = time.perf_counter()
        scorer = autorec_rank.fit_ranking_head(model, split.train, split.val)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "head": spec or "defaults",
                "seconds": seconds,
                "epoch": scorer.epoch,
                "beta": scorer.beta,
                "val_ndcg@10": scorer.val_ndcg,
                "val_ndcg@10_head_alone": scorer.val_by_beta.get(0.0),
                "val_ndcg@10_by_beta": {str(b): v for b, v in scorer.val_by_beta.items()},
            }
        )
        log.info("head %r: %s", spec, rows[-1])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / f"head-sweep-seed{seed}.json",
        {"dataset": dataset, "seed": seed, "torch_threads": torch.get_num_threads(), "rows": rows},
    )
    return rows


def default_command(
    seed: int, threads: int, out: Path, dataset: str, extra: list[str]
) -> list[str]:
    """The ``autorec evaluate`` command line of the DEFAULT I-AutoRec for one seed: the paper's
    protocol with retrain (lambda grid on validation RMSE, retrained on train + validation),
    the ranking head on by default (fitted once on the validation-stopped model, carried to the
    retrained one), its lists scored on test."""
    return [
        "autorec",
        "evaluate",
        "--dataset",
        dataset,
        "--data-dir",
        str(_data_dir()),
        "--model",
        "i-autorec",
        "--seed",
        str(seed),
        "--runs",
        "1",
        "--threads",
        str(threads),
        "--metrics",
        DEFAULT_METRICS,
        "--json",
        str(out / f"default-seed{seed}.json"),
        *extra,
    ]


def default_summary(seeds: list[int], out: Path) -> dict[str, object]:
    """Mean +- 95% CI over the seeds of the default I-AutoRec's test metrics, next to
    popularity's from the ``run`` files of the same seeds when present."""
    runs = [json.loads((out / f"default-seed{s}.json").read_text())["runs"][0] for s in seeds]
    table: dict[str, object] = {"seeds": seeds, "i-autorec (default recommend)": {}}
    for metric in runs[0]["ranking"]["metrics"]:
        mean, ci = summary_ci95([r["ranking"]["metrics"][metric] for r in runs])
        table["i-autorec (default recommend)"][metric] = {"mean": mean, "ci95": ci}
    mean, ci = summary_ci95([r["test_rmse"] for r in runs])
    table["i-autorec (default recommend)"]["rmse"] = {"mean": mean, "ci95": ci}
    table["head"] = [r.get("ranking_head") for r in runs]
    pops = [out / f"seed{s}.json" for s in seeds]
    if all(p.is_file() for p in pops):
        pop = [json.loads(p.read_text())["pop"]["test"] for p in pops]
        table["pop"] = {
            m: dict(zip(("mean", "ci95"), summary_ci95([p[m] for p in pop]), strict=True))
            for m in pop[0]
        }
    atomic_write_json(out / "default-summary.json", table)
    return table


def summary(seeds: list[int], out: Path) -> dict[str, object]:
    runs = [json.loads((out / f"seed{s}.json").read_text()) for s in seeds]
    table: dict[str, object] = {"seeds": seeds, "models": {}}
    for name in MODELS:
        metrics = {}
        for metric in runs[0][name]["test"]:
            mean, ci = summary_ci95([r[name]["test"][metric] for r in runs])
            metrics[metric] = {"mean": mean, "ci95": ci}
        if "test_rmse" in runs[0][name]:
            mean, ci = summary_ci95([r[name]["test_rmse"] for r in runs])
            metrics["rmse"] = {"mean": mean, "ci95": ci}
        seconds = [r[name]["seconds"] for r in runs]
        metrics["seconds"] = {"mean": float(np.mean(seconds)), "ci95": None}
        table["models"][name] = metrics
    atomic_write_json(out / "summary.json", table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--dataset", default="ml-1m")
    run.add_argument(
        "--head-grid",
        nargs="*",
        default=[""],
        help="head configurations, each 'rank_lam=100,rank_hidden=200' ('' = the defaults)",
    )
    sweep = sub.add_parser("head-sweep")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--threads", type=int, default=2)
    sweep.add_argument("--dataset", default="ml-1m")
    sweep.add_argument("--rating-model", type=Path, required=True)
    sweep.add_argument("--configs", nargs="+", default=[""])
    default = sub.add_parser("default")
    default.add_argument("--seed", type=int, default=0)
    default.add_argument("--threads", type=int, default=1)
    default.add_argument("--dataset", default="ml-1m")
    default.add_argument(
        "--extra", nargs=argparse.REMAINDER, default=[], help="more autorec evaluate options"
    )
    default_summ = sub.add_parser("default-summary")
    default_summ.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    summ = sub.add_parser("summary")
    summ.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    for p in (run, sweep, default, default_summ, summ):
        p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "ranking-autorec")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "run":
        torch.set_num_threads(args.threads)
        result = run_seed(args.seed, args.head_grid, args.out, args.dataset)
        print(json.dumps({k: v for k, v in result.items()}, indent=1, default=str))
        return
    if args.command == "default":
        args.out.mkdir(parents=True, exist_ok=True)
        command = default_command(args.seed, args.threads, args.out, args.dataset, args.extra)
        print(" ".join(command), flush=True)
        raise SystemExit(subprocess.call(command))
    if args.command == "default-summary":
        print(json.dumps(default_summary(args.seeds, args.out), indent=1))
        return
    if args.command == "head-sweep":
        torch.set_num_threads(args.threads)
        rows = head_sweep(args.seed, args.configs, args.rating_model, args.out, args.dataset)
        for row in rows:
            print(
                f"{row['head']:50s} {row['seconds']:6.1f} s  epoch {row['epoch']:3d}  "
                f"beta {row['beta']:g}  val ndcg@10 {row['val_ndcg@10']:.4f} "
                f"(head alone {row['val_ndcg@10_head_alone']:.4f})"
            )
        return
    table = summary(args.seeds, args.out)
    for name, metrics in table["models"].items():
        cells = "  ".join(
            f"{m} {v['mean']:.4f}" + (f" +- {v['ci95']:.4f}" if v["ci95"] is not None else "")
            for m, v in metrics.items()
        )
        print(f"{name:28s} {cells}")


if __name__ == "__main__":
    main()
