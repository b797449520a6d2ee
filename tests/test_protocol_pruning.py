"""Pruning of grid points (autorec.protocol.PruneRule) and parallel grid points (``jobs``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autorec.errors import ConfigError
from autorec.models import make_model
from autorec.protocol import DEFAULT_PRUNE, PruneRule, replay_pruning, run_protocol

# Records compared for equality leave out what depends on the machine's speed.
TIMINGS = ("train_seconds", "epoch_seconds")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # bit-identical fits across processes


def _curve(final: float, start: float, tau: float, n_epochs: int) -> list[float]:
    """A validation curve falling from ``start`` towards ``final`` with time constant ``tau``."""
    return [final + (start - final) * math.exp(-e / tau) for e in range(1, n_epochs + 1)]


def _ml1m_like_grids(rng: np.random.Generator, n: int) -> list[list[list[float]]]:
    """Grids shaped like the committed ML-1M I-AutoRec cells (lambda 0.001 .. 1000): small
    lambdas flatten early near 0.869, the winner (lambda 300) converges slowly to 0.837, lambda
    1000 more slowly still to 0.858. The winner's lag behind the incumbent reaches +0.046 at
    epoch 50, beyond the worst lag stored in any committed cell (I-AutoRec 500-250-500: +0.035
    at epoch 50)."""
    grids = []
    for _ in range(n):
        small = [_curve(0.869 - 0.0003 * i, 1.1, 6, 70) for i in range(4)]
        lam10 = _curve(0.863, 1.1, 7, 70)
        lam100 = _curve(0.843, 1.1, rng.uniform(8, 14), 80)
        winner = _curve(rng.uniform(0.834, 0.840), 1.1, rng.uniform(10, 30), 130)
        lam1000 = _curve(0.858, 1.1, rng.uniform(40, 80), 500)
        grids.append([*small, lam10, lam100, winner, lam1000])
    return grids


def test_default_rule_keeps_the_choice_on_ml1m_shaped_curves_and_saves_epochs() -> None:
    # The property benchmarks/check_pruning.py checks on the committed cells, on curves whose
    # every point is known. The lambda = 1000 point must be cut well before its 500 epochs.
    for curves in _ml1m_like_grids(np.random.default_rng(0), 50):
        out = replay_pruning(curves, DEFAULT_PRUNE)
        assert out["chosen"] == out["chosen_unpruned"] == 6
        assert out["pruned"][7] and out["epochs"][7] < 300
        assert not out["pruned"][6] and out["epochs"][6] == 130


def test_a_rule_that_prunes_the_eventual_winner_fails_the_check() -> None:
    # The same curves and check catch an unsafe rule: with a small margin the slow winner is
    # stopped while it is still behind lambda = 100, and lambda = 100 is chosen instead.
    unsafe = PruneRule(warmup=5, margin=0.5, wave=2)
    grids = _ml1m_like_grids(np.random.default_rng(0), 50)
    changed = [replay_pruning(c, unsafe) for c in grids]
    assert any(out["chosen"] != out["chosen_unpruned"] for out in changed)
    assert all(out["pruned"][6] for out in changed if out["chosen"] != 6)


def test_replay_prunes_against_earlier_waves_only() -> None:
    rule = PruneRule(warmup=1, margin=0.0, wave=2)
    good, bad = [0.5, 0.4], [0.9, 0.9, 0.9]
    # Wave 1 (good, bad) has no incumbent: nothing is pruned; wave 2's bad point is.
    out = replay_pruning([good, bad, bad], rule)
    assert out["pruned"] == [False, False, True] and out["epochs"] == [2, 3, 1]
    out = replay_pruning([good, bad, bad], PruneRule(warmup=1, margin=0.0, wave=1))
    assert out["pruned"] == [False, True, True]


def test_prune_rule_threshold_and_validation() -> None:
    rule = PruneRule(warmup=10, margin=4.0)
    assert not rule.prunes(9, 2.0, 1.0)  # warm-up
    assert not rule.prunes(40, 1.0999, 1.0) and rule.prunes(40, 1.1001, 1.0)  # 1 + 4/40
    assert not rule.prunes(40, 5.0, None)  # nothing finished yet
    for bad in ({"warmup": 0}, {"wave": 0}, {"margin": -1.0}, {"margin": math.inf}):
        with pytest.raises(ConfigError, match="prune rule"):
            PruneRule(**bad)


def test_progress_hook_returning_true_stops_the_fit_and_marks_it_pruned(low_rank_split) -> None:
    split = low_rank_split
    full = make_model("i-autorec", hidden=(8,), n_epochs=12, patience=50, seed=0)
    full.fit(split.train, split.val)
    model = make_model("i-autorec", hidden=(8,), n_epochs=12, patience=50, seed=0)
    model.fit(split.train, split.val, progress=lambda p: p.epoch == 5)
    assert model.history.pruned and not full.history.pruned
    assert model.history.n_epochs == 5
    # The epochs it ran are those of the unpruned fit, and it keeps its best epoch's weights.
    assert model.history.val_rmse == full.history.val_rmse[:5]
    assert model.history.best_epoch == 1 + int(np.argmin(model.history.val_rmse))


GRID_KW = {
    "seed": 0,
    "overrides": {"hidden": (8,), "n_epochs": 40, "patience": 5},
    "open_above": (),
}


def _curves(ratings, grid, **kwargs):
    """The unpruned protocol's record and every grid point's validation curve."""
    curves: dict[str, list[float]] = {}

    def progress(phase, p):
        if phase != "retrain":
            curves.setdefault(phase, []).append(p.val_rmse)

    result = run_protocol(ratings, "i-autorec", grid=grid, progress=progress, **kwargs)
    return result.record, list(curves.values())


@pytest.mark.parametrize("order", [(3000.0, 100.0, 1.0, 0.001), (0.001, 1.0, 100.0, 3000.0)])
def test_protocol_prunes_as_the_replay_predicts(low_rank, order) -> None:
    # A small margin so that the tiny data set prunes at all. In the first order the winner
    # comes first and pruning only saves epochs; in the second the rule cuts the slow winner,
    # the failure benchmarks/check_pruning.py exists to catch, and the replay predicts it.
    rule = PruneRule(warmup=3, margin=0.1, wave=2)
    grid = {"lam": order}
    plain, curves = _curves(low_rank, grid, **GRID_KW)
    expected = replay_pruning(curves, rule)
    pruned = run_protocol(low_rank, "i-autorec", grid=grid, prune=rule, **GRID_KW).record
    got = pruned["candidates"]
    assert [c["epochs"] for c in got] == expected["epochs"]
    assert [c.get("pruned", False) for c in got] == expected["pruned"]
    assert any(expected["pruned"])
    for c, curve in zip(got, curves, strict=True):
        assert c["val_rmse"] == min(curve[: c["epochs"]])
    assert pruned["pruning"] == {"warmup": 3, "margin": 0.1, "wave": 2}
    assert "pruning" not in plain and all("epochs" not in c for c in plain["candidates"])
    chosen = order[expected["chosen"]]
    assert pruned["hyperparameters"]["lam"] == chosen
    if expected["chosen"] == expected["chosen_unpruned"]:
        # Same choice: the same retrain, the same test RMSE bit for bit.
        assert pruned["hyperparameters"] == plain["hyperparameters"]
        assert pruned["test_rmse"] == plain["test_rmse"]
    else:
        assert pruned["hyperparameters"] != plain["hyperparameters"]
    assert (expected["chosen"] == expected["chosen_unpruned"]) == (order[0] == 3000.0)


def test_parallel_grid_points_give_the_sequential_record_bit_for_bit(low_rank) -> None:
    # Two processes, one torch thread each; the waves make the incumbent a point sees
    # independent of which process finishes first.
    rule = PruneRule(warmup=3, margin=0.1, wave=2)
    grid = {"lam": (3000.0, 100.0, 1.0, 0.001)}
    one = run_protocol(low_rank, "i-autorec", grid=grid, prune=rule, jobs=1, **GRID_KW).record
    two = run_protocol(low_rank, "i-autorec", grid=grid, prune=rule, jobs=2, **GRID_KW).record
    assert any(c.get("pruned") for c in one["candidates"])
    for key in TIMINGS:
        one.pop(key), two.pop(key)
    # The head (default on for I-AutoRec) is fitted in the parent on the point a worker sent
    # back: the same choices, only its own timing differs.
    assert one["ranking_head"].pop("seconds") >= 0 and two["ranking_head"].pop("seconds") >= 0
    assert one == two


def test_jobs_is_checked(low_rank) -> None:
    with pytest.raises(ConfigError, match="jobs must be >= 1"):
        run_protocol(low_rank, "bias", seed=0, jobs=0)


def test_the_outward_search_gives_the_same_record_with_two_processes(low_rank) -> None:
    # The outward lambda search (autorec.search, 5) with pruning: each batch of points runs in
    # waves whose incumbent is fixed before they start, so two processes change nothing. A
    # pruned end goes on (its final value is unknown), which this grid exercises.
    from autorec.search import SearchPolicy

    rule = PruneRule(warmup=3, margin=0.3, wave=2)
    # The outward grid alone (no refinement or k stage), real fits. This data's lambda curve is
    # flat (0.9197 at 300, 0.9230 at 100), so a tolerance of 0.1% makes 100 end the descent.
    search = SearchPolicy(small_data=0, max_fits=0, outward_tolerance=0.001)
    grid = {"lam": (0.001, 0.1, 1.0, 100.0, 300.0, 3000.0, 30000.0)}
    kw = {**GRID_KW, "grid": grid, "prune": rule, "search": search}
    one = run_protocol(low_rank, "i-autorec", jobs=1, **kw).record
    two = run_protocol(low_rank, "i-autorec", jobs=2, **kw).record
    # 300 and its neighbours, then 30000 past the pruned 3000; nothing below 100.
    lams = [c["lam"] for c in one["candidates"]]
    assert lams[:4] == [300.0, 100.0, 3000.0, 30000.0]
    assert [c.get("pruned", False) for c in one["candidates"][:4]] == [False, False, True, True]
    assert one["search"]["outward_skipped"] == [0.001, 0.1, 1.0]
    for key in TIMINGS:
        one.pop(key), two.pop(key)
    assert one["ranking_head"].pop("seconds") >= 0 and two["ranking_head"].pop("seconds") >= 0
    assert one == two
