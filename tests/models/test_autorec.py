from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import autorec.models.autorec as autorec_module
from autorec.data import paper_split
from autorec.errors import ConfigError, ModelFitError
from autorec.evaluation import rmse
from autorec.models import make_model
from autorec.models.autorec import AutoRec, AutoRecConfig, AutoRecNet, available_memory
from autorec.models.baselines import BiasBaseline
from autorec.models.sparse import SparseRows

from .contract import RecommenderContract

FAST = dict(hidden=(16,), lam=1.0, n_epochs=60, patience=10)


class TestDeepAdamBiasFallbackContract(RecommenderContract):
    # The registered names run the contract in test_contract.py; this adds a deep net trained by
    # Adam with the bias fallback.
    @pytest.fixture(scope="class")
    @classmethod
    def make_model(cls):
        def make(seed: int = 0) -> AutoRec:
            return AutoRec(
                AutoRecConfig(
                    hidden=(16, 8, 16),
                    optimizer="adam",
                    lr=0.01,
                    batch_size=32,
                    n_epochs=12,
                    patience=5,
                    fallback="bias",
                    seed=seed,
                    lam=1.0,
                )
            )

        return make


def _model_with_weights(
    tiny, engine: str = "sparse", lam: float = 2.0
) -> tuple[AutoRec, SparseRows]:
    """I-AutoRec on ``tiny`` with k = 1, f = g = identity and hand-set weights:
    V = [0.1, 0.2, 0.3] (one weight per user), mu = 0, W = [1, 2, -1], b = [0, 0, 0]."""
    model = AutoRec(AutoRecConfig(hidden=(1,), f="identity", g="identity", lam=lam, engine=engine))
    model.users, model.items = tiny.users, tiny.items
    model.n_users, model.n_items, model.rating_scale = 3, 2, (1.0, 5.0)
    model.net = AutoRecNet(3, (1,), "identity", "identity", (1.0, 5.0), torch.Generator())
    with torch.no_grad():
        model.net.encoder.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
        model.net.encoder_bias.zero_()
        model.net.decoder.copy_(torch.tensor([[1.0], [2.0], [-1.0]]))
        model.net.decoder_bias.zero_()
    model.engine = engine
    x = model._sparse(tiny, torch.device("cpu"))
    return model, x


@pytest.mark.parametrize("engine", ["sparse", "dense"])
def test_loss_and_gradient_known_answer(tiny, engine) -> None:
    # Item columns: r(i0) = [5, 4, -] and r(i1) = [3, -, 1] (users 0, 1, 2; "-" unobserved).
    # h(i0) = 0.1*5 + 0.2*4 = 1.3 -> outputs [1.3, 2.6, -1.3]; errors at observed: -3.7, -1.4
    # h(i1) = 0.1*3 + 0.3*1 = 0.6 -> outputs [0.6, 1.2, -0.6]; errors at observed: -2.4, -1.6
    # SSE = 13.69 + 1.96 + 5.76 + 2.56 = 23.97; lambda/2 (||W||^2 + ||V||^2) = 1 * (6 + 0.14)
    model, x = _model_with_weights(tiny, engine)
    loss, sse = model._backward(x, x, 1.0)
    assert sse == pytest.approx(23.97, abs=1e-4)
    assert loss == pytest.approx(30.11, abs=1e-4)
    net = model.net
    # dL/dW_u = sum_i 2 err_iu h_i + lambda W_u: u0 = -7.4*1.3 - 4.8*0.6 + 2 = -10.5,
    # u1 = -2.8*1.3 + 4 = 0.36, u2 = -3.2*0.6 - 2 = -3.92. The unobserved (u1, i1) and
    # (u2, i0) entries add nothing (u1's gradient has no i1 term, u2's no i0 term).
    np.testing.assert_allclose(net.decoder.grad.numpy().ravel(), [-10.5, 0.36, -3.92], atol=1e-4)
    np.testing.assert_allclose(net.decoder_bias.grad.numpy(), [-12.2, -2.8, -3.2], atol=1e-4)
    # dL/dh = W^T 2 err: h(i0) -> -7.4 - 5.6 = -13, h(i1) -> -4.8 + 3.2 = -1.6;
    # dL/dV_u = sum_i dh_i r_iu + lambda V_u: u0 = -65 - 4.8 + 0.2, u1 = -52 + 0.4, u2 = -1.6 + 0.6
    np.testing.assert_allclose(net.encoder.grad.numpy().ravel(), [-69.6, -51.6, -1.0], atol=1e-4)
    assert float(net.encoder_bias.grad) == pytest.approx(-14.6, abs=1e-4)  # -13 - 1.6


def test_biases_are_not_regularised(tiny) -> None:
    model, x = _model_with_weights(tiny, lam=0.0)
    with torch.no_grad():
        model.net.decoder_bias.fill_(10.0)
        model.net.encoder_bias.fill_(10.0)
    loss0, _ = model._backward(x, x, 1.0)
    grads0 = {n: p.grad.clone() for n, p in model.net.named_parameters()}
    model.net.zero_grad(set_to_none=True)
    model.config = model.config.replace(lam=5.0)
    loss5, _ = model._backward(x, x, 1.0)
    # lambda/2 (||W||^2 + ||V||^2) = 2.5 * 6.14 = 15.35; the biases (10 each) add nothing,
    # to the loss or to their gradients; each weight's gradient gains lambda * weight, rounded
    # as autograd rounds it (lambda * weight first, then the sum: bit for bit, so that training
    # reproduces the numbers of the versions that differentiated the penalty with autograd).
    assert loss5 - loss0 == pytest.approx(15.35, abs=1e-3)
    for name, param in model.net.named_parameters():
        extra = 5.0 * param.detach() if name in ("encoder", "decoder") else 0.0
        torch.testing.assert_close(param.grad, grads0[name] + extra, rtol=0, atol=0)


