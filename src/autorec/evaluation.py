"""Accuracy metrics and model evaluation.

``rmse`` and ``mae`` are pure functions that refuse empty, misaligned or non-finite input
(a silently missing prediction must not improve a score). ``evaluate`` scores a fitted model on a
test set and counts the ratings answered by the fallback. ``mean_ci95`` gives the mean and the
half-width of the 95% confidence interval of repeated runs (Student t), as the paper reports.
"""

from __future__ import annotations

import math

import numpy as np

from autorec.data.ratings import Ratings

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (scipy.stats.t.ppf).
_T975 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("cannot score an empty set of ratings")
    bad = np.flatnonzero(~np.isfinite(p))
    if len(bad):
        raise ValueError(f"y_pred[{bad[0]}] = {p[bad[0]]} is not finite")
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        raise ValueError(f"y_true[{bad[0]}] = {t[bad[0]]} is not finite")
    return t, p


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, sqrt(mean((y_true - y_pred)^2))."""
    t, p = _pair(y_true, y_pred)
    return math.sqrt(float(np.mean((t - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error, mean(|y_true - y_pred|)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def evaluate(model: object, test: Ratings) -> dict[str, float]:
    """RMSE and MAE of a fitted model on ``test``, with the number answered by the fallback."""
    pred = model.predict(test.user_idx, test.item_idx)  # type: ignore[attr-defined]
    n_fallback = int((~model.known_mask(test.user_idx, test.item_idx)).sum())  # type: ignore[attr-defined]
    return {
        "rmse": rmse(test.rating, pred),
        "mae": mae(test.rating, pred),
        "n": int(test.n_ratings),
        "n_fallback": n_fallback,
    }


def mean_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the two-sided 95% confidence interval (Student t, n-1 dof).

    One value has no interval: the half-width is then NaN.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan
    dof = x.size - 1
    t = _T975[dof - 1] if dof <= len(_T975) else 1.959964
    return mean, float(t * x.std(ddof=1) / math.sqrt(x.size))


def summary_ci95(values: list[float] | np.ndarray) -> tuple[float | None, float | None]:
    """``mean_ci95`` for reports and JSON: ``(None, None)`` for no values, a ``None`` half-width
    where there is no interval (one value) instead of NaN, which JSON cannot hold."""
    if len(values) == 0:
        return None, None
    mean, ci = mean_ci95(values)
    return mean, (ci if math.isfinite(ci) else None)
