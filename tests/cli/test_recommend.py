"""``autorec recommend --ratings``: a new user folded into every registered model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autorec.cli import main
from autorec.data import load_file
from autorec.models import MODEL_NAMES, make_model
from tests.models.test_contract import FAST


@pytest.fixture(scope="module")
def saved_models(ratings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # The CLI's rating file (ids u<N>, m<N>), every model in its fast contract setting.
    data = load_file(ratings_file).ratings
    root = tmp_path_factory.mktemp("saved")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            name: make_model(name, **FAST[name]).fit(data).save(root / name) for name in MODEL_NAMES
        }
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recommend_folds_a_new_user_into_every_model(saved_models, name, capsys) -> None:
    argv = ["recommend", "--model-dir", str(saved_models[name]), "-k", "4"]
    code = main([*argv, "--ratings", "m7:5,m14:1,m21:4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [line.split("\t") for line in captured.out.strip().splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert not {"m7", "m14", "m21"} & {r[1] for r in rows}
    assert all(1.0 <= float(r[2]) <= 5.0 for r in rows)


def test_unknown_items_are_listed_or_ignored(bias_model: Path, capsys) -> None:
    argv = ["recommend", "--model-dir", str(bias_model), "-k", "3"]
    assert main([*argv, "--ratings", "m7:5,zz1:4,zz2:1"]) == 2
    err = capsys.readouterr().err
    assert "2 unknown item id(s)" in err and "'zz1', 'zz2'" in err and "--ignore-unknown" in err
    assert main([*argv, "--ratings", "m7:5"]) == 0
    alone = capsys.readouterr().out
    assert main([*argv, "--ratings", "m7:5,zz1:4,zz2:1", "--ignore-unknown"]) == 0
    assert capsys.readouterr().out == alone


def test_support_shrinkage_changes_the_list_and_needs_ratings(
    saved_models, ratings_file: Path, bias_model: Path, tmp_path: Path, capsys
) -> None:
    # Shrinking I-AutoRec's predictions by n_i / (n_i + 1000) all but replaces them by the bias
    # baseline (n_i <= 40 here), whose order differs from the network's on this data. It
    # applies to the rating order, so to an I-AutoRec without its ranking head (on by default).
    model_dir = tmp_path / "rating-order"
    config = {**FAST["i-autorec"], "ranking_head": False}
    make_model("i-autorec", **config).fit(load_file(ratings_file).ratings).save(model_dir)
    argv = ["recommend", "--model-dir", str(model_dir), "-k", "10", "--ratings", "m7:5,m21:1"]
    assert main(argv) == 0
    raw = capsys.readouterr().out
    assert main([*argv, "--support-shrinkage", "1000"]) == 0
    assert capsys.readouterr().out != raw
    # With the head, new users rank on its score, which is not a rating: refused, clearly.
    argv[2] = str(saved_models["i-autorec"])
    assert main([*argv, "--support-shrinkage", "1000"]) == 2
    assert "not a rating" in capsys.readouterr().err
    argv = ["recommend", "--model-dir", str(bias_model), "--user", "u1", "--ignore-unknown"]
    assert main(argv) == 2
    assert "go with --ratings" in capsys.readouterr().err
