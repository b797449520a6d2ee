"""``autorec reproduce``: the experiments of Sedhain et al. (2015) re-run with the paper's protocol.

The unit of work is a *cell*: one model setting (a registered model plus fixed config fields) on
one seed, run through :func:`autorec.protocol.run_protocol` (random 90/10 split, 10% of train for
validation, the model's tuning grid searched on validation, retrain on train + validation, test
once, unseen users/items get the fallback). Each finished cell is written at once to
``DIR/cells/<setting>/seed<N>.json`` (atomically), so a run of hours survives interruption: a
rerun with the same ``--out`` loads finished cells and runs only the missing ones. Settings shared
by several tables (I-AutoRec appears in four) are run once.

The experiments (paper section 3, Table 1 and Figure 2):

* ``table_1a``: I-AutoRec, U-AutoRec, I-RBM, U-RBM (plus U-AutoRec with k = 100, our
  validation-chosen capacity, as an extra row);
* ``table_1b``: I-AutoRec with f, g in {identity, sigmoid} (f the output, g the hidden activation);
* ``table_1c``: BiasedMF, I-RBM, U-RBM, LLORMA, I-AutoRec (plus item-kNN, bias, U-AutoRec);
* ``figure_2``: I-AutoRec test RMSE against the number of hidden units k;
* ``deep``: I-AutoRec with three sigmoid hidden layers 500-250-500.

From the cells it writes ``report.md`` (tables with our mean +- 95% CI beside the paper's value),
``results.json`` and PNG figures. ``--quick`` (two runs, at most 15 epochs, three sweep points,
hyperparameters fixed at their defaults) exists to check the pipeline in minutes; its numbers are
not comparable with the paper's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import autorec
from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.evaluation import mean_ci95
from autorec.models import get_model_class, make_model
from autorec.protocol import needs_extension, run_protocol

log = logging.getLogger(__name__)

# Sedhain et al. (2015), Table 1 (test RMSE; the paper's 95% intervals are +-0.003 or less).
# Columns are data sets; a missing key means the paper gives no number for it.
PAPER: dict[str, dict[str, float]] = {
    "I-AutoRec": {"ml-1m": 0.831, "ml-10m": 0.782, "netflix": 0.823},  # Table 1(a), 1(c)
    "U-AutoRec": {"ml-1m": 0.874, "ml-10m": 0.867},  # Table 1(a)
    "I-RBM": {"ml-1m": 0.854, "ml-10m": 0.825},  # Table 1(a), 1(c)
    "U-RBM": {"ml-1m": 0.881, "ml-10m": 0.823, "netflix": 0.845},  # Table 1(a), 1(c)
    "BiasedMF": {"ml-1m": 0.845, "ml-10m": 0.803, "netflix": 0.844},  # Table 1(c)
    "LLORMA": {"ml-1m": 0.833, "ml-10m": 0.782, "netflix": 0.834},  # Table 1(c)
    # Table 1(b), ML-1M only: f (output) / g (hidden).
    "f = identity, g = identity": {"ml-1m": 0.872},
    "f = sigmoid, g = identity": {"ml-1m": 0.852},
    "f = identity, g = sigmoid": {"ml-1m": 0.831},
    "f = sigmoid, g = sigmoid": {"ml-1m": 0.836},
    # Section 3, "deep" I-AutoRec with three hidden layers (500, 250, 500), ML-1M.
    "Deep I-AutoRec (500-250-500)": {"ml-1m": 0.827},
}

TABLES = ("table_1a", "table_1b", "table_1c", "figure_2", "deep")
TITLES = {
    "table_1a": "Table 1(a): I/U-AutoRec and I/U-RBM",
    "table_1b": "Table 1(b): I-AutoRec activations (f output, g hidden)",
    "table_1c": "Table 1(c): I-AutoRec against the baselines",
    "figure_2": "Figure 2: I-AutoRec test RMSE against the number of hidden units k",
    "deep": "Deep I-AutoRec (500-250-500 sigmoid layers)",
}
SWEEP = (10, 20, 40, 80, 100, 200, 300, 400, 500)  # Figure 2's k values
QUICK_SWEEP = (10, 40, 100)
QUICK_RUNS = 2
QUICK_EPOCHS = 15


@dataclass(frozen=True)
class Row:
    """One row of a table: a label, a registered model and the config fields it fixes."""

    label: str
    model: str
    settings: tuple[tuple[str, Any], ...] = ()
    paper_label: str | None = None  # key into PAPER (defaults to the label)
    extra: bool = False  # a row the paper does not have

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.settings)


def _rows(table: str, quick: bool) -> list[Row]:
    if table == "table_1a":
        return [
            Row("I-AutoRec", "i-autorec"),
            Row("U-AutoRec", "u-autorec"),
            Row("I-RBM", "i-rbm"),
            Row("U-RBM", "u-rbm"),
            Row("U-AutoRec, k = 100", "u-autorec", (("hidden", (100,)),), extra=True),
        ]
    if table == "table_1b":
        return [
            Row(f"f = {f}, g = {g}", "i-autorec", (("f", f), ("g", g)))
            for f, g in (
                ("identity", "identity"),
                ("sigmoid", "identity"),
                ("identity", "sigmoid"),
                ("sigmoid", "sigmoid"),
            )
        ]
    if table == "table_1c":
        return [
            Row("BiasedMF", "biased-mf"),
            Row("I-RBM", "i-rbm"),
            Row("U-RBM", "u-rbm"),
            Row("LLORMA", "llorma"),
            Row("I-AutoRec", "i-autorec"),
            Row("item-kNN", "item-knn", extra=True),
            Row("bias", "bias", extra=True),
            Row("U-AutoRec", "u-autorec", extra=True),
        ]
    if table == "figure_2":
        return [
            Row(f"k = {k}", "i-autorec", (("hidden", (k,)),), paper_label="-")
            for k in (QUICK_SWEEP if quick else SWEEP)
        ]
    if table == "deep":
        return [
            Row("I-AutoRec (500)", "i-autorec", paper_label="I-AutoRec"),
            Row(
                "Deep I-AutoRec (500-250-500)",
                "i-autorec",
                (("hidden", (500, 250, 500)),),
            ),
        ]
    raise ConfigError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")


# -- cells ----------------------------------------------------------------------------------------
def _canonical(model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``overrides`` that differ from the model's defaults (so that identical
    settings written differently share one cell)."""
    default = make_model(model).config.to_dict()
    chosen = make_model(model, **overrides).config.to_dict()
    return {k: chosen[k] for k in sorted(chosen) if chosen[k] != default[k]}