@pytest.mark.parametrize("engine", ["sparse", "dense"])
def test_gradient_is_autograd_of_the_whole_objective(low_rank, engine) -> None:
    # The penalty's gradient is added in place outside autograd; it must equal what autograd
    # gives for the objective written out, ||.||^2 of every weight matrix (the middle layers'
    # of a deep net too) and none of the biases.
    torch.manual_seed(0)
    cfg = AutoRecConfig(hidden=(6, 3, 6), lam=7.0, engine=engine, seed=0)
    model = AutoRec(cfg)
    model.users, model.items = low_rank.users, low_rank.items
    model.n_users, model.n_items = low_rank.n_users, low_rank.n_items
    model.rating_scale = low_rank.rating_scale
    n_rows, n_cols = model._shape()
    model.net = AutoRecNet(n_cols, cfg.hidden, "identity", "sigmoid", (1.0, 5.0), torch.Generator())
    model.engine = engine
    x = model._sparse(low_rank, torch.device("cpu"))
    loss, _ = model._backward(x, x, 0.5)
    ours = {n: p.grad.clone() for n, p in model.net.named_parameters()}
    model.net.zero_grad(set_to_none=True)
    data = model._data_loss(x, x)
    weights = [model.net.encoder, *model.net.middle_weights, model.net.decoder]
    written_out = data + 0.5 * 0.5 * 7.0 * sum(w.pow(2).sum() for w in weights)
    written_out.backward()
    assert loss == pytest.approx(float(written_out.detach()), rel=1e-6)
    for name, param in model.net.named_parameters():
        torch.testing.assert_close(ours[name], param.grad, rtol=1e-5, atol=1e-5)


def test_sparse_and_dense_engines_agree(low_rank) -> None:
    split = paper_split(low_rank, seed=1)
    preds = []
    for engine in ("sparse", "dense"):
        model = AutoRec(AutoRecConfig(hidden=(8,), n_epochs=5, engine=engine, seed=2))
        model.fit(split.train, split.val)
        preds.append(model.predict(split.test.user_idx, split.test.item_idx))
        assert model.engine == engine
    np.testing.assert_allclose(preds[0], preds[1], atol=1e-4)


@pytest.mark.parametrize("variant", ["item", "user"])
def test_test_ratings_never_change_predictions(low_rank, variant) -> None:
    # Leakage: train twice on the same train/val, with the test ratings scrambled in between;
    # everything the model outputs must be bit-for-bit identical.
    split = paper_split(low_rank, seed=0)
    cfg = AutoRecConfig(variant=variant, hidden=(8,), n_epochs=15, seed=0)
    first = AutoRec(cfg).fit(split.train, split.val)
    all_pairs = (
        np.repeat(np.arange(low_rank.n_users), low_rank.n_items),
        np.tile(np.arange(low_rank.n_items), low_rank.n_users),
    )
    before = first.predict(*all_pairs)
    rng = np.random.default_rng(9)
    scrambled = split.test.subset(np.arange(split.test.n_ratings))
    scrambled.rating[:] = rng.integers(1, 6, scrambled.n_ratings)
    second = AutoRec(cfg).fit(split.train, split.val)
    np.testing.assert_array_equal(before, second.predict(*all_pairs))
    # Predicting the test pairs uses the training inputs only, whatever the test ratings say.
    np.testing.assert_array_equal(
        first.predict(split.test.user_idx, split.test.item_idx),
        second.predict(scrambled.user_idx, scrambled.item_idx),
    )


def test_input_never_contains_validation_or_test(low_rank) -> None:
    split = paper_split(low_rank, seed=0)
    model = AutoRec(AutoRecConfig(hidden=(4,), n_epochs=2)).fit(split.train, split.val)
    # The model's input matrix holds exactly the training ratings (I-AutoRec: rows are items).
    assert model._train_x.nnz == split.train.n_ratings
    dense = model._train_x.to_dense().numpy()
    expected = np.zeros_like(dense)
    expected[split.train.item_idx, split.train.user_idx] = split.train.rating
    np.testing.assert_array_equal(dense, expected)


@pytest.mark.parametrize("variant", ["item", "user"])
def test_beats_bias_baseline_on_low_rank_data(variant) -> None:
    # Rank-3 structure that biases alone cannot capture (conftest.low_rank_ratings).
    from tests.conftest import low_rank_ratings

    data = low_rank_ratings(n_users=300, n_items=200, density=0.25, noise=0.1, seed=5)
    split = paper_split(data, seed=0)
    bias = BiasBaseline().fit(split.train)
    auto = AutoRec(
        AutoRecConfig(variant=variant, hidden=(32,), lam=10.0, n_epochs=150, patience=10, seed=0)
    ).fit(split.train, split.val)
    test = split.test
    bias_rmse = rmse(test.rating, bias.predict(test.user_idx, test.item_idx))
    auto_rmse = rmse(test.rating, auto.predict(test.user_idx, test.item_idx))
    assert auto_rmse < bias_rmse - 0.03, (auto_rmse, bias_rmse)


@pytest.mark.parametrize("optimizer", ["rprop", "lbfgs", "adam"])
def test_every_optimizer_lowers_training_error(low_rank, optimizer) -> None:
    model = AutoRec(AutoRecConfig(hidden=(8,), optimizer=optimizer, n_epochs=8, seed=0))
    model.fit(low_rank)
    assert model.history.n_epochs == 8  # no validation: runs every epoch
    assert model.history.train_rmse[-1] < model.history.train_rmse[0]


def test_early_stopping_keeps_best_epoch(low_rank_split) -> None:
    model = AutoRec(AutoRecConfig(hidden=(32,), lam=0.001, n_epochs=300, patience=5, seed=0))
    model.fit(low_rank_split.train, low_rank_split.val)
    hist = model.history
    assert hist.n_epochs < 300
    assert hist.best_epoch == int(np.argmin(hist.val_rmse)) + 1
    assert hist.n_epochs - hist.best_epoch == 5
    # The kept weights are those of the best epoch: their validation RMSE is the minimum.
    val = low_rank_split.val
    pred = model.predict(val.user_idx, val.item_idx)
    assert rmse(val.rating, pred) == pytest.approx(min(hist.val_rmse), abs=1e-5)


