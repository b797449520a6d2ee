"""Replay the protocol's pruning rule on every committed reproduce cell: does it keep every choice?

    python benchmarks/check_pruning.py                      # every cell of ml-1m and ml-100k
    python benchmarks/check_pruning.py --refit              # also refit the curves not stored
    python benchmarks/check_pruning.py --margin 2 --warmup 10 --json out.json

Why the choice can be checked from what a cell stores. A pruned point keeps the best validation
RMSE it reached, which is at or above its unpruned final value. So pruning changes nothing while
it never stops a point that was the best so far in the unpruned run (a *record*): the incumbent
seen by every point is then the unpruned one, and so are the grid's best point, the extensions
above the grid, the chosen point and its epoch count (autorec.protocol, module docstring). And it
is enough that the records that decide are kept: the chosen point W and, when W lies above the
grid, the grid's best point G and the extension records before W (they decide that the grid is
extended at all). A record pruned before W only weakens the incumbent W is compared with.

What a cell stores: every candidate's final validation RMSE and best epoch, and the learning curve
of W only. The script tests W's curve against the incumbent it would meet (the best final
validation RMSE of the points in earlier waves: the lowest the real incumbent can be, so the test
is conservative). When W lies above the grid, G's curve is not stored: such a cell is reported
UNVERIFIED unless ``--refit`` fits G again on the cell's split with one torch thread, as the
committed cells were computed. A refit that does not reproduce the stored validation RMSE and best
epoch bit for bit (the code has changed since some cells were computed: benchmarks/check_cells.py
shows the same for a whole rerun) is a close stand-in, not the stored run: its verdict is marked
``KEPT~`` and the difference printed. The refit stops once its best validation RMSE reaches the
incumbent (no rule can prune it after that), so it costs a fraction of the point's epochs; it
is then a stand-in too (KEPT~), checked up to that epoch.

Epochs saved. For a point that is not a record the script gives a lower bound of the epochs
pruning saves: its best-so-far is never below its final value v, so it stops no later than the
first epoch e >= warmup with v > incumbent * (1 + margin / e); it would have run its best epoch plus
the model's patience (capped at n_epochs). Records and W are counted as running in full. The
numbers are epoch-fits of the grid search (the retrain is not pruned).

Exit status 0 when every cell keeps its choice (and, with ``--strict``, none is unverified).
The data for ``--refit`` is read from ``--data-dir``, ``$AUTOREC_DATA_DIR`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("ml-1m", "ml-100k")


def _incumbents(finals: list[float], n_grid: int, wave: int) -> list[float | None]:
    """The incumbent each point meets: the best final of the earlier waves (grid) or of every
    earlier point (extensions, one at a time)."""
    out: list[float | None] = []
    for i in range(len(finals)):
        before = finals[: (i // wave) * wave] if i < n_grid else finals[:i]
        out.append(min(before) if before else None)
    return out


def _run_epochs(best_epoch: int, config: Any) -> int:
    """Epochs an unpruned fit ran: its best epoch plus the patience, within the bounds."""
    return min(config.n_epochs, max(best_epoch + config.patience, config.min_epochs))


def _refit_curve(
    cell: dict[str, Any], point: dict[str, Any], data_dir: str, incumbent: float | None
) -> list[float]:
    """The validation curve of one grid point of a cell, fitted again with one torch thread,
    up to the epoch where its best validation RMSE reaches ``incumbent``: no rule can prune it
    after that (its best stays at or below the incumbent), so the rest is not needed."""
    from autorec.data import load_dataset, paper_split
    from autorec.models import make_model
    from autorec.reproduce import Cell
    from autorec.reproduce.cells import cell_overrides

    key = (cell["dataset"], cell["seed"])
    if key not in _SPLITS:
        ratings = load_dataset(cell["dataset"], data_dir=data_dir).ratings
        _SPLITS[key] = paper_split(ratings, seed=cell["seed"])
    split = _SPLITS[key]
    overrides = tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in cell["overrides"].items()
    )
    spec = Cell(cell["setting"], cell["model"], overrides, cell["seed"])
    model = make_model(cell["model"], **{**cell_overrides(spec, False), **point})
    reached = (lambda p: p.best_val_rmse <= incumbent) if incumbent is not None else None
    model.fit(split.train, split.val, progress=reached)
    return list(model.history.val_rmse)


_SPLITS: dict[tuple[str, int], Any] = {}


def check_cell(path: Path, rule: Any, refit: bool, data_dir: str) -> dict[str, Any] | None:
    """The replay of one stored cell (None: a model that does not train epoch by epoch or a cell
    without a grid)."""
    from autorec.models import get_model_class, make_model
    from autorec.models.training import is_iterative
    from autorec.protocol import grid_points
    from autorec.reproduce import Cell
    from autorec.reproduce.cells import cell_grid, cell_overrides

    cell = json.loads(path.read_text())
    record = cell.get("record")
    if record is None or not is_iterative(get_model_class(cell["model"]).config_class):
        return None
    overrides = tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in cell["overrides"].items()
    )
    spec = Cell(cell["setting"], cell["model"], overrides, cell["seed"])
    grid = cell_grid(spec, cell.get("quick", False))
    candidates = record["candidates"]
    if len(candidates) < 2:
        return None
    config = make_model(cell["model"], **cell_overrides(spec, cell.get("quick", False))).config
    keys = sorted(grid)
    n_grid = len(grid_points(grid))
    finals = [c["val_rmse"] for c in candidates]
    chosen = {k: record["hyperparameters"][k] for k in keys}
    (w,) = [i for i, c in enumerate(candidates) if all(c[k] == chosen[k] for k in keys)]
    incumbents = _incumbents(finals, n_grid, rule.wave)
    records = [i for i in range(len(finals)) if finals[i] < min(finals[:i], default=math.inf)]
    must_survive = [w]
    if w >= n_grid:  # chosen above the grid: the grid's best and the extensions decided that
        grid_best = min(range(n_grid), key=lambda i: (finals[i], i))
        must_survive = [grid_best] + [i for i in records if n_grid <= i < w] + [w]
    curves: dict[int, list[float]] = {w: record["learning_curve"]["val_rmse"]}
    approximate: list[str] = []
    for i in must_survive:
        if i in curves or not refit:
            continue
        point = {k: candidates[i][k] for k in keys}
        curve = _refit_curve(cell, point, data_dir, incumbents[i])
        best = min(curve)
        best_epoch = curve.index(best) + 1
        if len(curve) < candidates[i]["best_epoch"]:  # cut at the incumbent (_refit_curve)
            approximate.append(
                f"refit of {point} reached the incumbent {incumbents[i]:.6f} at epoch "
                f"{len(curve)} (stored best: {finals[i]:.6f} at epoch "
                f"{candidates[i]['best_epoch']})"
            )
        elif best != finals[i] or best_epoch != candidates[i]["best_epoch"]:
            # The code changed since the cell was computed (benchmarks/check_cells.py tells):
            # the refit curve is then a close stand-in for the stored run's, not the same one.
            approximate.append(
                f"refit of {point}: {best:.6f} at epoch {best_epoch}, stored "
                f"{finals[i]:.6f} at epoch {candidates[i]['best_epoch']}"
            )
        curves[i] = curve
    pruned_at = {i: rule.stop_epoch(curves[i], incumbents[i]) for i in must_survive if i in curves}
    unverified = [i for i in must_survive if i not in curves]
    # stopping where early stopping does is no pruning
    kept = all(epoch is None or epoch >= len(curves[i]) for i, epoch in pruned_at.items())
    total = saved = 0
    for i, c in enumerate(candidates):
        ran = _run_epochs(c["best_epoch"], config)
        total += ran
        if i in records or i in must_survive or incumbents[i] is None:
            continue
        inc = incumbents[i]
        if finals[i] <= inc:
            continue
        # the first epoch e >= warmup where even the final value is above the threshold
        latest = max(rule.warmup, math.floor(rule.margin * inc / (finals[i] - inc)) + 1)
        if latest < ran:
            saved += ran - latest
    return {
        "cell": f"{cell['dataset']}/{cell['setting']}/seed{cell['seed']}",
        "chosen": chosen,
        "chosen_index": w,
        "must_survive": [{k: candidates[i][k] for k in keys} for i in must_survive],
        "kept_choice": kept,
        "unverified": [{k: candidates[i][k] for k in keys} for i in unverified],
        "approximate": approximate,
        "winner_pruned_at": pruned_at.get(w),
        "epochs_total": total,
        "epochs_saved_at_least": saved,
        # Time: the cell's recorded protocol seconds, and the saved epochs at its mean epoch time
        # (the retrain's epochs, the only ones a cell times: same model, a tenth more data).
        "seconds": record["train_seconds"],
        "seconds_saved_at_least": saved * statistics.fmean(record.get("epoch_seconds") or [0.0]),
    }


def replay_outward(path: Path, tolerance: float) -> dict[str, Any] | None:
    """The outward lambda search (autorec.search, module docstring 5) replayed on one stored
    AutoRec cell's grid: the shipped :func:`~autorec.search.outward_next` driven by the stored
    final validation RMSEs (None: no lambda grid). The choice is kept when the outward search's
    best grid point is the full grid's (the extensions above the grid then run the same)."""
    from autorec.models import get_model_class
    from autorec.models.autorec import AutoRec
    from autorec.reproduce import Cell
    from autorec.reproduce.cells import cell_grid, cell_overrides
    from autorec.search import outward_next, outward_start

    cell = json.loads(path.read_text())
    record = cell.get("record")
    if record is None or not issubclass(get_model_class(cell["model"]), AutoRec):
        return None
    overrides = tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in cell["overrides"].items()
    )
    spec = Cell(cell["setting"], cell["model"], overrides, cell["seed"])
    grid = cell_grid(spec, cell.get("quick", False))
    if list(grid) != ["lam"] or len(grid["lam"]) < 3:
        return None
    values = sorted(grid["lam"])
    final = {c["lam"]: (c["val_rmse"], c["best_epoch"]) for c in record["candidates"]}
    default = cell_overrides(spec, cell.get("quick", False)).get("lam", 300.0)
    start = outward_start(values, default)
    results: dict[float, tuple[float, bool]] = {}
    while batch := outward_next(values, start, results, tolerance):
        results.update({v: (final[v][0], False) for v in batch})
    full = min(values, key=lambda v: (final[v][0], v))
    out = min(results, key=lambda v: (results[v][0], v))
    skipped = [v for v in values if v not in results]
    return {
        "cell": str(path.relative_to(ROOT / "docs/results").parent / path.stem),
        "kept_choice": out == full,
        "chosen": full,
        "skipped": skipped,
        "fits": len(values),
        # Unpruned epochs of the skipped fits: best epoch + patience (30), at most 500.
        "epochs_skipped": sum(min(500, final[v][1] + 30) for v in skipped),
    }


