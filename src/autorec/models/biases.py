"""Damped user and item biases (Koren 2010, Sec. 2.1), shared by the base class's fallback, the
bias baseline, item-kNN and LLORMA.

Alternating exact minimisation of

.. math::

    \\min_{b} \\sum_{(u,i) \\in O} (r_{ui} - \\mu - b_u - b_i)^2
        + \\lambda_u \\sum_u b_u^2 + \\lambda_i \\sum_i b_i^2

where each step is a damped mean of residuals: ``b_i = sum_u (r_ui - mu - b_u) / (lambda_i + n_i)``
then ``b_u = sum_i (r_ui - mu - b_i) / (lambda_u + n_u)``.

A module of its own so that ``models.base`` (the fallback) and ``models.baselines`` (which
subclasses the base) do not import each other.

References:
    Koren, "Factor in the neighbors: scalable and accurate collaborative filtering", TKDD 2010,
    Sec. 2.1 (baseline predictors). The defaults (lambda_i = 10, lambda_u = 15, 10 sweeps) are
    Surprise's ``BaselineOnly`` ALS defaults.
"""

from __future__ import annotations

import numpy as np

from autorec.data.ratings import Ratings


def fit_biases(
    train: Ratings,
    global_mean: float,
    *,
    reg_user: float = 15.0,
    reg_item: float = 10.0,
    n_sweeps: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users,), (n_items,) float64 biases by alternating damped means (Koren 2010)."""
    user_bias = np.zeros(train.n_users)
    item_bias = np.zeros(train.n_items)
    n_user = np.bincount(train.user_idx, minlength=train.n_users)
    n_item = np.bincount(train.item_idx, minlength=train.n_items)
    residual = train.rating.astype(np.float64) - global_mean
    for _ in range(n_sweeps):
        item_bias = np.bincount(
            train.item_idx, residual - user_bias[train.user_idx], minlength=train.n_items
        ) / (reg_item + n_item)
        user_bias = np.bincount(
            train.user_idx, residual - item_bias[train.item_idx], minlength=train.n_users
        ) / (reg_user + n_user)
    return user_bias, item_bias
