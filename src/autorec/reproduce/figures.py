"""The report's figures (PNG, written atomically): Figure 2's sweep and the learning curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autorec.atomic import atomic_write_with
from autorec.errors import ConfigError
from autorec.reproduce.cells import Plan, setting_id
from autorec.reproduce.experiments import PAPER


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "autorec reproduce draws its figures with matplotlib: pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")


def plot_sweep(entries: list[dict[str, Any]], dataset: str, path: Path) -> bool:
    """Figure 2: test RMSE (mean +- 95% CI) against k. False when nothing is finished."""
    done = [e for e in entries if e["test_rmse_mean"] is not None]
    if not done:
        return False
    plt = pyplot()
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
    _save(fig, path)
    plt.close(fig)
    return True


def learning_curves(plan: Plan, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Seed 0's learning curve per model setting (by row label), one per model for I-AutoRec."""
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


def plot_learning_curves(
    curves: dict[str, dict[str, list[float]]], dataset: str, path: Path
) -> bool:
    """Train and validation RMSE per epoch of one run (seed 0) per iterative model."""
    curves = {k: v for k, v in curves.items() if v.get("val_rmse")}
    if not curves:
        return False
    plt = pyplot()
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
    _save(fig, path)
    plt.close(fig)
    return True
