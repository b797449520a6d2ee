"""The ensemble (``models/ensemble.py``): blend weights, the ridge-or-average rule, member specs,
the retrain path, persistence and fold-in. The contract (``test_contract.py``) covers the rest."""

from __future__ import annotations

import re

import numpy as np
import pytest

from autorec.errors import ConfigError, ModelFileError
from autorec.models import make_model
from autorec.models.base import Recommender
from autorec.models.ensemble import (
    EnsembleConfig,
    average_weights,
    blend,
    fit_ridge,
    parse_member,
)
from autorec.protocol import run_protocol

# Fast members with arrays to save (U-AutoRec, biased MF) and without (bias).
MEMBERS = (
    "u-autorec:hidden=16:lam=1:n_epochs=40:patience=10",
    "biased-mf:rank=5:reg=0.05:n_epochs=8",
    "bias",
)

# Small problems: extra torch threads only add wake-ups to the sparse products.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(low_rank_split):
    return make_model("ensemble", members=MEMBERS).fit(low_rank_split.train, low_rank_split.val)


def _members_predictions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) member predictions: a truth on 1..5 plus member noise of different sizes."""
    truth = rng.uniform(1.5, 4.5, n)  # (n,)
    p = truth[:, None] + rng.normal(0.0, [0.2, 0.4, 0.6], (n, 3))  # (n, 3)
    return truth, p


# -- blend weights ------------------------------------------------------------------------------
def test_ridge_without_penalty_recovers_a_known_blend() -> None:
    rng = np.random.default_rng(0)
    _, p = _members_predictions(rng, 2000)
    known = np.array([0.3, 0.6, 0.5, -0.2])  # intercept, then the three members
    y = blend(p, known) + rng.normal(0.0, 1e-3, 2000)
    np.testing.assert_allclose(fit_ridge(p, y, 0.0), known, atol=5e-3)


def test_strong_ridge_gives_the_average_plus_a_constant() -> None:
    # alpha -> infinity: the weights shrink to 1/M (not to 0), the intercept takes the offset.
    rng = np.random.default_rng(1)
    truth, p = _members_predictions(rng, 500)
    y = truth + 0.25
    weights = fit_ridge(p, y, 1e6)
    np.testing.assert_allclose(weights[1:], 1 / 3, atol=1e-5)
    assert weights[0] == pytest.approx(np.mean(y - p.mean(axis=1)), abs=1e-4)


def _choose(p: np.ndarray, y: np.ndarray, **config):
    model = make_model("ensemble", members=("bias",) * p.shape[1], **config)
    model.rating_scale = (1.0, 5.0)
    return model._choose_weights(p, y)


def test_ridge_is_chosen_when_it_wins_on_the_held_out_half() -> None:
    # Member 3 is off by +1 star: the average carries a third of it, ridge removes it.
    rng = np.random.default_rng(2)
    truth, p = _members_predictions(rng, 1000)
    p[:, 2] += 1.0
    weights, report = _choose(p, truth)
    held = report["held_out_rmse"]
    assert report["rule"] == "ridge" and held["ridge"] < held["average"]
    assert report["val_rmse"] < 0.2  # the average is about 1/3 star off
    assert weights[3] < 0.2  # the biased, noisiest member gets little weight


def test_the_average_is_kept_when_ridge_does_not_beat_it() -> None:
    # Ratings that are exactly the average: the average's held-out RMSE is 0, which ridge can
    # only tie; a tie keeps the average (ridge must be strictly better).
    rng = np.random.default_rng(3)
    _, p = _members_predictions(rng, 400)
    y = blend(p, average_weights(3))
    weights, report = _choose(p, y)
    assert report["held_out_rmse"]["average"] == 0.0
    assert report["rule"] == "average"
    np.testing.assert_array_equal(weights, average_weights(3))


def test_too_few_validation_pairs_keep_the_average() -> None:
    # 19 pairs (< MIN_RIDGE_PAIRS = 20): a +1 star member that ridge would fix is averaged.
    rng = np.random.default_rng(6)
    truth, p = _members_predictions(rng, 19)
    p[:, 2] += 1.0
    weights, report = _choose(p, truth, blend="ridge")
    assert report["rule"] == "average"
    np.testing.assert_array_equal(weights, average_weights(3))
    assert _choose(p[:1], truth[:1])[1]["rule"] == "average"  # one pair: no NaN, no error


def test_blend_can_be_forced() -> None:
    rng = np.random.default_rng(4)
    truth, p = _members_predictions(rng, 300)
    p[:, 2] += 1.0
    assert _choose(p, truth, blend="average")[1]["rule"] == "average"
    weights, report = _choose(p, truth, blend="ridge", ridge=0.0)
    assert report["rule"] == "ridge" and report["alpha"] == 0.0
    np.testing.assert_allclose(weights, fit_ridge(p, truth, 0.0))


def test_predict_is_the_clipped_blend_of_the_members(fitted, low_rank_split) -> None:
    val = low_rank_split.val
    assert fitted.blend_report["rule"] in ("ridge", "average")
    assert len(fitted.blend_weights) == len(MEMBERS) + 1
    known = fitted.known_mask(val.user_idx, val.item_idx)
    users, items = val.user_idx[known], val.item_idx[known]
    unclipped = np.stack([m._unclipped(users, items) for m in fitted.members], axis=1)
    blended = blend(unclipped, fitted.blend_weights)  # (n_known,)
    np.testing.assert_allclose(fitted.predict(users, items), np.clip(blended, 1, 5), rtol=1e-6)
    # recommend's score is the blend before clipping
    np.testing.assert_allclose(fitted._rank_score(users, items), blended, rtol=1e-12)


def test_cross_fitted_weights_use_out_of_fold_predictions_of_train_and_validation(
    low_rank_split, monkeypatch
) -> None:
    # Every fold's members must be fitted on the other folds and predict only their own fold:
    # a member's global mean is its training set's mean, so it names the ratings it trained on.
    from autorec.models import ensemble as ensemble_module

    folds, predicted = [], []
    real_kfold, real_known = ensemble_module.kfold, ensemble_module._known_predictions

    def spy_kfold(pool, n_folds, *, seed):
        for split in real_kfold(pool, n_folds, seed=seed):
            folds.append(split)
            yield split

    def spy_known(members, held):
        predicted.append((members[0].global_mean, held))
        return real_known(members, held)

    monkeypatch.setattr(ensemble_module, "kfold", spy_kfold)
    monkeypatch.setattr(ensemble_module, "_known_predictions", spy_known)
    train, val = low_rank_split.train, low_rank_split.val
    model = make_model("ensemble", members=MEMBERS, blend_folds=3).fit(train, val)

    assert len(folds) == 3 and len(predicted) == 3
    n_pool = train.n_ratings + val.n_ratings
    assert sum(split.test.n_ratings for split in folds) == n_pool
    for split, (member_mean, held) in zip(folds, predicted, strict=True):
        assert held is split.test
        assert member_mean == pytest.approx(float(split.train.rating.mean()))
    # The weights saw (nearly) every rating of train + validation, not the 10% validation set.
    assert model.blend_report["blend_folds"] == 3
    assert val.n_ratings < model.blend_report["n_val"] <= n_pool
    # The members kept are step 1's: fitted on train, early-stopped on validation.
    assert model.members[0].global_mean == pytest.approx(float(train.rating.mean()))


def test_cross_fitting_is_refused_below_one_fold() -> None:
    with pytest.raises(ConfigError, match="blend_folds must be >= 1, got 0"):
        EnsembleConfig(members=("bias",), blend_folds=0)


# -- member specs -------------------------------------------------------------------------------
def test_member_specs_convert_values_to_the_field_types() -> None:
    assert parse_member("i-autorec:hidden=500/250/500:lam=1:engine=sparse") == (
        "i-autorec",
        {"hidden": (500, 250, 500), "lam": 1.0, "engine": "sparse"},
    )
    assert parse_member("llorma") == ("llorma", {})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("bias:hidden=3", "member 'bias:hidden=3': model 'bias' has no field hidden"),
        ("i-autorec:lam=abc", "member 'i-autorec:lam=abc', lam: expected a number, got 'abc'"),
        ("i-autorec:lam", "expected name:field=value, got 'lam'"),
        ("bias:fallback=constant", "set fallback on the ensemble"),
        ("ensemble", "cannot be a member of an ensemble"),
    ],
)
def test_bad_member_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        EnsembleConfig(members=(spec,))


def test_fixed_weights_must_match_the_members() -> None:
    with pytest.raises(ConfigError, match="3 values for 2 members, got 2"):
        EnsembleConfig(members=("bias", "item-knn"), weights=(0.0, 1.0))
    with pytest.raises(ConfigError, match="one value per member"):
        EnsembleConfig(members=("bias", "item-knn"), weights=(0, 1, 0), member_epochs=(3,))
    with pytest.raises(ConfigError, match="set weights too"):
        EnsembleConfig(members=("bias", "item-knn"), member_epochs=(0, 0))


def test_members_share_the_ensembles_fallback_and_seed(fitted) -> None:
    for member in fitted.members:
        assert member.config.fallback == fitted.config.fallback
        assert member.config.seed == fitted.config.seed
    constant = make_model("ensemble", members=("bias",), fallback="constant", seed=7)
    (member,) = constant._member_models()
    assert (member.config.fallback, member.config.seed) == ("constant", 7)


# -- the protocol: validation stage, retrain, test set ------------------------------------------
def test_retrain_reuses_the_validation_weights_and_epochs(low_rank, low_rank_split) -> None:
    result = run_protocol(low_rank, "ensemble", seed=0, overrides={"members": MEMBERS})
    staged = make_model("ensemble", members=MEMBERS, seed=0).fit(
        low_rank_split.train, low_rank_split.val
    )
    tested = result.model
    # The tested model was refitted on train + validation with the validation stage's choices.
    assert tested.members[0].history.n_epochs == staged.member_epochs[0] > 0
    assert tested.member_epochs == staged.member_epochs
    np.testing.assert_array_equal(tested.blend_weights, staged.blend_weights)
    assert result.record["hyperparameters"]["weights"] == tuple(staged.blend_weights)
    assert tested.members[0].global_mean == pytest.approx(
        float(np.mean(np.concatenate([low_rank_split.train.rating, low_rank_split.val.rating])))
    )


def test_the_test_set_never_reaches_fit(low_rank, low_rank_split) -> None:
    # The same split with the test ratings scrambled: every choice (weights, epochs) and the
    # retrained model are unchanged; only the test RMSE moves.
    split = low_rank_split
    rng = np.random.default_rng(5)
    scrambled = split.test.subset(np.arange(split.test.n_ratings))
    scrambled.rating[:] = rng.integers(1, 6, split.test.n_ratings)
    other = type(split)(train=split.train, val=split.val, test=scrambled)
    overrides = {"members": MEMBERS}
    a = run_protocol(low_rank, "ensemble", seed=0, overrides=overrides, split=split)
    b = run_protocol(low_rank, "ensemble", seed=0, overrides=overrides, split=other)
    np.testing.assert_array_equal(a.model.blend_weights, b.model.blend_weights)
    assert a.model.member_epochs == b.model.member_epochs
    test = split.test
    np.testing.assert_array_equal(
        a.model.predict(test.user_idx, test.item_idx), b.model.predict(test.user_idx, test.item_idx)
    )
    assert a.record["test_rmse"] != b.record["test_rmse"]


def test_fit_without_validation_holds_out_part_of_train(low_rank_split) -> None:
    train = low_rank_split.train
    model = make_model("ensemble", members=MEMBERS).fit(train)
    assert model.blend_report["internal_validation"] is True
    assert model.blend_report["n_val"] < 0.15 * train.n_ratings
    # Members refitted on all of train for the epochs the held-out part chose.
    assert model.members[1].history.n_epochs == model.member_epochs[1] >= 1
    assert model.members[1].global_mean == pytest.approx(float(train.rating.mean()))


# -- persistence and fold-in --------------------------------------------------------------------
def test_save_load_restores_members_weights_and_report(fitted, low_rank_split, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert [m.config for m in loaded.members] == [m.config for m in fitted.members]
    np.testing.assert_array_equal(loaded.blend_weights, fitted.blend_weights)
    assert loaded.member_epochs == fitted.member_epochs
    assert loaded.blend_report == fitted.blend_report
    assert loaded.retrain_overrides() == fitted.retrain_overrides()
    test = low_rank_split.test
    for ours, theirs in zip(loaded.members, fitted.members, strict=True):
        np.testing.assert_array_equal(
            ours.predict(test.user_idx, test.item_idx), theirs.predict(test.user_idx, test.item_idx)
        )
    # One folder, one weights file: the members live inside the ensemble's files.
    assert len(list((tmp_path / "m").glob("weights-*.safetensors"))) == 1


def test_a_saved_ensemble_with_a_missing_member_is_refused(fitted, tmp_path) -> None:
    import json

    from autorec.models.persistence import _meta_digest

    fitted.save(tmp_path / "m")
    meta_file = tmp_path / "m" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["extra"]["members"].pop()
    meta["meta_sha256"] = _meta_digest(meta)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="3 member specs, 2 saved members"):
        Recommender.load(tmp_path / "m")


def test_fold_in_is_the_blend_of_the_members_fold_ins(fitted) -> None:
    rated = {fitted.items.ids[i].item(): float(1 + i % 5) for i in range(0, 40, 4)}
    folded = fitted.fold_in(rated)
    expected = fitted.blend_weights[0] + sum(
        w * m.fold_in(rated).scores
        for w, m in zip(fitted.blend_weights[1:], fitted.members, strict=True)
    )
    seen = fitted.item_seen
    np.testing.assert_allclose(folded.scores[seen], expected[seen], rtol=1e-6)


def test_fold_in_names_the_member_that_cannot(low_rank_split, monkeypatch) -> None:
    model = make_model("ensemble", members=("bias", "item-knn:k=10")).fit(
        low_rank_split.train, low_rank_split.val
    )
    knn = model.members[1]
    monkeypatch.setattr(knn, "_fold_in_user", Recommender._fold_in_user.__get__(knn))
    with pytest.raises(ConfigError, match="ensemble member item-knn:k=10 cannot fold in"):
        model.fold_in({model.items.ids[0].item(): 4.0})


def test_a_member_hands_its_own_choices_to_the_retrain(low_rank) -> None:
    # GLocal-K's rounds per stage are chosen on validation and handed over like an iterative
    # member's epochs; before, the ensemble's refit dropped them and ran the stage caps.
    glocal = (
        "glocal-k:hidden=8:lam=1.0:pretrain_iters=3:pretrain_epochs=12:finetune_iters=2"
        ":finetune_epochs=6:patience=2"
    )
    members = (glocal, "bias")
    result = run_protocol(low_rank, "ensemble", seed=0, overrides={"members": members})
    staged = result.record["hyperparameters"]
    tested = result.model.members[0]
    spec = result.model.config.members[0]
    assert spec.startswith(glocal) and spec != glocal  # the handed-over fields appended
    handed = dict(part.split("=") for part in spec[len(glocal) + 1 :].split(":"))
    assert set(handed) == {"pretrain_epochs", "finetune_epochs"}
    assert tested.config.pretrain_epochs == int(handed["pretrain_epochs"])
    assert tested.config.finetune_epochs == int(handed["finetune_epochs"])
    assert tested.pretrain_epochs == tested.config.pretrain_epochs  # ran exactly that many
    assert staged["weights"] == result.model.config.weights
