"""Training speed and memory of AutoRec; writes docs/performance.md.

    python benchmarks/bench_train.py                 # everything (long), then write the doc
    python benchmarks/bench_train.py --no-write      # print only
    python benchmarks/bench_train.py --only ml1m     # one part; the other part of the doc is kept
    python benchmarks/bench_train.py --only shapes
    python benchmarks/bench_train.py --quick         # tiny sizes, seconds: a smoke test (no write)
    python benchmarks/bench_train.py --quick --dataset ml-100k   # smoke test on real data
    python benchmarks/bench_train.py --task shape --shape netflix --engine sparse  # one, as JSON

Each measurement runs in a fresh interpreter (``--task NAME``, printing one JSON line) so that
its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own; a task
that runs the ``autorec`` command reports the child's peak (``RUSAGE_CHILDREN`` of that fresh
wrapper, whose only child it is). All runs use ``--threads`` torch threads (default 2).

1. **ML-1M time to target, same call** (real ``ml-1m``, ``paper_split(seed=0)``; needs
   ``$AUTOREC_DATA_DIR`` or ``../shared/data``, skipped with a note otherwise):

   * ``ml1m-ours``: ``autorec train --dataset ml-1m --model i-autorec --seed 0 --json F
     --output TMP --quiet --threads 2`` as a subprocess, exactly as a user runs it: wall seconds
     of the whole command, and ``train_seconds``, ``test_rmse`` and epochs from its JSON.
   * ``ml1m-dense``: a self-contained plain-PyTorch I-AutoRec as typical public
     reimplementations write it (autorec only loads the data and makes the same split): the
     training matrix densified as items x users with a 0/1 mask, ``nn.Linear(n_users, 500)`` +
     sigmoid, ``nn.Linear(500, n_users)``, minibatch Adam (lr 1e-3, 256 items a batch, seeded
     shuffle), loss per batch ``sum(mask * (out - x)^2) + lambda/2 (||W_enc||^2 + ||W_dec||^2)``
     with lambda = 1, test RMSE after every epoch (clipped to the scale; unseen users or items
     get 3) for ``--dense-epochs`` epochs (default 100). Reported: best test RMSE, its epoch and
     the training seconds until that epoch ended (the per-epoch evaluation is not counted).
   * the ratio: dense time-to-best / ours whole-command seconds.

2. **Per-epoch cost across shapes** (``--task shape --shape S --engine E``): for each synthetic
   preset ``ml-1m``, ``ml-10m``, ``netflix`` and each engine ``sparse``/``dense``: the median
   ``history.epoch_seconds`` of ``AutoRec(AutoRecConfig(variant="item", engine=E, n_epochs=N,
   seed=0)).fit(ratings)`` (k = 500, Rprop, no validation; N = 3 each; the first epoch also pays
   for first-touch page faults, so the median is the steady state) and the process's peak
   RSS. The dense engine on ``ml-10m`` and ``netflix`` is not run for a full epoch (its
   full-batch step would densify the whole matrix): the dense forward + backward of
   ``--dense-batches`` row batches of 256 rows through the same ``AutoRecNet`` is timed and
   extrapolated linearly to all rows (plus one weight-decay term and one Rprop step); its RSS
   is that partial run's. On ``ml-1m`` the same extrapolation is also computed, as a check
   against the measured full epoch. ``netflix-cli`` times ``autorec train --dataset
   synthetic:netflix --model i-autorec --epochs 1 --no-test ...`` as a user would run it.

3. ``docs/performance.md``: the machine, both tables, the targets (met / not met, from the
   numbers) and the commands. The raw results are kept in an HTML comment at its end, so that
   ``--only`` can rewrite one part and keep the other.

``--quick`` replaces every size by a tiny one (``synthetic:tiny`` for the ML-1M part unless
``--dataset`` is given, small synthetic shapes, 3 dense epochs, 5 Rprop epochs at most) and
never writes the doc: it only checks that every code path runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import cpu_model  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "performance.md"
RESULTS_MARK = "<!-- bench_train results"

SHAPES = {"ml-1m": 3, "ml-10m": 3, "netflix": 3}  # shape -> epochs timed (median)
ENGINES = ("sparse", "dense")
EXTRAPOLATED_DENSE = {"ml-10m", "netflix"}  # dense: timed batches, not a full epoch
DENSE_ROWS = 256  # rows per timed dense batch
# --quick: (n_users, n_items, n_ratings) with roughly the presets' aspect ratios
QUICK_SHAPES = {
    "ml-1m": (600, 370, 10_000),
    "ml-10m": (700, 110, 10_000),
    "netflix": (4_800, 180, 20_000),
}
QUICK_EPOCHS = {"ml-1m": 2, "ml-10m": 2, "netflix": 1}

# the targets the doc comments on
TARGET_RMSE = 0.835
TARGET_SPEEDUP = 10.0
TARGET_NETFLIX_EPOCH_S = 15.0  # issue 16, part 4 (was 60 s)
TARGET_NETFLIX_SPREAD = 0.10  # (slowest - fastest) / median Netflix epoch (issue 16, part 4)
TARGET_NETFLIX_RSS_GB = 12.0
TARGET_PER_RATING_GROWTH = 1.5

Result = dict[str, Any]


# -- helpers --------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _peak_gb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss * 1024 / 1e9  # Linux: KiB


def _real_data_dir() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "data").resolve()


def _missing_data(dataset: str) -> str | None:
    """Why a named data set cannot be loaded from the real data folder; None when it can."""
    if dataset.lower().startswith("synthetic:") or Path(dataset).is_file():
        return None
    from autorec.data.loaders import dataset_files

    try:
        found = dataset_files(dataset, _real_data_dir())
    except Exception as exc:  # unknown name: let the run itself report it
        return f"{dataset}: {exc}"
    return None if found else f"no {dataset} rating file under {_real_data_dir()}"


def _autorec_cmd() -> list[str]:
    """The installed ``autorec`` console script of this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("autorec")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "autorec"]