@pytest.mark.parametrize("f", ["identity", "sigmoid", "relu", "tanh", "elu", "selu"])
def test_every_output_activation_trains(low_rank_split, f) -> None:
    model = AutoRec(AutoRecConfig(hidden=(8,), f=f, g="sigmoid", n_epochs=10, seed=0))
    model.fit(low_rank_split.train, low_rank_split.val)
    assert math.isfinite(model.history.best_val_rmse)


def test_bounded_output_reaches_the_whole_scale(tiny) -> None:
    net = AutoRecNet(3, (2,), "sigmoid", "sigmoid", (1.0, 5.0), torch.Generator())
    out = net._output(torch.tensor([-50.0, 0.0, 50.0]))
    np.testing.assert_allclose(out.numpy(), [1.0, 3.0, 5.0], atol=1e-5)


def test_divergence_raises(low_rank) -> None:
    # Identity activations and an absurd step: weights reach ~1e20, products overflow float32.
    model = AutoRec(
        AutoRecConfig(
            hidden=(8,), optimizer="adam", lr=1e20, f="identity", g="identity", n_epochs=50
        )
    )
    with pytest.raises(ModelFitError, match="diverged"):
        model.fit(low_rank)


def test_input_dropout_changes_training_but_is_reproducible(low_rank_split) -> None:
    test = low_rank_split.test
    kwargs = dict(hidden=(8,), n_epochs=5, seed=1)
    plain = AutoRec(AutoRecConfig(**kwargs)).fit(low_rank_split.train)
    noisy1 = AutoRec(AutoRecConfig(input_dropout=0.3, **kwargs)).fit(low_rank_split.train)
    noisy2 = AutoRec(AutoRecConfig(input_dropout=0.3, **kwargs)).fit(low_rank_split.train)
    p1 = noisy1.predict(test.user_idx, test.item_idx)
    np.testing.assert_array_equal(p1, noisy2.predict(test.user_idx, test.item_idx))
    assert not np.array_equal(p1, plain.predict(test.user_idx, test.item_idx))


@pytest.mark.parametrize(
    "bad",
    [
        dict(variant="both"),
        dict(hidden=()),
        dict(f="softmax"),
        dict(lam=-1.0),
        dict(optimizer="sgd"),
        dict(input_dropout=1.0),
        dict(engine="gpu"),
        dict(n_epochs=0),
    ],
)
def test_bad_config_is_a_clear_error(bad) -> None:
    with pytest.raises(ConfigError):
        AutoRecConfig(**bad)


@pytest.mark.parametrize("variant", ["item", "user"])
@pytest.mark.parametrize("f", ["identity", "sigmoid"])
def test_score_block_equals_score_and_the_fallback(low_rank, variant, f) -> None:
    # Whole rows by one matrix product (ranking, recommend) against _score's gathered dot
    # products: equal up to float32 rounding at every known pair, for an unbounded f and a
    # bounded one mapped onto the scale. User 0 and
    # item 0 have no training rating: their cells are the fallback (constant 3), exactly.
    train = low_rank.subset((low_rank.user_idx != 0) & (low_rank.item_idx != 0))
    # The rating block (the head, on by default for I-AutoRec, is tested in test_autorec_rank).
    config = AutoRecConfig(
        variant=variant, f=f, hidden=(8,), n_epochs=5, lam=1.0, ranking_head=False
    )
    model = AutoRec(config.replace(fallback="constant"))  # the rule the last line checks
    model.fit(train)
    users = np.array([0, 1, 5, 119, 2])
    block = model._score_block(users)  # (5, 80)
    assert block.shape == (5, 80) and block.dtype == np.float64
    grid_users, grid_items = np.repeat(users, 80), np.tile(np.arange(80), 5)
    known = model.known_mask(grid_users, grid_items)
    assert not known[:80].any() and not known.reshape(5, 80)[:, 0].any()
    np.testing.assert_allclose(
        block.reshape(-1)[known],
        model._score(grid_users[known], grid_items[known]),
        rtol=1e-6,
        atol=1e-5,
    )
    np.testing.assert_array_equal(block.reshape(-1)[~known], 3.0)


def test_registry_names_the_orientation() -> None:
    assert make_model("i-autorec").config.variant == "item"
    assert make_model("u-autorec").config.variant == "user"
    assert make_model("u-autorec").model_name == "u-autorec"
    with pytest.raises(ConfigError, match="known models"):
        make_model("svd")
    with pytest.raises(ConfigError, match="no option"):
        make_model("bias", lam=1.0)


def test_u_autorec_fold_in_is_the_trained_users_own_prediction(low_rank_split) -> None:
    # Folding in a training user's own training row must reproduce what the model predicts for
    # that user: the encoder sees exactly the same input vector.
    train = low_rank_split.train
    model = AutoRec(AutoRecConfig(variant="user", hidden=(8,), n_epochs=10, seed=0)).fit(train)
    user = 5
    mine = train.user_idx == user
    row = {
        train.items.ids[i].item(): float(r)
        for i, r in zip(train.item_idx[mine], train.rating[mine], strict=True)
    }
    folded = model.fold_in(row)
    direct = model.predict(np.full(train.n_items, user), np.arange(train.n_items))
    np.testing.assert_allclose(folded.predictions, direct, atol=1e-5)


