"""Speed and memory of the data layer; writes docs/data-performance.md.

    python benchmarks/bench_data.py            # all measurements, then write the table
    python benchmarks/bench_data.py --no-write # print only
    python benchmarks/bench_data.py --task csv # one measurement, as JSON (used internally)

Each measurement runs in a fresh interpreter so that its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. Measurements:

* ``ml1m``: ``load_dataset("ml-1m")`` on the real file (1,000,209 lines, ``::``), best of 3.
  Needs ``../shared/data`` or ``$AUTOREC_DATA_DIR``; skipped otherwise.
* ``csv``: an ML-20M-size ``ratings.csv`` (20,000,263 lines, header, half-star ratings written
  ``3.5``/``4.0``, 10-digit timestamps, no duplicate pairs) generated into a temporary folder from
  the synthetic sampler, then loaded as ``ml-20m``; lines per second of the whole load.
* ``netflix``: ``synthetic_preset("netflix")``: 480,189 x 17,770, 100,480,507 ratings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "data-performance.md"
ML20M_SIZE = (138_493, 26_744, 20_000_263)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _real_data_dir() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def task_ml1m() -> dict[str, object]:
    from autorec.data.loaders import load_dataset

    data_dir = _real_data_dir()
    if not (data_dir / "ml-1m" / "ratings.dat").is_file():
        return {"skipped": f"no ml-1m/ratings.dat under {data_dir}"}
    times = []
    for _ in range(3):
        t = time.perf_counter()
        d = load_dataset("ml-1m", data_dir=data_dir)
        times.append(time.perf_counter() - t)
    return {"seconds": min(times), "n_ratings": d.ratings.n_ratings, "peak_mib": _peak_mib()}


def _write_ml20m_like(path: Path) -> None:
    from autorec.data.synthetic import synthetic_ratings

    n_users, n_items, n_ratings = ML20M_SIZE
    r = synthetic_ratings(
        n_users,
        n_items,
        n_ratings,
        rating_scale=(0.5, 5.0),
        rating_step=0.5,
        min_per_user=20,
        seed=20,
    )
    rng = np.random.default_rng(20)
    stamps = rng.integers(789_652_009, 1_427_784_002, n_ratings)
    block = 1_000_000
    with open(path, "w") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for a in range(0, n_ratings, block):
            u = (r.user_idx[a : a + block] + 1).tolist()
            i = (r.item_idx[a : a + block] * 3 + 1).tolist()  # sparse MovieIDs, like ML-20M's
            v = r.rating[a : a + block].tolist()
            t = stamps[a : a + block].tolist()
            f.write(
                "".join(f"{x},{y},{z:.1f},{w}\n" for x, y, z, w in zip(u, i, v, t, strict=True))
            )


def task_csv() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ml-20m" / "ratings.csv"
        path.parent.mkdir()
        t = time.perf_counter()
        _write_ml20m_like(path)
        write_s = time.perf_counter() - t
        size = path.stat().st_size
        # the generator's memory must not count: measure the load in a fresh interpreter
        out = subprocess.run(
            [sys.executable, __file__, "--task", "csv-load", "--data-dir", tmp],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update({"file_mib": size / 2**20, "write_seconds": write_s})
    return result


def task_csv_load(data_dir: str) -> dict[str, object]:
    from autorec.data.loaders import load_dataset

    t = time.perf_counter()
    d = load_dataset("ml-20m", data_dir=data_dir)
    seconds = time.perf_counter() - t
    n = d.ratings.n_ratings
    return {
        "seconds": seconds,
        "n_ratings": n,
        "lines_per_s": (n + 1) / seconds,
        "peak_mib": _peak_mib(),
    }


def task_netflix() -> dict[str, object]:
    from autorec.data.synthetic import synthetic_preset

    t = time.perf_counter()
    r = synthetic_preset("netflix")
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "n_ratings": r.n_ratings, "peak_mib": _peak_mib()}


TASKS = {"ml1m": task_ml1m, "csv": task_csv, "netflix": task_netflix}


def _run(task: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--task", task], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = cpu_model()
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"numpy {np.__version__}; {platform.system()} {platform.release()}"
    )


def _table(results: dict[str, dict[str, object]]) -> str:
    def cell(r: dict[str, object], key: str, fmt: str) -> str:
        return "skipped" if "skipped" in r else format(r[key], fmt)

    ml1m, csv, nf = results["ml1m"], results["csv"], results["netflix"]
    rows = [
        "| measurement | time | throughput | peak RSS |",
        "| --- | --- | --- | --- |",
        f'| ML-1M `load_dataset("ml-1m")`, 1,000,209 lines `::` (best of 3) '
        f"| {cell(ml1m, 'seconds', '.2f')} s "
        f"| {'-' if 'skipped' in ml1m else format(1_000_209 / ml1m['seconds'] / 1e6, '.1f')}"
        f" M lines/s | {cell(ml1m, 'peak_mib', ',.0f')} MiB |",
        f'| ML-20M-size CSV `load_dataset("ml-20m")`, 20,000,264 lines, '
        f"{csv['file_mib']:,.0f} MiB | {csv['seconds']:.2f} s "
        f"| {csv['lines_per_s'] / 1e6:.1f} M lines/s | {csv['peak_mib']:,.0f} MiB |",
        f"| synthetic `netflix` preset, 100,480,507 ratings | {nf['seconds']:.1f} s "
        f"| {nf['n_ratings'] / nf['seconds'] / 1e6:.1f} M ratings/s | {nf['peak_mib']:,.0f} MiB |",
    ]
    return "\n".join(rows)


def write_doc(results: dict[str, dict[str, object]]) -> str:
    text = f"""# Data layer performance

Measured by `python benchmarks/bench_data.py` on {_machine()}.
Each row runs in a fresh interpreter; peak RSS is that process's `ru_maxrss`.

{_table(results)}

* Load times are end to end: read, parse, build the vocabularies, check for duplicate pairs,
  validate, build the `Ratings` (int32 indices, float32 ratings, int64 timestamps).
* The CSV is generated by the benchmark (never MovieLens data), with ML-20M's sizes and format:
  header, `userId,movieId,rating,timestamp`, ratings written `3.5`/`4.0`. Writing it took
  {results["csv"]["write_seconds"]:.0f} s (not counted).
* The 20M-rating load peaks at about {results["csv"]["peak_mib"] * 2**20 / ML20M_SIZE[2]:.0f} bytes
  per rating (interpreter and numpy included); the result holds 20 (4 + 4 + 4 + 8 for the
  timestamp). Blocks of 4 MiB are parsed one at a time into preallocated columns.
* Requirements: ML-1M in about a second, several million CSV lines per second, the `netflix`
  synthetic preset in under a minute and under 4 GB.
"""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=[*TASKS, "csv-load"])
    parser.add_argument("--data-dir")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.task == "csv-load":
        print(json.dumps(task_csv_load(args.data_dir)))
        return 0
    if args.task:
        print(json.dumps(TASKS[args.task]()))
        return 0
    results = {}
    for name in TASKS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = _run(name)
        print(f"  {json.dumps(results[name])}", file=sys.stderr, flush=True)
    print(_table(results))
    if not args.no_write:
        write_doc(results)
        print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