def _tail(text: str, n: int = 300) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[-n:]


def _run_cli(argv: list[str], timeout: float) -> tuple[Result | None, float, str | None]:
    """Run ``autorec ARGV`` (with ``--json F --output TMP`` added); (run record, wall s, error)."""
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        json_path = Path(tmp) / "run.json"
        cmd = [*_autorec_cmd(), *argv, "--json", str(json_path), "--output", str(Path(tmp) / "m")]
        env = {**os.environ, "AUTOREC_DATA_DIR": str(_real_data_dir())}
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            return None, time.perf_counter() - started, f"timed out after {timeout:.0f} s"
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            return None, wall, f"exit {proc.returncode}: {_tail(proc.stderr)}"
        try:
            record = json.loads(json_path.read_text())["runs"][0]
        except (OSError, ValueError, KeyError, IndexError) as exc:
            return None, wall, f"no JSON run record: {exc}"
        return record, wall, None


def _cli_text(argv: list[str]) -> str:
    return shlex.join(["autorec", *argv, "--json", "F", "--output", "TMP"])


# -- 1. ML-1M: ours vs a dense Adam reimplementation -------------------------------------------
def _ml_dataset(args: argparse.Namespace) -> str:
    return args.dataset or ("synthetic:tiny" if args.quick else "ml-1m")


def _ours_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "train",
        "--dataset",
        _ml_dataset(args),
        "--model",
        "i-autorec",
        "--seed",
        "0",
        "--quiet",
        "--threads",
        str(args.threads),
    ]
    return argv + (["--epochs", "5"] if args.quick else [])


def task_ml1m_ours(args: argparse.Namespace) -> Result:
    dataset = _ml_dataset(args)
    missing = _missing_data(dataset)
    if missing:
        return {"skipped": missing}
    argv = _ours_argv(args)
    record, wall, error = _run_cli(argv, args.timeout)
    out: Result = {
        "dataset": dataset,
        "command": _cli_text(argv),
        "wall_seconds": wall,
        "peak_gb": _peak_gb(resource.RUSAGE_CHILDREN),
        "load": os.getloadavg()[0],
    }
    if error or record is None:
        return {**out, "error": error}
    epochs = record.get("epoch_seconds") or []
    return {
        **out,
        "train_seconds": record["train_seconds"],
        "test_rmse": record["test_rmse"],
        "val_rmse": record.get("val_rmse"),
        "epochs": record.get("epochs", len(epochs)),
        "best_epoch": record.get("best_epoch"),
        "epoch_seconds_median": statistics.median(epochs) if epochs else None,
    }


