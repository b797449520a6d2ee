"""``--split official:FOLDS`` and ``--train FILE --test FILE`` for ``train`` and ``evaluate``
(issue 15): options refused before any data is read, union vocabularies, cold test pairs
counted and answered by the one fallback rule, several folds summarised as mean +- CI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from autorec.cli import main
from autorec.evaluation import summary_ci95
from autorec.models.base import Recommender
from tests.conftest import low_rank_ratings

FOLDS = "u1, u2, u3, u4, u5, ua, ub"
# Every test pair of these files is cold: user u4 and item d are only in the test file.
TRAIN = "u1,a,5\nu1,b,3\nu1,c,5\nu2,a,4\nu2,b,3\nu2,c,2\nu3,a,2\nu3,b,1\nu3,c,4\n"
TEST = "u4,a,3\nu1,d,4\nu4,d,2\n"
FAST_AUTOREC = ["--hidden", "4", "--epochs", "3", "--lambda", "1"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "test.csv").write_text(TEST)
    return tmp_path / "train.csv", tmp_path / "test.csv"


@pytest.fixture(scope="module")
def fake_ml100k(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A data folder with a small ``ml-100k/u.data`` and folds u1, u2 written by hand from it;
    returns it and, per fold, the number of test pairs whose user or item is not in its base
    (counted here from the lines, independently of the loader)."""
    data = low_rank_ratings(n_users=30, n_items=20, density=0.4, seed=3)
    lines = [
        (int(data.users.ids[u]), int(data.items.ids[i]), int(r))
        for u, i, r in zip(data.user_idx, data.item_idx, data.rating, strict=True)
    ]
    root = tmp_path_factory.mktemp("data")
    folder = root / "ml-100k"
    folder.mkdir()

    def write(name: str, rows) -> None:
        (folder / name).write_text("".join(f"{u}\t{i}\t{r}\t{n}\n" for n, (u, i, r) in rows))

    write("u.data", enumerate(lines))
    cold_user = lines[0][0]  # all of its ratings are in u1.test: cold in u1
    cold = {}
    for fold, rest in (("u1", 0), ("u2", 1)):
        in_test = [
            k % 5 == rest or (fold == "u1" and u == cold_user) for k, (u, _, _) in enumerate(lines)
        ]
        base = [row for row, t in zip(enumerate(lines), in_test, strict=True) if not t]
        test = [row for row, t in zip(enumerate(lines), in_test, strict=True) if t]
        write(f"{fold}.base", base)
        write(f"{fold}.test", test)
        users = {u for _, (u, _, _) in base}
        items = {i for _, (_, i, _) in base}
        cold[fold] = sum(u not in users or i not in items for _, (u, i, _) in test)
    assert cold["u1"] > 0
    return root, cold


