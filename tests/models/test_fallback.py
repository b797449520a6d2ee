"""One fallback rule for every model (issue 15): a cold pair (user or item without a training
rating) gets the same prediction from every registered model under each rule.

Before, the ``bias``, ``pop`` and ``ease`` configs defaulted to the bias baseline and every other
model to the constant mid-scale, so one comparison scored cold pairs by two rules.
"""

from __future__ import annotations

import numpy as np
import pytest

from autorec.data import Ratings
from autorec.models import MODEL_NAMES, make_model
from autorec.models.base import BaseConfig

from .test_contract import FAST


@pytest.fixture(scope="module")
def cold_train(low_rank: Ratings) -> Ratings:
    # User 0 and item 0 lose every rating: (0, j), (i, 0) and (0, 0) are cold pairs.
    return low_rank.subset((low_rank.user_idx != 0) & (low_rank.item_idx != 0))


COLD_USERS = np.array([0, 0, 5, -1])
COLD_ITEMS = np.array([0, 3, 0, 7])


def _cold_predictions(name: str, train: Ratings, **config) -> np.ndarray:
    model = make_model(name, **{**FAST[name], **config}).fit(train)
    assert not model.known_mask(COLD_USERS, COLD_ITEMS).any()
    return model.predict(COLD_USERS, COLD_ITEMS)


def test_the_default_rule_is_the_bias_baseline_for_every_model() -> None:
    assert BaseConfig().fallback == "bias"
    assert {make_model(n).config.fallback for n in MODEL_NAMES} == {"bias"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_answers_cold_pairs_as_the_bias_model_does(name, cold_train) -> None:
    # Default rule: mu + b_u + b_i from the damped biases of the training ratings, the same
    # numbers whatever the model (the bias model's own tuned biases play no part).
    reference = _cold_predictions("bias", cold_train)
    np.testing.assert_allclose(_cold_predictions(name, cold_train), reference, atol=1e-6)
    # mu + b_i for the cold user on a known item: not the constant, so the rules really differ.
    assert not np.allclose(reference, 3.0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_constant_rule_gives_mid_scale_for_every_model_the_bias_model_too(name, cold_train) -> None:
    # Sedhain et al. (2015), Sec. 3: "a default rating of 3", (1 + 5) / 2 on the 1..5 scale.
    predictions = _cold_predictions(name, cold_train, fallback="constant")
    np.testing.assert_array_equal(predictions, np.full(len(COLD_USERS), 3.0, dtype=np.float32))