def task_ml1m_dense(args: argparse.Namespace) -> Result:
    dataset = _ml_dataset(args)
    missing = _missing_data(dataset)
    if missing:
        return {"skipped": missing}
    import numpy as np
    import torch
    from torch import nn

    from autorec.data.loaders import load_dataset
    from autorec.data.split import paper_split

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    ratings = load_dataset(dataset, data_dir=_real_data_dir()).ratings
    split = paper_split(ratings, seed=0)
    train, test = split.train, split.test
    n_users, n_items = ratings.n_users, ratings.n_items
    low, high = ratings.rating_scale
    hidden, lam, lr, batch = 500, 1.0, 1e-3, 256
    n_epochs = args.dense_epochs or (3 if args.quick else 100)

    # the training matrix, items x users, dense, with its 0/1 mask
    ti = torch.from_numpy(train.item_idx.astype(np.int64))
    tu = torch.from_numpy(train.user_idx.astype(np.int64))
    x_all = torch.zeros(n_items, n_users)
    x_all[ti, tu] = torch.from_numpy(train.rating.astype(np.float32))
    mask_all = torch.zeros(n_items, n_users)
    mask_all[ti, tu] = 1.0

    # test pairs; users or items without a training rating get the middle of the scale (3)
    qi = torch.from_numpy(test.item_idx.astype(np.int64))
    qu = torch.from_numpy(test.user_idx.astype(np.int64))
    truth = torch.from_numpy(test.rating.astype(np.float64))
    seen = torch.from_numpy(~split.unseen(test))
    fallback = (low + high) / 2.0

    enc, dec = nn.Linear(n_users, hidden), nn.Linear(hidden, n_users)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(0)

    def test_rmse() -> float:
        with torch.no_grad():
            out = torch.cat(
                [dec(torch.sigmoid(enc(x_all[s : s + 1024]))) for s in range(0, n_items, 1024)]
            )
            pred = torch.full((len(truth),), fallback, dtype=torch.float64)
            pred[seen] = out[qi[seen], qu[seen]].clamp(low, high).double()
            return math.sqrt(float((pred - truth).pow(2).mean()))

    rmses: list[float] = []
    train_clock: list[float] = []  # cumulative training seconds at the end of each epoch
    epoch_seconds: list[float] = []
    trained = 0.0
    wall_start = time.perf_counter()
    for _ in range(n_epochs):
        started = time.perf_counter()
        order = torch.randperm(n_items, generator=gen)
        for s in range(0, n_items, batch):
            rows = order[s : s + batch]
            x, mask = x_all[rows], mask_all[rows]
            out = dec(torch.sigmoid(enc(x)))
            loss = (mask * (out - x) ** 2).sum() + lam / 2 * (
                enc.weight.pow(2).sum() + dec.weight.pow(2).sum()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - started
        trained += seconds
        epoch_seconds.append(seconds)
        train_clock.append(trained)
        rmses.append(test_rmse())  # not timed
    wall = time.perf_counter() - wall_start
    best = min(range(n_epochs), key=rmses.__getitem__)
    return {
        "dataset": dataset,
        "epochs": n_epochs,
        "best_test_rmse": rmses[best],
        "best_epoch": best + 1,
        "time_to_best": train_clock[best],
        "train_seconds": trained,
        "wall_seconds_with_eval": wall,
        "final_test_rmse": rmses[-1],
        "epoch_seconds_median": statistics.median(epoch_seconds),
        "test_rmse_per_epoch": [round(r, 5) for r in rmses],
        "n_train": train.n_ratings,
        "n_test": test.n_ratings,
        "peak_gb": _peak_gb(),
        "load": load,
    }


# -- 2. per-epoch cost across shapes --------------------------------------------------------------
def _shape_ratings(shape: str, quick: bool) -> Any:
    from autorec.data.loaders import load_dataset
    from autorec.data.synthetic import SYNTHETIC_PRESETS, synthetic_ratings

    if not quick:
        return load_dataset(f"synthetic:{shape}").ratings
    p = SYNTHETIC_PRESETS[shape]
    n_users, n_items, n_ratings = QUICK_SHAPES[shape]
    return synthetic_ratings(
        n_users,
        n_items,
        n_ratings,
        seed=0,
        rating_scale=p.rating_scale,
        rating_step=p.rating_step,
        min_per_user=max(1, min(p.min_per_user, n_ratings // (2 * n_users))),
    )


def _dense_extrapolated(ratings: Any, rows_per_batch: int, n_batches: int) -> Result:
    """Seconds of one full-batch dense epoch, from ``n_batches`` timed batches of rows.

    Each batch goes through what the dense engine does for all rows at once (see
    ``AutoRec._data_loss``): densify input, mask and target, ``decode_dense(encode_dense(x))``,
    masked squared error, backward (gradients accumulate, as in one full-batch gradient). The
    weight decay term, its backward and one Rprop step happen once per epoch and are timed once.
    """
    import torch

    from autorec.models.autorec import AutoRecConfig, AutoRecNet
    from autorec.models.sparse import SparseRows
    from autorec.optim import LeanRprop

    cfg = AutoRecConfig()
    n_rows, n_cols = ratings.n_items, ratings.n_users  # I-AutoRec: rows are items
    gen = torch.Generator().manual_seed(0)
    net = AutoRecNet(n_cols, cfg.hidden, cfg.f, cfg.g, ratings.rating_scale, gen)
    x = SparseRows.from_coo(ratings.item_idx, ratings.user_idx, ratings.rating, (n_rows, n_cols))
    opt = LeanRprop(list(net.parameters()), lr=0.002)
    opt.zero_grad(set_to_none=False)
    rows_per_batch = min(rows_per_batch, n_rows)
    n_batches = max(1, min(n_batches, math.ceil(n_rows / rows_per_batch)))
    order = torch.randperm(n_rows, generator=gen)
    batch_seconds = []
    for b in range(n_batches):
        rows = order[b * rows_per_batch : (b + 1) * rows_per_batch]
        started = time.perf_counter()
        part = x.select_rows(rows)
        dense_in, mask = part.to_dense(), part.pattern().to_dense()
        pred = net.decode_dense(net.encode_dense(dense_in))
        sse = ((pred - part.to_dense()) * mask).pow(2).sum()
        sse.backward()
        batch_seconds.append(time.perf_counter() - started)
        del part, dense_in, mask, pred, sse
    started = time.perf_counter()
    net.add_weight_decay(cfg.lam)
    opt.step()
    step_seconds = time.perf_counter() - started
    per_batch = statistics.median(batch_seconds)
    batches_per_epoch = n_rows / rows_per_batch
    return {
        "seconds_per_epoch": per_batch * batches_per_epoch + step_seconds,
        "batch_seconds": batch_seconds,
        "batches_timed": n_batches,
        "rows_per_batch": rows_per_batch,
        "batches_per_epoch": batches_per_epoch,
        "step_seconds": step_seconds,
        "dense_matrix_gb": n_rows * n_cols * 4 / 1e9,
    }


def task_shape(args: argparse.Namespace) -> Result:
    import torch

    from autorec.models.autorec import AutoRec, AutoRecConfig

    torch.set_num_threads(args.threads)
    shape, engine = args.shape, args.engine
    load = os.getloadavg()[0]
    started = time.perf_counter()
    ratings = _shape_ratings(shape, args.quick)
    out: Result = {
        "shape": shape,
        "engine": engine,
        "n_users": ratings.n_users,
        "n_items": ratings.n_items,
        "n_ratings": ratings.n_ratings,
        "data_seconds": time.perf_counter() - started,
        "load": load,
    }
    rows = 32 if args.quick else DENSE_ROWS
    n_batches = 2 if args.quick else args.dense_batches
    if engine == "dense" and shape in EXTRAPOLATED_DENSE:
        out.update(_dense_extrapolated(ratings, rows, n_batches), method="extrapolated")
        out["peak_gb"] = _peak_gb()
        return out
    n_epochs = (QUICK_EPOCHS if args.quick else SHAPES)[shape]
    # The rating model's epochs alone: the ranking head (on by default for I-AutoRec since
    # issue 14) would add its own training to fit_seconds and peak memory.
    config = AutoRecConfig(
        variant="item", engine=engine, n_epochs=n_epochs, seed=0, ranking_head=False
    )
    model = AutoRec(config)
    started = time.perf_counter()
    model.fit(ratings)
    fit_seconds = time.perf_counter() - started
    seconds = model.history.epoch_seconds
    out.update(
        method="full",
        epochs=len(seconds),
        epoch_seconds=seconds,
        seconds_per_epoch=statistics.median(seconds),
        fit_seconds=fit_seconds,
        engine_used=getattr(model, "engine", engine),
        train_rmse=model.history.train_rmse[-1],
        peak_gb=_peak_gb(),
    )
    if engine == "dense":  # the extrapolation, checked against a measured full epoch
        del model
        check = _dense_extrapolated(ratings, rows, n_batches)
        out["extrapolated_check"] = check["seconds_per_epoch"]
        out["extrapolated_check_batches"] = check["batches_timed"]
    return out


def _netflix_cli_argv(args: argparse.Namespace) -> list[str]:
    dataset = "synthetic:tiny" if args.quick else "synthetic:netflix"
    return [
        "train",
        "--dataset",
        dataset,
        "--model",
        "i-autorec",
        "--epochs",
        "1",
        "--no-test",
        # One epoch of the paper's rating model, comparable with the earlier figures: no
        # ranking head, no bias-baseline residuals (train's defaults since issues 14 and 16).
        "--set",
        "ranking_head=false",
        "--set",
        "baseline=none",
        "--quiet",
        "--threads",
        str(args.threads),
    ]


def task_netflix_cli(args: argparse.Namespace) -> Result:
    from autorec.data.synthetic import SYNTHETIC_PRESETS

    argv = _netflix_cli_argv(args)
    preset = argv[argv.index("--dataset") + 1].split(":", 1)[1]
    load = os.getloadavg()[0]
    record, wall, error = _run_cli(argv, args.timeout)
    out: Result = {
        "command": _cli_text(argv),
        "wall_seconds": wall,
        "peak_gb": _peak_gb(resource.RUSAGE_CHILDREN),
        "load": load,
        "n_ratings": SYNTHETIC_PRESETS[preset].n_ratings,
    }
    if error or record is None:
        return {**out, "error": error}
    epochs = record.get("epoch_seconds") or [math.nan]
    return {
        **out,
        "train_seconds": record["train_seconds"],
        "epoch_seconds": epochs,
        "seconds_per_epoch": statistics.median(epochs),
    }


TASKS = {
    "ml1m-ours": task_ml1m_ours,
    "ml1m-dense": task_ml1m_dense,
    "shape": task_shape,
    "netflix-cli": task_netflix_cli,
}


# -- orchestration ------------------------------------------------------------------------------
def _common_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "--threads",
        str(args.threads),
        "--timeout",
        str(args.timeout),
        "--dense-batches",
        str(args.dense_batches),
    ]
    if args.dense_epochs:
        argv += ["--dense-epochs", str(args.dense_epochs)]
    if args.dataset:
        argv += ["--dataset", args.dataset]
    return argv + (["--quick"] if args.quick else [])


def _other_busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy by other processes, sampled from /proc/stat over ``seconds`` while this
    benchmark runs nothing. Unlike the load average, which still counts the previous
    measurement for minutes, this sees only what else runs now. None where /proc is missing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)


def _run(task: str, args: argparse.Namespace, *extra: str) -> Result:
    """One measurement in a fresh interpreter; failures come back as {"error": ...}."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--task",
        task,
        *extra,
        *_common_argv(args),
    ]
    label = " ".join([task, *extra])
    other_busy = _other_busy_cores()
    _log(f"running {label} ...")
    # its own process group, so that a timeout also ends an `autorec` child it started
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=args.timeout + 120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        result: Result = {"error": f"timed out after {args.timeout + 120:.0f} s"}
    else:
        if proc.returncode != 0:
            result = {"error": f"exit {proc.returncode}: {_tail(stderr)}"}
        else:
            try:
                result = json.loads(stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                result = {"error": f"no JSON result: {_tail(stdout or stderr)}"}
    if other_busy is not None:
        result["other_busy_cores"] = round(other_busy, 2)
    _log(f"  {json.dumps(result)[:400]}")
    return result


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        dirty = subprocess.run(
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + (" + uncommitted changes" if dirty.strip() else "")


def _part_meta(args: argparse.Namespace) -> Result:
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join(["python", "benchmarks/bench_train.py", *sys.argv[1:]]),
        "commit": _git_commit(),
        "quick": args.quick,
        "threads": args.threads,
    }


def run_ml1m(args: argparse.Namespace) -> Result:
    return {
        "ours": _run("ml1m-ours", args),
        "dense": _run("ml1m-dense", args),
        "meta": _part_meta(args),
    }


def run_shapes(args: argparse.Namespace) -> Result:
    rows = [
        {
            "shape": shape,
            "engine": engine,
            **_run("shape", args, "--shape", shape, "--engine", engine),
        }
        for shape in SHAPES
        for engine in ENGINES
    ]
    return {"rows": rows, "cli": _run("netflix-cli", args), "meta": _part_meta(args)}


# -- the document -------------------------------------------------------------------------------
def _machine() -> str:
    import numpy as np
    import torch

    cpu = cpu_model()
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        mem = ""
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; {platform.platform()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    )


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _secs(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _problem(r: Result | None) -> str | None:
    """The cell text of a measurement that did not produce numbers."""
    if r is None:
        return "not measured"
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return "failed: " + str(r["error"]).replace("|", "\\|")[:200]
    return None


def _busy(runs: list[Result]) -> str:
    """A warning when other processes kept the cores busy just before a run started (or, for
    results without that sample, when the load average exceeded the cores)."""
    cores = os.cpu_count() or 1
    other = [r["other_busy_cores"] for r in runs if "other_busy_cores" in r]
    if other:
        if max(other) <= 0.25:
            return (
                f"\n* Other processes kept at most {max(other):.2f} of {cores} cores busy in "
                f"the second before each run (sampled from /proc/stat): a quiet machine."
            )
        return (
            f"\n* **The machine was busy**: other processes kept up to {max(other):.2f} of "
            f"{cores} cores busy in the second before a run. With other jobs on the cores, "
            f"torch's threads wait for each other and small operations slow down many "
            f"times; rerun on an idle machine before trusting these times."
        )
    loads = [r["load"] for r in runs if "load" in r]
    if not loads or max(loads) <= cores:
        return ""
    return (
        f"\n* **The machine was busy**: a load average of up to {max(loads):.1f} on {cores} "
        f"cores at the start of a run. With other jobs on the cores, torch's threads wait for "
        f"each other and small operations slow down many times; rerun on an idle machine "
        f"before trusting these times."
    )


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def _ml1m_section(part: Result | None) -> str:
    if part is None:
        return (
            "Not measured yet: `python benchmarks/bench_train.py --only ml1m` fills this section.\n"
        )
    ours, dense, meta = part["ours"], part["dense"], part["meta"]
    rows = [
        "| run | what the seconds are | seconds | test RMSE | epochs | peak RSS |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    ours_label = f"ours: `{ours.get('command', 'autorec train ...')}`"
    if _problem(ours):
        rows.append(f"| {ours_label} | | {_problem(ours)} | | | |")
    else:
        rows.append(
            f"| {ours_label} (Rprop, full batch, sparse engine, early stopping on validation) "
            f"| the whole command, start to exit (training alone: "
            f"{_secs(ours['train_seconds'])} s, median epoch "
            f"{_fmt(ours['epoch_seconds_median'], '.3f')} s) | {_secs(ours['wall_seconds'])} "
            f"| {_fmt(ours['test_rmse'], '.4f')} "
            f"| {ours['epochs']} run, best {ours['best_epoch']} | {ours['peak_gb']:.2f} GB |"
        )
    dense_label = (
        "dense reimplementation: items x users dense matrix + mask, "
        "`nn.Linear` 500 sigmoid, Adam lr 1e-3, 256 items a batch, lambda 1"
    )
    if _problem(dense):
        rows.append(f"| {dense_label} | | {_problem(dense)} | | | |")
    else:
        rows.append(
            f"| {dense_label} | training until the end of its best test epoch (per-epoch test "
            f"evaluation not counted; all {dense['epochs']} epochs: "
            f"{_secs(dense['train_seconds'])} s training, "
            f"{_secs(dense['wall_seconds_with_eval'])} s with evaluation) "
            f"| {_secs(dense['time_to_best'])} | {dense['best_test_rmse']:.4f} (best; last epoch "
            f"{dense['final_test_rmse']:.4f}) | best at {dense['best_epoch']} of "
            f"{dense['epochs']} | {dense['peak_gb']:.2f} GB |"
        )
    ratio = None
    if not _problem(ours) and not _problem(dense) and ours["wall_seconds"] > 0:
        ratio = dense["time_to_best"] / ours["wall_seconds"]
    rows.append(
        f"| ratio | dense time-to-best / ours whole command | "
        f"{_fmt(ratio, '.1f' if ratio and ratio >= 1 else '.2f')}x | | | |"
    )
    rmse_ok = (
        None
        if _problem(ours) or ours.get("test_rmse") is None
        else (ours["test_rmse"] <= TARGET_RMSE)
    )
    speed_ok = None if ratio is None else ratio >= TARGET_SPEEDUP
    both = None if rmse_ok is None or speed_ok is None else (rmse_ok and speed_ok)
    dataset = ours.get("dataset") or dense.get("dataset") or "ml-1m"
    loads = ", ".join(
        f"{name} {r['load']:.1f}" for name, r in (("ours", ours), ("dense", dense)) if "load" in r
    )
    busy = _busy([ours, dense])
    text = (
        "\n".join(rows)
        + f"""

Data: `{dataset}`, `paper_split(seed=0)` (81% train, 9% validation, 10% test, as
`autorec train` makes it); both train on the same training ratings and are scored on the same
test ratings (clipped to the scale; a test user or item without training ratings gets 3).

* Target: test RMSE <= {TARGET_RMSE} at >= {TARGET_SPEEDUP:.0f}x the speed of the dense
  reimplementation's time to its best epoch: {_verdict(both)} (RMSE
  {_fmt(ours.get("test_rmse"), ".4f")}: {_verdict(rmse_ok)}; speed-up {_fmt(ratio, ".1f")}x:
  {_verdict(speed_ok)}).