# -- options refused before loading (an empty --data-dir: nothing could be read) ----------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--dataset", "ml-100k", "--split", "official:u9"],
            f"no official fold 'u9'; folds: {FOLDS}",
        ),
        (["--dataset", "ml-100k", "--split", "official:u1,u1"], "names fold u1 more than once"),
        (["--dataset", "ml-100k", "--split", "u1"], "--split expects official:FOLD"),
        (["--dataset", "ml-100k", "--split", "official:"], "--split expects official:FOLD"),
        (["--dataset", "ml-1m", "--split", "official:u1"], "'ml-1m' has no official splits"),
        (["--dataset", "synthetic:tiny", "--split", "official:u1"], "has no official splits"),
        (["--train", "a.csv"], "--train and --test go together"),
        (["--test", "b.csv"], "--train and --test go together"),
        (["--dataset", "ml-100k", "--train", "a", "--test", "b"], "give one"),
        (["--train", "a", "--test", "b", "--split", "official:u1"], "--split chooses folds"),
        ([], "give --dataset NAME_OR_PATH, or --train FILE --test FILE"),
    ],
)
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_bad_split_options_are_one_line_errors(capsys, tmp_path, command, extra, message):
    code, out, err = run(capsys, command, *extra, "--model", "bias", "--data-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_evaluate_refuses_runs_with_fixed_folds(capsys, tmp_path) -> None:
    argv = ["evaluate", "--dataset", "ml-100k", "--split", "official:u1", "--model", "bias"]
    code, _, err = run(capsys, *argv, "--runs", "3", "--data-dir", str(tmp_path))
    assert code == 2 and "each fold runs once" in err


def test_train_takes_one_fold_and_a_test_set(capsys, tmp_path) -> None:
    argv = ["train", "--dataset", "ml-100k", "--model", "bias", "--data-dir", str(tmp_path)]
    code, _, err = run(capsys, *argv, "--split", "official:u1,u2")
    assert code == 2 and "give one official fold, not 2" in err
    code, _, err = run(capsys, *argv, "--split", "official:u1", "--no-test")
    assert code == 2 and "--no-test" in err


# -- --train / --test ----------------------------------------------------------------------------
def test_train_on_two_files_uses_the_union_vocabularies(capsys, files, tmp_path) -> None:
    train, test = files
    out_dir = tmp_path / "model"
    argv = ["train", "--train", str(train), "--test", str(test), "--model", "bias"]
    code, out, _ = run(capsys, *argv, "--output", str(out_dir), "--json", str(tmp_path / "r.json"))
    assert code == 0
    assert "3 of 3 test pairs cold: fallback bias" in out
    model = Recommender.load(out_dir)
    assert model.users.to_list() == ["u1", "u2", "u3", "u4"]
    assert model.items.to_list() == ["a", "b", "c", "d"]
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["split"] == {"kind": "files", "train": str(train), "test": str(test)}
    assert record["fallback"] == "bias" and record["n_test_fallback"] == 3
    # 9 train ratings: round(0.9) = 1 held out as validation
    assert (record["runs"][0]["n_train"], record["runs"][0]["n_val"]) == (8, 1)


@pytest.mark.parametrize("model", [["--model", "bias"], ["--model", "i-autorec", *FAST_AUTOREC]])
def test_every_test_pair_cold_gives_the_constant_under_the_paper_rule(
    capsys, files, tmp_path, model
) -> None:
    # --fallback constant: every cold pair is predicted (1 + 5) / 2 = 3 (the union scale 1..5,
    # Sedhain et al. 2015 Sec. 3), whatever the model: errors 0, 1, -1 -> RMSE sqrt(2/3).
    train, test = files
    path = tmp_path / "r.json"
    argv = ["evaluate", "--train", str(train), "--test", str(test), *model]
    code, out, _ = run(capsys, *argv, "--fallback", "constant", "--json", str(path))
    assert code == 0
    result = json.loads(path.read_text())
    assert result["fallback"] == "constant" and result["runs"][0]["n_test_fallback"] == 3
    assert result["runs"][0]["fold"] == "files"
    assert result["test_rmse_mean"] == pytest.approx(math.sqrt(2 / 3), abs=1e-6)
    assert "3 of 3 test pairs cold, answered by the constant fallback" in out


def test_bias_model_and_autorec_score_cold_pairs_alike_by_default(capsys, files, tmp_path):
    # Before issue 15 the bias model answered cold pairs with its baseline and I-AutoRec with
    # 3, so on an all-cold test set their RMSEs differed; now both use the bias baseline.
    train, test = files
    rmse = {}
    for name, extra in (("bias", []), ("i-autorec", FAST_AUTOREC)):
        path = tmp_path / f"{name}.json"
        argv = ["evaluate", "--train", str(train), "--test", str(test), "--model", name, *extra]
        assert run(capsys, *argv, "--json", str(path))[0] == 0
        result = json.loads(path.read_text())
        assert result["fallback"] == "bias"
        rmse[name] = result["test_rmse_mean"]
    assert rmse["bias"] == pytest.approx(rmse["i-autorec"], abs=1e-6)
    assert rmse["bias"] != pytest.approx(math.sqrt(2 / 3), abs=1e-3)  # not the constant's


# -- official folds ----------------------------------------------------------------------------
def test_evaluate_over_two_official_folds_reports_mean_and_ci(capsys, fake_ml100k, tmp_path):
    root, cold = fake_ml100k
    path = tmp_path / "r.json"
    argv = ["evaluate", "--dataset", "ml-100k", "--split", "official:u1,u2", "--model", "bias"]
    code, out, _ = run(capsys, *argv, "--data-dir", str(root), "--json", str(path))
    assert code == 0
    result = json.loads(path.read_text())
    runs = result["runs"]
    assert [r["fold"] for r in runs] == ["u1", "u2"] and [r["seed"] for r in runs] == [0, 0]
    assert [r["n_test_fallback"] for r in runs] == [cold["u1"], cold["u2"]]
    assert result["split"] == {"kind": "official", "folds": ["u1", "u2"]}
    mean, ci = summary_ci95([r["test_rmse"] for r in runs])
    assert ci is not None and ci > 0  # two folds: a t interval with one degree of freedom
    assert (result["test_rmse_mean"], result["test_rmse_ci95"]) == (mean, ci)
    assert f"2 fold(s) (u1,u2): test RMSE {mean:.4f} +- {ci:.4f} (95% CI)" in out
    assert "run 1/2 fold u1:" in out and "run 2/2 fold u2:" in out
    n_cold = cold["u1"] + cold["u2"]
    assert f"{n_cold} of {sum(r['n_test'] for r in runs)} test pairs cold" in out


def test_official_fold_seed_draws_only_the_validation_set(capsys, fake_ml100k, tmp_path):
    root, _ = fake_ml100k
    sizes = []
    for seed in ("0", "1"):
        path = tmp_path / f"{seed}.json"
        argv = ["evaluate", "--dataset", "ml-100k", "--split", "official:u1", "--model", "bias"]
        assert (
            run(capsys, *argv, "--seed", seed, "--data-dir", str(root), "--json", str(path))[0] == 0
        )
        run_ = json.loads(path.read_text())["runs"][0]
        sizes.append((run_["n_train"], run_["n_val"], run_["n_test"], run_["n_test_fallback"]))
        assert (
            run_["test_rmse"] is not None and json.loads(path.read_text())["test_rmse_ci95"] is None
        )
    assert sizes[0] == sizes[1]  # same fold, same test set: only the validation draw differs


@pytest.mark.realdata
def test_official_u1_counts_its_cold_test_pairs(capsys, shared_data_dir, tmp_path) -> None:
    from tests.data.conftest import need

    need(shared_data_dir, "ml-100k/u1.test")

    def pairs(name: str) -> np.ndarray:
        return np.loadtxt(shared_data_dir / "ml-100k" / name, dtype=np.int64)[:, :2]

    base, test = pairs("u1.base"), pairs("u1.test")
    expected = int((~(np.isin(test[:, 0], base[:, 0]) & np.isin(test[:, 1], base[:, 1]))).sum())
    path = tmp_path / "r.json"
    argv = ["evaluate", "--dataset", "ml-100k", "--split", "official:u1", "--model", "bias"]
    code, out, _ = run(capsys, *argv, "--data-dir", str(shared_data_dir), "--json", str(path))
    assert code == 0
    record = json.loads(path.read_text())["runs"][0]
    # u1: 80,000 base ratings (10% of them validation, retrained on all) and 20,000 test
    assert (record["n_train"] + record["n_val"], record["n_test"]) == (80_000, 20_000)
    assert record["n_test_fallback"] == expected > 0
    assert f"{expected} of 20000 test pairs cold" in out
