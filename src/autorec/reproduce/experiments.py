"""The experiments as data: the paper's values (``PAPER``) and one ``Experiment`` per table or
figure (``EXPERIMENTS``), each a tuple of ``Row``s. A new table is a new entry, not new code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autorec.errors import ConfigError

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

# Sedhain et al. (2015), Sec. 3: test users or items without training ratings get "a default
# rating of 3", the middle of the 1..5 scale. Every cell runs with it unless its row fixes another.
PAPER_FALLBACK = "constant"

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

    def paper_value(self, dataset: str) -> float | None:
        return PAPER.get(self.paper_label or self.label, {}).get(dataset)


@dataclass(frozen=True)
class Experiment:
    """A table or figure of the paper: its title and rows; ``quick_rows`` replaces the rows
    under ``--quick`` (None: the same rows). ``sweep`` rows vary the hidden units k."""

    title: str
    rows: tuple[Row, ...]
    quick_rows: tuple[Row, ...] | None = None
    sweep: bool = False


def _k(k: int) -> Row:
    return Row(f"k = {k}", "i-autorec", (("hidden", (k,)),), paper_label="-")


EXPERIMENTS: dict[str, Experiment] = {
    "table_1a": Experiment(
        "Table 1(a): I/U-AutoRec and I/U-RBM",
        (
            Row("I-AutoRec", "i-autorec"),
            Row("U-AutoRec", "u-autorec"),
            Row("I-RBM", "i-rbm"),
            Row("U-RBM", "u-rbm"),
            # Our validation-chosen capacity for U-AutoRec, beside the paper's k = 500.
            Row("U-AutoRec, k = 100", "u-autorec", (("hidden", (100,)),), extra=True),
        ),
    ),
    "table_1b": Experiment(
        "Table 1(b): I-AutoRec activations (f output, g hidden)",
        (
            Row("f = identity, g = identity", "i-autorec", (("f", "identity"), ("g", "identity"))),
            Row("f = sigmoid, g = identity", "i-autorec", (("f", "sigmoid"), ("g", "identity"))),
            Row("f = identity, g = sigmoid", "i-autorec", (("f", "identity"), ("g", "sigmoid"))),
            Row("f = sigmoid, g = sigmoid", "i-autorec", (("f", "sigmoid"), ("g", "sigmoid"))),
        ),
    ),
    "table_1c": Experiment(
        "Table 1(c): I-AutoRec against the baselines",
        (
            Row("BiasedMF", "biased-mf"),
            Row("I-RBM", "i-rbm"),
            Row("U-RBM", "u-rbm"),
            Row("LLORMA", "llorma"),
            Row("I-AutoRec", "i-autorec"),
            Row("item-kNN", "item-knn", extra=True),
            # Under the table's rule like every other row (the paper's constant 3 for cold pairs).
            Row("bias", "bias", extra=True),
            Row("U-AutoRec", "u-autorec", extra=True),
        ),
    ),
    "figure_2": Experiment(
        "Figure 2: I-AutoRec test RMSE against the number of hidden units k",
        tuple(_k(k) for k in SWEEP),
        quick_rows=tuple(_k(k) for k in QUICK_SWEEP),
        sweep=True,
    ),
    "deep": Experiment(
        "Deep I-AutoRec (500-250-500 sigmoid layers)",
        (
            Row("I-AutoRec (500)", "i-autorec", paper_label="I-AutoRec"),
            Row("Deep I-AutoRec (500-250-500)", "i-autorec", (("hidden", (500, 250, 500)),)),
        ),
    ),
}
TABLES = tuple(EXPERIMENTS)
TITLES = {name: e.title for name, e in EXPERIMENTS.items()}


def rows(table: str, quick: bool) -> list[Row]:
    """The rows of ``table``, under ``--quick`` if ``quick``."""
    if table not in EXPERIMENTS:
        raise ConfigError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    e = EXPERIMENTS[table]
    return list(e.quick_rows if quick and e.quick_rows is not None else e.rows)