* The comparison favours the dense baseline: its time stops at the epoch of its *best test*
  RMSE (chosen on the test set, which a real run cannot do) and excludes loading, splitting and
  densifying the data, while ours counts the whole command (interpreter start, loading, split,
  training with validation every epoch, test evaluation, saving the model).
* Measured {meta["date"]}, commit {meta["commit"]}, torch threads: {meta["threads"]}; load average
  at the start of each run: {loads or "-"} (other jobs may share the machine).{busy}
"""
    )
    return text


def _shape_note(r: Result) -> str:
    if r.get("method") == "extrapolated":
        batches = r["batch_seconds"]
        return (
            f"extrapolated from {r['batches_timed']} batches of {r['rows_per_batch']} rows "
            f"(median {statistics.median(batches):.2f} s a batch x "
            f"{r['batches_per_epoch']:.1f} batches + {r['step_seconds']:.2f} s weight decay "
            f"and Rprop step); the full-batch dense step would densify the whole "
            f"{r['n_items']:,} x {r['n_users']:,} matrix ({r['dense_matrix_gb']:.1f} GB a "
            f"copy); RSS of the partial run"
        )
    secs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
    note = (
        f"median of {r['epochs']} full epochs ({secs} s)" if r["epochs"] > 1 else "one full epoch"
    )
    if "extrapolated_check" in r:
        note += (
            f"; extrapolating from {r['extrapolated_check_batches']} batches would give "
            f"{r['extrapolated_check']:.2f} s"
        )
    return note + f"; data generation {r['data_seconds']:.1f} s not timed, in the RSS"


def _shapes_section(part: Result | None) -> str:
    if part is None:
        return (
            "Not measured yet: `python benchmarks/bench_train.py --only shapes` fills this "
            "section.\n"
        )
    rows = [
        "| shape | n_users | n_items | n_ratings | engine | s/epoch | ns/rating "
        "| peak RSS GB | note |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    per_rating: dict[str, float] = {}
    netflix_sparse: Result | None = None
    for r in part["rows"]:
        problem = _problem(r)
        if problem:
            rows.append(
                f"| {r.get('shape', '?')} | | | | {r.get('engine', '?')} | | | | {problem} |"
            )
            continue
        ns = r["seconds_per_epoch"] / r["n_ratings"] * 1e9
        if r["engine"] == "sparse":
            per_rating[r["shape"]] = ns
            if r["shape"] == "netflix":
                netflix_sparse = r
        rows.append(
            f"| {r['shape']} | {r['n_users']:,} | {r['n_items']:,} | {r['n_ratings']:,} "
            f"| {r['engine']} | {r['seconds_per_epoch']:.2f} | {ns:.0f} "
            f"| {r['peak_gb']:.2f} | {_shape_note(r)} |"
        )
    cli = part["cli"]
    n_netflix = cli.get("n_ratings")
    if _problem(cli):
        rows.append(f"| netflix, `autorec train` | | | | sparse (auto) | | | | {_problem(cli)} |")
    else:
        ns_cli = (cli["seconds_per_epoch"] / n_netflix * 1e9) if n_netflix else None
        rows.append(
            f"| netflix, `autorec train` | | | {_fmt(n_netflix, ',')} | sparse (auto) "
            f"| {cli['seconds_per_epoch']:.2f} | {_fmt(ns_cli, '.0f')} "
            f"| {cli['peak_gb']:.2f} | `{cli['command']}`: whole command "
            f"{cli['wall_seconds']:.1f} s (training {cli['train_seconds']:.1f} s); RSS of "
            f"the `autorec` process |"
        )
    # targets
    epoch_vals = [r["seconds_per_epoch"] for r in (netflix_sparse, cli) if r and not _problem(r)]
    rss_vals = [r["peak_gb"] for r in (netflix_sparse, cli) if r and not _problem(r)]
    epoch_ok = None if not epoch_vals else max(epoch_vals) <= TARGET_NETFLIX_EPOCH_S
    rss_ok = None if not rss_vals else max(rss_vals) <= TARGET_NETFLIX_RSS_GB
    growth = None
    if "ml-1m" in per_rating and "netflix" in per_rating:
        growth = per_rating["netflix"] / per_rating["ml-1m"]
    growth_ok = None if growth is None else growth <= TARGET_PER_RATING_GROWTH
    spread = None
    if netflix_sparse is not None and not _problem(netflix_sparse):
        times = netflix_sparse["epoch_seconds"]
        spread = (max(times) - min(times)) / statistics.median(times)
    spread_ok = None if spread is None else spread < TARGET_NETFLIX_SPREAD
    meta = part["meta"]
    loads = ", ".join(
        f"{r.get('shape', 'cli')}/{r.get('engine', 'cli')} {r['load']:.1f}"
        for r in [*part["rows"], cli]
        if "load" in r
    )
    busy = _busy([*part["rows"], cli])
    return (
        "\n".join(rows)
        + f"""