@pytest.mark.parametrize("hidden", [(12,), (12, 6, 12)])
@pytest.mark.parametrize("n_rated", [5, 40])  # fewer ratings than units (dual) and more (primal)
def test_i_autorec_fold_in_minimises_the_new_users_objective(
    low_rank_split, hidden, n_rated
) -> None:
    # The closed form must be the minimiser of sum_i (r_i - w.h_i - b)^2 + lam/2 ||w||^2 over
    # the new user's decoder row w and bias b, the items' codes h_i frozen: the gradient of that
    # objective (by autograd) vanishes there. A wrong penalty (lam instead of lam/2) or a
    # penalised bias leaves a gradient of order lam/2 |w| or |b| (about 1 here); the solver's
    # 1e-8 ridge jitter leaves 2e-8 |w|.
    train = low_rank_split.train
    lam = 3.0
    # The rating model's fold-in (the head's: test_autorec_rank).
    config = AutoRecConfig(hidden=hidden, lam=lam, n_epochs=5, ranking_head=False)
    model = AutoRec(config).fit(train)
    rng = np.random.default_rng(0)
    items = rng.choice(train.n_items, n_rated, replace=False)
    rating = rng.integers(1, 6, n_rated).astype(np.float64)
    w, b = model._fold_in_user(items, rating)
    w = w.clone().requires_grad_(True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    codes = model._all_codes()[torch.from_numpy(items)].double()  # (n_rated, k_last)
    loss = (torch.from_numpy(rating) - codes @ w - b).pow(2).sum() + lam / 2 * w.pow(2).sum()
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-6 and abs(float(b.grad)) < 1e-6
    folded = model.fold_in((train.items.ids[items].tolist(), rating.tolist()))
    expected = (model._all_codes().double() @ w.detach() + b.detach()).numpy()
    np.testing.assert_allclose(folded.scores, expected, atol=1e-5)  # float32 product


def test_i_autorec_fold_in_needs_identity_f(low_rank_split) -> None:
    model = AutoRec(AutoRecConfig(hidden=(4,), f="sigmoid", n_epochs=2)).fit(low_rank_split.train)
    with pytest.raises(ConfigError, match="f = identity"):
        model.fold_in({low_rank_split.train.items.ids[0].item(): 4.0})


@pytest.mark.parametrize("engine", ["sparse", "dense"])
def test_bf16_autocast_trains_close_to_fp32(low_rank_split, engine) -> None:
    # bf16 keeps 8 bits of mantissa in the dense products only: the RMSE moves by far less
    # than the gap between any two models worth comparing (here within 0.02 on 1..5 ratings).
    test = low_rank_split.test
    scores = {}
    for precision in ("fp32", "bf16"):
        model = AutoRec(
            AutoRecConfig(hidden=(16, 8, 16), n_epochs=30, engine=engine, precision=precision)
        ).fit(low_rank_split.train, low_rank_split.val)
        scores[precision] = rmse(test.rating, model.predict(test.user_idx, test.item_idx))
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.02)


def test_auto_engine_choice() -> None:
    from autorec.models.autorec import choose_engine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # ML-1M I-AutoRec: 3,706 x 6,040 with 900k ratings (4% dense): sparse on CPU, dense on GPU.
    assert choose_engine(3706, 6040, 900_000, cpu) == "sparse"
    assert choose_engine(3706, 6040, 900_000, cuda) == "dense"
    # Netflix I-AutoRec (17,770 x 480,189, 1.2%): sparse everywhere.
    assert choose_engine(17_770, 480_189, 100_000_000, cuda) == "sparse"
    # A nearly full matrix: dense on CPU too.
    assert choose_engine(100, 100, 9_000, cpu) == "dense"


def test_dense_engine_in_row_chunks_matches_one_block(low_rank_split, monkeypatch) -> None:
    import autorec.models.autorec as module

    test = low_rank_split.test
    cfg = AutoRecConfig(hidden=(8,), n_epochs=8, engine="dense", seed=4)
    whole = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    # 80 items x 120 users = 9,600 cells; blocks of 1,000 cells = 8 rows at a time.
    monkeypatch.setattr(module, "_DENSE_CHUNK_CELLS", 1000)
    chunked = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    np.testing.assert_allclose(
        chunked.predict(test.user_idx, test.item_idx),
        whole.predict(test.user_idx, test.item_idx),
        atol=1e-4,
    )
    assert chunked.history.train_rmse == pytest.approx(whole.history.train_rmse, abs=1e-5)


def test_tiled_layout_trains_like_the_plain_one(low_rank_split, tmp_path, monkeypatch):
    import autorec.models.autorec as module
    from autorec.models.sparse import BlockedRows

    test = low_rank_split.test
    cfg = AutoRecConfig(hidden=(8,), n_epochs=10, seed=2, engine="sparse")
    plain = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    # Force tiles of 7 item rows x 16 of the 120 user columns (the real rule cuts only sides
    # that outgrow the cache).
    monkeypatch.setattr(module, "tile_shape", lambda n_rows, n_cols, k, device: (7, 16))
    blocked = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    n_items = low_rank_split.train.n_items
    assert isinstance(blocked._train_x, BlockedRows)
    assert len(blocked._train_x.tiles) == math.ceil(n_items / 7) * 8
    pred = blocked.predict(test.user_idx, test.item_idx)
    np.testing.assert_allclose(pred, plain.predict(test.user_idx, test.item_idx), atol=1e-4)
    blocked.save(tmp_path / "b")
    loaded = AutoRec.load(tmp_path / "b")
    assert isinstance(loaded._train_x, BlockedRows)
    np.testing.assert_array_equal(loaded.predict(test.user_idx, test.item_idx), pred)


def test_memory_estimate_counts_the_parameters_by_hand() -> None:
    # 10 x 7 matrix (7 columns), hidden (4,): V 7x4 + mu 4 + W 7x4 + b 7 = 67 parameters.
    # RProp: weights 4 * 67, gradients 4 * 67, state 5 * 67; activations: all 10 rows x 4 units
    # x 8 bytes + 32 bytes x 20 ratings; the matrix 40 bytes x 20 ratings.
    parts = AutoRecConfig(hidden=(4,), ranking_head=False).memory_estimate(10, 7, 20)
    assert parts == {
        "weights": 268,
        "gradients": 268,
        "optimiser state": 335,
        "activations": 320 + 640,
        "training matrix": 800,
    }
    # Deep (4, 3, 4): + 4x3 + 3 + 3x4 + 4 = 31 more parameters.
    assert AutoRecConfig(hidden=(4, 3, 4)).memory_estimate(10, 7, 20)["weights"] == 4 * 98