def setting_id(model: str, overrides: dict[str, Any]) -> str:
    """A file-name-safe name of a model setting, e.g. ``i-autorec+hidden=500-250-500``."""
    parts = [model]
    for key, value in _canonical(model, overrides).items():
        text = "-".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{key}={text}")
    return "+".join(parts)


@dataclass(frozen=True)
class Cell:
    setting: str
    model: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def key(self) -> str:
        return f"{self.setting}/seed{self.seed}"


@dataclass(frozen=True)
class Plan:
    """What a reproduce run covers: the data set name, tables, seeds and the quick switch."""

    dataset: str
    tables: tuple[str, ...] = TABLES
    runs: int = 5
    quick: bool = False
    models: tuple[str, ...] | None = None  # only the rows of these registered models

    def rows(self) -> dict[str, list[Row]]:
        out = {t: _rows(t, self.quick) for t in self.tables}
        if self.models is not None:
            out = {t: [r for r in rows if r.model in self.models] for t, rows in out.items()}
        return out

    def cells(self) -> list[Cell]:
        seen: dict[str, Cell] = {}
        for rows in self.rows().values():
            for row in rows:
                sid = setting_id(row.model, row.overrides)
                for seed in range(self.runs):
                    cell = Cell(sid, row.model, row.settings, seed)
                    seen.setdefault(cell.key, cell)
        return list(seen.values())


