"""``autorec tune`` end to end (bias model on a small file: each run takes seconds), and the
``--config FILE`` it hands to ``train`` and ``evaluate``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="autorec tune needs the [tune] extra")

from autorec import tune  # noqa: E402
from autorec.cli import main  # noqa: E402


def _tune(ratings_file: Path, out: Path, *extra: str) -> int:
    argv = ["tune", "--dataset", str(ratings_file), "--model", "bias", "--output", str(out)]
    return main([*argv, "-q", *extra])


@pytest.fixture(scope="module")
def tuned(ratings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tune") / "bias"
    assert _tune(ratings_file, out, "--trials", "6") == 0
    return out


def test_tune_writes_trials_best_config_plots_and_result(tuned: Path) -> None:
    for name in ("study.db", "trials.csv", "trials.json", "best.json", "result.json"):
        assert (tuned / name).is_file(), name
    for name in ("history.png", "importances.png"):
        assert (tuned / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = list(csv.DictReader((tuned / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {"reg_user", "reg_item", "val_rmse", "state"} <= set(rows[0])
    trials = json.loads((tuned / "trials.json").read_text())["trials"]
    best = json.loads((tuned / "best.json").read_text())
    winner = min((t for t in trials if t["state"] == "complete"), key=lambda t: t["val_rmse"])
    assert best["model"] == "bias"
    assert best["options"] == {k: winner["params"][k] for k in ("reg_user", "reg_item")}
    assert best["tuned"]["trial"] == winner["number"]
    result = json.loads((tuned / "result.json").read_text())
    assert result["trial"] == winner["number"] and result["test_rmse"] > 0


def test_best_config_round_trips_into_train_and_evaluate(
    tuned: Path, ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    best = json.loads((tuned / "best.json").read_text())["options"]
    data = ["--dataset", str(ratings_file), "--model", "bias", "-q"]
    config = ["--config", str(tuned / "best.json")]
    run_json = tmp_path / "train.json"
    argv = ["train", *data, *config, "--output", str(tmp_path / "m"), "--json", str(run_json)]
    assert main(argv) == 0
    trained = json.loads(run_json.read_text())
    assert {k: trained["config"][k] for k in best} == best
    # evaluate: the tuned values are fixed, so nothing is searched on any seed
    eval_json = tmp_path / "eval.json"
    assert main(["evaluate", *data, *config, "--runs", "2", "--json", str(eval_json)]) == 0
    evaluated = json.loads(eval_json.read_text())
    assert {k: evaluated["config"][k] for k in best} == best
    assert all(len(run["candidates"]) == 1 for run in evaluated["runs"])
    # the test score of the tuned seed is the one tune reported (same retrain, same seed)
    result = json.loads((tuned / "result.json").read_text())
    assert trained["runs"][0]["test_rmse"] == pytest.approx(result["test_rmse"])


def test_command_line_option_beats_the_config_file(
    tuned: Path, ratings_file: Path, tmp_path: Path
) -> None:
    run_json = tmp_path / "train.json"
    argv = [
        "train", "--dataset", str(ratings_file), "--model", "bias", "-q",
        "--config", str(tuned / "best.json"), "--set", "reg_user=3.5",
        "--output", str(tmp_path / "m"), "--json", str(run_json),
    ]  # fmt: skip
    assert main(argv) == 0
    config = json.loads(run_json.read_text())["config"]
    assert config["reg_user"] == 3.5
    assert (
        config["reg_item"] == json.loads((tuned / "best.json").read_text())["options"]["reg_item"]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"model": "bias", "options": {"hidden": [5]}}', "model 'bias' has no option hidden"),
        ('{"model": "bias", "settings": {}}', "unknown key(s) settings"),
        ('{"model": "i-autorec", "options": {}}', "configures model 'i-autorec', not --model bias"),
        ('{"model": "bias", "options": {"reg_user": "much"}}', "reg_user: expected a number"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_config_file_is_one_line_naming_it(
    ratings_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    content: str,
    message: str,
) -> None:
    path = tmp_path / "best.json"
    path.write_text(content)
    argv = ["train", "--dataset", str(ratings_file), "--model", "bias", "--config", str(path)]
    assert main([*argv, "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert str(path) in err and message in err


def test_toml_config_file(ratings_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "best.toml"
    path.write_text('model = "bias"\n[options]\nreg_user = 2.5\nreg_item = 4\n')
    run_json = tmp_path / "train.json"
    argv = ["train", "--dataset", str(ratings_file), "--model", "bias", "-q"]
    argv += ["--config", str(path), "--output", str(tmp_path / "m"), "--json", str(run_json)]
    assert main(argv) == 0
    config = json.loads(run_json.read_text())["config"]
    assert (config["reg_user"], config["reg_item"]) == (2.5, 4.0)


def test_resume_adds_only_the_missing_trials_and_scores_once(
    ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    scored: list[int] = []
    real = tune.score_best
    monkeypatch.setattr(tune, "score_best", lambda *a, **k: scored.append(1) or real(*a, **k))
    out = tmp_path / "t"
    assert _tune(ratings_file, out, "--trials", "3", "--study", "s") == 0
    assert "3 of 3 trials finished" in capsys.readouterr().out
    assert _tune(ratings_file, out, "--trials", "5", "--study", "s") == 0
    text = capsys.readouterr().out
    assert "5 of 5 trials finished" in text and "2 run by this process" in text
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 5
    best = json.loads((out / "best.json").read_text())["tuned"]["trial"]
    # scored again only when a new trial became the best
    assert len(scored) == (2 if best >= 3 else 1)
    # the study is full: nothing runs, and the best trial's test score is not computed again
    assert _tune(ratings_file, out, "--trials", "5", "--study", "s") == 0
    assert "0 run by this process" in capsys.readouterr().out
    assert len(scored) == (2 if best >= 3 else 1)
    assert json.loads((out / "result.json").read_text())["trial"] == best


def test_resume_with_other_options_is_refused(
    ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "t"
    assert _tune(ratings_file, out, "--trials", "2", "--study", "s") == 0
    capsys.readouterr()
    assert _tune(ratings_file, out, "--trials", "4", "--study", "s", "--set", "reg_user=2") == 2
    err = capsys.readouterr().err
    assert "study 's' was started with other fixed, space" in err


def test_model_without_a_space_is_one_line(
    ratings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["tune", "--dataset", str(ratings_file), "--model", "pop", "--trials", "2"]
    assert main([*argv, "--output", str(tmp_path / "t")]) == 2
    assert "model 'pop' has nothing to tune" in capsys.readouterr().err


def _reporter(interactive: bool):
    import io

    from autorec.cli.progress import ProgressReporter

    return ProgressReporter(io.StringIO(), interactive=interactive)


@pytest.mark.parametrize("interactive", [False, True])
def test_progress_counts_trials_and_ignores_a_pruned_trials_value(interactive: bool) -> None:
    """A pruned trial's value is its last report (0.5 here, below the complete trial's 1.0):
    the progress must call it pruned and keep 1.0 as the best."""
    import optuna

    from autorec.cli.tune import TrialProgress

    study = optuna.create_study()
    complete = study.ask()
    study.tell(complete, 1.0)
    pruned = study.ask()
    pruned.report(0.5, 4)
    pruned.set_user_attr("epochs", 4)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    reporter = _reporter(interactive)
    bar = TrialProgress(reporter, total=4, done=1)
    bar(study, study.trials[1])
    bar.close()
    text = reporter.stream.getvalue()
    assert "trial 1: pruned after epoch 4" in text
    assert "best val 1.0000" in text and "0.5000" not in text
    assert "2/4 trials" in text