I-AutoRec, k = 500, Rprop (full batch), no validation, on the synthetic presets
(`load_dataset("synthetic:NAME")`, seed 0); `AutoRec(AutoRecConfig(variant="item",
engine=ENGINE, n_epochs=N, seed=0)).fit(ratings)`, the median of `history.epoch_seconds`.
ns/rating = seconds per epoch / n_ratings. Peak RSS is the measuring process's whole life
(data generation included), in GB (10^9 bytes).

* Netflix epoch <= {TARGET_NETFLIX_EPOCH_S:.0f} s (sparse, model API and `autorec train`):
  {_verdict(epoch_ok)} ({", ".join(f"{v:.1f} s" for v in epoch_vals) or "-"}).
* Netflix epochs (model API) spread under {TARGET_NETFLIX_SPREAD:.0%} ((slowest - fastest) /
  median): {_verdict(spread_ok)} ({_fmt(None if spread is None else 100 * spread, ".1f")}%).
* Netflix peak RSS <= {TARGET_NETFLIX_RSS_GB:.0f} GB: {_verdict(rss_ok)}
  ({", ".join(f"{v:.2f} GB" for v in rss_vals) or "-"}).
* Sparse cost per rating from ml-1m to netflix within {TARGET_PER_RATING_GROWTH}x:
  {_verdict(growth_ok)} ({_fmt(growth, ".2f")}x; ml-1m {_fmt(per_rating.get("ml-1m"), ".0f")},
  ml-10m {_fmt(per_rating.get("ml-10m"), ".0f")}, netflix {_fmt(per_rating.get("netflix"), ".0f")}
  ns/rating).