def cell_overrides(cell: Cell, quick: bool) -> dict[str, Any]:
    """Config fields for a cell: the row's settings, the seed and, with ``quick``, fewer epochs."""
    overrides = {**dict(cell.overrides), "seed": cell.seed}
    fields = get_model_class(cell.model).config_class.__dataclass_fields__
    if quick and "n_epochs" in fields:
        default_epochs = make_model(cell.model).config.n_epochs  # type: ignore[attr-defined]
        overrides["n_epochs"] = min(default_epochs, QUICK_EPOCHS)
    return overrides


def cell_grid(cell: Cell, quick: bool) -> dict[str, tuple[Any, ...]]:
    """The validation grid of a cell: the model's tuning grid less the fields the row fixes.
    ``quick`` tunes nothing (every hyperparameter at its default)."""
    if quick:
        return {}
    fixed = dict(cell.overrides)
    grid = get_model_class(cell.model).tuning_grid
    return {k: v for k, v in grid.items() if k not in fixed}


def stale_reason(cell: Cell, payload: dict[str, Any], quick: bool) -> str | None:
    """Why a stored cell no longer matches what the protocol would run today, or None.

    A cell is reused only if its validation search covered every value of the cell's current
    grid and, for a key the model declares open above, did not stop at its largest value while
    the protocol would now try larger ones. Finished results thus never hide a change of grid.
    """
    grid = cell_grid(cell, quick)
    record = payload.get("record") or {}
    candidates = record.get("candidates") or []
    for key, values in grid.items():
        missing = [v for v in values if v not in {c.get(key) for c in candidates}]
        if missing:
            return f"its search lacked {key} = {', '.join(map(str, missing))}"
    chosen = record.get("hyperparameters") or {}
    for key in get_model_class(cell.model).open_above:
        if len(grid.get(key, ())) < 2 or key not in chosen:
            continue
        if needs_extension(chosen[key], [c[key] for c in candidates], grid[key]):
            return f"validation chose its largest {key}, {chosen[key]:g}; larger ones are now tried"
    return None


