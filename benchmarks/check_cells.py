"""Rerun committed reproduce cells and check that the numbers are bit-identical.

    python benchmarks/check_cells.py ml-100k/i-autorec ml-100k/biased-mf
    python benchmarks/check_cells.py --json out.json ml-100k/llorma/seed0 ml-1m/bias

Each argument names a stored cell, ``DATASET/SETTING[/seedN]`` (seed 0 when omitted), i.e. the
file ``docs/results/DATASET/cells/SETTING/seedN.json``. The cell is run again through the same
machinery that wrote it (:func:`autorec.reproduce.schedule._run_cell`: the protocol with the cell's
overrides and grid), with ONE torch thread, as the committed cells were computed, and every
number the record holds is compared for exact equality: test RMSE and MAE, the validation RMSE,
the chosen hyperparameters (including the retrain's epoch count), every grid candidate's
validation RMSE and best epoch, the epoch counts and the learning curves. Timings are not
compared. The data is read from ``--data-dir``, ``$AUTOREC_DATA_DIR`` or ``../shared/data``.

Exit status 0 when every cell matches, 1 otherwise. This is the proof that a refactoring kept
behaviour: run it before a change on one cell (to learn that a one-thread rerun reproduces at
all) and after it on a sample.
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

ROOT = Path(__file__).resolve().parents[1]
# Fields of a stored record that depend on the machine's speed, not on the computation.
TIMING_FIELDS = {"train_seconds", "epoch_seconds"}


def differences(stored: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Names of the record fields whose values differ (timings excluded)."""
    keys = (set(stored) | set(fresh)) - TIMING_FIELDS
    # JSON text compares floats exactly (shortest round-trip repr), NaN equal to NaN, and
    # tuples as the lists the stored file holds.
    return sorted(
        k
        for k in keys
        if json.dumps(stored.get(k), sort_keys=True) != json.dumps(fresh.get(k), sort_keys=True)
    )


def _cell_path(spec: str) -> tuple[str, str, int, Path]:
    """(dataset, setting, seed, stored file) of ``DATASET/SETTING[/seedN]``."""
    parts = spec.strip("/").split("/")
    seed = 0
    if parts[-1].startswith("seed"):
        seed = int(parts.pop()[4:])
    if len(parts) != 2:
        raise SystemExit(f"bad cell {spec!r}: expected DATASET/SETTING[/seedN]")
    dataset, setting = parts
    return (
        dataset,
        setting,
        seed,
        ROOT / "docs/results" / dataset / "cells" / setting / f"seed{seed}.json",
    )


def _tupled(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def check(spec: str, data_dir: str | None, reference: dict[str, Any] | None) -> dict[str, Any]:
    from autorec.data import load_dataset
    from autorec.protocol import run_protocol
    from autorec.reproduce import Cell, Plan
    from autorec.reproduce.schedule import _run_cell

    dataset, setting, seed, path = _cell_path(spec)
    payload = json.loads(path.read_text())
    overrides = tuple((k, _tupled(v)) for k, v in payload["overrides"].items())
    cell = Cell(setting, payload["model"], overrides, seed)
    ratings = load_dataset(dataset, data_dir=data_dir).ratings
    started = time.perf_counter()
    fresh = _run_cell(ratings, Plan(dataset=dataset, quick=False), run_protocol, cell)
    key = f"{dataset}/{setting}/seed{seed}"
    stored_rec = payload["record"] if reference is None else reference[key]
    fresh_rec = json.loads(json.dumps(fresh["record"]))
    diff = differences(stored_rec, fresh_rec)
    return {
        "cell": key,
        "identical": not diff,
        "differs_in": diff,
        "stored_test_rmse": stored_rec["test_rmse"],
        "rerun_test_rmse": fresh_rec["test_rmse"],
        "stored_hyperparameters": stored_rec["hyperparameters"],
        "rerun_hyperparameters": fresh_rec["hyperparameters"],
        "seconds": time.perf_counter() - started,
        "record": fresh_rec,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cells", nargs="+", help="DATASET/SETTING[/seedN]")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--reference",
        default=None,
        help="compare with the records of an earlier --json output instead of the stored cells "
        "(for cells whose stored run used several threads: run the old code once, then the new)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data_dir = (
        args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or str(ROOT.parent / "shared/data")
    )
    reference = None
    if args.reference:
        reference = {r["cell"]: r["record"] for r in json.loads(Path(args.reference).read_text())}
    results = []
    for spec in args.cells:
        res = check(spec, data_dir, reference)
        results.append(res)
        verdict = "IDENTICAL" if res["identical"] else f"DIFFERENT {res['differs_in']}"
        print(
            f"{res['cell']}: {verdict}"
            f"  test_rmse stored {res['stored_test_rmse']!r} rerun {res['rerun_test_rmse']!r}"
            f"  hyperparameters stored {res['stored_hyperparameters']} rerun"
            f" {res['rerun_hyperparameters']}  ({res['seconds']:.0f} s)",
            flush=True,
        )
    if args.json:
        from autorec.atomic import atomic_write_json

        atomic_write_json(args.json, results)
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
