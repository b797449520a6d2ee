from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from autorec import protocol
from autorec.data import paper_split
from autorec.models import get_model_class
from autorec.models.base import FitHistory
from autorec.protocol import MAX_EXTENSIONS, grid_points, next_above, run_protocol
from autorec.ranking import evaluate_ranking


def test_grid_points_is_the_cartesian_product_in_fixed_order() -> None:
    assert grid_points({}) == [{}]
    assert grid_points({"b": (1, 2), "a": ("x",)}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]


def test_merge_restores_the_training_part(low_rank) -> None:
    split = paper_split(low_rank, seed=0)
    both = split.train.merge(split.val)
    assert both.n_ratings == split.train.n_ratings + split.val.n_ratings
    assert both.n_ratings + split.test.n_ratings == low_rank.n_ratings
    assert not both.has_duplicates()


def test_protocol_picks_the_lowest_validation_rmse_and_retrains(low_rank) -> None:
    grid = {"lam": (0.001, 10.0)}
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid=grid,
        overrides={"hidden": (8,), "n_epochs": 40, "patience": 5},
    )
    cands = result.candidates
    assert [c["lam"] for c in cands] == [0.001, 10.0]
    best = min(cands, key=lambda c: c["val_rmse"])
    assert result.record["hyperparameters"]["lam"] == best["lam"]
    assert result.record["val_rmse"] == pytest.approx(best["val_rmse"])
    # Retrained on train + validation for the chosen number of epochs, without early stopping.
    assert result.record["hyperparameters"]["n_epochs"] == best["best_epoch"]
    assert result.model.history.n_epochs == best["best_epoch"]
    assert result.model._train_x.nnz == result.split.train.n_ratings + result.split.val.n_ratings
    assert result.record["n_test"] == result.split.test.n_ratings
    assert np.isfinite(result.record["test_rmse"])


def test_protocol_is_deterministic(low_rank) -> None:
    kwargs = dict(seed=1, grid={"reg_user": (1.0, 15.0)})
    a = run_protocol(low_rank, "bias", **kwargs).record
    b = run_protocol(low_rank, "bias", **kwargs).record
    assert a["test_rmse"] == b["test_rmse"] and a["hyperparameters"] == b["hyperparameters"]


def test_next_above_follows_the_1_3_10_sequence() -> None:
    assert [next_above(v) for v in (300.0, 1000.0, 3000.0, 10000.0, 0.001)] == [
        1000.0,
        3000.0,
        10000.0,
        30000.0,
        0.003,
    ]
    assert next_above(2000.0) == 3000.0 and next_above(5000.0) == 10000.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="cannot extend"):
            next_above(bad)


def _val_rmse_with_optimum_at(optimum: float | None):
    """A stand-in for the validation RMSE: a parabola in log10(lambda) with its minimum at
    ``optimum`` (None: falls forever as lambda grows). It lets a test put the optimum where it
    wants, which a real model on small data cannot promise."""

    def val_rmse(model, val) -> float:
        x = math.log10(model.config.lam)
        return 1.0 - 0.01 * x if optimum is None else 1.0 + (x - math.log10(optimum)) ** 2

    return val_rmse


FAST_AUTOREC = {"hidden": (4,), "n_epochs": 2, "patience": 1}


def _lams(result) -> list[float]:
    return [c["lam"] for c in result.candidates]


def test_protocol_extends_lambda_above_the_grid_until_validation_turns(
    low_rank, monkeypatch
) -> None:
    # Optimum at 30000, grid ending at 1000 (like Table 1(b)'s linear rows on ML-1M): the
    # protocol must walk 3000, 10000, 30000, see 100000 do worse, and choose 30000.
    monkeypatch.setattr(protocol, "_val_rmse", _val_rmse_with_optimum_at(30000.0))
    result = run_protocol(
        low_rank, "i-autorec", seed=0, grid={"lam": (100.0, 1000.0)}, overrides=FAST_AUTOREC
    )
    assert _lams(result) == [100.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0]
    assert result.record["hyperparameters"]["lam"] == 30000.0
    assert result.record["candidates"] == result.candidates


def test_protocol_does_not_extend_when_the_optimum_is_inside_the_grid(
    low_rank, monkeypatch
) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _val_rmse_with_optimum_at(300.0))
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (100.0, 300.0, 1000.0)},
        overrides=FAST_AUTOREC,
    )
    assert _lams(result) == [100.0, 300.0, 1000.0]
    assert result.record["hyperparameters"]["lam"] == 300.0