* Measured {meta["date"]}, commit {meta["commit"]}, torch threads: {meta["threads"]}; load average
  at the start of each run: {loads or "-"} (other jobs may share the machine).{busy}
"""
    )


def _encode_results(results: Result) -> str:
    # "--" never occurs in JSON outside strings; escaping it keeps the HTML comment valid
    return json.dumps(results, indent=1).replace("--", "-\\u002d")


def _previous_results() -> Result:
    try:
        text = DOC.read_text()
    except OSError:
        return {}
    start = text.find(RESULTS_MARK)
    if start < 0:
        return {}
    body = text[start + len(RESULTS_MARK) :]
    end = body.find("-->")
    try:
        return json.loads(body[:end]) if end >= 0 else {}
    except ValueError:
        return {}


#: Hand-written part of docs/performance.md, kept here so that a rerun does not drop it.
ENGINE_NOTES = """\
What one full-batch epoch of the sparse engine does (`autorec.models.sparse`), and what was done
about its cost (issue 16, part 4):

* **Where the time goes** (torch profiler, ML-1M, 2 epochs with validation, one thread, on the
  shared machine, so only the shares mean something): the five sparse-dense products (`X V`,
  its gradient `X^T G`, the decoder's gradients `D W` and `D^T H`, and the validation pass's
  `X V`; MKL's `addmm`) 52% of the CPU time, the sampled products (`sampled_addmm`, training
  and validation) 15%, RProp's element-wise passes over the 6 M weights about 12%
  (`masked_fill_`, `addcmul_`, `sign`, dtype copies), the rest element-wise work on the ratings.
