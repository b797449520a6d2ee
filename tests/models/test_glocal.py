"""GLocal-K (autorec.models.glocal): the global kernel, the two stages and their epochs chosen on
validation, the dense-size refusal, determinism and persistence. The shared contract runs on it
through test_contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.data import IdIndex, Ratings, paper_split
from autorec.errors import ConfigError
from autorec.models import make_model
from autorec.models.base import Recommender
from autorec.models.glocal import GLocalConfig, GLocalK, convolve, global_kernel

# Small problems: extra threads only add wake-ups to the many small sparse products.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(
    hidden=(16, 16),
    kernel_lam=0.01,
    pretrain_iters=5,
    finetune_iters=5,
    pretrain_epochs=15,
    dot_scale=1.0,
)


def block_ratings(n_users: int = 90, n_items: int = 60, size: int = 6, seed: int = 0) -> Ratings:
    """Ratings constant on blocks of ``size`` consecutive users x ``size`` consecutive items
    (plus noise), 25% observed: a cell's index neighbours carry its rating, which is what the
    global convolution smooths in."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_users // size + 1, n_items // size + 1))
    truth = 3.0 + 1.2 * values[np.arange(n_users)[:, None] // size, np.arange(n_items) // size]
    observed = rng.random((n_users, n_items)) < 0.25
    observed[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    observed[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(observed)
    rating = np.clip(np.rint(truth[users, items] + rng.normal(0, 0.3, len(users))), 1, 5)
    return Ratings(
        users, items, rating, IdIndex(np.arange(n_users)), IdIndex(np.arange(n_items)), (1, 5)
    )


@pytest.fixture(scope="module")
def block_split():
    return paper_split(block_ratings(), seed=0)


@pytest.fixture(scope="module")
def fine_tuned(block_split) -> GLocalK:
    """Block data, lam 10: fine-tuning beats the pre-trained model on validation (measured:
    1.0216 against 1.0620 after 2 pre-training rounds)."""
    model = make_model("glocal-k", lam=10.0, finetune_epochs=15, **SMALL)
    return model.fit(block_split.train, block_split.val)


# -- the global kernel ------------------------------------------------------------------------
def test_convolution_is_a_same_size_cross_correlation_then_relu() -> None:
    dense = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]])
    # Only the top-left tap: out[i, j] = in[i - 1, j - 1] (zero outside), the cross-correlation
    # (a true convolution would read in[i + 1, j + 1]).
    top_left = torch.zeros(1, 1, 3, 3)
    top_left[0, 0, 0, 0] = 1.0
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    torch.testing.assert_close(convolve(dense, top_left), expected)
    # A negative centre tap: relu cuts every cell to 0.
    centre = torch.zeros(1, 1, 3, 3)
    centre[0, 0, 1, 1] = -1.0
    assert convolve(dense, centre).abs().sum() == 0
    # Ones everywhere: each cell is the sum of its 3 x 3 neighbourhood (by hand).
    ones = torch.ones(1, 1, 3, 3)
    torch.testing.assert_close(
        convolve(dense, ones), torch.tensor([[6.0, 10.0, 9.0], [6.0, 10.0, 9.0]])
    )


