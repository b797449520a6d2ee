"""Cells, the unit of work: one model setting on one seed. ``Plan`` lists the cells of a run;
``cell_overrides`` and ``cell_grid`` say how a cell runs today, ``stale_reason`` whether a stored
cell still matches that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autorec.models import get_model_class, make_model, tuning_grid
from autorec.models.training import is_iterative
from autorec.protocol import needs_extension
from autorec.reproduce.experiments import DEFAULT_TABLES, PAPER_FALLBACK, QUICK_EPOCHS, Row, rows


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
    tables: tuple[str, ...] = DEFAULT_TABLES
    runs: int = 5
    quick: bool = False
    models: tuple[str, ...] | None = None  # only the rows of these registered models

    def rows(self) -> dict[str, list[Row]]:
        out = {t: rows(t, self.quick) for t in self.tables}
        if self.models is not None:
            out = {t: [r for r in rs if r.model in self.models] for t, rs in out.items()}
        return out

    def cells(self) -> list[Cell]:
        seen: dict[str, Cell] = {}
        for table_rows in self.rows().values():
            for row in table_rows:
                sid = setting_id(row.model, row.overrides)
                for seed in range(self.runs):
                    cell = Cell(sid, row.model, row.settings, seed)
                    seen.setdefault(cell.key, cell)
        return list(seen.values())


def cell_overrides(cell: Cell, quick: bool) -> dict[str, Any]:
    """Config fields for a cell: the paper's fallback rule (the constant mid-scale 3, Sedhain et
    al. 2015, Sec. 3) unless the row fixes another, the row's settings, the seed and, with
    ``quick``, fewer epochs. The rule is pinned here, not taken from the models' default (the
    bias baseline), so the tables keep the paper's rule and the committed cells their numbers.
    The I-AutoRec ranking head (on by default, issue 14) is pinned off likewise: the tables are
    the paper's model."""
    overrides = {"fallback": PAPER_FALLBACK, **dict(cell.overrides), "seed": cell.seed}
    if "ranking_head" in get_model_class(cell.model).config_class.__dataclass_fields__:
        overrides.setdefault("ranking_head", False)
    if quick and is_iterative(get_model_class(cell.model).config_class):  # --quick caps epochs
        default_epochs = make_model(cell.model).config.n_epochs  # type: ignore[attr-defined]
        overrides["n_epochs"] = min(default_epochs, QUICK_EPOCHS)
    return overrides


def cell_grid(cell: Cell, quick: bool) -> dict[str, tuple[Any, ...]]:
    """The validation grid of a cell: the model's tuning grid less the fields the row fixes.
    ``quick`` tunes nothing (every hyperparameter at its default)."""
    if quick:
        return {}
    fixed = dict(cell.overrides)
    grid = tuning_grid(cell.model)
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
    # Cells stored before runs recorded their rule carry none; every later one does.
    rule, expected = record.get("fallback"), cell_overrides(cell, quick)["fallback"]
    if rule is not None and rule != expected:
        return f"its cold test pairs got the {rule} fallback; the table's rule is {expected}"
    chosen = record.get("hyperparameters") or {}
    for key in get_model_class(cell.model).open_above:
        if len(grid.get(key, ())) < 2 or key not in chosen:
            continue
        if needs_extension(chosen[key], [c[key] for c in candidates], grid[key]):
            return f"validation chose its largest {key}, {chosen[key]:g}; larger ones are now tried"
    return None
