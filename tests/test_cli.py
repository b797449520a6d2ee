"""End to end through ``autorec.cli.main`` on a small rating file the test writes itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autorec.cli import main
from autorec.models import Recommender
from tests.conftest import low_rank_ratings


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    data = low_rank_ratings(n_users=60, n_items=40, density=0.4, seed=3)
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    lines = ["user,item,rating"] + [
        f"u{data.users.ids[u]},m{data.items.ids[i]},{int(r)}"
        for u, i, r in zip(data.user_idx, data.item_idx, data.rating, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _data_args(path) -> list[str]:
    return ["--dataset", str(path), "--sep", ",", "--columns", "user,item,rating", "--header"]


FAST = ["--hidden", "8", "--epochs", "30", "--patience", "5", "--quiet"]


def test_train_saves_predicts_and_recommends(ratings_file, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    js = tmp_path / "run.json"
    rc = main(
        [
            "train",
            *_data_args(ratings_file),
            "--model",
            "i-autorec",
            *FAST,
            "--output",
            str(out),
            "--json",
            str(js),
            "--lambda",
            "1",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test RMSE" in printed and str(out) in printed
    payload = json.loads(js.read_text())
    assert {"dataset", "model", "config", "runs", "test_rmse_mean", "test_rmse_ci95"} <= set(
        payload
    )
    run = payload["runs"][0]
    for key in (
        "seed",
        "test_rmse",
        "test_mae",
        "val_rmse",
        "n_train",
        "n_val",
        "n_test",
        "n_test_fallback",
        "hyperparameters",
        "epochs",
        "train_seconds",
        "epoch_seconds",
    ):
        assert key in run
    assert run["n_train"] + run["n_val"] + run["n_test"] == sum(1 for _ in ratings_file.open()) - 1
    assert len(run["epoch_seconds"]) == run["epochs"]
    assert payload["test_rmse_mean"] == pytest.approx(run["test_rmse"])

    assert main(["predict", "--model-dir", str(out), "--user", "u10", "--item", "m7"]) == 0
    value = float(capsys.readouterr().out.split()[0])
    assert 1.0 <= value <= 5.0

    assert main(["recommend", "--model-dir", str(out), "--user", "u10", "-k", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(r[1].startswith("m") for r in rows)
    # Ranked by the ranking head (on by default), so the printed predicted ratings need not
    # descend: the list is the saved model's own recommend.
    expected = [str(item) for item, _ in Recommender.load(out).recommend("u10", 3)]
    assert [r[1] for r in rows] == expected


def test_unknown_ids_are_one_line_errors(ratings_file, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    assert (
        main(
            ["train", *_data_args(ratings_file), "--model", "bias", "--quiet", "--output", str(out)]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["predict", "--model-dir", str(out), "--user", "nobody", "--item", "m7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nobody" in err and "Traceback" not in err
    assert main(["recommend", "--model-dir", str(out), "--user", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err
    # With --allow-unknown the fallback answers: the bias model's mu + b_i for an unknown user.
    assert (
        main(
            [
                "predict",
                "--model-dir",
                str(out),
                "--user",
                "nobody",
                "--item",
                "m7",
                "--allow-unknown",
            ]
        )
        == 0
    )
    assert "(fallback)" in capsys.readouterr().out


def test_evaluate_runs_the_protocol_and_writes_json(ratings_file, tmp_path, capsys) -> None:
    js = tmp_path / "eval.json"
    rc = main(
        [
            "evaluate",
            *_data_args(ratings_file),
            "--model",
            "i-autorec",
            *FAST,
            "--runs",
            "2",
            "--lambdas",
            "0.1,10",
            "--json",
            str(js),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "95% CI" in printed
    payload = json.loads(js.read_text())
    seeds = [r["seed"] for r in payload["runs"]]
    assert seeds == [0, 1]
    rmses = [r["test_rmse"] for r in payload["runs"]]
    assert payload["test_rmse_mean"] == pytest.approx(np.mean(rmses))
    assert payload["test_rmse_ci95"] > 0
    for run in payload["runs"]:
        assert run["hyperparameters"]["lam"] in (0.1, 10.0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--model", "i-autorec", "--dataset", "no-such-set"], "no-such-set"),
        (["train", "--model", "nope", "--dataset", "ml-1m"], "invalid choice"),
        (["train", "--model", "bias", "--dataset", "x", "--hidden", "a,b"], "integers"),
        (["train", "--model", "bias", "--dataset", "x", "--epochs", "0"], ">= 1"),
        (
            ["predict", "--model-dir", "/nonexistent/dir", "--user", "1", "--item", "2"],
            "no saved model",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, needle, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err


def test_model_option_that_the_model_lacks_is_an_error(ratings_file, capsys) -> None:
    rc = main(["train", *_data_args(ratings_file), "--model", "bias", "--lambda", "3", "--quiet"])
    assert rc == 2
    assert "no option" in capsys.readouterr().err


def test_set_rejects_unknown_keys_and_bad_types(ratings_file, capsys) -> None:
    base = ["train", *_data_args(ratings_file), "--model", "i-autorec", "--quiet"]
    assert main([*base, "--set", "nonsense=1"]) == 2
    assert "has no option nonsense" in capsys.readouterr().err
    assert main([*base, "--set", "patience=abc"]) == 2
    assert "patience" in capsys.readouterr().err


def test_recommend_for_a_new_user_folds_in_ratings(ratings_file, tmp_path, capsys) -> None:
    out = tmp_path / "u"
    assert (
        main(
            [
                "train",
                *_data_args(ratings_file),
                "--model",
                "u-autorec",
                *FAST,
                "--output",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["recommend", "--model-dir", str(out), "--ratings", "m7:5,m14:1", "-k", "4"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 4 and not {"m7", "m14"} & {r[1] for r in rows}
    assert main(["recommend", "--model-dir", str(out), "--ratings", "m7=5"]) == 2
    assert "ITEM:RATING" in capsys.readouterr().err


def test_train_fits_the_search_default_model_unless_told_otherwise(
    ratings_file, tmp_path, capsys
) -> None:
    # The main job trains what evaluate's search defaults to (I-AutoRec on bias-baseline
    # residuals, autorec.search.SEARCH_DEFAULTS); --set baseline=none is the paper's model.
    from autorec.models import Recommender

    fast = ["--hidden", "4", "--epochs", "2", "--quiet"]
    base = ["train", *_data_args(ratings_file), "--model", "i-autorec", *fast]
    assert main([*base, "--output", str(tmp_path / "default")]) == 0
    assert "i-autorec on bias-baseline residuals on" in capsys.readouterr().out
    assert Recommender.load(tmp_path / "default").config.baseline == "bias"
    paper = [*base, "--set", "baseline=none", "--output", str(tmp_path / "paper")]
    assert main(paper) == 0
    assert "residuals" not in capsys.readouterr().out
    assert Recommender.load(tmp_path / "paper").config.baseline == "none"


def test_train_retrains_on_train_plus_validation_unless_told_not_to(
    ratings_file, tmp_path, capsys
) -> None:
    runs = {}
    for flag in ([], ["--no-retrain"]):
        js = tmp_path / f"r{len(flag)}.json"
        argv = [
            "train",
            *_data_args(ratings_file),
            "--model",
            "i-autorec",
            *FAST,
            "--output",
            str(tmp_path / f"m{len(flag)}"),
            "--json",
            str(js),
            *flag,
        ]
        assert main(argv) == 0
        runs[bool(flag)] = json.loads(js.read_text())["runs"][0]
    printed = capsys.readouterr().out
    assert "retrained on train + validation" in printed
    retrained, stopped = runs[False], runs[True]
    # Retraining runs exactly the number of epochs validation chose, on train + validation.
    assert retrained["hyperparameters"]["n_epochs"] == stopped["best_epoch"]
    assert retrained["epochs"] == stopped["best_epoch"]
    assert stopped["hyperparameters"]["n_epochs"] == 30  # the --epochs bound, untouched
    assert retrained["val_rmse"] == pytest.approx(stopped["val_rmse"])


def test_evaluate_searches_lambdas_exactly_and_extends_the_default_grid(
    ratings_file, tmp_path, monkeypatch
) -> None:
    # Validation stand-in with its optimum at lambda = 10000, above the default grid's 1000,
    # where it beats the bias baseline (so the search fits nothing for the baseline).
    from autorec import protocol

    monkeypatch.setattr(
        protocol, "_val_rmse", lambda model, val: 0.5 + (math.log10(model.config.lam) - 4) ** 2
    )
    fast = ["--hidden", "4", "--epochs", "2", "--patience", "1", "--quiet", "--runs", "1"]

    def candidates(*extra: str) -> tuple[list[float], float]:
        js = tmp_path / "eval.json"
        argv = ["evaluate", *_data_args(ratings_file), "--model", "i-autorec", *fast, *extra]
        assert main([*argv, "--json", str(js)]) == 0
        run = json.loads(js.read_text())["runs"][0]
        return [c["lam"] for c in run["candidates"]], run["hyperparameters"]["lam"]

    assert candidates("--lambdas", "0.1,10") == ([0.1, 10.0], 10.0)
    # --no-refine: the extension alone (the refinement is tests/test_search.py's).
    lams, chosen = candidates("--no-refine")
    assert lams[-3:] == [3000.0, 10000.0, 30000.0] and chosen == 10000.0
    lams, chosen = candidates()
    assert lams[-4:] == [14400.0, 6690.0, 20800.0, 4480.0] and chosen == 10000.0


def test_evaluate_says_when_the_search_chose_the_residual_model(ratings_file, capsys) -> None:
    # The default search fits I-AutoRec on bias-baseline residuals (autorec.search
    # SEARCH_DEFAULTS); the chosen hyperparameters do not show it, so the run line says it.
    fast = ["--hidden", "4", "--epochs", "2", "--patience", "1", "--quiet", "--runs", "1"]
    argv = ["evaluate", *_data_args(ratings_file), "--model", "i-autorec", *fast]
    assert main(argv) == 0
    assert "with baseline=bias (search default)" in capsys.readouterr().out
    assert main([*argv, "--no-refine"]) == 0  # the paper's model: nothing to say
    assert "search default" not in capsys.readouterr().out


def test_evaluate_prints_and_writes_ranking_metrics(ratings_file, tmp_path, capsys) -> None:
    js = tmp_path / "rank.json"
    argv = ["evaluate", *_data_args(ratings_file), "--model", "pop", "--runs", "2", "--quiet"]
    assert main([*argv, "--metrics", "rmse,NDCG@10,recall@5", "--json", str(js)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # Two run lines with both kinds of metric, the RMSE summary, then the ranking summary.
    assert len(lines) == 4
    for line in lines[:2]:
        assert "test RMSE " in line and " ndcg@10 " in line and " recall@5 " in line
        assert "MAE" not in line  # not asked for
    assert "test RMSE" in lines[2] and "95% CI" in lines[2]
    assert "full ranking (relevance >= 4," in lines[3]
    assert "ndcg@10" in lines[3] and "recall@5" in lines[3]
    payload = json.loads(js.read_text())
    runs = payload["runs"]
    for run in runs:
        block = run["ranking"]
        assert list(block["metrics"]) == ["ndcg@10", "recall@5"]
        assert block["relevance"] == 4.0 and block["n_users"] > 0
        assert 0 <= block["metrics"]["ndcg@10"] <= 1
        assert f"{block['metrics']['ndcg@10']:.4f}" in "".join(lines[:2])
    summary = payload["ranking"]
    assert summary["relevance"] == 4.0
    values = [r["ranking"]["metrics"]["recall@5"] for r in runs]
    assert summary["metrics"]["recall@5"]["mean"] == pytest.approx(np.mean(values))
    # Two runs: a half-width t_{0.975, 1} * sd / sqrt(2) = 12.706 * |a - b| / 2.
    assert summary["metrics"]["recall@5"]["ci95"] == pytest.approx(
        12.706205 * abs(values[0] - values[1]) / 2
    )
    # --relevance 5: only fives are relevant, so fewer relevant pairs.
    assert main([*argv, "--metrics", "ndcg@10", "--relevance", "5", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "test RMSE" not in out and "full ranking (relevance >= 5," in out
    strict = json.loads(js.read_text())["runs"]
    assert strict[0]["ranking"]["n_relevant"] < runs[0]["ranking"]["n_relevant"]


def test_evaluate_without_ranking_metrics_is_unchanged(ratings_file, tmp_path, capsys) -> None:
    js = tmp_path / "plain.json"
    argv = ["evaluate", *_data_args(ratings_file), "--model", "bias", "--runs", "1", "--quiet"]
    assert main([*argv, "--json", str(js)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("run 1/1 seed 0: test RMSE ") and "  MAE " in lines[0]
    assert "ranking" not in json.loads(js.read_text())
    assert "ranking" not in json.loads(js.read_text())["runs"][0]


@pytest.mark.parametrize(
    ("metrics", "extra", "needle"),
    [
        ("rmse,ndcg@10,foo@3", [], "unknown metric 'foo@3'"),
        ("ndcg", [], "needs a cutoff"),
        ("recall@0", [], "cutoff must be >= 1"),
        ("rmse,mae", ["--relevance", "4"], "--metrics has none"),
    ],
)
def test_bad_metrics_are_one_line_errors_before_any_data_loads(
    metrics, extra, needle, capsys, tmp_path, monkeypatch
) -> None:
    # The data set does not exist: the metric error must come first.
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path))
    argv = ["evaluate", "--model", "pop", "--dataset", "no-such-set", "--metrics", metrics]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "no-such-set" not in err
    assert err.strip().count("\n") == 0, err


def test_relevance_outside_the_scale_is_refused_before_training(ratings_file, capsys) -> None:
    argv = ["evaluate", *_data_args(ratings_file), "--model", "pop", "--metrics", "ndcg@10"]
    assert main([*argv, "--relevance", "7", "--quiet"]) == 2
    assert "outside the rating scale" in capsys.readouterr().err


def test_evaluate_fits_the_ranking_head_only_for_ranking_metrics(ratings_file, tmp_path) -> None:
    # The head (on by default for I-AutoRec) changes no rating, so an RMSE-only evaluation skips
    # it; with a ranking metric the tested model gets one, chosen on validation.
    base = ["evaluate", *_data_args(ratings_file), "--model", "i-autorec", "--runs", "1"]
    base += ["--quiet", "--lambdas", "1", "--set", "n_epochs=3", "--set", "rank_epochs=2"]
    for metrics, has_head in (("rmse", False), ("rmse,ndcg@5", True)):
        js = tmp_path / f"{metrics}.json"
        assert main([*base, "--metrics", metrics, "--json", str(js)]) == 0
        payload = json.loads(js.read_text())
        assert ("ranking_head" in payload["runs"][0]) is has_head
        assert payload["config"]["ranking_head"] is (False if not has_head else None)
