"""The adaptive search of ``autorec evaluate`` (autorec.search): refinement, small-data grids and
the simpler-model check."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autorec import protocol
from autorec.data import paper_split, synthetic_ratings
from autorec.errors import ConfigError
from autorec.protocol import run_protocol
from autorec.search import (
    SearchPolicy,
    outward_next,
    refine_values,
    search_defaults,
    simpler_model_check,
    tune_baseline,
    widened_grid,
)

FAST_AUTOREC = {"hidden": (4,), "n_epochs": 2, "patience": 1}


def _parabola(optimum: float):
    """Validation RMSE stand-in: 0.5 + (log10 lam - log10 optimum)^2, so a test knows where the
    optimum is (a real model on small data cannot promise it). At the optimum it beats the bias
    baseline (about 0.91 on the test sets), so the search fits nothing for the baseline."""

    def val_rmse(model, val) -> float:
        return 0.5 + (math.log10(model.config.lam) - math.log10(optimum)) ** 2

    return val_rmse


def _lams(result) -> list[float]:
    return [c["lam"] for c in result.candidates]


def test_refine_values_puts_two_log_spaced_points_in_each_gap() -> None:
    # best 100 between 10 and 300: 100 * 0.1^(1/3) = 46.4, 100 * 0.1^(2/3) = 21.5,
    # 100 * 3^(1/3) = 144.2, 100 * 3^(2/3) = 208.0 (3 significant digits).
    # Nearest to the best first (log10 distances 0.16, 0.32, 0.33, 0.67).
    assert refine_values(100.0, [10.0, 100.0, 300.0, 1000.0], 2, 1.5) == [
        144.0,
        208.0,
        46.4,
        21.5,
    ]
    assert refine_values(100.0, [10.0, 100.0, 300.0], 1, 1.5) == [173.0, 31.6]


def test_refine_values_skips_narrow_gaps_the_grid_ends_and_zero() -> None:
    # 0.001 is the bottom of the grid: only the gap above it is split.
    assert refine_values(0.001, [0.001, 0.01], 2, 1.5) == [0.00215, 0.00464]
    # 300 / 250 = 1.2 < 1.5: that gap is left alone.
    assert refine_values(300.0, [250.0, 300.0, 1000.0], 2, 1.5) == [448.0, 669.0]
    assert refine_values(0.0, [0.0, 1.0], 2, 1.5) == []
    assert refine_values(1.0, [0.0, 1.0], 2, 1.5) == []  # no log scale through 0
    # A gap of exactly 1.5 is split (0.15 / 0.1 < 1.5 in floats); 0.07 .. 0.1 (1.43) is not.
    assert refine_values(0.1, [0.07, 0.1, 0.15], 2, 1.5) == [0.114, 0.131]
    # Both neighbours within a factor 1.5: converged.
    assert refine_values(100.0, [70.0, 100.0, 144.0], 2, 1.5) == []


def test_policy_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="min_ratio"):
        SearchPolicy(min_ratio=1.0)
    with pytest.raises(ConfigError, match="points_per_gap"):
        SearchPolicy(points_per_gap=0)


def test_small_data_rule_widens_biased_mf_reg_below_200k_ratings() -> None:
    policy = SearchPolicy()
    grid = {"reg": (0.05, 0.07, 0.1)}
    wide = widened_grid(policy, "biased-mf", grid, 199_999)
    assert wide["reg"] == (0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
    assert widened_grid(policy, "biased-mf", grid, 200_000) == grid  # ML-1M-sized: as given
    assert widened_grid(SearchPolicy(adapt=False), "biased-mf", grid, 1000) == grid
    assert widened_grid(policy, "biased-mf", {}, 1000) == {}  # reg fixed by the caller


def test_refinement_converges_on_an_optimum_between_grid_points(low_rank, monkeypatch) -> None:
    # Optimum at 60, between the grid's 10 and 100: round 1 splits 10..100 and 100..300 (144,
    # 208, 46.4, 21.5, nearest first); 46.4 wins by 0.037 > tolerance (parabola values 0.0125
    # against 0.0493); round 2 splits 21.5..46.4..100 and the 2 fits left of the budget of 6 go
    # to the nearest points, 59.9 and 35.9.
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(60.0))
    # outward=False: the grid point by point, so the test knows every candidate's position.
    policy = SearchPolicy(max_fits=6, outward=False)
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (1.0, 10.0, 100.0, 300.0)},
        overrides=FAST_AUTOREC,
        search=policy,
    )
    lams = _lams(result)
    assert lams[:4] == [1.0, 10.0, 100.0, 300.0]
    assert lams[4:8] == [144.0, 208.0, 46.4, 21.5]
    # 46.4 * (100 / 46.4)^(1/3) = 59.9, 46.4 * (21.5 / 46.4)^(1/3) = 35.9.
    assert lams[8:] == [59.9, 35.9]
    assert result.record["hyperparameters"]["lam"] == 59.9
    assert result.record["search"] == {
        "small_data": True,
        "refine_fits": 6,
        "stage_fits": 0,
        "baseline_fits": 0,
        "model_defaults": {"baseline": "bias"},
    }


def test_refinement_stops_when_a_round_gains_less_than_the_tolerance(low_rank, monkeypatch) -> None:
    # Optimum exactly on a grid point: round 1 cannot beat it (gain 0), so one round only.
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(100.0))
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (10.0, 100.0, 1000.0)},
        overrides=FAST_AUTOREC,
        search=SearchPolicy(outward=False),
    )
    assert _lams(result) == [10.0, 100.0, 1000.0, 215.0, 46.4, 464.0, 21.5]
    assert result.record["hyperparameters"]["lam"] == 100.0


def test_refinement_follows_an_open_above_extension(low_rank, monkeypatch) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(5000.0))
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (100.0, 1000.0)},
        overrides=FAST_AUTOREC,
        search=SearchPolicy(tolerance=1.0, outward=False),  # one round
    )
    # 3000 -> 10000 -> stop (worse); then refine around 3000 inside 1000..10000.
    assert _lams(result) == [100.0, 1000.0, 3000.0, 10000.0, 2080.0, 4480.0, 1440.0, 6690.0]
    assert result.record["hyperparameters"]["lam"] == 4480.0  # nearest 5000


def test_refinement_takes_one_point_per_gap_on_large_data(low_rank, monkeypatch) -> None:
    # small_data=10: the 2,113 ratings count as large; geometric means 31.6 and 316 only.
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(100.0))
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (10.0, 100.0, 1000.0)},
        overrides=FAST_AUTOREC,
        search=SearchPolicy(small_data=10, outward=False),
    )
    assert _lams(result) == [10.0, 100.0, 1000.0, 316.0, 31.6]  # 316 is nearer after rounding
    assert result.record["search"] == {
        "small_data": False,
        "refine_fits": 2,
        "stage_fits": 0,
        "baseline_fits": 0,
        "model_defaults": {"baseline": "bias"},
    }


def test_refinement_is_deterministic_and_off_without_a_policy(low_rank, monkeypatch) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(60.0))
    kwargs = dict(seed=0, grid={"lam": (10.0, 100.0, 1000.0)}, overrides=FAST_AUTOREC)
    a = run_protocol(low_rank, "i-autorec", search=SearchPolicy(), **kwargs)
    b = run_protocol(low_rank, "i-autorec", search=SearchPolicy(), **kwargs)
    assert a.candidates == b.candidates and a.record["test_rmse"] == b.record["test_rmse"]
    # No policy (autorec reproduce) or adapt=False (--lambdas, --no-refine): the grid as given.
    plain = run_protocol(low_rank, "i-autorec", **kwargs)
    assert _lams(plain) == [10.0, 100.0, 1000.0] and "search" not in plain.record
    off = run_protocol(low_rank, "i-autorec", search=SearchPolicy(adapt=False), **kwargs)
    assert _lams(off) == [10.0, 100.0, 1000.0]


def test_small_data_stage_tries_k_at_the_best_lambda_unless_k_is_fixed(
    low_rank, monkeypatch
) -> None:
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(100.0))
    fast = {"n_epochs": 2, "patience": 1}
    grid = {"lam": (10.0, 100.0)}
    result = run_protocol(
        low_rank, "i-autorec", seed=0, grid=grid, overrides=fast, search=SearchPolicy()
    )
    staged = [c.get("hidden") for c in result.candidates if "hidden" in c]
    assert staged == [(100,), (300,)]
    assert all(c["lam"] == 100.0 for c in result.candidates if "hidden" in c)
    # Large data (the rule is about the training part's size): no stage.
    big = SearchPolicy(small_data=10)
    result = run_protocol(low_rank, "i-autorec", seed=0, grid=grid, overrides=fast, search=big)
    assert not any("hidden" in c for c in result.candidates)
    # k fixed on the command line (--hidden): never staged.
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid=grid,
        overrides={**fast, "hidden": (4,)},
        search=SearchPolicy(),
    )
    assert not any("hidden" in c for c in result.candidates)
    # A registered variant's architecture (i-kernelnet: two kernelised layers of 500) is what
    # the variant is, not a default to search: staging hidden = (100,) would make it one layer.
    kernel = run_protocol(
        low_rank, "i-kernelnet", seed=0, grid=grid, overrides=fast, search=SearchPolicy()
    )
    assert not any("hidden" in c for c in kernel.candidates)


def test_simpler_model_check_reports_the_bias_baseline_when_it_is_not_beaten(
    low_rank_split,
) -> None:
    # The tuned bias baseline's validation RMSE on this split is between these two numbers.
    wins = simpler_model_check("i-autorec", low_rank_split, 5.0, {})
    assert wins is not None and wins["model"] == "bias" and wins["tuned_val_rmse"] == 5.0
    assert 0.0 < wins["val_rmse"] < 5.0
    assert set(wins["hyperparameters"]) == {"reg_user", "reg_item"}
    assert simpler_model_check("i-autorec", low_rank_split, 0.0, {}) is None
    assert simpler_model_check("bias", low_rank_split, 5.0, {}) is None  # itself


def test_protocol_records_when_the_simpler_model_wins(low_rank) -> None:
    # One epoch of I-AutoRec with 2 hidden units cannot beat the tuned bias baseline.
    weak = {"hidden": (2,), "n_epochs": 1, "patience": 1}
    result = run_protocol(
        low_rank, "i-autorec", seed=0, grid={}, overrides=weak, search=SearchPolicy()
    )
    wins = result.record["simpler_model_wins"]
    assert wins is not None and wins["val_rmse"] <= result.record["val_rmse"]
    assert wins["tuned_val_rmse"] == result.record["val_rmse"]


def test_refined_protocol_beats_or_ties_the_coarse_one_on_synthetic_data() -> None:
    # Real fits, no stand-in: a 300 x 200 set of 1..5 stars; the refined search holds the coarse
    # grid's points, so its validation RMSE can only be lower or equal, and it should find a
    # better lambda between the coarse points.
    ratings = synthetic_ratings(200, 150, 5_000, seed=3, noise=0.6)
    split = paper_split(ratings, seed=0)
    kwargs = dict(
        seed=0,
        grid={"lam": (1.0, 100.0, 10000.0)},
        # The search's default model (search_defaults), set for the coarse run too.
        overrides={"hidden": (8,), "n_epochs": 40, "patience": 5, "baseline": "bias"},
        split=split,
    )
    coarse = run_protocol(ratings, "i-autorec", **kwargs)
    # A budget of 2 fits keeps the test short: the two points nearest the coarse optimum.
    refined = run_protocol(
        ratings, "i-autorec", search=SearchPolicy(max_fits=2, outward=False), **kwargs
    )
    assert refined.candidates[:3] == coarse.candidates
    assert refined.record["val_rmse"] <= coarse.record["val_rmse"]
    assert len(refined.candidates) == 5


def test_search_defaults_fit_i_autorec_on_bias_residuals_unless_the_caller_says_otherwise(
    low_rank, monkeypatch
) -> None:
    policy = SearchPolicy()
    assert search_defaults(policy, "i-autorec", {}) == {"baseline": "bias"}
    assert search_defaults(policy, "i-autorec", {"baseline": "none"}) == {"baseline": "none"}
    # A residual baseline needs f = identity: another f keeps the paper's model.
    assert search_defaults(policy, "i-autorec", {"f": "sigmoid"}) == {"f": "sigmoid"}
    assert search_defaults(SearchPolicy(adapt=False), "i-autorec", {}) == {}  # --no-refine
    assert search_defaults(policy, "u-autorec", {}) == {}  # not measured: the paper's model
    # Through the protocol: the tested (retrained) model fits residuals with the policy, the
    # paper's model without one (autorec reproduce).
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(100.0))
    kwargs = dict(seed=0, grid={"lam": (10.0, 100.0)}, overrides=FAST_AUTOREC)
    searched = run_protocol(low_rank, "i-autorec", search=policy, **kwargs)
    assert searched.model.config.baseline == "bias"
    # The record says the search chose it (evaluate prints it beside the chosen lambda).
    assert searched.record["search"]["model_defaults"] == {"baseline": "bias"}
    assert run_protocol(low_rank, "i-autorec", **kwargs).model.config.baseline == "none"


def test_the_search_tries_the_tuned_baselines_damping_only_when_the_baseline_wins(
    low_rank, monkeypatch
) -> None:
    # The damping tried is the bias model's own choice on the same validation part
    # (tune_baseline over its grid); on this data it is not the default (15, 10), so a search
    # that kept the defaults fails here.
    split = paper_split(low_rank, seed=0)
    base_rmse, point = tune_baseline(split, {"seed": 0})
    tuned = (point["reg_user"], point["reg_item"])
    assert tuned != (15.0, 10.0)

    def stand_in(offset: float):
        # The parabola around lam 100 plus offset, 0.01 lower with any damping but the default.
        def val_rmse(model, val) -> float:
            damped = (model.config.bias_reg_user, model.config.bias_reg_item) != (15.0, 10.0)
            return _parabola(100.0)(model, val) + offset - 0.01 * damped

        return val_rmse

    def run(offset, overrides=FAST_AUTOREC, policy=None):
        monkeypatch.setattr(protocol, "_val_rmse", stand_in(offset))
        result = run_protocol(
            low_rank,
            "i-autorec",
            seed=0,
            grid={"lam": (10.0, 100.0)},
            split=split,
            overrides=overrides,
            search=policy or SearchPolicy(),
        )
        config = result.model.config
        return result, (config.bias_reg_user, config.bias_reg_item)

    # The stand-in's 1.0 at lam 100 does not beat the tuned baseline: one more fit at lam 100
    # with its damping, which wins on validation and is what the retrain uses.
    assert 1.0 >= base_rmse
    lost, regs = run(0.5)
    assert lost.record["search"]["baseline_fits"] == 1
    assert lost.candidates[-1] == {
        "lam": 100.0,
        "bias_reg_user": tuned[0],
        "bias_reg_item": tuned[1],
        "val_rmse": pytest.approx(0.99),
        "best_epoch": lost.candidates[-1]["best_epoch"],
    }
    assert regs == tuned and lost.record["hyperparameters"]["bias_reg_user"] == tuned[0]
    # A model that beats the baseline keeps the default damping (the bias model's is not the
    # residual model's best there: docs/experiments.md); so does the caller's, the paper's model
    # (no baseline to damp) and an explicit grid's exact search (adapt=False).
    won, regs = run(0.0)
    assert won.record["search"]["baseline_fits"] == 0 and regs == (15.0, 10.0)
    assert run(0.5, {**FAST_AUTOREC, "bias_reg_user": 2.0})[1] == (2.0, 10.0)
    assert run(0.5, {**FAST_AUTOREC, "baseline": "none"})[1] == (15.0, 10.0)
    fixed, regs = run(0.5, {**FAST_AUTOREC, "baseline": "bias"}, SearchPolicy(adapt=False))
    assert regs == (15.0, 10.0)


# -- the outward grid search (module docstring, 5) ------------------------------------------------
GRID8 = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 300.0, 1000.0]


def test_outward_next_starts_at_the_default_and_goes_on_only_near_the_best() -> None:
    assert outward_next(GRID8, 300.0, {}, 0.01) == [300.0, 100.0, 1000.0]
    seen = {300.0: (0.84, False), 100.0: (0.85, False), 1000.0: (0.86, False)}
    # 300 best; 100 is 1.2% worse (past the tolerance): done below; 1000 is the grid's end.
    assert outward_next(GRID8, 300.0, seen, 0.01) == []
    # Within 1% below: one step further down.
    assert outward_next(GRID8, 300.0, {**seen, 100.0: (0.848, False)}, 0.01) == [10.0]
    # A pruned end stopped early (its final RMSE is unknown): the direction goes on.
    assert outward_next(GRID8, 300.0, {**seen, 100.0: (0.95, True)}, 0.01) == [10.0]
    # The best at the lower end always goes on, down to the grid's first value.
    low = {1.0: (0.80, False), 10.0: (0.82, False), 100.0: (0.83, False), 300.0: (0.84, False)}
    assert outward_next(GRID8, 300.0, {**low, 1000.0: (0.9, False)}, 0.0) == [0.1]


@settings(max_examples=200, deadline=None)
@given(
    drops=st.lists(st.floats(1e-4, 0.2), min_size=0, max_size=7),
    rises=st.lists(st.floats(1e-4, 0.2), min_size=0, max_size=7),
    start=st.integers(0, 13),
)
def test_outward_search_finds_the_minimum_of_any_unimodal_curve(drops, rises, start) -> None:
    # Validation RMSE strictly falling then strictly rising in lambda (the shape of every
    # committed AutoRec cell up to noise; docs/experiments.md): from any start, with no
    # tolerance at all, the search ends on the grid's minimum.
    curve = [1.0 + sum(drops[i:]) for i in range(len(drops))] + [1.0]
    curve += [1.0 + sum(rises[: i + 1]) for i in range(len(rises))]
    values = [float(10**i) for i in range(len(curve))]
    first = values[min(start, len(values) - 1)]
    results: dict[float, tuple[float, bool]] = {}
    while batch := outward_next(values, first, results, 0.0):
        assert not set(batch) & set(results)  # nothing is fitted twice
        results.update({v: (curve[values.index(v)], False) for v in batch})
    assert min(results, key=lambda v: results[v][0]) == values[len(drops)]


def test_protocol_searches_lambda_outward_and_chooses_as_the_full_grid(low_rank, monkeypatch):
    # Stand-in validation RMSE with its optimum at 100: the full grid and the outward search
    # choose the same lambda (and refine it the same way); the outward one never fits the
    # plateau below 10, and says so in the record.
    monkeypatch.setattr(protocol, "_val_rmse", _parabola(100.0))
    kwargs = dict(seed=0, grid={"lam": tuple(GRID8)}, overrides=FAST_AUTOREC)
    full = run_protocol(low_rank, "i-autorec", search=SearchPolicy(outward=False), **kwargs)
    out = run_protocol(low_rank, "i-autorec", search=SearchPolicy(), **kwargs)
    # 300 (the default) and its neighbours, then 10: 2.3x worse than 100, so the search stops.
    assert _lams(out)[:4] == [300.0, 100.0, 1000.0, 10.0]
    assert out.record["search"]["outward_skipped"] == [0.001, 0.01, 0.1, 1.0]
    assert out.record["hyperparameters"] == full.record["hyperparameters"]
    assert _lams(out)[4:] == _lams(full)[8:]  # the same refinement points
    assert "outward_skipped" not in full.record["search"]
