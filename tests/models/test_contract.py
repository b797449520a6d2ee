"""The model contract (``contract.py``) over every registered model name.

The names come from ``autorec.models.MODEL_NAMES``, so registering a model puts it under the
contract; ``FAST`` gives each a configuration that fits the 120 x 80 contract data in about a
second (a name missing there fails ``test_every_registered_model_has_fast_settings``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autorec.errors import ConfigError
from autorec.models import MODEL_NAMES, make_model
from autorec.models.base import BaseConfig, Recommender

from .contract import FOLD_IN_TOLERANCE, RecommenderContract

_AUTOREC = dict(hidden=(16,), lam=1.0, n_epochs=60, patience=10)
_RBM = dict(
    n_hidden=16,
    lr=0.1,
    weight_decay=0.01,
    batch_size=10,
    n_epochs=20,
    patience=5,
    min_epochs=0,
    cd_epochs=(1, 6, 9, 12),
)
FAST: dict[str, dict[str, Any]] = {
    "i-autorec": _AUTOREC,
    "u-autorec": _AUTOREC,
    # The registered kernelNet (two kernelised layers, L-BFGS), narrowed to 16 units.
    "i-kernelnet": dict(hidden=(16, 16), lam=1.0, n_epochs=60, patience=10),
    # Two kernelised layers of 16; pre-training then fine-tuning, a few L-BFGS rounds each.
    "glocal-k": dict(
        hidden=(16, 16),
        lam=1.0,
        pretrain_iters=5,
        pretrain_epochs=15,
        finetune_iters=3,
        finetune_epochs=5,
    ),
    "bias": {},
    "biased-mf": dict(rank=5, reg=0.05, n_epochs=8),
    "item-knn": dict(k=10, shrinkage=10.0),
    "llorma": dict(n_anchors=5, rank=3, embed_rank=3),
    "i-rbm": _RBM,
    "u-rbm": _RBM,
    "pop": {},
    # Steck's 500 is for ML-20M's 136,677 users; the 120-user contract data needs less.
    "ease": dict(lam=20.0),
    # Members whose fold-in is exact, so the ensemble's is too (and the contract checks it).
    "ensemble": dict(
        members=(
            "u-autorec:hidden=16:lam=1:n_epochs=60:patience=10",
            "item-knn:k=10:shrinkage=10",
            "bias",
        )
    ),
}


def test_every_registered_model_has_fast_settings() -> None:
    assert sorted(FAST) == sorted(MODEL_NAMES)


# Tiny problems: extra threads only add wake-ups to the many small sparse products.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TestEveryRegisteredModel(RecommenderContract):
    @pytest.fixture(scope="class", params=MODEL_NAMES)
    @classmethod
    def make_model(cls, request):
        name = request.param
        return lambda seed=0: make_model(name, seed=seed, **FAST.get(name, {}))


def test_every_registered_model_has_a_fold_in_tolerance() -> None:
    assert sorted(FOLD_IN_TOLERANCE) == sorted(MODEL_NAMES)


def test_a_model_without_fold_in_hooks_says_it_cannot(low_rank_split) -> None:
    class Mean(Recommender):
        name = "mean"
        config_class = BaseConfig

        def _fit(self, train, val) -> None:
            pass

        def _score(self, user_idx, item_idx):
            return np.full(len(user_idx), self.global_mean)

    model = Mean().fit(low_rank_split.train)
    with pytest.raises(ConfigError, match="model mean cannot fold in a new user; retrain"):
        model.recommend_new_user({model.items.ids[0].item(): 4.0})