def main(argv: list[str] | None = None) -> int:
    from autorec.protocol import DEFAULT_PRUNE, PruneRule
    from autorec.search import SearchPolicy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--warmup", type=int, default=DEFAULT_PRUNE.warmup)
    parser.add_argument("--margin", type=float, default=DEFAULT_PRUNE.margin)
    parser.add_argument("--wave", type=int, default=DEFAULT_PRUNE.wave)
    parser.add_argument("--refit", action="store_true", help="refit the curves a cell lacks")
    parser.add_argument("--strict", action="store_true", help="an unverified cell fails")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the per-cell results here")
    parser.add_argument(
        "--outward",
        action="store_true",
        help="replay the outward lambda search (evaluate's default) instead of the pruning rule",
    )
    parser.add_argument("--tolerance", type=float, default=SearchPolicy().outward_tolerance)
    args = parser.parse_args(argv)
    if args.outward:
        return _main_outward(args)
    rule = PruneRule(warmup=args.warmup, margin=args.margin, wave=args.wave)
    data_dir = (
        args.data_dir or os.environ.get("AUTOREC_DATA_DIR") or str(ROOT.parent / "shared/data")
    )
    if args.refit:
        import torch

        torch.set_num_threads(1)  # as the committed cells were computed
    results = []
    for dataset in args.datasets.split(","):
        for path in sorted((ROOT / "docs/results" / dataset / "cells").glob("*/seed*.json")):
            res = check_cell(path, rule, args.refit, data_dir)
            if res is None:
                continue
            results.append(res)
            verdict = "KEPT" if res["kept_choice"] else "CHANGED"
            if res["kept_choice"] and res["unverified"]:
                verdict = f"UNVERIFIED (no stored curve for {res['unverified']})"
            elif res["approximate"]:
                verdict += "~"  # judged on a refit curve that differs from the stored run
            print(
                f"{res['cell']:50s} {verdict:8s} chosen {res['chosen']}  epochs saved >= "
                f"{res['epochs_saved_at_least']} of {res['epochs_total']}"
                + (f"  {res['approximate']}" if res["approximate"] else ""),
                flush=True,
            )
    changed = [r["cell"] for r in results if not r["kept_choice"]]
    approximate = [r["cell"] for r in results if r["approximate"]]
    unverified = [r["cell"] for r in results if r["kept_choice"] and r["unverified"]]
    total = sum(r["epochs_total"] for r in results)
    saved = sum(r["epochs_saved_at_least"] for r in results)
    hours = sum(r["seconds"] for r in results) / 3600
    hours_saved = sum(r["seconds_saved_at_least"] for r in results) / 3600
    print(
        f"rule {asdict(rule)}: {len(results)} cells, {len(results) - len(changed)} keep the "
        f"choice ({len(unverified)} of them unverified, {len(approximate)} judged on a refit "
        f"that differs from the stored run), {len(changed)} change it; grid "
        f"epoch-fits saved >= {saved} of {total} ({100 * saved / max(total, 1):.1f}%); "
        f"protocol time recorded {hours:.2f} h, saved >= {hours_saved:.2f} h "
        f"({100 * hours_saved / max(hours, 1e-9):.1f}%)"
    )
    for cell in changed:
        print(f"CHANGED: {cell}")
    if args.json:
        from autorec.atomic import atomic_write_json

        atomic_write_json(args.json, {"rule": asdict(rule), "cells": results})
    return 1 if changed or (args.strict and unverified) else 0


