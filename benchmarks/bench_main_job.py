"""The main job, `autorec train --dataset ml-1m --model i-autorec`, old against new.

Two parts:

* ``time`` (the default): the whole command, start to exit, run alternately with the old code
  (``--old-ref``, default ``main``, exported with ``git archive`` into a temporary folder) and
  with this checkout's, ``--repeats`` times each, back to back so both see the same load. Prints
  and writes (``--json``) every wall time, test RMSE and epoch count.
* ``ideas``: the experiments behind the new defaults on ML-1M seed 0 (docs/experiments.md,
  "Main job speed"): one validation-stopped fit with the old stopping rule (patience 30,
  min_delta 1e-6), the stopping epoch other (patience, min_delta) pairs would give on its curve
  (exact: the fit is deterministic, so a shorter patience sees the same curve up to its stop),
  and warm-started retrains of the validation-stopped weights on train + validation, for several
  initial RProp steps (``--warm-lr``), scored on the test set after several epoch counts.

Usage (AUTOREC_DATA_DIR must hold ml-1m; about 2 x 55 s per repeat on a quiet 2-core machine
for ``time``, about 60 s for ``ideas``)::

    python benchmarks/bench_main_job.py time --repeats 2 --json /tmp/main_job.json
    python benchmarks/bench_main_job.py ideas --json /tmp/main_job_ideas.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _git import export_src  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [
    "autorec",
    "train",
    "--dataset",
    "ml-1m",
    "--model",
    "i-autorec",
    "--seed",
    "0",
    "--quiet",
    "--threads",
    "2",
]


def _one(src: Path, tmp: Path, name: str) -> dict:
    out_json = tmp / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [
        sys.executable,
        "-m",
        "autorec",
        *COMMAND[1:],
        "--json",
        str(out_json),
        "--output",
        str(tmp / f"{name}-model"),
        "--overwrite",
    ]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    run = json.loads(out_json.read_text())["runs"][0]
    return {
        "wall_seconds": wall,
        "load": load,
        "test_rmse": run["test_rmse"],
        "val_rmse": run["val_rmse"],
        "retrain_epochs": run["epochs"],
        "best_epoch": run["best_epoch"],
        "validation_epochs": len(run["learning_curve"]["val_rmse"]),
    }


def time_main_job(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "old").mkdir()
        sources = {"old": export_src(args.old_ref, tmp / "old"), "new": ROOT / "src"}
        rows = []
        for repeat in range(args.repeats):
            for name, src in sources.items():
                row = {"code": name, "repeat": repeat, **_one(src, tmp, f"{name}{repeat}")}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return {"command": " ".join(COMMAND), "old_ref": args.old_ref, "rows": rows}


def ideas(args: argparse.Namespace) -> dict:
    import torch

    from autorec.data import load_dataset, paper_split
    from autorec.evaluation import evaluate
    from autorec.models import make_model

    torch.set_num_threads(args.threads)
    split = paper_split(load_dataset("ml-1m").ratings, seed=0)
    t0 = time.perf_counter()
    if args.base is not None and (args.base / "model.json").exists():
        from autorec.models.autorec import AutoRec

        base = AutoRec.load(args.base)  # a validation-stopped fit saved by an earlier run
    else:
        base = make_model("i-autorec", seed=0, patience=30, min_delta=1e-6, warm_retrain_epochs=0)
        base.fit(split.train, split.val)
        if args.base is not None:
            base.save(args.base, overwrite=True)
    fit_seconds = time.perf_counter() - t0
    curve = list(base.history.val_rmse)
    per_epoch = fit_seconds / len(curve)
    out: dict = {
        "fit": {
            "epochs": len(curve),
            "best_epoch": base.history.best_epoch,
            "val_rmse": min(curve),
            "seconds": fit_seconds,
            "test_rmse_no_retrain": evaluate(base, split.test)["rmse"],
            "val_curve": curve,
        },
        "stopping": [],
        "warm": [],
    }
    for patience in (5, 10, 15, 20, 30):
        for min_delta in (1e-6, 1e-4, 2e-4):
            best, best_epoch, stale, stop = float("inf"), 0, 0, None
            for epoch, value in enumerate(curve, start=1):
                if value < best - min_delta:
                    best, best_epoch, stale = value, epoch, 0
                else:
                    stale += 1
                if stale >= patience:
                    stop = epoch
                    break
            out["stopping"].append(
                {
                    "patience": patience,
                    "min_delta": min_delta,
                    "best_epoch": best_epoch,
                    "stops_after": stop,
                    "val_rmse": best,
                }
            )
            print(json.dumps(out["stopping"][-1]), flush=True)
    merged = split.train.merge(split.val)
    for lr in args.warm_lr:
        # One warm retrain of max(--warm) epochs per initial RProp step; the test RMSE after
        # each epoch count in --warm is read from the model as it trains.
        model = make_model("i-autorec", seed=0, n_epochs=max(args.warm), lr=lr)
        row: dict = {"lr": lr, "test_rmse": {}, "seconds": {}}
        t0 = time.perf_counter()

        def score(p, model=model, row=row, t0=t0) -> None:
            if p.epoch in args.warm:
                row["seconds"][p.epoch] = time.perf_counter() - t0
                # Score the weights of this epoch mid-fit (the fit sets these flags at its end).
                model._codes, model._fitted = None, True
                row["test_rmse"][p.epoch] = evaluate(model, split.test)["rmse"]
                model._codes, model._fitted = None, False

        model.start_from(base).fit(merged, progress=score)
        out["warm"].append(row)
        print(json.dumps(row), flush=True)
    out["seconds_per_epoch"] = per_epoch
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    t = sub.add_parser("time", help="the whole command, old code against new")
    t.add_argument("--old-ref", default="main", help="git ref of the old code (default main)")
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--json", type=Path)
    i = sub.add_parser("ideas", help="the epoch-cutting experiments on ML-1M seed 0")
    i.add_argument("--warm", type=int, nargs="+", default=[5, 10, 20, 30])
    i.add_argument("--warm-lr", type=float, nargs="+", default=[0.002, 3e-4, 1e-4])
    i.add_argument("--threads", type=int, default=2)
    i.add_argument(
        "--base", type=Path, help="folder: save the validation-stopped fit there, or reuse it"
    )
    i.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = ideas(args) if args.part == "ideas" else time_main_job(args)
    if args.json is not None:
        sys.path.insert(0, str(ROOT / "src"))
        from autorec.atomic import atomic_write_json

        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
