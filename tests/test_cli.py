"""End to end through ``autorec.cli.main`` on a small rating file the test writes itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autorec.cli import main
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
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)


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
    # Validation stand-in with its optimum at lambda = 10000, above the default grid's 1000.
    from autorec import protocol

    monkeypatch.setattr(
        protocol, "_val_rmse", lambda model, val: 1.0 + (math.log10(model.config.lam) - 4) ** 2
    )
    fast = ["--hidden", "4", "--epochs", "2", "--patience", "1", "--quiet", "--runs", "1"]

    def candidates(*extra: str) -> tuple[list[float], float]:
        js = tmp_path / "eval.json"
        argv = ["evaluate", *_data_args(ratings_file), "--model", "i-autorec", *fast, *extra]
        assert main([*argv, "--json", str(js)]) == 0
        run = json.loads(js.read_text())["runs"][0]
        return [c["lam"] for c in run["candidates"]], run["hyperparameters"]["lam"]

    assert candidates("--lambdas", "0.1,10") == ([0.1, 10.0], 10.0)
    lams, chosen = candidates()
    assert lams[-3:] == [3000.0, 10000.0, 30000.0] and chosen == 10000.0
