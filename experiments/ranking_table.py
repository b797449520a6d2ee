"""Ranking table of ML-1M: every model of the reproduce Table 1(c), plus ``pop`` and ``ease``.

    OMP_NUM_THREADS=1 python experiments/ranking_table.py --threads 1
    python experiments/ranking_table.py --models pop,bias,ease --seeds 0,1,2,3,4
    python experiments/ranking_table.py --report-only

Protocol, per (model, seed), on the paper split (:func:`autorec.data.split.paper_split`, 90%
train of which 10% validation, 10% test):

* **Rating models** (the rows of Table 1(c)). The grid search is NOT run again: the
  hyperparameters validation RMSE chose are read from the committed reproduce cell
  ``docs/results/ml-1m/cells/<model>/seed<N>.json`` (``record.hyperparameters``, with
  ``n_epochs`` the retrain length validation chose), and the model is retrained once on
  train + validation exactly as the protocol's retrain step does
  (:func:`autorec.protocol.run_protocol`: ``make_model(model, **{**overrides, seed, **point,
  n_epochs})`` fitted on ``split.train.merge(split.val)``, no early stopping). Calling
  ``run_protocol`` itself would fit the chosen point on train first, to learn the epoch count the
  cell already holds, doubling the cost. The test RMSE is then compared with the cell's (same
  computation, another CPU: close, not bit-identical).
* **pop**: fitted on train + validation (nothing to choose).
* **ease**: lambda chosen on VALIDATION NDCG@10 (fitted on train, train items excluded, scored
  against validation ratings >= 4) over :attr:`autorec.models.ease.Ease.ranking_grid`
  (:func:`autorec.ranking.select_on_validation`), then refitted on train + validation.

Every tested model ranks the whole catalogue for each test user, train and validation items
excluded, relevance = test rating >= 4 (:func:`autorec.ranking.evaluate_ranking`). The test set
chooses nothing.

Each (model, seed) result is written to ``<out>/cells/<model>/seed<N>.json`` as soon as it is
done; a rerun skips the finished ones, so an interrupted run continues, and several processes
may work on different models at once. The report (``<out>.md`` and ``<out>.json``) is rebuilt
from every stored result at the end of each run (or alone with ``--report-only``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Cheapest first, so a run cut short by a deadline still covers the most models.
MODELS = (
    "pop",
    "bias",
    "ease",
    "item-knn",
    "biased-mf",
    "i-autorec",
    "u-autorec",
    "llorma",
    "u-rbm",
    "i-rbm",
)
#: Models whose hyperparameters come from a reproduce cell (chosen there on validation RMSE).
RATING_MODELS = tuple(m for m in MODELS if m not in ("pop", "ease"))
SEEDS = (0, 1, 2, 3, 4)
METRICS = (
    "ndcg@10",
    "ndcg@20",
    "recall@10",
    "recall@20",
    "recall_trunc@10",
    "precision@10",
    "map@10",
    "mrr@10",
    "hit@10",
    "coverage@10",
    "gini@10",
)
#: The metric EASE's lambda is chosen on (on validation).
EASE_SELECTION_METRIC = "ndcg@10"
RELEVANCE = 4.0
#: BLAS thread settings recorded with the command (EASE's inverse, item-kNN's products).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DATASET = "ml-1m"
#: Columns of the report's main table.
TABLE_COLUMNS = ("rmse", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "recall_trunc@10")
OTHER_COLUMNS = ("precision@10", "map@10", "mrr@10", "hit@10", "coverage@10", "gini@10")

log = logging.getLogger("ranking_table")


# -- pure parts (tested in tests/test_ranking_table.py) -----------------------------------------
def read_cell(path: Path, model: str, seed: int) -> dict[str, Any]:
    """What a committed reproduce cell says about (model, seed): the overrides of its setting,
    the hyperparameters validation chose (``n_epochs`` included for iterative models) and its
    test RMSE. Raises ``ValueError`` naming the file when it is not that cell."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable reproduce cell ({exc})") from None
    try:
        record = payload["record"]
        found = (payload["model"], int(payload["seed"]))
        cell = {
            "overrides": dict(payload.get("overrides") or {}),
            "hyperparameters": dict(record["hyperparameters"]),
            "test_rmse": float(record["test_rmse"]),
            "quick": bool(payload.get("quick", False)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a reproduce cell (missing or bad field {exc})") from None
    if found != (model, seed):
        raise ValueError(f"{path}: holds {found[0]} seed {found[1]}, expected {model} seed {seed}")
    if cell["quick"]:
        raise ValueError(f"{path}: a --quick cell (shortened training), not a result")
    return cell


def retrain_options(cell: dict[str, Any], seed: int) -> dict[str, Any]:
    """The config of the protocol's retrain step: the setting's overrides, the seed, and the
    chosen point with its epoch count (``run_protocol``: ``{**overrides, **point, n_epochs}``,
    overrides holding the seed). JSON lists (``hidden``) become the tuples configs hold."""
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cell["overrides"].items()}
    return {**overrides, "seed": seed, **cell["hyperparameters"]}


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: seeds, mean and 95% CI of the test RMSE and every ranking metric, the wall
    time, and the largest |test RMSE - cell's test RMSE|."""
    from autorec.evaluation import summary_ci95

    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for model in sorted(by_model, key=lambda m: MODELS.index(m) if m in MODELS else len(MODELS)):
        runs = sorted(by_model[model], key=lambda r: r["seed"])
        values = {"rmse": [r["test_rmse"] for r in runs]}
        for metric in METRICS:
            values[metric] = [r["ranking"]["metrics"][metric] for r in runs]
        stats = {}
        for name, vals in values.items():
            mean, ci = summary_ci95(vals)
            stats[name] = {"mean": mean, "ci95": ci, "values": vals}
        diffs = [abs(r["test_rmse"] - r["cell_test_rmse"]) for r in runs if r.get("cell_test_rmse")]
        out[model] = {
            "seeds": [r["seed"] for r in runs],
            "complete": [r["seed"] for r in runs] == list(SEEDS),
            "metrics": stats,
            "seconds_total": sum(r["seconds"] for r in runs),
            "seconds_per_seed": [r["seconds"] for r in runs],
            "max_abs_rmse_diff_vs_cell": max(diffs) if diffs else None,
            "hyperparameters": [r["hyperparameters"] for r in runs],
        }
    return out


def fmt_stat(stat: dict[str, Any], digits: int = 4) -> str:
    """``0.1234 ± 0.0012``; ``0.1234`` (one seed, no interval); ``-`` when missing."""
    if stat is None or stat.get("mean") is None:
        return "-"
    if stat.get("ci95") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


def model_label(model: str, entry: dict[str, Any]) -> str:
    """The row name; a model without all five seeds is marked with the seeds it has."""
    if entry["complete"]:
        return model
    seeds = ",".join(str(s) for s in entry["seeds"])
    return f"{model} (INCOMPLETE: seeds {seeds} only)"


def markdown_table(summary: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> str:
    lines = [
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for model, entry in summary.items():
        cells = [fmt_stat(entry["metrics"].get(c)) for c in columns]
        lines.append(f"| {model_label(model, entry)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(summary: dict[str, dict[str, Any]]) -> str:
    """Plain words: does the model with the best test RMSE (rating models only) lose on
    ranking to popularity and to EASE? Built from the numbers, never written by hand."""
    rated = {m: e for m, e in summary.items() if m in RATING_MODELS}
    if not rated:
        return "No rating model has results yet."
    best = min(rated, key=lambda m: rated[m]["metrics"]["rmse"]["mean"])
    e = rated[best]["metrics"]
    ndcg, recall = e["ndcg@10"]["mean"], e["recall@10"]["mean"]
    best_rank = max(summary, key=lambda m: summary[m]["metrics"]["ndcg@10"]["mean"])
    parts = [
        f"The best model on RMSE is **{best}** (test RMSE {e['rmse']['mean']:.4f}); "
        f"its NDCG@10 is {ndcg:.4f} and Recall@10 {recall:.4f}."
    ]
    for other in ("pop", "ease"):
        if other not in summary:
            continue
        o = summary[other]["metrics"]
        o_ndcg, o_recall = o["ndcg@10"]["mean"], o["recall@10"]["mean"]
        if ndcg < o_ndcg:
            word = "LOSES on ranking to"
        else:
            word = "beats on ranking"
        parts.append(
            f"{best} {word} **{other}** (NDCG@10 {o_ndcg:.4f}, Recall@10 {o_recall:.4f}; "
            f"ratio {ndcg / o_ndcg:.2f}x on NDCG@10, {recall / o_recall:.2f}x on Recall@10)."
        )
    if "pop" in summary:
        pop_ndcg = summary["pop"]["metrics"]["ndcg@10"]["mean"]
        above = [m for m in rated if rated[m]["metrics"]["ndcg@10"]["mean"] > pop_ndcg]
        below = [m for m in rated if m not in above]
        parts.append(
            "Rating models above pop on NDCG@10: "
            f"{', '.join(above) if above else 'none'}; at or below it: "
            f"{', '.join(below) if below else 'none'}."
        )
    rank_order = sorted(summary, key=lambda m: -summary[m]["metrics"]["ndcg@10"]["mean"])
    position = rank_order.index(best) + 1
    parts.append(
        f"By NDCG@10 it ranks {position} of {len(summary)} models; the best ranker is "
        f"**{best_rank}** (NDCG@10 {summary[best_rank]['metrics']['ndcg@10']['mean']:.4f})."
    )
    return " ".join(parts)


def report_markdown(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    times = [
        f"| {model_label(m, e)} | {len(e['seeds'])} | {e['seconds_total']:.0f} | "
        f"{e['seconds_total'] / len(e['seeds']):.0f} |"
        for m, e in summary.items()
    ]
    rmse_diffs = [
        f"{m}: {e['max_abs_rmse_diff_vs_cell']:.2e}"
        for m, e in summary.items()
        if e["max_abs_rmse_diff_vs_cell"] is not None
    ]
    missing = [m for m in MODELS if m not in summary or not summary[m]["complete"]]
    hyper = []
    for m, e in summary.items():
        chosen = [json.dumps(h, sort_keys=True) for h in e["hyperparameters"]]
        if len(set(chosen)) == 1:
            hyper.append(f"  - {m}: {chosen[0]} (every seed)")
        else:
            seeds = "; ".join(f"seed {s}: {c}" for s, c in zip(e["seeds"], chosen, strict=True))
            hyper.append(f"  - {m}: {seeds}")
    commands = "\n".join(f"    {c}" for c in meta["commands"])
    return f"""# Ranking quality on ML-1M: the models of Table 1(c), `pop` and `ease`

Generated by `experiments/ranking_table.py` from the per-run results in
`docs/results/ranking-ml-1m/cells/` (numbers: `docs/results/ranking-ml-1m.json`).

## Verdict

{verdict(summary)}

## Results (mean ± 95% CI over the seeds; Student t)

{markdown_table(summary, TABLE_COLUMNS)}

{markdown_table(summary, OTHER_COLUMNS)}

RMSE of `pop` and `ease` is their rating predictor, the base class's damped bias baseline
`mu + b_u + b_i` (close to, but not, the tuned `bias` model): they are not rating models, and their
RMSE is shown only for completeness. `bias` ranks on `mu + b_u + b_i`, i.e. on the item bias
alone: it puts rarely rated, highly rated items first, hence its near-zero ranking metrics.

Missing: {", ".join(missing) if missing else "nothing; every model has seeds 0-4"}.
{"".join(chr(10) + "- " + n for n in meta["notes"])}

## Protocol

- Data: MovieLens 1M, the paper split (`autorec.data.split.paper_split(ratings, seed)`, seeds
  0-4): 90% train (of which 10% validation), 10% test; n_users 6,040, n_items 3,706.
- Rating models (`bias`, `item-knn`, `biased-mf`, `i-autorec`, `u-autorec`, `llorma`,
  `u-rbm`, `i-rbm`): hyperparameters chosen by **validation RMSE**, as the paper does, read from
  the committed reproduce cells `docs/results/ml-1m/cells/<model>/seed<N>.json`
  (`record.hyperparameters`, `n_epochs` = the retrain length validation chose); the grid search
  is not run again. Each model is retrained once on train + validation exactly as the
  protocol's retrain step (`autorec.protocol.run_protocol`) does, then tested. Largest
  |test RMSE here - test RMSE of the cell| per model (same computation, other CPU):
  {", ".join(rmse_diffs) if rmse_diffs else "-"}.
- `pop`: number of training ratings of each item, fitted on train + validation.
- `ease`: lambda chosen on **validation NDCG@10** (fit on train, train items excluded, relevance
  = validation rating >= 4) over {meta["ease_grid"]}, then refitted on train + validation.
- Ranking: every test user with a relevant test item ranks the **full catalogue** (no sampled
  negatives), minus the items they rated in train or validation; relevant = test rating >= 4;
  users without a relevant test item are skipped. Lists are ranked on the model's raw score
  (`Recommender._score_block`), equal scores broken by the lower item index. The test set
  chooses nothing.
- Chosen hyperparameters per seed:
{chr(10).join(hyper)}

## Definitions (at cutoff k; averaged over evaluated users)

- `recall@k` = hits in the top k / |relevant test items of the user| (RecBole, Cornac).
- `recall_trunc@k` = hits / min(k, |relevant|) (Liang et al. 2018, Eq. 9; the Recall of Steck's
  EASE paper): 1 whenever the list is as good as it can be. A test user here has
  {meta["relevant_per_user"]:.1f} relevant test items on average (many have more than 10), so
  `recall@k` stays below 1 even for a perfect list; `recall_trunc@k` does not. The "Recall@10"
  numbers quoted in issue 14 (pop 0.126, EASE 0.315 on seed 0) are `recall_trunc@10`.
- `ndcg@k`: binary gain, ideal DCG over min(k, |relevant|) positions. `precision@k` = hits / k.
  `map@k` = sum of precision@i at the hits / min(k, |relevant|). `mrr@k` = 1 / rank of the first
  hit. `hit@k` = 1 if any hit. `coverage@k` = share of the catalogue in at least one top-k list;
  `gini@k` = Gini index of how often each item is recommended (0 even, near 1 concentrated).
  Full definitions: the docstring of `autorec.ranking`.

## How it was run

Machine: {meta["machine"]}. Each process used `torch.set_num_threads(1)` (and one BLAS thread);
two processes ran side by side on a machine shared with other jobs, whose 1-minute load average
at the start of a run was {meta["load"]}, so the wall times below are several times what an idle
core needs (compare the cells' own `seconds`).

Commands (each process, then the report):

{commands}

Wall time per model (retrain + ranking evaluation; `ease`: also the lambda search):

| model | seeds | total s | s per seed |
|---|---|---|---|
{chr(10).join(times)}
"""


# -- compute ----------------------------------------------------------------------------------
def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_one(
    split: Any, model_name: str, seed: int, cells_dir: Path, command: str = ""
) -> dict[str, Any]:
    """Fit, test and rank one (model, seed) (see the module docstring); ``command`` is stored
    with the result as its provenance."""
    import torch

    from autorec.evaluation import evaluate
    from autorec.models import get_model_class, make_model
    from autorec.ranking import evaluate_ranking, select_on_validation
    from autorec.reproduce.provenance import cpu_model

    started = time.perf_counter()
    load_at_start = _load()
    train_val = split.train.merge(split.val)
    entry: dict[str, Any] = {"model": model_name, "seed": seed, "cell_test_rmse": None}
    if model_name == "ease":
        grid = get_model_class("ease").ranking_grid["lam"]
        lam, scores = select_on_validation(
            lambda v: make_model("ease", lam=v, seed=seed),
            grid,
            split.train,
            split.val,
            metric=EASE_SELECTION_METRIC,
            relevance=RELEVANCE,
        )
        entry["selection"] = {
            "metric": f"validation {EASE_SELECTION_METRIC}",
            "scores": {str(k): v for k, v in scores.items()},
        }
        options: dict[str, Any] = {"seed": seed, "lam": lam}
        entry["hyperparameters"] = {"lam": lam}
    elif model_name == "pop":
        options = {"seed": seed}
        entry["hyperparameters"] = {}
    else:
        cell_path = cells_dir / model_name / f"seed{seed}.json"
        cell = read_cell(cell_path, model_name, seed)
        options = retrain_options(cell, seed)
        entry["hyperparameters"] = dict(cell["hyperparameters"])
        entry["cell_test_rmse"] = cell["test_rmse"]
        inside = cell_path.resolve().is_relative_to(ROOT)
        entry["cell"] = str(cell_path.resolve().relative_to(ROOT) if inside else cell_path)
    fit_started = time.perf_counter()
    model = make_model(model_name, **options).fit(train_val)
    fit_seconds = time.perf_counter() - fit_started
    rating = evaluate(model, split.test)
    ranked = evaluate_ranking(
        model, split.train, split.test, val=split.val, metrics=list(METRICS), relevance=RELEVANCE
    )
    entry.update(
        {
            "test_rmse": rating["rmse"],
            "test_mae": rating["mae"],
            "n_test_fallback": rating["n_fallback"],
            "ranking": ranked.to_dict(),
            "fit_seconds": fit_seconds,
            "seconds": time.perf_counter() - started,
            "torch_threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "load_at_start": load_at_start,
            "command": command,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    if entry["cell_test_rmse"] is not None:
        entry["rmse_diff_vs_cell"] = entry["test_rmse"] - entry["cell_test_rmse"]
    return entry


def claim(target: Path) -> bool:
    """Take ``target``'s lock file (``.lock``, holding this process id) so that processes
    started on the same list share the runs; a lock whose process is gone is taken over."""
    lock = target.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or "0")
                os.kill(pid, 0)
                return False  # alive: it is that process's run
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process died
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results_dir.glob("*/seed*.json"))]


def write_report(out: Path, results: list[dict[str, Any]], notes: list[str] = ()) -> None:
    from autorec.atomic import atomic_write_json, atomic_write_text
    from autorec.models import get_model_class

    summary = summarize(results)
    commands = sorted({r["command"] for r in results})
    commands.append(
        "python experiments/ranking_table.py --report-only"
        + "".join(f" --note {shlex.quote(n)}" for n in notes)
    )
    loads = sorted(float(r["load_at_start"].split()[0]) for r in results)
    relevant = [r["ranking"]["n_relevant"] / r["ranking"]["n_users"] for r in results]
    meta = {
        "dataset": DATASET,
        "relevance": RELEVANCE,
        "metrics": list(METRICS),
        "ease_grid": list(get_model_class("ease").ranking_grid["lam"]),
        "ease_selection_metric": f"validation {EASE_SELECTION_METRIC}",
        "machine": f"{', '.join(sorted({r['cpu'] for r in results}))}, "
        f"{os.cpu_count()} logical CPUs",
        "load": f"{loads[0]:.1f} to {loads[-1]:.1f}" if loads else "unknown",
        "relevant_per_user": sum(relevant) / len(relevant) if relevant else math.nan,
        "commands": commands,
        "missing": [m for m in MODELS if m not in summary or not summary[m]["complete"]],
        "notes": list(notes),
    }
    atomic_write_json(
        out.with_suffix(".json"), {"meta": meta, "models": summary, "verdict": verdict(summary)}
    )
    atomic_write_text(out.with_suffix(".md"), report_markdown(summary, meta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, run in order")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--cells-dir",
        default=str(ROOT / "docs/results" / DATASET / "cells"),
        help="the reproduce cells holding the chosen hyperparameters",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "docs/results/ranking-ml-1m"),
        help="report stem (.md, .json); per-run results in <out>/cells/",
    )
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a sentence for the report's Notes (why a run is missing, ...); repeatable",
    )
    args = parser.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    env = [f"{k}={os.environ[k]}" for k in THREAD_ENV if k in os.environ]
    words = [*env, "python", "experiments/ranking_table.py", *argv_used]
    command = " ".join(shlex.quote(w) if "=" not in w else w for w in words)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    results_dir = out / "cells"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    pending = [
        (model_name, seed)
        for model_name in models
        for seed in seeds
        if not (results_dir / model_name / f"seed{seed}.json").is_file()
    ]
    if pending and not args.report_only:
        import torch

        from autorec.atomic import atomic_write_json
        from autorec.data import load_dataset
        from autorec.data.split import paper_split

        torch.set_num_threads(args.threads)
        data_dir = (
            args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or str(ROOT.parent / "shared/data")
        )
        ratings = load_dataset(DATASET, data_dir=data_dir).ratings
        splits: dict[int, Any] = {}
        for model_name, seed in pending:
            target = results_dir / model_name / f"seed{seed}.json"
            if target.is_file() or not claim(target):  # another process has it
                continue
            try:
                if seed not in splits:
                    splits[seed] = paper_split(ratings, seed=seed)
                entry = run_one(splits[seed], model_name, seed, Path(args.cells_dir), command)
                atomic_write_json(target, entry)
            finally:
                target.with_suffix(".lock").unlink(missing_ok=True)
            log.info(
                "%s seed %d: RMSE %.4f (cell %s), NDCG@10 %.4f, Recall@10 %.4f, %.0f s",
                model_name,
                seed,
                entry["test_rmse"],
                entry["cell_test_rmse"],
                entry["ranking"]["metrics"]["ndcg@10"],
                entry["ranking"]["metrics"]["recall@10"],
                entry["seconds"],
            )
    log.info(
        "%d of %d runs were done before",
        len(models) * len(seeds) - len(pending),
        len(models) * len(seeds),
    )
    write_report(out, load_results(results_dir), args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
