"""``autorec tune`` on a fixed split (issue 15 / issue 16 part 3): ``--split official:FOLD`` and
``--train FILE --test FILE`` give the study the same train / validation / test as ``autorec
evaluate`` with the same options, so ``evaluate --config best.json`` scores what tune scored;
several folds and bad combinations are refused before any data is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="autorec tune needs the [tune] extra")

from autorec.cli import main  # noqa: E402
from tests.conftest import low_rank_ratings  # noqa: E402


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def _lines(data, keep) -> list[str]:
    rows = zip(data.user_idx, data.item_idx, data.rating, strict=True)
    return [
        f"{data.users.ids[u]}\t{data.items.ids[i]}\t{int(r)}\t{n}\n"
        for n, (u, i, r) in enumerate(rows)
        if keep(n)
    ]


@pytest.fixture(scope="module")
def fake_ml100k(tmp_path_factory) -> tuple[Path, int, int]:
    """A data folder with a small ``ml-100k/u.data`` and a fold u1 written by hand (every 5th
    line in u1.test); returns it and the line counts of u1.base and u1.test."""
    data = low_rank_ratings(n_users=30, n_items=20, density=0.4, seed=3)
    folder = tmp_path_factory.mktemp("data") / "ml-100k"
    folder.mkdir()
    base, test = _lines(data, lambda n: n % 5 != 0), _lines(data, lambda n: n % 5 == 0)
    (folder / "u.data").write_text("".join(_lines(data, lambda n: True)))
    (folder / "u1.base").write_text("".join(base))
    (folder / "u1.test").write_text("".join(test))
    return folder.parent, len(base), len(test)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, int, int]:
    """A --train / --test pair of different sizes from two different rating sets (the test
    file's users and items are the train file's, re-rated), so a study that fitted or
    validated on the wrong part shows in the counts and in the scores."""
    train = low_rank_ratings(n_users=25, n_items=15, density=0.5, seed=7)
    test = low_rank_ratings(n_users=25, n_items=15, density=0.2, seed=8)
    train_lines = [line.replace("\t", ",") for line in _lines(train, lambda n: True)]
    test_lines = [line.replace("\t", ",") for line in _lines(test, lambda n: True)]
    (tmp_path / "a.csv").write_text("".join(train_lines))
    (tmp_path / "b.csv").write_text("".join(test_lines))
    return tmp_path / "a.csv", tmp_path / "b.csv", len(train_lines), len(test_lines)


def _evaluate_record(capsys, tmp_path: Path, split: list[str], best: Path) -> dict:
    path = tmp_path / "evaluate.json"
    argv = ["evaluate", *split, "--model", "bias", "--config", str(best), "--json", str(path)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(path.read_text())["runs"][0]


def test_tune_on_train_test_files_uses_them_as_evaluate_does(capsys, tmp_path, files) -> None:
    train, test, n_train_lines, n_test_lines = files
    out = tmp_path / "study"
    split = ["--train", str(train), "--test", str(test), "--sep", ","]
    code, printed, err = run(
        capsys, "tune", *split, "--model", "bias", "--trials", "4", "--output", str(out)
    )
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    best = json.loads((out / "best.json").read_text())
    # 10% of the train file held out as validation (round(0.1 n)), the test file as test
    n_val = round(0.1 * n_train_lines)
    sizes = (result["n_train"], result["n_val"], result["n_test"])
    assert sizes == (n_train_lines - n_val, n_val, n_test_lines)
    files_split = {"kind": "files", "train": str(train), "test": str(test)}
    assert result["split"] == best["tuned"]["split"] == files_split
    assert "the --train/--test files, validation seed 0" in printed
    # evaluate with the best config on the same files: the same validation set (the trial's
    # validation RMSE) and the same train + validation retrain scored on the same test set
    record = _evaluate_record(capsys, tmp_path, split, out / "best.json")
    assert record["val_rmse"] == pytest.approx(best["tuned"]["val_rmse"], abs=1e-12)
    assert record["test_rmse"] == pytest.approx(result["test_rmse"], abs=1e-12)
    assert (record["n_train"], record["n_val"], record["n_test"]) == sizes


def test_another_seed_draws_another_validation_set(capsys, tmp_path, files) -> None:
    """--seed draws the validation part of the train file (as in evaluate): the same sizes and
    test set, another validation RMSE for the same fixed configuration."""
    train, test, _, _ = files
    split = ["--train", str(train), "--test", str(test), "--sep", ","]
    space = tmp_path / "space.json"  # one fixed configuration, nothing searched
    space.write_text('{"reg_user": 5.0, "reg_item": 1.0}')
    vals, sizes = [], []
    for seed in ("0", "1"):
        out = tmp_path / f"seed{seed}"
        argv = ["tune", *split, "--model", "bias", "--trials", "1", "--space", str(space)]
        code, _, err = run(capsys, *argv, "--seed", seed, "--output", str(out))
        assert code == 0, err
        result = json.loads((out / "result.json").read_text())
        vals.append(result["val_rmse"])
        sizes.append((result["n_train"], result["n_val"], result["n_test"]))
    assert sizes[0] == sizes[1]
    assert vals[0] != pytest.approx(vals[1], abs=1e-9)


def test_tune_on_an_official_fold_names_the_fold(capsys, tmp_path, fake_ml100k, monkeypatch):
    root, n_base, n_test = fake_ml100k
    monkeypatch.chdir(tmp_path)
    split = ["--dataset", "ml-100k", "--split", "official:u1", "--data-dir", str(root)]
    code, printed, err = run(capsys, "tune", *split, "--model", "bias", "--trials", "3")
    assert code == 0, err
    out = tmp_path / "runs" / "tune-ml-100k-u1-bias"  # the default folder names the fold
    result = json.loads((out / "result.json").read_text())
    best = json.loads((out / "best.json").read_text())
    assert result["study"] == best["tuned"]["study"] == "ml-100k-u1-bias-seed0"
    assert result["split"] == best["tuned"]["split"] == {"kind": "official", "folds": ["u1"]}
    # the fold's base is train + validation, its test file the test set (not the paper split
    # of u.data, which would test on 10% of all lines)
    assert (result["n_train"] + result["n_val"], result["n_test"]) == (n_base, n_test)
    assert result["n_val"] == round(0.1 * n_base)
    assert "(fold u1, validation seed 0)" in printed
    record = _evaluate_record(capsys, tmp_path, split, out / "best.json")
    assert record["fold"] == "u1"
    assert record["val_rmse"] == pytest.approx(best["tuned"]["val_rmse"], abs=1e-12)
    assert record["test_rmse"] == pytest.approx(result["test_rmse"], abs=1e-12)


def test_a_study_is_not_resumed_on_another_split(capsys, tmp_path, fake_ml100k, files) -> None:
    root, _, _ = fake_ml100k
    train, test, _, _ = files
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["--model", "bias", "--trials", "1", "--storage", storage, "--study", "s"]
    official = ["--dataset", "ml-100k", "--split", "official:u1", "--data-dir", str(root)]
    argv = ["tune", *official, *common, "--output", str(tmp_path / "a")]
    assert run(capsys, *argv)[0] == 0
    argv = ["tune", "--train", str(train), "--test", str(test), "--sep", ","]
    code, _, err = run(capsys, *argv, *common, "--output", str(tmp_path / "b"))
    assert code == 2
    assert "study 's' was started with other dataset, split" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--dataset", "ml-100k", "--split", "official:u1,u2"],
            "tune searches on one split: give one official fold, not 2",
        ),
        (["--dataset", "ml-100k", "--split", "official:u9"], "no official fold 'u9'"),
        (["--dataset", "ml-100k", "--split", "u1"], "--split expects official:FOLD"),
        (["--dataset", "ml-1m", "--split", "official:u1"], "'ml-1m' has no official splits"),
        (["--train", "a.csv"], "--train and --test go together"),
        (["--dataset", "ml-100k", "--train", "a", "--test", "b"], "give one"),
        (["--train", "a", "--test", "b", "--split", "official:u1"], "--split chooses folds"),
        ([], "give --dataset NAME_OR_PATH, or --train FILE --test FILE"),
    ],
)
def test_bad_split_options_are_refused_before_loading(capsys, tmp_path, extra, message) -> None:
    # an empty --data-dir: nothing could be read, so the error comes from the options alone;
    # nothing is written either (no study, no output folder)
    out = tmp_path / "out"
    argv = ["tune", *extra, "--model", "bias", "--trials", "2", "--data-dir", str(tmp_path)]
    code, printed, err = run(capsys, *argv, "--output", str(out))
    assert code == 2 and printed == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