* **Gradient buffers reused across epochs** (`sparse.GradientPool`): the tiled transposed
  products, whose outputs become the weight gradients (0.96 GB each for I-AutoRec on Netflix),
  write into the buffers of the previous epoch instead of fresh ones. Fresh buffers that large
  come from `mmap`, so every epoch faulted in and zeroed about 2 GB of new pages, with a time
  that varied with the rest of the machine. The pool hands its buffer to autograd, which makes
  it the parameter's `.grad` without a copy, and takes it back before the next backward pass
  (a test counts the allocations: two in epoch 1, none after). Results are bit-identical (the
  first row tile of each column block overwrites its rows). RProp's state (step sizes, int8
  signs) was already kept across epochs; its chunk temporaries are 16 MB.
* **RProp's step factor** is one table lookup (`[etaminus, 1, etaplus][agree + 1]`) instead of
  two nested `where`s: 8% less time per step on 6 M parameters, same bits.
* **Not done this round**: tuning the tile sizes and the row tiling of the transposed products
  on the Netflix shape. The Netflix-shaped runs need about 12 GB and a quiet machine; this
  session shared 2 cores with five other jobs (load average 13-22), so the Netflix epoch, its
  spread and the cost-per-rating ratio above are still the earlier measurements: rerun
  `python benchmarks/bench_train.py --only shapes` (about 12 minutes, 12 GB) on a quiet machine.