def _main_outward(args: argparse.Namespace) -> int:
    results = []
    for dataset in args.datasets.split(","):
        for path in sorted((ROOT / "docs/results" / dataset / "cells").glob("*/seed*.json")):
            res = replay_outward(path, args.tolerance)
            if res is None:
                continue
            results.append(res)
            verdict = "KEPT" if res["kept_choice"] else "CHANGED"
            print(
                f"{res['cell']:50s} {verdict:8s} lam {res['chosen']:g}  skips "
                f"{len(res['skipped'])} of {res['fits']} fits {res['skipped']}",
                flush=True,
            )
    changed = [r["cell"] for r in results if not r["kept_choice"]]
    fits = sum(r["fits"] for r in results)
    skipped = sum(len(r["skipped"]) for r in results)
    print(
        f"outward search, tolerance {args.tolerance:g}: {len(results)} cells, "
        f"{len(results) - len(changed)} keep the choice, {len(changed)} change it; it skips "
        f"{skipped} of {fits} grid fits, >= {sum(r['epochs_skipped'] for r in results)} epochs"
    )
    for cell in changed:
        print(f"CHANGED: {cell}")
    if args.json:
        from autorec.atomic import atomic_write_json

        atomic_write_json(args.json, {"tolerance": args.tolerance, "cells": results})
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
