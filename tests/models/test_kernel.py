"""Kernelised (Sparse FC) weights: autorec.models.kernel and AutoRec's kernel_dim option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.data import paper_split
from autorec.errors import ConfigError
from autorec.evaluation import rmse
from autorec.models import make_model
from autorec.models.autorec import AutoRec, AutoRecConfig, AutoRecNet
from autorec.models.base import Recommender
from autorec.models.kernel import KernelWeight, kernel_matrix

# Small problems: extra threads only add wake-ups to the many small sparse products.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(hidden=(16, 16), kernel_dim=5, lam=1.0, kernel_lam=0.05, optimizer="rprop", seed=0)


def _two_by_two() -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.5, 0.0], [0.0, 0.6]], dtype=torch.float64, requires_grad=True)
    return a, b


def test_kernel_values_by_hand() -> None:
    # ||a_r - b_c||^2 by hand: (0,0)-(0.5,0): 0.25; (0,0)-(0,0.6): 0.36; (1,0)-(0.5,0): 0.25;
    # (1,0)-(0,0.6): 1.36, beyond 1, so that connection is cut to exactly 0.
    a, b = _two_by_two()
    expected = torch.tensor([[0.75, 0.64], [0.75, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(kernel_matrix(a, b), expected, rtol=0, atol=1e-12)


def test_kernel_gradient_by_hand() -> None:
    # d K_rc / d a_r = -2 (a_r - b_c) and d K_rc / d b_c = 2 (a_r - b_c) where K_rc > 0, zero
    # where the connection is cut; for L = sum K:
    # dL/da_0 = -2 ((-0.5, 0) + (0, -0.6)) = (1, 1.2); dL/da_1 = -2 (0.5, 0) = (-1, 0);
    # dL/db_0 = 2 ((-0.5, 0) + (0.5, 0)) = (0, 0); dL/db_1 = 2 (0, -0.6) = (0, -1.2).
    a, b = _two_by_two()
    kernel_matrix(a, b).sum().backward()
    torch.testing.assert_close(a.grad, torch.tensor([[1.0, 1.2], [-1.0, 0.0]], dtype=a.dtype))
    torch.testing.assert_close(b.grad, torch.tensor([[0.0, 0.0], [0.0, -1.2]], dtype=b.dtype))


def test_kernel_weight_is_w_times_k_and_starts_dense() -> None:
    layer = KernelWeight(4, 3, 5, torch.Generator().manual_seed(0))
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(layer(w), w * kernel_matrix(layer.row_vectors, layer.col_vectors))
    # The vectors start within 2e-3 of the origin: every connection at nearly full strength.
    assert float((1 - layer.kernel().detach()).abs().max()) < 1e-4


def test_config_checks_the_kernel_fields() -> None:
    with pytest.raises(ConfigError, match="kernel_dim must be >= 0"):
        AutoRecConfig(kernel_dim=-1)
    with pytest.raises(ConfigError, match="kernel_lam must be a finite number"):
        AutoRecConfig(kernel_lam=float("nan"))


def test_kernel_dim_zero_is_the_dense_net() -> None:
    # No kernel parameters, the dense state's names, and the same draws from the generator.
    dense = AutoRecNet(
        7, (4, 3, 4), "identity", "sigmoid", (1, 5), torch.Generator().manual_seed(0)
    )
    assert list(dense.state_dict()) == [
        "encoder",
        "encoder_bias",
        "decoder",
        "decoder_bias",
        "middle_weights.0",
        "middle_weights.1",
        "middle_biases.0",
        "middle_biases.1",
    ]
    kernelised = AutoRecNet(
        7, (4, 3, 4), "identity", "sigmoid", (1, 5), torch.Generator().manual_seed(0), 2
    )
    # The kernel vectors are drawn after every dense weight: the raw weights and the biases are
    # the dense net's, which is what keeps kernel_dim = 0 runs bit for bit as before.
    for ours, theirs in zip(kernelised.weights(), dense.weights(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(kernelised.encoder_bias, dense.encoder_bias, rtol=0, atol=0)


def test_kernel_lam_without_kernels_changes_nothing(low_rank) -> None:
    split = paper_split(low_rank, seed=0)
    fits = [
        AutoRec(AutoRecConfig(hidden=(8,), n_epochs=5, kernel_lam=lam, seed=1)).fit(split.train)
        for lam in (0.0, 3.0)
    ]
    a, b = (m.predict(split.test.user_idx, split.test.item_idx) for m in fits)
    np.testing.assert_array_equal(a, b)


def test_a_kernel_of_ones_is_the_dense_model(low_rank) -> None:
    # With every kernel vector at the same point K = 1 and stays 1 for any W: the forward pass
    # is the dense one, so the reconstructions agree.
    model = AutoRec(AutoRecConfig(hidden=(6, 6), kernel_dim=2, n_epochs=1, seed=0))
    model.fit(low_rank)
    dense = AutoRecNet(model.net.decoder.shape[0], (6, 6), "identity", "sigmoid", (1, 5), None)
    with torch.no_grad():
        for ours, theirs in zip(model.net.weights(), dense.weights(), strict=True):
            theirs.copy_(ours)
        for name in ("encoder_bias", "decoder_bias", "middle_biases.0"):
            dense.get_parameter(name).copy_(model.net.get_parameter(name))
        for p in model.net.parameters():
            if p.shape[-1] == 2:  # the kernel vectors
                p.fill_(0.3)
    x = model._train_x
    torch.testing.assert_close(model.net.encode(x), dense.encode(x))


def _ready(low_rank, cfg: AutoRecConfig) -> AutoRec:
    model = AutoRec(cfg)
    model.fit(low_rank)  # sets up the vocabularies, the layout and a net
    return model


def test_regulariser_is_autograd_of_the_objective_written_out(low_rank) -> None:
    # sum of squared errors + lam/2 ||W||^2 on the raw matrices + kernel_lam/2 ||K||^2, with
    # every gradient (raw weights, biases, kernel vectors) what autograd gives for that sum.
    cfg = AutoRecConfig(hidden=(6, 5), kernel_dim=3, lam=7.0, kernel_lam=2.0, n_epochs=3, seed=0)
    model = _ready(low_rank, cfg)
    with torch.no_grad():  # spread the vectors so that K varies and some connections are cut
        for p in model.net.parameters():
            if p.shape[-1] == 3:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.4)
    x = model._train_x
    model.net.zero_grad(set_to_none=True)
    loss, sse = model._backward(x, x, 0.5)
    ours = {n: p.grad.clone() for n, p in model.net.named_parameters()}
    model.net.zero_grad(set_to_none=True)
    data = model._data_loss(x, x)
    raw = model.net.weights()
    kernels = [k.kernel() for k in model.net.modules() if isinstance(k, KernelWeight)]
    assert len(kernels) == 3 and any(float(k.detach().min()) == 0.0 for k in kernels)
    written_out = (
        data
        + 0.5 * 0.5 * 7.0 * sum(w.pow(2).sum() for w in raw)
        + 0.5 * 0.5 * 2.0 * sum(k.pow(2).sum() for k in kernels)
    )
    written_out.backward()
    assert sse == pytest.approx(float(data.detach()), rel=1e-6)
    assert loss == pytest.approx(float(written_out.detach()), rel=1e-6)
    for name, param in model.net.named_parameters():
        torch.testing.assert_close(ours[name], param.grad, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(low_rank, tmp_path) -> None:
    split = paper_split(low_rank, seed=0)
    model = make_model("i-kernelnet", **{**SMALL, "n_epochs": 10}).fit(split.train, split.val)
    assert model.model_name == "i-kernelnet"
    path = model.save(tmp_path / "model")
    loaded = Recommender.load(path)
    assert loaded.model_name == "i-kernelnet" and loaded.config == model.config
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[key], value, rtol=0, atol=0)
    users, items = split.test.user_idx, split.test.item_idx
    np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))


def test_fit_on_low_rank_data_beats_its_start(low_rank) -> None:
    # The first epoch's validation RMSE is that of a barely trained net (about the spread of the
    # ratings); a working kernelised net must fit the low-rank structure well below it, and
    # its kernel vectors must move (a frozen kernel would leave a dense net).
    split = paper_split(low_rank, seed=0)
    model = make_model("i-kernelnet", **{**SMALL, "n_epochs": 80, "patience": 20})
    model.fit(split.train, split.val)
    first, best = model.history.val_rmse[0], min(model.history.val_rmse)
    assert best < first - 0.1, (first, best)
    test = rmse(model.predict(split.test.user_idx, split.test.item_idx), split.test.rating)
    assert test < first - 0.1
    kernels = [k.kernel() for k in model.net.modules() if isinstance(k, KernelWeight)]
    assert min(float(k.detach().min()) for k in kernels) < 0.99


def test_i_kernelnet_searches_its_own_lambda_grid() -> None:
    # The preset's grid (models/__init__.py: the authors' lam 120, 2x each way, and 30 for
    # small data), not AutoRec's 8 values tuned for one-layer I-AutoRec; plain I-AutoRec keeps
    # its class grid.
    from autorec.models import AutoRec, tuning_grid

    assert tuning_grid("i-kernelnet") == {"lam": (30.0, 60.0, 120.0, 240.0)}
    assert tuning_grid("i-autorec") == AutoRec.tuning_grid
    assert 120.0 in tuning_grid("i-kernelnet")["lam"]  # the registered default is searched