def test_protocol_stops_extending_after_max_extensions_and_warns(
    low_rank, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _val_rmse_with_optimum_at(None))
    # The CLI (run by other tests in this process) stops autorec's records reaching the root.
    monkeypatch.setattr(logging.getLogger("autorec"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="autorec.protocol"):
        result = run_protocol(
            low_rank, "i-autorec", seed=0, grid={"lam": (100.0, 1000.0)}, overrides=FAST_AUTOREC
        )
    assert len(result.candidates) == 2 + MAX_EXTENSIONS
    assert result.record["hyperparameters"]["lam"] == 100000.0
    assert "still chose the largest lam" in caplog.text


def test_an_explicit_or_single_value_grid_is_searched_exactly(low_rank, monkeypatch) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _val_rmse_with_optimum_at(30000.0))
    kwargs = dict(seed=0, overrides=FAST_AUTOREC)
    exact = run_protocol(
        low_rank, "i-autorec", grid={"lam": (100.0, 1000.0)}, open_above=(), **kwargs
    )
    assert _lams(exact) == [100.0, 1000.0]
    single = run_protocol(low_rank, "i-autorec", grid={"lam": (1000.0,)}, **kwargs)
    assert _lams(single) == [1000.0]


def test_models_without_an_open_key_are_never_extended(low_rank) -> None:
    assert get_model_class("bias").open_above == ()
    assert get_model_class("i-autorec").open_above == ("lam",)
    grid = {"reg_user": (0.1, 1.0)}
    result = run_protocol(low_rank, "bias", seed=0, grid=grid)
    assert [c["reg_user"] for c in result.candidates] == [0.1, 1.0]


def test_ranking_scores_the_tested_model_with_train_and_validation_excluded(low_rank) -> None:
    # The retrained popularity model counts validation ratings too, so those items would top
    # the lists of the users who rated them unless validation is excluded.
    result = run_protocol(low_rank, "pop", seed=0, ranking="ndcg@10,recall@10", relevance=4)
    split = result.split
    expected = evaluate_ranking(
        result.model, split.train, split.test, val=split.val, metrics="ndcg@10,recall@10"
    )
    assert result.ranking == result.record["ranking"]
    assert result.ranking["metrics"] == expected.metrics
    assert result.ranking["relevance"] == 4.0
    train_only = evaluate_ranking(result.model, split.train, split.test, metrics="ndcg@10")
    assert train_only.metrics["ndcg@10"] != expected.metrics["ndcg@10"]
    # Without ranking metrics the record is what it was.
    plain = run_protocol(low_rank, "pop", seed=0)
    assert plain.ranking is None and "ranking" not in plain.record


@pytest.mark.parametrize("retrain", [True, False])
def test_the_ranking_head_is_chosen_on_validation_and_carried_to_the_tested_model(
    low_rank, monkeypatch, retrain
) -> None:
    # The grid is chosen on validation RMSE, which the head cannot change (it is trained after
    # the rating model): one head fit per run, on train with validation choosing its epochs and
    # beta (the validation-stopped model of the chosen point), whatever retrain says; the
    # retrained model gets that head, its input rebuilt from train + validation, not a refit.
    # ranking_head is left unset: the default (auto) gives i-autorec a head.
    from autorec.models import autorec_rank

    fits = []
    real = autorec_rank.fit_ranking_head

    def recording(model, train, val):
        scorer = real(model, train, val)
        fits.append((train.n_ratings, None if val is None else val.n_ratings, scorer))
        return scorer

    monkeypatch.setattr(autorec_rank, "fit_ranking_head", recording)
    head = {"rank_hidden": 8, "rank_epochs": 6, "rank_eval_every": 1, "hidden": (8,)}
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        overrides={**head, "n_epochs": 6},
        grid={"lam": (0.1, 10.0)},
        open_above=(),
        retrain=retrain,
    )
    split = result.split
    assert [(n_train, n_val) for n_train, n_val, _ in fits] == [
        (split.train.n_ratings, split.val.n_ratings)
    ]
    fitted = fits[0][2]
    tested = result.model._head
    assert tested.head is fitted.head
    assert (tested.epoch, tested.beta) == (fitted.epoch, fitted.beta)
    assert result.record["ranking_head"]["epoch"] == fitted.epoch
    assert result.record["ranking_head"]["beta"] == fitted.beta
    assert result.record["ranking_head"]["val_ndcg@10"] == fitted.val_ndcg
    assert fitted.val_ndcg is not None  # measured on validation
    seen = split.train.merge(split.val) if retrain else split.train
    assert tested.x.nnz == seen.n_ratings
    assert result.model._train_x.nnz == seen.n_ratings
    assert result.model.config.ranking_head is True
    assert [c["lam"] for c in result.candidates] == [0.1, 10.0]


