"""The report: per-row summaries beside the paper (``summarise``), and ``results.json``,
``report.md`` and the figures written from the finished cells (``write_report``)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from autorec.atomic import atomic_write_json, atomic_write_text
from autorec.evaluation import summary_ci95
from autorec.reproduce.cells import Plan, _canonical, setting_id
from autorec.reproduce.experiments import EXPERIMENTS, PAPER_FALLBACK, TITLES, Row
from autorec.reproduce.figures import learning_curves, plot_learning_curves, plot_sweep
from autorec.reproduce.provenance import environment, fmt_duration


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


def _evaluate_command(row: Row, dataset: str, runs: int) -> str:
    """The ``autorec evaluate`` line that runs a row's cells, its fallback rule included (the
    command's default rule, the bias baseline, is not the paper's), and ``--no-refine``."""
    fallback = row.overrides.get("fallback", PAPER_FALLBACK)
    parts = ["autorec evaluate", f"--dataset {dataset}", f"--model {row.model}", f"--runs {runs}"]
    parts.append(f"--fallback {fallback}")
    # reproduce searches each model's grid as it stands, with the paper's model: evaluate's
    # adaptive search (refinement, small-data grids, I-AutoRec on bias residuals) is off.
    parts.append("--no-refine")
    for key, value in row.settings:
        if key == "fallback":
            continue
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
            mean, ci = summary_ci95(rmses)
            paper = row.paper_value(plan.dataset)
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
            if EXPERIMENTS[table].sweep:
                entry["hidden_units"] = int(row.overrides["hidden"][0])
            if not EXPERIMENTS[table].default:
                # Only the tables beyond the paper carry these (the paper's results.json files
                # stay byte for byte what they were).
                published = row.published(plan.dataset)
                entry["published"] = None if published is None else published[0]
                entry["published_protocol"] = None if published is None else published[1]
            entries.append(entry)
        tables[table] = entries
    return tables


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


def _published_md(entries: list[dict[str, Any]], runs: int) -> list[str]:
    """A table beyond the paper: ours beside the paper's I-AutoRec and each model's own published
    number, which is not comparable by our interval (one split, picked on its held-out set)."""
    lines = [
        "| model | ours: test RMSE (95% CI) | runs | paper | published (own protocol) | s/run |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for e in entries:
        published = "-"
        if e["published"] is not None:
            notes.append(f"{e['published']:.4g}: {e['published_protocol']}")
            published = f"{e['published']:.4g} [{len(notes)}]"
        lines.append(
            f"| {e['model']} | {_mean_ci(e)} | {e['n_runs']}/{runs} | "
            f"{_num(e['paper'], '.3f')} | {published} | {_secs(e['seconds_per_run'])} |"
        )
    lines += [""] + [f"[{i}] {note}." for i, note in enumerate(notes, 1)]
    lines += [
        "",
        "Published numbers come from one split each, under their authors' own choices; ours are "
        "the paper's protocol (5 random splits, every choice on validation, test scored once). "
        "They are shown side by side, not compared by our interval. s/run: the whole protocol "
        "of one seed (grid, retrain, test) on this machine.",
    ]
    return lines


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
        if not EXPERIMENTS[table].default:
            continue  # beyond the paper: its reference row repeats Table 1's I-AutoRec
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
    env: dict[str, Any] | None = None,
    generated: str | None = None,
) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and the figures from the finished cells; return what
    ``results.json`` holds. ``env`` (default: this machine's) and ``generated`` (default: now)
    are the provenance the report states."""
    tables = summarise(plan, cells)
    env = environment() if env is None else env
    figures = {}
    if "figure_2" in tables and plot_sweep(
        tables["figure_2"], plan.dataset, out_dir / "figure_2.png"
    ):
        figures["figure_2"] = "figure_2.png"
    curves = learning_curves(plan, cells)
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
        "generated": generated or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(out_dir / "results.json", results, indent=1)
    atomic_write_text(out_dir / "report.md", _markdown(plan, tables, cells, results))
    return results


def _markdown(
    plan: Plan,
    tables: dict[str, list[dict[str, Any]]],
    cells: dict[str, dict[str, Any]],
    results: dict[str, Any],
) -> str:
    env, figures, command = results["environment"], results["figures"], results["command"]
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
        f"Compute: {fmt_duration(results['cell_seconds_total'])} over {len(cells)} cells "
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
        if EXPERIMENTS[table].default:
            lines += _table_md(entries, plan.runs, sweep=EXPERIMENTS[table].sweep)
        else:
            lines += _published_md(entries, plan.runs)
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
    return "\n".join(lines)
