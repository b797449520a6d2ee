"""Model options are checked and converted against the chosen model's config class."""

from __future__ import annotations

from typing import Literal

import pytest

import autorec.data
from autorec.cli import main
from autorec.cli.options import config_fields, parse_value
from autorec.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("500,250,500", tuple[int, ...], (500, 250, 500)),
        ("7", tuple[int, ...], (7,)),
        ("1,2.5", tuple[int, float], (1, 2.5)),
        ("none", float | None, None),
        ("0.5", float | None, 0.5),
        ("adam", Literal["rprop", "lbfgs", "adam"], "adam"),
        ("false", bool, False),
        ("1", bool, True),
        ("12", int, 12),
        ("1e-3", float, 0.001),
        ("cuda:1", str, "cuda:1"),
    ],
)
def test_parse_value_follows_the_declared_type(text, hint, expected) -> None:
    value = parse_value(text, hint, "--x")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("1.5", int),  # a string match on "int" in "tuple[int]" once let this through
        ("sgd", Literal["rprop", "adam"]),
        ("maybe", bool),
        ("nan", float),
        ("1,x", tuple[int, ...]),
        ("1,2,3", tuple[int, float]),
        ("none", float),
        ("{}", dict[str, int]),
    ],
)
def test_parse_value_refuses_what_the_type_cannot_hold(text, hint) -> None:
    with pytest.raises(ConfigError, match="--x"):
        parse_value(text, hint, "--x")


def test_config_fields_are_the_models_own() -> None:
    assert "hidden" in config_fields("i-autorec") and "hidden" not in config_fields("bias")
    assert config_fields("i-rbm")["cd_steps"] == tuple[int, ...]


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """load_dataset replaced by a recorder that stops the command right after the checks."""
    calls: list[str] = []

    def record(spec: str, **kwargs: object) -> None:
        calls.append(spec)
        raise KeyboardInterrupt

    monkeypatch.setattr(autorec.data, "load_dataset", record)
    return calls


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "bias", "--hidden", "8"], "model 'bias' has no option hidden"),
        (["--model", "item-knn", "--lambda", "3"], "model 'item-knn' has no option lambda"),
        (["--model", "i-rbm", "--optimizer", "adam"], "model 'i-rbm' has no option optimizer"),
        (["--model", "i-autorec", "--optimizer", "sgd"], "--optimizer: expected one of"),
        (["--model", "i-autorec", "--set", "hidden=0"], "hidden must be positive"),
        (["--model", "llorma", "--set", "local_biases=perhaps"], "expected true or false"),
        (["--model", "i-rbm", "--set", "cd_steps=1,x"], "--set cd_steps"),
        (["--model", "bias", "--set", "reg_user"], "FIELD=VALUE"),
        (["--model", "bias", "--set", "rank=3"], "its fields: fallback, fallback_rating"),
    ],
)
def test_model_options_are_refused_before_loading(argv, message, loaded, capsys) -> None:
    assert main(["train", "--dataset", "ml-1m", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert loaded == []


def test_valid_model_options_reach_loading(loaded, tmp_path, capsys) -> None:
    argv = ["train", "--dataset", "ml-1m", "--model", "i-rbm", "--output", str(tmp_path / "m")]
    argv += ["--set", "cd_steps=1,3", "--set", "cd_epochs=1,5", "--lr", "0.01", "--epochs", "3"]
    assert main(argv) == 130  # the recorder's interrupt: every check passed
    assert loaded == ["ml-1m"]