def test_a_warm_retrain_continues_the_chosen_model_for_the_configured_epochs(low_rank) -> None:
    overrides = {"hidden": (8,), "n_epochs": 40, "patience": 5, "lam": 1.0}
    cold = run_protocol(low_rank, "i-autorec", seed=0, overrides=overrides)
    warm = run_protocol(
        low_rank, "i-autorec", seed=0, overrides={**overrides, "warm_retrain_epochs": 3}
    )
    # The same validation-stopped fit chose the epochs; the warm retrain runs 3 of them on
    # train + validation, starting from that fit's weights.
    assert warm.record["val_rmse"] == cold.record["val_rmse"]
    assert warm.record["best_epoch"] == cold.record["best_epoch"] > 3
    assert warm.record["hyperparameters"]["n_epochs"] == 3
    assert warm.model.history.n_epochs == 3
    assert cold.model.history.n_epochs == cold.record["best_epoch"]
    assert warm.model._train_x.nnz == warm.split.train.n_ratings + warm.split.val.n_ratings


def test_retrain_check_flags_a_retrain_that_ends_far_above_the_chosen_fit() -> None:
    # Lined up by epoch: the retrain's last training RMSE against the chosen fit's at that epoch
    # (the i-kernelnet stall that motivated it: 0.897 against 0.705).
    chosen = FitHistory(train_rmse=[1.0, 0.8, 0.705, 0.70])
    healthy = protocol.retrain_check(chosen, FitHistory(train_rmse=[1.0, 0.81, 0.72]))
    assert healthy == {"train_rmse": 0.72, "chosen_fit_train_rmse": 0.705, "stalled": False}
    assert protocol.retrain_check(chosen, FitHistory(train_rmse=[1.0, 0.9, 0.897]))["stalled"]
    assert protocol.retrain_check(chosen, FitHistory()) is None  # not iterative
    assert protocol.retrain_check(chosen, FitHistory(train_rmse=[1.0] * 5)) is None  # longer


def _stall_retrains(monkeypatch) -> None:
    """Every retrain (the only model made with fewer epochs than the grid's 40) gets a step too
    small to move: its training RMSE stays at the start, far above the chosen fit's."""
    made = protocol.make_model

    def stalling(name, **options):
        if options.get("n_epochs", 40) < 40:
            options["lr"] = 1e-12
        return made(name, **options)

    monkeypatch.setattr(protocol, "make_model", stalling)


STALL_KW = dict(seed=0, grid={"lam": (10.0,)}, overrides={"hidden": (8,), "n_epochs": 40})


def test_protocol_says_when_the_retrain_stalled(low_rank, monkeypatch, caplog) -> None:
    healthy = run_protocol(low_rank, "i-autorec", **STALL_KW).record
    assert healthy["retrain_check"]["stalled"] is False
    _stall_retrains(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="autorec.protocol"):
        stalled = run_protocol(low_rank, "i-autorec", **STALL_KW).record
    check = stalled["retrain_check"]
    assert check["stalled"] is True
    assert "the optimiser stalled; retraining from the chosen fit's weights" in caplog.text
    assert stalled["val_rmse"] == healthy["val_rmse"]  # the choice itself is untouched
    # Repaired: the retrain again, continuing from the chosen fit's weights (its step still too
    # small to move them), so the tested model is the chosen fit, not the stalled start.
    # (Its training RMSE now covers the validation ratings the chosen fit never trained on.)
    repaired, reference = check["repaired_train_rmse"], check["chosen_fit_train_rmse"]
    assert repaired < protocol.RETRAIN_STALL_RATIO * reference < check["train_rmse"]
    assert stalled["test_rmse"] < healthy["test_rmse"] + 0.05
    assert stalled["test_rmse"] < check["train_rmse"] - 0.1  # the stalled model's level


class _Stop(KeyboardInterrupt):
    """Stands in for Ctrl-C during the repair."""


@pytest.mark.usefixtures("one_torch_thread")  # resumed runs are bit-identical with one thread
def test_an_interrupted_repair_resumes_as_the_repair(low_rank, monkeypatch, tmp_path) -> None:
    # Had the repair shared the retrain's checkpoint folder, the resumed run's first retrain
    # would continue the repair's weights, not stall, and never be repaired.
    _stall_retrains(monkeypatch)
    uninterrupted = run_protocol(low_rank, "i-autorec", **STALL_KW).record
    seen = []

    def stop_in_the_repair(phase: str, progress) -> None:
        if phase == "retrain" and progress.epoch == 3:
            seen.append(phase)
            if len(seen) == 2:  # epoch 3 of the second retrain: the repair
                raise _Stop

    ckpt = protocol.ProtocolCheckpoints(tmp_path, 1, None)
    with pytest.raises(_Stop):
        run_protocol(
            low_rank, "i-autorec", progress=stop_in_the_repair, checkpoints=ckpt, **STALL_KW
        )
    resumed = run_protocol(
        low_rank,
        "i-autorec",
        checkpoints=protocol.ProtocolCheckpoints(tmp_path, 1, None, resume=True),
        **STALL_KW,
    ).record
    assert resumed["retrain_check"] == uninterrupted["retrain_check"]
    assert resumed["retrain_check"]["stalled"] is True
    assert resumed["test_rmse"] == uninterrupted["test_rmse"]