* **The main job** (`autorec train --dataset ml-1m --model i-autorec`, old code against new,
  back to back): `python benchmarks/bench_main_job.py time --repeats 2` (about 4 minutes on a
  quiet 2-core machine); the experiments behind its epoch count: `python
  benchmarks/bench_main_job.py ideas` (docs/experiments.md, "Main job speed").
"""


def render(results: Result) -> str:
    ml1m, shapes = results.get("ml1m"), results.get("shapes")
    commands = []
    for part in (ml1m, shapes):
        if part and part["meta"]["command"] not in commands:
            commands.append(part["meta"]["command"])
    quick = any(p and p["meta"].get("quick") for p in (ml1m, shapes))
    warning = (
        "\n**`--quick` smoke test: tiny sizes; none of these numbers means anything.**\n"
        if quick
        else ""
    )
    now = datetime.date.today().isoformat()
    ours_cmd = (ml1m or {}).get("ours", {}).get("command") if ml1m else None
    cli_cmd = (shapes or {}).get("cli", {}).get("command") if shapes else None
    run_lines = "\n".join(f"    {c}" for c in (commands or ["python benchmarks/bench_train.py"]))
    user_lines = "\n".join(f"    {c}" for c in (ours_cmd, cli_cmd) if c)
    return f"""# Training performance

Measured by `benchmarks/bench_train.py` on {_machine()}; written {now}.
Every measurement runs in its own fresh interpreter, one after another; peak RSS is that
process's `ru_maxrss` (for an `autorec` command, the command's own process, via
`RUSAGE_CHILDREN` of a wrapper that runs nothing else).
{warning}
## ML-1M: time to target RMSE, same call

{_ml1m_section(ml1m)}
## Seconds per epoch across data shapes

{_shapes_section(shapes)}
## The epoch: where the time goes, and what was done

{ENGINE_NOTES}
## How these numbers were produced

{run_lines}

with, for the `autorec` rows (`F` a JSON file and `TMP` a model folder in a temporary folder,
`AUTOREC_DATA_DIR` set to the real data):

{user_lines or "    -"}

{RESULTS_MARK}
{_encode_results(results)}
-->
"""


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=list(TASKS), help="run one measurement, print JSON")
    parser.add_argument("--shape", choices=list(SHAPES), default="ml-1m", help="for --task shape")
    parser.add_argument("--engine", choices=ENGINES, default="sparse", help="for --task shape")
    parser.add_argument("--only", choices=("ml1m", "shapes"), help="run one part")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, a smoke test of every code path (never writes the doc)",
    )
    parser.add_argument(
        "--dataset", help="data set of the ML-1M part (default ml-1m; --quick: synthetic:tiny)"
    )
    parser.add_argument("--dense-epochs", type=int, help="epochs of the dense baseline (100)")
    parser.add_argument(
        "--dense-batches",
        type=int,
        default=5,
        help="timed batches of a dense extrapolation (default 5)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per measurement (default 7200; --quick: 300)",
    )
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 300.0 if args.quick else 7200.0
    if args.task:
        print(json.dumps(TASKS[args.task](args)))
        return 0
    parts = [args.only] if args.only else ["ml1m", "shapes"]
    results: Result = {} if args.quick else _previous_results()
    if "ml1m" in parts:
        results["ml1m"] = run_ml1m(args)
    if "shapes" in parts:
        results["shapes"] = run_shapes(args)
    if args.quick:
        results = {k: v for k, v in results.items() if k in parts}
    text = render(results)
    print(text)
    if not args.no_write and not args.quick:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text)
        _log(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
