"""The GPU check of the speed issue, as one short prepared script.

Run on a machine with a CUDA device (e.g. the lent H200), from the repository root:

    python benchmarks/bench_gpu.py --out OUT_DIR            # about 3-6 minutes on an H200

It measures, each step in-process and one after another:

1. ML-1M I-AutoRec (k = 500, the paper's split seed 0, lambda 300, RProp, early stopping on
   validation, then the retrain on train + validation, as ``autorec train`` does): wall seconds
   to the final test RMSE for the dense and the sparse engine in fp32, and for the dense engine
   with TF32 and bf16 (the RMSE effect of reduced precision). The real ML-1M is used when
   ``$AUTOREC_DATA_DIR`` (or ``../shared/data``) holds it, else the synthetic ``ml-1m`` shape
   (then the RMSE is not comparable with the paper's).
2. One Netflix-shaped I-AutoRec epoch (480,189 x 17,770, 100 M ratings, k = 500) on the sparse
   engine: seconds and peak GPU memory.

It writes ``gpu.json`` and ``gpu.md`` (a table for ``docs/performance.md``) into OUT_DIR.
``--quick --device cpu`` runs the same code on tiny synthetic data (to check the script itself
before spending device time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from autorec.data import paper_split
from autorec.data.loaders import load_dataset
from autorec.evaluation import evaluate
from autorec.models.autorec import AutoRec, AutoRecConfig
from autorec.protocol import merge

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return Path(os.environ.get("AUTOREC_DATA_DIR") or REPO.parent / "shared" / "data")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / 1e9


def time_to_target(ratings: Any, device: str, engine: str, precision: str, quick: bool) -> dict:
    """`autorec train`'s protocol in-process: fit with early stopping, retrain, test once."""
    split = paper_split(ratings, seed=0)
    epochs = 5 if quick else 500
    cfg = AutoRecConfig(
        variant="item",
        lam=300.0,
        device=device,
        engine=engine,
        precision=precision,
        n_epochs=epochs,
        seed=0,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    started = time.perf_counter()
    chosen = AutoRec(cfg).fit(split.train, split.val)
    best = chosen.history.best_epoch
    final = AutoRec(cfg.replace(n_epochs=best)).fit(merge(split.train, split.val))
    metrics = evaluate(final, split.test)
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "engine": final.engine,
        "precision": precision,
        "seconds": seconds,
        "test_rmse": metrics["rmse"],
        "best_epoch": best,
        "epochs_total": chosen.history.n_epochs + final.history.n_epochs,
        "median_epoch_seconds": sorted(chosen.history.epoch_seconds)[
            len(chosen.history.epoch_seconds) // 2
        ],
        "peak_gpu_gb": _peak_gb(device),
    }


def netflix_epoch(device: str, quick: bool) -> dict:
    started = time.perf_counter()
    ratings = load_dataset("synthetic:tiny" if quick else "synthetic:netflix").ratings
    generated = time.perf_counter() - started
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model = AutoRec(
        AutoRecConfig(variant="item", engine="sparse", n_epochs=2, device=device, seed=0)
    )
    model.fit(ratings)
    return {
        "n_ratings": ratings.n_ratings,
        "data_seconds": generated,
        "epoch_seconds": model.history.epoch_seconds,
        "peak_gpu_gb": _peak_gb(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny data: check the script")
    parser.add_argument(
        "--skip-netflix", action="store_true", help="only the ML-1M time-to-target runs"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "error: no CUDA device; use --device cpu --quick to check the script", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    have_ml1m = (_data_dir() / "ml-1m" / "ratings.dat").is_file()
    name = "synthetic:tiny" if args.quick else ("ml-1m" if have_ml1m else "synthetic:ml-1m")
    ratings = load_dataset(name, data_dir=_data_dir()).ratings
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "dataset": name,
        "ml1m": [],
    }
    runs = [("dense", "fp32"), ("sparse", "fp32"), ("dense", "tf32"), ("dense", "bf16")]
    for engine, precision in runs:
        row = time_to_target(ratings, args.device, engine, precision, args.quick)
        print(json.dumps(row), flush=True)
        result["ml1m"].append(row)
        (out / "gpu.json").write_text(json.dumps(result, indent=1))  # keep partial results
    if not args.skip_netflix:
        result["netflix"] = netflix_epoch(args.device, args.quick)
        print(json.dumps(result["netflix"]), flush=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"GPU: {result['device']}, torch {result['torch']}; data {name}, paper split seed 0.",
        "",
        "| engine | precision | seconds to final test RMSE | test RMSE | epochs (best) "
        "| median epoch s | peak GPU GB |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in result["ml1m"]:
        peak = "-" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.2f}"
        lines.append(
            f"| {r['engine']} | {r['precision']} | {r['seconds']:.1f} | {r['test_rmse']:.4f} "
            f"| {r['epochs_total']} ({r['best_epoch']}) | {r['median_epoch_seconds']:.3f} "
            f"| {peak} |"
        )
    if "netflix" in result:
        n = result["netflix"]
        peak = "-" if n["peak_gpu_gb"] is None else f"{n['peak_gpu_gb']:.2f}"
        lines += [
            "",
            f"Netflix shape ({n['n_ratings']:,} ratings), sparse engine: epochs "
            f"{', '.join(f'{s:.2f}' for s in n['epoch_seconds'])} s; peak GPU memory {peak} GB.",
        ]
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
