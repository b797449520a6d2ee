from __future__ import annotations

import numpy as np
import pytest

from autorec.models.baselines import BiasBaseline, BiasConfig
from autorec.models.biases import fit_biases


def test_biases_without_regularisation_on_hand_made_matrix(tiny) -> None:
    # tiny: u0 (i0=5, i1=3), u1 (i0=4), u2 (i1=1); mean of [5, 3, 4, 1] is 3.25.
    # One sweep with no damping: b_i0 = mean(5, 4) - 3.25 = 1.25, b_i1 = mean(3, 1) - 3.25 = -1.25;
    # then b_u0 = mean(5 - 4.5, 3 - 2) = 0.75, b_u1 = 4 - 4.5 = -0.5, b_u2 = 1 - 2 = -1.
    user_bias, item_bias = fit_biases(tiny, 3.25, reg_user=0.0, reg_item=0.0, n_sweeps=1)
    np.testing.assert_allclose(item_bias, [1.25, -1.25])
    np.testing.assert_allclose(user_bias, [0.75, -0.5, -1.0])


def test_damping_shrinks_towards_zero(tiny) -> None:
    # With reg_item = 2 and no user bias yet: b_i0 = (0.75 + 1.75 - ...) -> sum of residuals
    # (5 - 3.25) + (4 - 3.25) = 2.5 over (2 + 2) = 0.625.
    _, item_bias = fit_biases(tiny, 3.25, reg_user=0.0, reg_item=2.0, n_sweeps=1)
    assert item_bias[0] == pytest.approx(0.625)


def test_bias_model_predicts_mean_plus_biases(tiny) -> None:
    model = BiasBaseline(BiasConfig(reg_user=0.0, reg_item=0.0, n_sweeps=1)).fit(tiny)
    # u0, i0: 3.25 + 0.75 + 1.25 = 5.25, clipped to the scale's 5.
    assert model.predict(np.array([0]), np.array([0]))[0] == pytest.approx(5.0)
    # u1, i1 (unrated pair, both seen): 3.25 - 0.5 - 1.25 = 1.5
    assert model.predict(np.array([1]), np.array([1]))[0] == pytest.approx(1.5)