def test_global_kernel_is_the_scaled_item_pooled_reconstruction_times_the_map() -> None:
    gen = torch.Generator().manual_seed(0)
    n_items, n_users, k = 7, 5, 4
    codes = torch.rand(n_items, k, generator=gen, dtype=torch.float64)
    decoder = torch.randn(n_users, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(n_users, generator=gen, dtype=torch.float64)
    conv_map = torch.randn(n_items, 9, generator=gen, dtype=torch.float64)
    gk = global_kernel(codes, decoder, bias, conv_map, 0.5)
    assert gk.shape == (1, 1, 3, 3)
    # The definition, with the full dense reconstruction pooled over users (axis of users).
    pooled = (codes @ decoder.t() + bias).mean(1)  # (n_items,)
    torch.testing.assert_close(gk.reshape(-1), 0.5 * pooled @ conv_map)
    # Row-major: tap (r, c) is entry 3 r + c of the pooled product.
    assert gk[0, 0, 1, 2] == gk.reshape(-1)[5]
    torch.testing.assert_close(global_kernel(codes, decoder, bias, conv_map, 1.0), 2 * gk)


# -- stages and their epochs ------------------------------------------------------------------
def test_fine_tuning_kept_where_it_beats_the_pretrained_model(fine_tuned: GLocalK) -> None:
    h = fine_tuned.history
    pre, fine, ran = (
        fine_tuned.pretrain_epochs,
        fine_tuned.finetune_epochs,
        fine_tuned.pretrain_rounds,
    )
    pre_vals, fine_vals = h.val_rmse[:ran], h.val_rmse[ran:]
    # Each stage kept its best validation round; fine-tuning is kept because it beat the
    # pre-trained model.
    assert pre_vals[pre - 1] == min(pre_vals)
    assert fine > 0 and fine_tuned._gk is not None
    assert fine_vals[fine - 1] == min(fine_vals) < pre_vals[pre - 1]
    assert h.best_epoch == ran + fine and h.best_val_rmse == fine_vals[fine - 1]
    assert fine_tuned.retrain_overrides() == {"pretrain_epochs": pre, "finetune_epochs": fine}
    # The predictions are those of the kept round: validation RMSE recomputed from predict.
    val = fine_tuned_val(fine_tuned)
    assert val == pytest.approx(fine_vals[fine - 1], abs=1e-5)


def fine_tuned_val(model: GLocalK) -> float:
    split = paper_split(block_ratings(), seed=0)
    pred = model.predict(split.val.user_idx, split.val.item_idx).astype(np.float64)
    return float(np.sqrt(np.mean((pred - split.val.rating) ** 2)))


def test_fine_tuning_dropped_where_it_does_not_beat_the_pretrained_model(low_rank_split) -> None:
    # The low-rank data has no structure along its (random) index order for the convolution to
    # use: fine-tuning never beats the pre-trained validation RMSE (measured at lam 1: 0.8514
    # at best against 0.8330), so the model stays the pre-trained one, exactly.
    train, val = low_rank_split.train, low_rank_split.val
    both = make_model("glocal-k", lam=1.0, finetune_epochs=5, **SMALL).fit(train, val)
    local = make_model("glocal-k", lam=1.0, finetune_epochs=0, **SMALL).fit(train, val)
    ran = both.pretrain_rounds
    assert both.finetune_epochs == 0 and both._gk is None
    assert len(both.history.val_rmse) > ran  # fine-tuning ran, and was not kept
    assert min(both.history.val_rmse[ran:]) >= both.history.val_rmse[both.pretrain_epochs - 1]
    assert both.retrain_overrides() == {
        "pretrain_epochs": local.pretrain_epochs,
        "finetune_epochs": 0,
    }
    users, items = low_rank_split.test.user_idx, low_rank_split.test.item_idx
    np.testing.assert_array_equal(both.predict(users, items), local.predict(users, items))


def test_without_validation_each_stage_runs_exactly_its_epochs(block_split) -> None:
    # The protocol's retrain: no validation set, the counts validation chose.
    model = make_model("glocal-k", lam=10.0, **{**SMALL, "pretrain_epochs": 3}, finetune_epochs=2)
    model.fit(block_split.train)
    assert model.pretrain_rounds == 3 and model.history.n_epochs == 5
    assert (model.pretrain_epochs, model.finetune_epochs) == (3, 2)
    assert model.history.val_rmse == [] and model._gk is not None


def test_retrain_through_the_protocol_reuses_the_chosen_epochs() -> None:
    from autorec.protocol import run_protocol

    ratings = block_ratings()
    fields = dict(lam=10.0, **{**SMALL, "pretrain_epochs": 6}, finetune_epochs=4)
    result = run_protocol(ratings, "glocal-k", seed=0, overrides=fields)
    chosen = result.record["hyperparameters"]
    # The validation-stage fit, again (deterministic with one thread): its kept rounds are the
    # ones handed over, and the retrain ran exactly those.
    stage = make_model("glocal-k", seed=0, **fields).fit(result.split.train, result.split.val)
    kept = stage.retrain_overrides()
    assert kept["finetune_epochs"] > 0  # both stages handed over
    assert {k: chosen[k] for k in kept} == kept
    model = result.model
    assert (model.pretrain_rounds, model.pretrain_epochs) == (kept["pretrain_epochs"],) * 2
    assert model.history.n_epochs == kept["pretrain_epochs"] + kept["finetune_epochs"]


# -- size refusal, determinism, persistence ---------------------------------------------------
def test_refuses_a_dense_matrix_above_the_limit(block_split) -> None:
    n_cells = block_split.train.n_users * block_split.train.n_items  # 90 x 60
    model = make_model("glocal-k", max_dense_cells=n_cells - 1, **SMALL)
    with pytest.raises(ConfigError, match=r"dense 60 x 90 rating matrix \(5,400 cells\)"):
        model.fit(block_split.train, block_split.val)
    # Exactly at the limit, or without fine-tuning (no dense matrix), it trains.
    fields = {**SMALL, "pretrain_epochs": 1}
    make_model("glocal-k", max_dense_cells=n_cells, finetune_epochs=1, **fields).fit(
        block_split.train
    )
    make_model("glocal-k", max_dense_cells=1, finetune_epochs=0, **fields).fit(block_split.train)


def test_same_seed_same_model_other_seed_another(block_split, fine_tuned: GLocalK) -> None:
    again = make_model("glocal-k", lam=10.0, finetune_epochs=15, **SMALL)
    again.fit(block_split.train, block_split.val)
    users, items = block_split.test.user_idx, block_split.test.item_idx
    np.testing.assert_array_equal(again.predict(users, items), fine_tuned.predict(users, items))
    torch.testing.assert_close(again._gk, fine_tuned._gk, rtol=0, atol=0)
    other = make_model("glocal-k", lam=10.0, finetune_epochs=15, seed=1, **SMALL)
    other.fit(block_split.train, block_split.val)
    assert not np.array_equal(other.predict(users, items), fine_tuned.predict(users, items))


def test_save_load_round_trip_keeps_the_global_kernel(fine_tuned: GLocalK, tmp_path) -> None:
    loaded = Recommender.load(fine_tuned.save(tmp_path / "m"))
    assert isinstance(loaded, GLocalK) and isinstance(loaded.config, GLocalConfig)
    torch.testing.assert_close(loaded._gk, fine_tuned._gk, rtol=0, atol=0)
    users = np.repeat(np.arange(fine_tuned.n_users), fine_tuned.n_items)
    items = np.tile(np.arange(fine_tuned.n_items), fine_tuned.n_users)
    np.testing.assert_array_equal(loaded.predict(users, items), fine_tuned.predict(users, items))
    assert loaded.retrain_overrides() == fine_tuned.retrain_overrides()


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="gk_size must be odd"):
        GLocalConfig(gk_size=2)
    with pytest.raises(ConfigError, match="finetune_epochs must be >= 0"):
        GLocalConfig(finetune_epochs=-1)
    with pytest.raises(ConfigError, match="kernel_dim must be >= 1"):
        GLocalConfig(kernel_dim=0)
