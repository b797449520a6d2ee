"""The protocol as it was (no pruning, one process) against pruning + parallel grid points.

    python benchmarks/bench_protocol.py --dataset ml-1m --runs 5             # the issue's target
    python benchmarks/bench_protocol.py --dataset ml-100k --runs 2           # a few minutes
    python benchmarks/bench_protocol.py --dataset ml-1m --runs 1 --variants old,prune,new

Each variant is one ``autorec evaluate --dataset D --model M --runs N --json F --quiet
--threads T`` subprocess, run one after the other in the same conditions:

* ``old``: ``--no-prune --jobs 1 --no-refine`` (every grid point to its end, one process, the
  grid as given: the protocol before pruning and the adaptive search existed);
* ``prune``: pruning, one process, the grid as given (``--jobs 1 --no-refine``);
* ``parallel``: pruning and ``--jobs J``, the grid as given (``--no-refine``);
* ``new``: today's defaults with ``--jobs J`` (default 2: grid points in parallel processes, one
  torch thread each): pruning and the adaptive search (the outward lambda search skips fits,
  lambda refinement adds some), on the search's default model (I-AutoRec on the residuals of
  the bias baseline);
* ``paper``: as ``new`` on the paper's model (``--set baseline=none``).

``--old-ref REF`` runs ``old`` with the code of git ``REF`` instead (its ``src/``, exported with
``git archive``, with REF's own defaults and none of the flags above): the protocol as it was
before issue 16 is ``--old-ref 97d6c65``, the last commit before its work, so that the speed-up
also counts what the epoch itself gained since.

Reported per variant: wall seconds of the whole command and the CPU seconds of it and its
worker processes (the work done, which a shared machine can compare), the chosen lambda of every
seed, the mean test RMSE, the grid epochs run (sum of the candidates' ``epochs`` where recorded)
and the pruned points. Then, for each variant against ``old``: the speed-up, whether it chose
the same lambda on every seed, and whether its mean test RMSE is within ``--tolerance`` (0.001)
of ``old``'s (and of ``--reference``: 0.8340 for ML-1M I-AutoRec with 5 runs, the committed
figure). ``--json OUT`` keeps everything. Exit status 0 when every variant keeps the choices
and the mean.

Duration: ``old`` with ML-1M and 5 runs takes about 18 minutes on the quiet 2-core reference
machine (the figure of issue 16), so the default ``old,new`` pair about 25-30 minutes there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _git import export_src  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "old": ["--no-prune", "--jobs", "1", "--no-refine"],
    "prune": ["--jobs", "1", "--no-refine"],
    "parallel": ["--no-refine"],  # --jobs J added from the arguments
    "new": [],  # --jobs J added from the arguments
    # Today's search (pruning, the outward lambda search, refinement, --jobs J) on the paper's
    # model: the comparison issue 16 asks for (same lambda, mean within 0.001 of old's).
    "paper": ["--set", "baseline=none"],
}


def run_variant(name: str, args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    old_code = name == "old" and args.old_ref is not None
    if old_code:
        extra: list[str] = []  # the old code's defaults are the old protocol
    elif "--jobs" in VARIANTS[name]:
        extra = VARIANTS[name]
    else:
        extra = [*VARIANTS[name], "--jobs", str(args.jobs)]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if old_code:
            env["PYTHONPATH"] = str(export_src(args.old_ref, Path(tmp)))
        out = Path(tmp) / "evaluate.json"
        command = [
            sys.executable,
            "-m",
            "autorec",
            "evaluate",
            "--dataset",
            args.dataset,
            "--model",
            args.model,
            "--runs",
            str(args.runs),
            "--threads",
            str(args.threads),
            "--data-dir",
            data_dir,
            "--json",
            str(out),
            "--quiet",
            *extra,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        payload = json.loads(out.read_text())
    # CPU seconds of the command and its worker processes: on a shared machine the work done,
    # which wall seconds are not.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = payload["runs"]
    return {
        "variant": name,
        "code": args.old_ref if old_code else "this checkout",
        "command": " ".join(command[2:]),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "lambdas": [r["hyperparameters"].get("lam") for r in runs],
        "test_rmse": [r["test_rmse"] for r in runs],
        "test_rmse_mean": payload["test_rmse_mean"],
        "grid_epochs": sum(c.get("epochs", 0) for r in runs for c in r["candidates"]),
        "pruned": [[c.get("lam") for c in r["candidates"] if c.get("pruned")] for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--model", default="i-autorec")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the new variant")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each command")
    parser.add_argument("--variants", default="old,new", help="of " + ",".join(VARIANTS))
    parser.add_argument("--tolerance", type=float, default=0.001)
    parser.add_argument("--reference", type=float, default=None, help="e.g. 0.8340")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--old-ref", default=None, help="run old with this git ref's code (e.g. 97d6c65)"
    )
    args = parser.parse_args(argv)
    data_dir = (
        args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or str(ROOT.parent / "shared/data")
    )
    names = args.variants.split(",")
    if names[0] != "old":
        parser.error("--variants must start with old: every variant is compared with it")
    results = []
    for name in names:
        res = run_variant(name, args, data_dir)
        results.append(res)
        print(
            f"{name:6s} {res['seconds']:8.1f} s ({res['cpu_seconds']:.0f} CPU s)  lambdas "
            f"{res['lambdas']}  mean test RMSE {res['test_rmse_mean']:.4f}  grid epochs "
            f"{res['grid_epochs'] or 'n/a'}  pruned {res['pruned']}",
            flush=True,
        )
    old = results[0]
    ok = True
    for res in results[1:]:
        same = res["lambdas"] == old["lambdas"]
        close = abs(res["test_rmse_mean"] - old["test_rmse_mean"]) <= args.tolerance
        if args.reference is not None:
            close = close and abs(res["test_rmse_mean"] - args.reference) <= args.tolerance
        res["speedup"] = old["seconds"] / res["seconds"]
        res["same_lambdas"], res["mean_within_tolerance"] = same, close
        ok = ok and same and close
        print(
            f"{res['variant']}: {res['speedup']:.2f}x faster than old; same lambdas: {same}; "
            f"mean test RMSE within {args.tolerance}: {close} "
            f"({res['test_rmse_mean'] - old['test_rmse_mean']:+.5f})"
        )
    if args.json:
        sys.path.insert(0, str(ROOT / "src"))
        from autorec.atomic import atomic_write_json

        atomic_write_json(args.json, {"arguments": vars(args), "variants": results})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