class CellStore:
    """Finished cells as JSON files under ``DIR/cells``, one per (setting, seed)."""

    def __init__(self, out_dir: Path, plan: Plan) -> None:
        self.out_dir = out_dir
        self.root = out_dir / "cells"
        self.quick = plan.quick
        self._warned: set[Path] = set()
        self._check_manifest(plan)

    def _check_manifest(self, plan: Plan) -> None:
        manifest = self.out_dir / "manifest.json"
        wanted = {"dataset": plan.dataset, "quick": plan.quick}
        if manifest.is_file():
            have = json.loads(manifest.read_text())
            have = {k: have.get(k) for k in wanted}
            if have != wanted:
                raise ConfigError(
                    f"{self.out_dir} holds results for dataset {have['dataset']!r} "
                    f"(quick={have['quick']}), not {plan.dataset!r} (quick={plan.quick}); "
                    "choose another --out"
                )
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_text(manifest, json.dumps(wanted, indent=1))

    def path(self, cell: Cell) -> Path:
        return self.root / cell.setting / f"seed{cell.seed}.json"

    def get(self, cell: Cell) -> dict[str, Any] | None:
        path = self.path(cell)
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError:
            # Writes are atomic, so this is damage from outside: run the cell again.
            log.warning("%s is not valid JSON; the cell will run again", path)
            return None
        reason = stale_reason(cell, payload, self.quick)
        if reason is not None:
            if path not in self._warned:  # the store is asked more than once per cell
                self._warned.add(path)
                log.warning("%s was run under an older protocol (%s); it runs again", path, reason)
            return None
        return payload

    def put(self, cell: Cell, payload: dict[str, Any]) -> None:
        path = self.path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(path, json.dumps(payload, indent=1))

    # Several processes (one per core, or per machine on a shared disk) may work on one folder:
    # each claims a cell with a lock file created exclusively before running it.
    def lock_path(self, cell: Cell) -> Path:
        return self.root / cell.setting / f"seed{cell.seed}.lock"

    def claim(self, cell: Cell) -> dict[str, Any] | None:
        """Claim ``cell`` for this process. Returns None when claimed, else the holder's lock
        (host, pid, since). A lock left by a dead process of this host is taken over."""
        path = self.lock_path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = {
            "host": platform.node(),
            "pid": os.getpid(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(path)
                if holder is None:  # released between our two looks: try again
                    continue
                if _alive_elsewhere(holder):
                    return holder
                log.warning("%s: its process %s has ended; taking it over", path, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(mine, fh)
            return None
        return self._holder(path) or dict(_UNKNOWN_HOLDER)

    @staticmethod
    def _holder(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Being written right now (the holder creates it, then writes): treat as held.
            return dict(_UNKNOWN_HOLDER)

    def release(self, cell: Cell) -> None:
        self.lock_path(cell).unlink(missing_ok=True)


_UNKNOWN_HOLDER = {"host": "?", "pid": "?", "since": "?"}


def _alive_elsewhere(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder may still be running: always for another host (we cannot see
    its processes), else whether its pid exists."""
    if holder.get("host") != platform.node() or not isinstance(holder.get("pid"), int):
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _huge_pages() -> str:
    """Whether torch backs large CPU tensors with transparent huge pages in this process (see
    ``autorec/__init__.py``): provenance for the cell's seconds, since it changes speed, not
    numbers (with one thread, weights are bit-identical either way)."""
    return "on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _estimate_left(
    pending: Sequence[Cell], done: dict[str, float], model_of: dict[str, str]
) -> float:
    """Seconds the pending cells should take: the mean of finished cells of the same setting,
    else of the same model, else of all finished cells."""
    if not done:
        return math.nan
    by_setting: dict[str, list[float]] = {}
    by_model: dict[str, list[float]] = {}
    for setting, secs in done.items():
        name = setting.split("/")[0]
        by_setting.setdefault(name, []).append(secs)
        by_model.setdefault(model_of[name], []).append(secs)
    overall = float(np.mean(list(done.values())))
    total = 0.0
    for cell in pending:
        if cell.setting in by_setting:
            total += float(np.mean(by_setting[cell.setting]))
        elif cell.model in by_model:
            total += float(np.mean(by_model[cell.model]))
        else:
            total += overall
    return total


def run_cells(
    ratings: Ratings,
    plan: Plan,
    store: CellStore,
    *,
    runner: Callable[..., Any] = run_protocol,
) -> dict[str, dict[str, Any]]:
    """Run every cell of ``plan`` that ``store`` does not hold yet; return all cells by key."""
    cells = plan.cells()
    results: dict[str, dict[str, Any]] = {}
    for cell in cells:
        found = store.get(cell)
        if found is not None:
            results[cell.key] = found
    pending = [c for c in cells if c.key not in results]
    model_of = {c.setting: c.model for c in cells}
    done_seconds = {k: float(v["seconds"]) for k, v in results.items()}
    if results:
        log.info("%d of %d cells already finished in %s", len(results), len(cells), store.root)
    left_to_others: list[str] = []
    for number, cell in enumerate(pending, start=1):
        holder = store.claim(cell)
        if holder is not None:
            log.info(
                "cell %d/%d: %s seed %d is being run by process %s on %s since %s; skipped",
                number,
                len(pending),
                cell.setting,
                cell.seed,
                holder.get("pid"),
                holder.get("host"),
                holder.get("since"),
            )
            left_to_others.append(cell.key)
            continue
        found = store.get(cell)  # another process finished it since we started
        if found is not None:
            store.release(cell)
            results[cell.key] = found
            continue
        left = _estimate_left(pending[number - 1 :], done_seconds, model_of)
        log.info(
            "cell %d/%d: %s seed %d%s",
            number,
            len(pending),
            cell.setting,
            cell.seed,
            "" if math.isnan(left) else f" (about {_fmt_duration(left)} left)",
        )
        try:
            payload = _run_cell(ratings, plan, runner, cell)
            store.put(cell, payload)
        finally:
            store.release(cell)
        results[cell.key] = payload
        done_seconds[cell.key] = payload["seconds"]
        log.info(
            "cell %d/%d done in %s: test RMSE %.4f",
            number,
            len(pending),
            _fmt_duration(payload["seconds"]),
            payload["record"]["test_rmse"],
        )
    if left_to_others:
        log.info(
            "%d cell(s) were left to other processes: %s; rerun later to include them",
            len(left_to_others),
            ", ".join(left_to_others),
        )
    return results


def _run_cell(
    ratings: Ratings, plan: Plan, runner: Callable[..., Any], cell: Cell
) -> dict[str, Any]:
    """Run one cell through the protocol; its stored form, with provenance."""
    started = time.perf_counter()
    result = runner(
        ratings,
        cell.model,
        seed=cell.seed,
        overrides=cell_overrides(cell, plan.quick),
        grid=cell_grid(cell, plan.quick),
    )
    return {
        "setting": cell.setting,
        "model": cell.model,
        "overrides": dict(cell.overrides),
        "seed": cell.seed,
        "dataset": plan.dataset,
        "quick": plan.quick,
        "seconds": time.perf_counter() - started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "autorec_version": autorec.__version__,
        "torch_threads": _torch_threads(),
        "huge_pages": _huge_pages(),
        "record": result.record,
    }


# -- summaries ------------------------------------------------------------------------------------
def verdict(mean: float, ci: float | None, paper: float | None) -> str:
    """How our mean compares with the paper's value, given our 95% CI half-width."""
    if paper is None:
        return "no paper value"
    if ci is None or not math.isfinite(ci):
        return "one run: no interval"
    diff = mean - paper
    if abs(diff) <= ci:
        return "agrees (within our CI)"
    return "worse than the paper (outside our CI)" if diff > 0 else "better than the paper"


def _paper_value(row: Row, dataset: str) -> float | None:
    label = row.paper_label or row.label
    return PAPER.get(label, {}).get(dataset)


def _evaluate_command(row: Row, dataset: str, runs: int) -> str:
    parts = ["autorec evaluate", f"--dataset {dataset}", f"--model {row.model}", f"--runs {runs}"]
    for key, value in row.settings:
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts.append(f"--set {key}={text}")
    return " ".join(parts)


def summarise(plan: Plan, cells: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per table, one entry per row: mean and 95% CI over the finished seeds, beside the paper."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, rows in plan.rows().items():
        entries = []
        for row in rows:
            sid = setting_id(row.model, row.overrides)
            found = [cells[f"{sid}/seed{s}"] for s in range(plan.runs) if f"{sid}/seed{s}" in cells]
            rmses = [c["record"]["test_rmse"] for c in found]
            mean, ci = mean_ci95(rmses) if rmses else (None, None)
            ci = ci if ci is not None and math.isfinite(ci) else None
            paper = _paper_value(row, plan.dataset)
            entry: dict[str, Any] = {
                "model": row.label,
                "name": row.model,
                "settings": _canonical(row.model, row.overrides),
                "test_rmse_mean": mean,
                "test_rmse_ci95": ci,
                "n_runs": len(rmses),
                "paper": paper,
                "difference": None if mean is None or paper is None else mean - paper,
                "verdict": None if mean is None else verdict(mean, ci, paper),
                "extra_row": row.extra,
                "seconds_per_run": (
                    float(np.mean([c["seconds"] for c in found])) if found else None
                ),
                "runs": [
                    {
                        "seed": c["seed"],
                        "test_rmse": c["record"]["test_rmse"],
                        "test_mae": c["record"]["test_mae"],
                        "hyperparameters": c["record"]["hyperparameters"],
                        "n_test_fallback": c["record"]["n_test_fallback"],
                        "seconds": c["seconds"],
                    }
                    for c in found
                ],
                "command": _evaluate_command(row, plan.dataset, plan.runs),
            }
            if table == "figure_2":
                entry["hidden_units"] = int(dict(row.settings)["hidden"][0])
            entries.append(entry)
        tables[table] = entries
    return tables


def environment() -> dict[str, Any]:
    """Versions and hardware, for the report."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    return {
        "autorec": autorec.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "huge_pages": _huge_pages(),
        "memory_gib": None if memory_gb is None else round(memory_gb, 1),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# -- figures --------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "autorec reproduce draws its figures with matplotlib: pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(entries: list[dict[str, Any]], dataset: str, path: Path) -> bool:
    """Figure 2: test RMSE (mean +- 95% CI) against k. False when nothing is finished."""
    done = [e for e in entries if e["test_rmse_mean"] is not None]
    if not done:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [e["hidden_units"] for e in done]
    means = [e["test_rmse_mean"] for e in done]
    errs = [e["test_rmse_ci95"] or 0.0 for e in done]
    ax.errorbar(ks, means, yerr=errs, marker="o", capsize=3, label="I-AutoRec (ours)")
    paper = PAPER["I-AutoRec"].get(dataset)
    if paper is not None:
        ax.axhline(paper, color="grey", ls="--", lw=1, label=f"paper, k = 500: {paper}")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("hidden units k")
    ax.set_ylabel("test RMSE")
    ax.set_title(f"I-AutoRec on {dataset}: test RMSE against k (95% CI)")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return True


def plot_learning_curves(
    curves: dict[str, dict[str, list[float]]], dataset: str, path: Path
) -> bool:
    """Train and validation RMSE per epoch of one run (seed 0) per iterative model."""
    curves = {k: v for k, v in curves.items() if v.get("val_rmse")}
    if not curves:
        return False
    plt = _pyplot()
    n = len(curves)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, (label, curve) in zip(axes.flat, curves.items(), strict=False):
        if curve.get("train_rmse"):
            ax.plot(range(1, len(curve["train_rmse"]) + 1), curve["train_rmse"], label="train")
        ax.plot(range(1, len(curve["val_rmse"]) + 1), curve["val_rmse"], label="validation")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("RMSE")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"Learning curves on {dataset} (seed 0, the validation-chosen setting)")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return True


def _save_figure(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def _learning_curves(plan: Plan, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    for rows in plan.rows().values():
        for row in rows:
            sid = setting_id(row.model, row.overrides)
            cell = cells.get(f"{sid}/seed0")
            if cell is None or sid in {c["setting"] for c in curves.values()}:
                continue
            if len(dict(row.settings)) and row.model == "i-autorec":
                continue  # one curve per model: the variants of I-AutoRec are left out
            curve = cell["record"].get("learning_curve") or {}
            curves[row.label] = {**curve, "setting": sid}
    return curves


# -- report ---------------------------------------------------------------------------------------
def _num(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _count_text(cells: dict[str, dict[str, Any]], field: str, missing: str) -> str:
    counts: dict[str, int] = {}
    for cell in cells.values():
        key = str(cell.get(field, missing))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ({n} cells)" for k, n in sorted(counts.items()))


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _mean_ci(entry: dict[str, Any]) -> str:
    if entry["test_rmse_mean"] is None:
        return "not run"
    ci = entry["test_rmse_ci95"]
    text = f"{entry['test_rmse_mean']:.4f}" + (f" +- {ci:.4f}" if ci is not None else "")
    return text


def _table_md(entries: list[dict[str, Any]], runs: int, sweep: bool = False) -> list[str]:
    head = "k" if sweep else "model"
    lines = [
        f"| {head} | ours: test RMSE (95% CI) | runs | paper | ours - paper | verdict | s/run |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for e in entries:
        label = e["model"] + (" *" if e["extra_row"] else "")
        runs_text = f"{e['n_runs']}/{runs}"
        diff = e["difference"]
        lines.append(
            f"| {label} | {_mean_ci(e)} | {runs_text} | {_num(e['paper'], '.3f')} | "
            f"{'-' if diff is None else f'{diff:+.4f}'} | {e['verdict'] or '-'} | "
            f"{_secs(e['seconds_per_run'])} |"
        )
    return lines


def _plain_findings(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    for table, entries in tables.items():
        for e in entries:
            if e["verdict"] and e["verdict"].startswith(("worse", "better")):
                out.append(
                    f"- {TITLES[table].split(':')[0]}, {e['model']}: ours "
                    f"{e['test_rmse_mean']:.4f} +- {e['test_rmse_ci95']:.4f} against the paper's "
                    f"{e['paper']:.3f}: {e['verdict']} by {abs(e['difference']):.4f}."
                )
    return out


HOW_TO_READ = """\
## How to read this

* **Comparable with the paper:** the protocol. Every number here comes from the paper's protocol:
  a random 90/10 train/test split per seed, 10% of the training ratings held out to choose the
  hyperparameters (each model's grid, in `results.json` under `runs[].hyperparameters`; when
  validation picks AutoRec's largest lambda, larger ones are tried until one does no better), the
  chosen setting retrained on all training ratings for the number of epochs that validation chose,
  the test set scored once, and test users or items without a training rating predicted as 3.
  The interval is the 95% Student-t interval over the runs, as in the paper.
* **Not identical:** the splits. Ours are different random draws from the paper's, so a difference
  inside our interval (and the paper's, +-0.003) is noise, not a finding.
* **Not identical:** the implementations. Every row is this package's own implementation of the
  cited model, tuned on validation with the grid its module documents; the paper's baselines come
  from its authors' runs. A gap in a baseline row says as much about that baseline's tuning as
  about AutoRec.
* **Not comparable:** the seconds. They depend on the machine (above) and on what else ran on it.
* **Not comparable:** anything from `--quick` (two runs, at most 15 epochs, no tuning) or from a
  data set the paper did not use (the paper column is then empty).
* Rows marked * are extra rows the paper does not have.
"""


def write_report(
    out_dir: Path,
    plan: Plan,
    cells: dict[str, dict[str, Any]],
    *,
    command: str,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and the figures from the finished cells."""
    tables = summarise(plan, cells)
    env = environment()
    figures = {}
    if "figure_2" in tables and plot_sweep(
        tables["figure_2"], plan.dataset, out_dir / "figure_2.png"
    ):
        figures["figure_2"] = "figure_2.png"
    curves = _learning_curves(plan, cells)
    if plot_learning_curves(curves, plan.dataset, out_dir / "learning_curves.png"):
        figures["learning_curves"] = "learning_curves.png"
    total_cell_seconds = float(sum(c["seconds"] for c in cells.values()))
    results = {
        "dataset": plan.dataset,
        "runs": plan.runs,
        "quick": plan.quick,
        "tables": list(tables),
        **tables,
        "figures": figures,
        "command": command,
        "environment": env,
        "cell_seconds_total": total_cell_seconds,
        "wall_seconds_last_invocation": wall_seconds,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _write_text(out_dir / "results.json", json.dumps(results, indent=1))

    lines = [
        f"# AutoRec (Sedhain et al., WWW 2015) reproduced on {plan.dataset}",
        "",
        f"Produced by `{command}`; autorec {env['autorec']}, torch {env['torch']}, "
        f"numpy {env['numpy']}, Python {env['python']}.",
        f"Machine: {env['cpu']}, {env['cpu_count']} CPUs, {env['memory_gib']} GiB RAM, "
        f"torch threads per cell: {_count_text(cells, 'torch_threads', 'not recorded')}; "
        f"{env['platform']}.",
        "Transparent huge pages per cell: "
        f"{_count_text(cells, 'huge_pages', 'off (not recorded: before autorec turned them on)')}"
        " (speed only). Cells run with one torch thread rerun bit for bit; with more, MKL's "
        "sums can differ in the last bits from run to run.",
        f"Compute: {_fmt_duration(total_cell_seconds)} over {len(cells)} cells "
        "(model setting x seed); generated " + results["generated"] + ".",
    ]
    if plan.quick:
        lines += [
            "",
            "**Quick mode:** two runs, at most 15 epochs, hyperparameters at their defaults. "
            "A pipeline check, not a reproduction: do not compare these numbers with the paper's.",
        ]
    lines += ["", HOW_TO_READ]
    findings = _plain_findings(tables)
    lines += ["## Where we differ from the paper", ""]
    if not any(e["paper"] is not None for es in tables.values() for e in es):
        lines += [
            f"- The paper reports no numbers for {plan.dataset}: there is nothing to compare."
        ]
    else:
        lines += findings or ["- No row differs from the paper's value by more than our interval."]
    missing = [e for es in tables.values() for e in es if e["n_runs"] < plan.runs]
    if missing:
        lines += [
            "",
            f"**Incomplete:** {len(missing)} row(s) have fewer than {plan.runs} finished runs; "
            "rerun the same command to resume.",
        ]
    for table, entries in tables.items():
        lines += ["", f"## {TITLES[table]}", ""]
        lines += _table_md(entries, plan.runs, sweep=table == "figure_2")
        if table == "figure_2" and "figure_2" in figures:
            lines += ["", "![Figure 2: test RMSE against k](figure_2.png)"]
            lines += [
                "",
                "The paper shows this curve as a figure without numbers; the dashed line is its "
                "Table 1 value at k = 500.",
            ]
        lines += ["", "Each row as one command:", "", "```"]
        if plan.quick:
            lines[-1:] = [
                "(quick mode also caps the epochs at 15 and fixes every tuned hyperparameter "
                "at its default)",
                "",
                "```",
            ]
        lines += [e["command"] for e in entries]
        lines += ["```"]
    if "learning_curves" in figures:
        lines += [
            "",
            "## Learning curves",
            "",
            "Training and validation RMSE per epoch of seed 0, in the run that chose the setting "
            "(before the retrain on train + validation).",
            "",
            "![Learning curves](learning_curves.png)",
        ]
    lines += [
        "",
        "## Reproducing",
        "",
        "```",
        command,
        "```",
        "",
        "Finished cells are kept under `cells/`; rerunning the command skips them. "
        "`results.json` holds every run's seed, test RMSE and chosen hyperparameters.",
        "",
    ]
    _write_text(out_dir / "report.md", "\n".join(lines))
    return results


def reproduce(
    ratings: Ratings,
    plan: Plan,
    out_dir: Path,
    *,
    command: str | None = None,
    runner: Callable[..., Any] = run_protocol,
    report_only: bool = False,
) -> dict[str, Any]:
    """Run the missing cells of ``plan`` (storing each as it ends), then write the report.
    ``report_only`` runs nothing: the report shows the cells finished so far."""
    _pyplot()  # fail before hours of work, not after
    started = time.perf_counter()
    store = CellStore(out_dir, plan)
    command = command or "autorec reproduce " + " ".join(sys.argv[1:])
    if not report_only:
        run_cells(ratings, plan, store, runner=runner)
    # The report covers every finished cell of every table, including earlier --only runs.
    full = dataclasses.replace(plan, tables=TABLES, models=None)
    everything = {c.key: store.get(c) for c in full.cells()}
    everything = {k: v for k, v in everything.items() if v is not None}
    shown = dataclasses.replace(
        full, tables=tuple(t for t in TABLES if t in plan.tables or _has_any(full, t, everything))
    )
    return write_report(
        out_dir, shown, everything, command=command, wall_seconds=time.perf_counter() - started
    )


def _has_any(plan: Plan, table: str, cells: dict[str, dict[str, Any]]) -> bool:
    for row in _rows(table, plan.quick):
        sid = setting_id(row.model, row.overrides)
        if any(f"{sid}/seed{s}" in cells for s in range(plan.runs)):
            return True
    return False