def test_available_memory_reads_memavailable(tmp_path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n")
    assert available_memory(torch.device("cpu"), str(meminfo)) == 2048 * 1024
    assert available_memory(torch.device("cpu"), str(tmp_path / "missing")) is None


def test_too_many_hidden_units_is_a_config_error_before_allocating(low_rank_split) -> None:
    # 10^10 hidden units on 120 users: V alone would be 4.8 TB of float32; today's machine has
    # far less, so the fit must refuse with the estimate instead of failing to allocate.
    model = AutoRec(AutoRecConfig(hidden=(10**10,), n_epochs=1))
    with pytest.raises(ConfigError, match=r"needs about [\d,.]+ GiB .* but only .* is available"):
        model.fit(low_rank_split.train)


def test_memory_check_uses_the_free_memory(monkeypatch, low_rank_split) -> None:
    monkeypatch.setattr(autorec_module, "available_memory", lambda device: 1000)
    with pytest.raises(ConfigError, match="only 0.0 GiB is available"):
        AutoRec(AutoRecConfig(**FAST)).fit(low_rank_split.train)
    monkeypatch.setattr(autorec_module, "available_memory", lambda device: None)  # unreadable
    AutoRec(AutoRecConfig(**{**FAST, "n_epochs": 1})).fit(low_rank_split.train)


def test_i_autorec_fold_in_item_is_the_trained_items_own_prediction(low_rank_split) -> None:
    # I-AutoRec encodes an item's column: a training item's own training column, folded in as a
    # new item, must give the model's predictions for that item.
    train = low_rank_split.train
    model = AutoRec(AutoRecConfig(hidden=(8,), n_epochs=10, seed=0)).fit(train)
    item = 3
    mine = train.item_idx == item
    column = (train.users.ids[train.user_idx[mine]].tolist(), train.rating[mine].tolist())
    direct = model.predict(np.arange(train.n_users), np.full(train.n_users, item))
    np.testing.assert_allclose(model.fold_in_item(column), direct, atol=1e-5)


def test_u_autorec_fold_in_item_predicts_its_held_out_ratings(low_rank_split) -> None:
    # U-AutoRec: a new item's decoder row by the closed-form ridge. Folding in each test item
    # from its training column predicts its test ratings within 0.05 of the model's own RMSE
    # (measured 0.854 against 0.851 on this data) and better than the global mean (1.021).
    train, test = low_rank_split.train, low_rank_split.test
    model = AutoRec(AutoRecConfig(variant="user", hidden=(16,), lam=10.0, n_epochs=60)).fit(
        train, low_rank_split.val
    )
    folded = np.empty(test.n_ratings)
    for item in np.unique(test.item_idx):
        mine = train.item_idx == item
        column = (train.users.ids[train.user_idx[mine]].tolist(), train.rating[mine].tolist())
        at = test.item_idx == item
        folded[at] = model.fold_in_item(column)[test.user_idx[at]]
    own = rmse(test.rating, model.predict(test.user_idx, test.item_idx))
    assert rmse(test.rating, folded) <= own + 0.05
    assert rmse(test.rating, folded) < rmse(
        test.rating, np.full(test.n_ratings, train.rating.mean())
    )
    with pytest.raises(ConfigError, match="unknown user id"):
        model.fold_in_item({"nobody": 4.0})


def test_gradient_pool_reuses_the_weight_gradients_without_changing_results(
    low_rank_split, monkeypatch
):
    import contextlib

    import autorec.models.autorec as module
    from autorec.models.sparse import GradientPool

    # Tiles force the transposed products through the pool (the real rule tiles only sides
    # that outgrow the cache).
    monkeypatch.setattr(module, "tile_shape", lambda n_rows, n_cols, k, device: (7, 16))
    cfg = AutoRecConfig(hidden=(8,), n_epochs=5, seed=3, engine="sparse")
    fresh: list[bool] = []
    take = GradientPool.take

    def counting_take(self, shape, dtype, device):
        n_free = len(self._free)
        buf = take(self, shape, dtype, device)
        fresh.append(len(self._free) == n_free)  # nothing left the free list: a new buffer
        return buf

    monkeypatch.setattr(GradientPool, "take", counting_take)
    pooled = AutoRec(cfg).fit(low_rank_split.train)
    # Two weight gradients (encoder and decoder) a pass: new in epoch 1, reused in epochs 2-5.
    assert fresh == [True, True] + [False] * 8
    monkeypatch.setattr(GradientPool, "lending", lambda self: contextlib.nullcontext())
    unpooled = AutoRec(cfg).fit(low_rank_split.train)
    expected = unpooled.net.state_dict()
    for name, value in pooled.net.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_a_warm_start_continues_from_the_given_weights(low_rank_split):
    cfg = AutoRecConfig(hidden=(8,), n_epochs=6, seed=0, lr=0.002)
    first = AutoRec(cfg).fit(low_rank_split.train)
    merged = low_rank_split.train.merge(low_rank_split.val)
    warm = AutoRec(AutoRecConfig(hidden=(8,), n_epochs=1, seed=0, lr=0.002)).start_from(first)
    warm.fit(merged)
    # One RProp epoch from a fresh optimiser moves every weight by at most the initial step
    # (0.002); a cold start would sit at a new random initialisation instead.
    for name, value in warm.net.state_dict().items():
        moved = (value - first.net.state_dict()[name]).abs().max().item()
        assert moved <= 0.002 + 1e-7, name
    cold = AutoRec(AutoRecConfig(hidden=(8,), n_epochs=1, seed=1)).fit(merged)
    assert (cold.net.encoder - first.net.encoder).abs().max().item() > 0.01


def test_start_from_refuses_another_architecture(low_rank_split):
    other = AutoRec(AutoRecConfig(hidden=(6,), n_epochs=1)).fit(low_rank_split.train)
    with pytest.raises(ConfigError, match="hidden=\\[8\\].*hidden=\\[6\\]"):
        AutoRec(AutoRecConfig(hidden=(8,))).start_from(other)
    with pytest.raises(ConfigError, match="fitted AutoRec"):
        AutoRec(AutoRecConfig(hidden=(8,))).start_from(AutoRec(AutoRecConfig(hidden=(8,))))


class TestBiasBaselineResiduals:
    """``baseline="bias"`` (issues 15, 16): the autoencoder reads the ratings and reconstructs
    their residuals from the damped bias baseline, which every prediction adds back."""

    @staticmethod
    def _fit(train, val=None, **overrides):
        config = dict(hidden=(8,), n_epochs=20, baseline="bias", ranking_head=False, seed=0)
        return AutoRec(AutoRecConfig(**{**config, **overrides})).fit(train, val)

    @classmethod
    def _penalised_away(cls, train, variant, regs):
        """A residual model with lambda = 1e9 and baseline damping ``regs``, and the bias model
        with the same damping, both fitted on ``train``."""
        model = cls._fit(
            train,
            variant=variant,
            lam=1e9,
            n_epochs=100,
            bias_reg_user=regs[0],
            bias_reg_item=regs[1],
        )
        return model, make_model("bias", reg_user=regs[0], reg_item=regs[1]).fit(train)

    @pytest.mark.parametrize("regs", [(15.0, 10.0), (40.0, 2.0)])
    @pytest.mark.parametrize("variant", ["item", "user"])
    def test_huge_lambda_is_the_bias_baseline(self, low_rank_split, variant, regs) -> None:
        # With lambda = 1e9 the penalty drives W and V to 0 (|W| ~ 1e-6 after 100 epochs), the
        # output bias is held at 0, so every prediction is mu + b_u + b_i: the bias model with
        # the same damping (the defaults, or the bias_reg_* the search tunes), fitted on the same
        # ratings. A trained output bias would add each column's undamped mean residual (up to
        # 0.5 on this data), the paper's model (baseline="none") predicts each column's mean
        # rating, and a model that ignored bias_reg_* would be the (15, 10) bias model.
        train, test = low_rank_split.train, low_rank_split.test
        model, bias = self._penalised_away(train, variant, regs)
        for part in (train, test):
            np.testing.assert_allclose(
                model.predict(part.user_idx, part.item_idx),
                bias.predict(part.user_idx, part.item_idx),
                atol=1e-4,
            )

    @pytest.mark.parametrize("engine", ["sparse", "dense"])
    def test_the_residuals_are_fitted_from_the_ratings(self, low_rank, engine) -> None:
        # The first epoch's training RMSE is measured before the first step, at the initial
        # weights: recompute it by hand from the same draws (the net is the first thing the
        # seeded generator draws), with the ratings as input (0 where unobserved), residuals of
        # BiasBaseline() as targets and an output bias of 0. Residual inputs, rating targets or
        # the paper's output bias (started at the mean rating) each give another number.
        model = self._fit(low_rank, n_epochs=1, engine=engine)
        assert model.engine == engine
        bias = BiasBaseline().fit(low_rank)
        rows, cols = low_rank.item_idx, low_rank.user_idx  # I-AutoRec: rows are items
        dense = torch.zeros(low_rank.n_items, low_rank.n_users, dtype=torch.float64)
        dense[rows, cols] = torch.from_numpy(low_rank.rating).double()
        net = AutoRecNet(
            low_rank.n_users,
            (8,),
            "identity",
            "sigmoid",
            (1.0, 5.0),
            torch.Generator().manual_seed(0),
        ).double()
        with torch.no_grad():
            recon = net.decode_dense(net.encode_dense(dense))[rows, cols].numpy()
        residual = low_rank.rating - bias._score(low_rank.user_idx, low_rank.item_idx)
        expected = math.sqrt(np.mean((residual - recon) ** 2))
        assert model.history.train_rmse[0] == pytest.approx(expected, rel=1e-5)

    def test_the_output_bias_stays_zero_and_validation_scores_ratings(self, low_rank_split):
        train, val = low_rank_split.train, low_rank_split.val
        model = self._fit(train, val, lam=1.0, n_epochs=15, patience=15)
        assert float(model.net.decoder_bias.abs().max()) == 0.0
        # The validation RMSE the early stopping used is the RMSE of the predicted ratings
        # (baseline + reconstruction, clipped), not of the residuals. Every validation pair is
        # known to the model here, so predict() uses no fallback.
        assert model.known_mask(val.user_idx, val.item_idx).all()
        predicted = model.predict(val.user_idx, val.item_idx)
        assert model.history.best_val_rmse == pytest.approx(rmse(val.rating, predicted), abs=1e-5)

    def test_sparse_and_dense_engines_agree(self, low_rank_split) -> None:
        train, test = low_rank_split.train, low_rank_split.test
        sparse = self._fit(train, engine="sparse", n_epochs=5, lam=1.0)
        dense = self._fit(train, engine="dense", n_epochs=5, lam=1.0)
        np.testing.assert_allclose(
            sparse.predict(test.user_idx, test.item_idx),
            dense.predict(test.user_idx, test.item_idx),
            atol=1e-4,
        )

    @pytest.mark.parametrize("variant", ["item", "user"])
    def test_score_block_adds_the_baseline(self, low_rank, variant) -> None:
        # Whole rows (ranking, recommend, the ranking head's rating part) against _score's
        # pairs: both must add mu + b_u + b_i; user 0 and item 0 are cold (the fallback).
        train = low_rank.subset((low_rank.user_idx != 0) & (low_rank.item_idx != 0))
        model = self._fit(train, variant=variant, n_epochs=5, lam=1.0)
        users = np.array([0, 1, 5, 119])
        block = model._score_block(users)  # (4, 80)
        grid_users, grid_items = np.repeat(users, 80), np.tile(np.arange(80), 4)
        np.testing.assert_allclose(
            block.reshape(-1), model._unclipped(grid_users, grid_items), rtol=1e-6, atol=1e-5
        )

    def test_save_and_load_round_trip(self, low_rank_split, tmp_path) -> None:
        train, test = low_rank_split.train, low_rank_split.test
        model = self._fit(train, n_epochs=5, lam=1.0)
        loaded = AutoRec.load(model.save(tmp_path / "m"))
        assert loaded.config.baseline == "bias"
        np.testing.assert_array_equal(
            loaded.predict(test.user_idx, test.item_idx),
            model.predict(test.user_idx, test.item_idx),
        )
        ratings = {train.items.ids[i].item(): 5.0 for i in range(6)}
        np.testing.assert_array_equal(
            loaded.fold_in(ratings).predictions, model.fold_in(ratings).predictions
        )

    def test_u_autorec_fold_in_is_the_trained_users_own_prediction(self, low_rank_split):
        # A training user's own ratings, folded in: the same input row, and the same user bias
        # (fit_biases ends on a user step, which is the fold-in's step), so the same predictions.
        train = low_rank_split.train
        model = self._fit(train, variant="user", n_epochs=10, lam=1.0)
        user = 5
        mine = train.user_idx == user
        row = (train.items.ids[train.item_idx[mine]].tolist(), train.rating[mine].tolist())
        direct = model.predict(np.full(train.n_items, user), np.arange(train.n_items))
        np.testing.assert_allclose(model.fold_in(row).predictions, direct, atol=1e-5)

    @pytest.mark.parametrize("regs", [(15.0, 10.0), (40.0, 2.0)])
    @pytest.mark.parametrize("variant", ["item", "user"])
    def test_fold_in_with_huge_lambda_is_the_bias_models_fold_in(
        self, low_rank_split, variant, regs
    ):
        # W, V -> 0: a new user's predictions are mu + b_u(new) + b_i with b_u(new) the bias
        # model's own fold-in (damped by lambda_u); a new item's are mu + b_u + b_i(new),
        # b_i(new) = sum_u (r_ui - mu - b_u) / (lambda_i + n_i), one item step of fit_biases.
        train = low_rank_split.train
        model, bias = self._penalised_away(train, variant, regs)
        rng = np.random.default_rng(1)
        items = rng.choice(train.n_items, 7, replace=False)
        rating = rng.integers(1, 6, 7).astype(np.float64)
        new_user = (train.items.ids[items].tolist(), rating.tolist())
        np.testing.assert_allclose(
            model.fold_in(new_user).predictions, bias.fold_in(new_user).predictions, atol=1e-4
        )
        users = rng.choice(train.n_users, 9, replace=False)
        values = rng.integers(1, 6, 9).astype(np.float64)
        b_item = np.sum(values - bias.global_mean - bias.user_bias[users]) / (regs[1] + len(users))
        expected = np.clip(bias.global_mean + bias.user_bias + b_item, 1.0, 5.0)
        folded = model.fold_in_item((train.users.ids[users].tolist(), values.tolist()))
        np.testing.assert_allclose(folded, expected, atol=1e-4)

    def test_i_autorec_fold_in_minimises_the_residual_objective(self, low_rank_split) -> None:
        # The new user's decoder row w minimises sum_i (x_i - w.h_i)^2 + lam/2 ||w||^2 with
        # x_i = r_i - mu - b_u(new) - b_i the residuals and no output bias (held at 0, as in
        # training): the gradient vanishes there, and the state's b is mu + b_u(new).
        train = low_rank_split.train
        lam = 3.0
        model = self._fit(train, hidden=(12,), lam=lam, n_epochs=5)
        rng = np.random.default_rng(0)
        items = rng.choice(train.n_items, 20, replace=False)
        rating = rng.integers(1, 6, 20).astype(np.float64)
        w, b = model._fold_in_user(items, rating)
        b_user = BiasBaseline().fit(train)._fold_in_user(items, rating)
        assert b == pytest.approx(model.global_mean + b_user, abs=1e-12)
        x = torch.from_numpy(rating - b - model._item_bias[items])
        w = w.clone().requires_grad_(True)
        codes = model._all_codes()[torch.from_numpy(items)].double()  # (20, 12)
        loss = (x - codes @ w).pow(2).sum() + lam / 2 * w.pow(2).sum()
        loss.backward()
        assert float(w.grad.abs().max()) < 1e-6

    def test_ranking_head_ranks_with_the_residual_model(self, low_rank_split) -> None:
        train = low_rank_split.train
        model = self._fit(
            train, n_epochs=5, lam=1.0, ranking_head=True, rank_hidden=8, rank_epochs=4
        )
        assert model._head is not None
        user_id = train.users.ids[3].item()
        top = model.recommend(user_id, k=5)
        seen = set(train.items.ids[model._seen_items(3)].tolist())
        assert len(top) == 5 and not seen & {item for item, _ in top}
        ratings = {train.items.ids[i].item(): 4.0 for i in range(5)}
        assert len(model.recommend_new_user(ratings, k=5)) == 5

    def test_bad_combinations_are_config_errors(self, low_rank_split) -> None:
        with pytest.raises(ConfigError, match="baseline='bias' needs f='identity'"):
            AutoRecConfig(baseline="bias", f="sigmoid")
        with pytest.raises(ConfigError, match="baseline must be"):
            AutoRecConfig(baseline="svd")
        paper = AutoRec(AutoRecConfig(hidden=(8,), n_epochs=1)).fit(low_rank_split.train)
        with pytest.raises(ConfigError, match="fit different targets"):
            AutoRec(AutoRecConfig(hidden=(8,), baseline="bias")).start_from(paper)


class TestLayerLamScales:
    """Per-layer weight decay: matrix j is penalised with lam * layer_lam_scales[j]."""

    @staticmethod
    def _deep_model(data, scales: tuple[float, ...]) -> tuple[AutoRec, SparseRows]:
        cfg = AutoRecConfig(hidden=(6, 3, 6), lam=7.0, layer_lam_scales=scales, seed=0)
        model = AutoRec(cfg)
        model.users, model.items = data.users, data.items
        model.n_users, model.n_items = data.n_users, data.n_items
        model.rating_scale = data.rating_scale
        n_cols = model._shape()[1]
        gen = torch.Generator().manual_seed(0)
        model.net = AutoRecNet(n_cols, cfg.hidden, "identity", "sigmoid", (1.0, 5.0), gen)
        model.engine = "sparse"
        return model, model._sparse(data, torch.device("cpu"))

    def test_penalty_and_gradient_are_autograd_of_the_per_layer_objective(self, low_rank):
        # Scales all different, so a scale applied to the wrong matrix (or not at all) changes
        # both the objective and that matrix's gradient: the reference is autograd of
        # data + share/2 * lam * sum_j s_j ||M_j||^2 written out, M = (V, middle 1, middle 2, W).
        scales = (0.5, 0.1, 3.0, 2.0)
        model, x = self._deep_model(low_rank, scales)
        loss, _ = model._backward(x, x, 0.5)
        ours = {n: p.grad.clone() for n, p in model.net.named_parameters()}
        model.net.zero_grad(set_to_none=True)
        net = model.net
        weights = [net.encoder, *net.middle_weights, net.decoder]
        penalty = sum(s * w.pow(2).sum() for s, w in zip(scales, weights, strict=True))
        written_out = model._data_loss(x, x) + 0.5 * 0.5 * 7.0 * penalty
        written_out.backward()
        assert loss == pytest.approx(float(written_out.detach()), rel=1e-6)
        for name, param in net.named_parameters():
            torch.testing.assert_close(ours[name], param.grad, rtol=1e-5, atol=1e-5)

    def test_unit_scales_are_the_single_lambda_bit_for_bit(self, low_rank):
        # () and all-ones must give the paper's objective exactly (the committed experiment
        # outputs were produced without scales).
        results = []
        for scales in ((), (1.0, 1.0, 1.0, 1.0)):
            model, x = self._deep_model(low_rank, scales)
            loss, _ = model._backward(x, x, 0.5)
            results.append((loss, {n: p.grad.clone() for n, p in model.net.named_parameters()}))
        assert results[0][0] == results[1][0]
        for name, grad in results[0][1].items():
            torch.testing.assert_close(grad, results[1][1][name], rtol=0, atol=0)

    def test_inner_scale_changes_only_the_inner_layers_decay(self, low_rank_split):
        # Training with a zero penalty on the middle layers leaves them larger than with the
        # full one, while the fit still runs end to end.
        norms = {}
        for inner in (0.0, 1.0):
            cfg = AutoRecConfig(
                hidden=(8, 4, 8),
                lam=50.0,
                layer_lam_scales=(1.0, inner, inner, 1.0),
                n_epochs=15,
                seed=0,
                ranking_head=False,
            )
            model = AutoRec(cfg).fit(low_rank_split.train)
            norms[inner] = sum(float(w.detach().pow(2).sum()) for w in model.net.middle_weights)
        assert norms[0.0] > norms[1.0]

    def test_fold_in_uses_the_decoders_lambda(self, low_rank_split):
        # The new user's decoder row minimises sum (r - w.h - b)^2 + lam * s_W / 2 ||w||^2: its
        # gradient by autograd vanishes there; with lam / 2 (the scale ignored) it would not.
        train = low_rank_split.train
        cfg = AutoRecConfig(
            hidden=(12,), lam=3.0, layer_lam_scales=(1.0, 4.0), n_epochs=5, ranking_head=False
        )
        model = AutoRec(cfg).fit(train)
        rng = np.random.default_rng(0)
        items = rng.choice(train.n_items, 5, replace=False)
        rating = rng.integers(1, 6, 5).astype(np.float64)
        w, b = model._fold_in_user(items, rating)
        w = w.clone().requires_grad_(True)
        b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        codes = model._all_codes()[torch.from_numpy(items)].double()  # (n_rated, k)
        residual = torch.from_numpy(rating) - codes @ w - b
        loss = residual.pow(2).sum() + 3.0 * 4.0 / 2 * w.pow(2).sum()
        loss.backward()
        assert float(w.grad.abs().max()) < 1e-6 and abs(float(b.grad)) < 1e-6

    @pytest.mark.parametrize("scales", [(1.0, 1.0), (1.0, -1.0, 1.0, 1.0), (1.0, math.inf, 1, 1)])
    def test_bad_scales_are_a_clear_error(self, scales):
        with pytest.raises(ConfigError, match="layer_lam_scales must be 4 finite numbers"):
            AutoRecConfig(hidden=(6, 3, 6), layer_lam_scales=scales)


def test_a_validated_fit_reuses_the_validation_product_bit_for_bit(low_rank_split, monkeypatch):
    # The validation pass after step t computes X @ V_t, the product the forward pass of step
    # t + 1 starts with (ProductMemo). Over 6 epochs with validation, 8 products are computed
    # afresh (epoch 1's forward, the 6 validation passes, and the codes the fit keeps for
    # predictions: the memo is emptied when the fit ends) and the forwards of epochs 2-6 reuse
    # one; and the fit is the one that computes every product afresh, bit for bit.
    import autorec.models.sparse as sparse

    spmm = sparse.spmm
    counts = {"fresh": 0, "reused": 0}

    def counting(x, dense, known=None):
        counts["fresh" if known is None else "reused"] += 1
        return spmm(x, dense, known)

    monkeypatch.setattr(sparse, "spmm", counting)
    cfg = AutoRecConfig(hidden=(8,), n_epochs=6, seed=3, engine="sparse", patience=100)
    reusing = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    assert counts == {"fresh": 8, "reused": 5}
    assert reusing.net._products._entry is None
    monkeypatch.setattr(sparse.ProductMemo, "spmm", lambda self, x, dense: spmm(x, dense))
    fresh = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    assert reusing.history.val_rmse == fresh.history.val_rmse
    expected = fresh.net.state_dict()
    for name, value in reusing.net.state_dict().items():
        assert torch.equal(value, expected[name]), name
