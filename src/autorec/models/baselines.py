"""The bias baseline: global mean plus regularised user and item biases.

.. math::

    \\hat r_{ui} = \\mu + b_u + b_i, \\qquad
    \\min_{b} \\sum_{(u,i) \\in O} (r_{ui} - \\mu - b_u - b_i)^2
        + \\lambda_u \\sum_u b_u^2 + \\lambda_i \\sum_i b_i^2

solved by alternating exact minimisation (:func:`autorec.models.biases.fit_biases`).

References:
    Koren, "Factor in the neighbors: scalable and accurate collaborative filtering", TKDD 2010,
    Sec. 2.1 (baseline predictors). The defaults (lambda_i = 10, lambda_u = 15, 10 sweeps) are
    Surprise's ``BaselineOnly`` ALS defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, Recommender
from autorec.models.biases import fit_biases


@dataclass(frozen=True)
class BiasConfig(BaseConfig):
    reg_user: float = 15.0  # Surprise BaselineOnly default (Koren 2010 baseline predictors)
    reg_item: float = 10.0  # idem
    n_sweeps: int = 10  # idem: ALS sweeps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reg_user < 0 or self.reg_item < 0:
            raise ConfigError(
                f"reg_user and reg_item must be >= 0, got {self.reg_user}, {self.reg_item}"
            )
        if self.n_sweeps < 1:
            raise ConfigError(f"n_sweeps must be >= 1, got {self.n_sweeps}")


class BiasBaseline(Recommender):
    """Global mean + user bias + item bias (see the module docstring for the objective)."""

    name: ClassVar[str] = "bias"
    config_class: ClassVar[type[BaseConfig]] = BiasConfig
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_user": (1.0, 5.0, 15.0, 25.0),
        "reg_item": (1.0, 5.0, 10.0, 25.0),
    }
    config: BiasConfig

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        self.user_bias, self.item_bias = fit_biases(
            train,
            self.global_mean,
            reg_user=self.config.reg_user,
            reg_item=self.config.reg_item,
            n_sweeps=self.config.n_sweeps,
        )

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.global_mean + self.user_bias[user_idx] + self.item_bias[item_idx]

    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> float:
        """The new user's bias with the item biases fixed: the model's own user step,
        ``b_u = sum_i (r_ui - mu - b_i) / (lambda_u + n_u)``."""
        residual = rating - self.global_mean - self.item_bias[item_idx]
        return float(residual.sum() / (self.config.reg_user + len(rating)))

    def _fold_in_scores(self, state: float) -> np.ndarray:
        return self.global_mean + state + self.item_bias.astype(np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_bias": self.user_bias, "item_bias": self.item_bias}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.user_bias, self.item_bias = state["user_bias"], state["item_bias"]
