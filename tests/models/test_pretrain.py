"""Greedy layer-wise pre-training of a deep AutoRec (``pretrain="layerwise"``,
autorec.models.pretrain) on the synthetic low-rank ratings: the stacked start is the stages'
weights, "none" changes nothing, the retrain runs the epochs validation chose for step 1, and
pre-training gives a deep net a better start than a random one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.errors import ConfigError
from autorec.models.autorec import AutoRec, AutoRecConfig
from autorec.models.base import Recommender
from autorec.models.pretrain import fit_middle, layerwise_start

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Small and quick: step 1 early-stops on validation well before 500 epochs on this data.
DEEP = dict(
    hidden=(8, 4, 8),
    lam=10.0,
    pretrain_lam=10.0,
    pretrain_middle_epochs=40,
    ranking_head=False,
)


def test_stacked_start_is_the_stages_weights(low_rank_split) -> None:
    train, val = low_rank_split.train, low_rank_split.val
    cfg = AutoRecConfig(pretrain="layerwise", n_epochs=2, **DEEP)
    state, record = layerwise_start(cfg, train, val)
    # Step 1 again, as a plain one-layer AutoRec: its outer layers are the stack's.
    one_cfg = cfg.replace(hidden=(8,), pretrain="none", n_epochs=500)
    one = AutoRec(one_cfg).fit(train, val)
    assert record["stage1_best_epoch"] == one.history.best_epoch
    assert record["stage1_best_epoch"] < record["stage1_epochs_run"]  # early-stopped
    for name in ("encoder", "encoder_bias", "decoder", "decoder_bias"):
        torch.testing.assert_close(state[name], getattr(one.net, name).detach(), rtol=0, atol=0)
    # Step 2 again on its codes, from the same seed: the middle layers are its weights.
    w2, b2, w3, b3 = fit_middle(
        one._all_codes(), 4, "sigmoid", 1.0, 40, torch.Generator().manual_seed(0)
    )
    for key, want in zip(
        ("middle_weights.0", "middle_weights.1", "middle_biases.0", "middle_biases.1"),
        (w2, w3, b2, b3),
        strict=True,
    ):
        torch.testing.assert_close(state[key], want, rtol=0, atol=0)
    # The model fine-tunes exactly that stack: a "none" model started from it ends the same.
    option = AutoRec(cfg).fit(train, val)
    plain = AutoRec(cfg.replace(pretrain="none"))
    plain._start_weights = state
    plain.fit(train, val)
    for name, value in option.net.state_dict().items():
        torch.testing.assert_close(value, plain.net.state_dict()[name], rtol=0, atol=0)
    assert option.pretrained["stage1_best_epoch"] == record["stage1_best_epoch"]


def test_none_ignores_the_pretraining_fields(low_rank_split) -> None:
    # pretrain="none" with other pre-training settings trains the default model bit for bit
    # (a model that pre-trained anyway, or drew its start differently, would differ).
    train, val = low_rank_split.train, low_rank_split.val
    base = dict(hidden=(8, 4, 8), lam=10.0, n_epochs=5, ranking_head=False)
    default = AutoRec(AutoRecConfig(**base)).fit(train, val)
    other = AutoRecConfig(
        **base, pretrain="none", pretrain_lam=1.0, pretrain_epochs=3, pretrain_middle_epochs=2
    )
    none = AutoRec(other).fit(train, val)
    for name, value in default.net.state_dict().items():
        torch.testing.assert_close(value, none.net.state_dict()[name], rtol=0, atol=0)
    assert none.pretrained is None and none.retrain_overrides() == {}


def test_pretraining_gives_a_deep_net_a_better_first_epoch(low_rank_split) -> None:
    # From a random start three sigmoid layers pass almost nothing through, so the first epoch
    # predicts about each user's mean (docs/experiments.md, issue 18); the stack starts from a
    # fitted one-layer model. Measured here: 1.040 (random) against 0.954 (pre-trained).
    train, val = low_rank_split.train, low_rank_split.val
    first = {}
    for option in ("none", "layerwise"):
        cfg = AutoRecConfig(pretrain=option, n_epochs=1, **DEEP)
        first[option] = AutoRec(cfg).fit(train, val).history.val_rmse[0]
    assert first["layerwise"] < first["none"] - 0.03


def test_retrain_runs_the_step1_epochs_validation_chose(low_rank_split) -> None:
    train, val = low_rank_split.train, low_rank_split.val
    cfg = AutoRecConfig(pretrain="layerwise", n_epochs=3, **DEEP)
    stage = AutoRec(cfg).fit(train, val)
    kept = stage.pretrained["stage1_best_epoch"]
    assert stage.retrain_overrides() == {"pretrain_epochs": kept}
    # Without validation, step 1 runs exactly the handed-over count (not the 500 bound).
    merged = train.merge(val)
    again = AutoRec(cfg.replace(**stage.retrain_overrides())).fit(merged)
    assert again.pretrained["stage1_epochs_run"] == again.pretrained["stage1_best_epoch"] == kept
    assert again.pretrained["stage1_val_rmse"] is None


def test_the_protocol_hands_step1_epochs_to_its_retrain(low_rank) -> None:
    from autorec.protocol import run_protocol

    fields = dict(DEEP, pretrain="layerwise", n_epochs=4, patience=2)
    result = run_protocol(low_rank, "i-autorec", seed=0, overrides=fields)
    chosen = result.record["hyperparameters"]
    # The validation-stage fit, again (deterministic with one thread): the retrain ran its
    # step-1 epoch count and its fine-tuning epochs.
    stage = AutoRec(AutoRecConfig(seed=0, **fields)).fit(result.split.train, result.split.val)
    assert chosen["pretrain_epochs"] == stage.pretrained["stage1_best_epoch"]
    assert chosen["n_epochs"] == stage.history.best_epoch
    assert result.model.pretrained["stage1_epochs_run"] == chosen["pretrain_epochs"]


def test_save_load_keeps_the_handover(low_rank_split, tmp_path) -> None:
    cfg = AutoRecConfig(pretrain="layerwise", n_epochs=2, **DEEP)
    model = AutoRec(cfg).fit(low_rank_split.train, low_rank_split.val)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert loaded.retrain_overrides() == model.retrain_overrides() != {}
    test = low_rank_split.test
    np.testing.assert_array_equal(
        loaded.predict(test.user_idx, test.item_idx), model.predict(test.user_idx, test.item_idx)
    )


def test_a_deeper_palindrome_stacks_every_layer(low_rank_split) -> None:
    cfg = AutoRecConfig(pretrain="layerwise", **{**DEEP, "hidden": (8, 6, 4, 6, 8)})
    state, _ = layerwise_start(cfg, low_rank_split.train, None)
    shapes = [tuple(state[f"middle_weights.{i}"].shape) for i in range(4)]
    assert shapes == [(6, 8), (4, 6), (6, 4), (8, 6)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(hidden=(8,)), "needs more than one hidden layer"),
        (dict(hidden=(8, 4)), "symmetric stack of odd depth"),
        (dict(hidden=(8, 4, 6)), "symmetric stack of odd depth"),
        (dict(hidden=(8, 4, 8), kernel_dim=3), "not implemented for kernelised layers"),
        (dict(hidden=(8, 4, 8), pretrain_epochs=0), "pretrain_epochs must be >= 1"),
        (dict(hidden=(8, 4, 8), pretrain_lam=-1.0), "pretrain_lam must be a finite number"),
    ],
)
def test_configs_it_cannot_stack_are_refused(fields, message) -> None:
    with pytest.raises(ConfigError, match=message):
        AutoRecConfig(pretrain="layerwise", **fields)


def test_the_protocol_keeps_a_validation_model_only_for_models_that_hand_one_over() -> None:
    # Before: every AutoRec counted as handing its refit something once AutoRec overrode
    # retrain_overrides, so each grid worker sent its model back for nothing.
    from autorec.models import get_model_class, model_config

    def hands(name: str, **fields) -> bool:
        return get_model_class(name).hands_over(model_config(name, **fields))

    assert not hands("i-autorec")
    assert hands("i-autorec", hidden=(8, 4, 8), pretrain="layerwise")
    assert hands("glocal-k") and hands("ensemble")
    assert not hands("biased-mf") and not hands("bias")
