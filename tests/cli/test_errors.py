"""Issue 13's CLI items, each reproduced: output paths checked before any work, internal errors
and signals as one line, a repeated --ratings item, a data set too small for the split, help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import autorec.data
import autorec.protocol
from autorec.cli import main
from tests.conftest import REPO_ROOT


class Loaded(Exception):
    """Raised by a stubbed loader: the command got as far as loading data."""


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise Loaded("the data set was loaded before the checks")

    monkeypatch.setattr(autorec.data, "load_dataset", refuse)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 4: every output path is checked before the data is loaded ---------------------------------
@pytest.mark.parametrize(
    ("make", "extra", "needle"),
    [
        (lambda p: (p / "f").write_text("x"), ["--output", "{p}/f"], "is a file, not a folder"),
        (lambda p: (p / "d").mkdir(), ["--json", "{p}/d"], "is a folder"),
        (lambda p: (p / "f").write_text("x"), ["--json", "{p}/f/run.json"], "is a file"),
        (lambda p: (p / "f").write_text("x"), ["--output", "{p}/f/model"], "is a file"),
    ],
)
def test_output_paths_are_refused_before_loading(
    tmp_path: Path, capsys, no_loading, make, extra, needle
) -> None:
    make(tmp_path)
    extra = [a.format(p=tmp_path) for a in extra]
    argv = ["train", "--dataset", "ml-1m", "--model", "bias", "-q", *extra]
    if "--output" not in extra:
        argv += ["--output", str(tmp_path / "model")]
    assert main(argv) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "model").exists()


def test_stats_and_evaluate_json_checked_before_loading(tmp_path: Path, capsys, no_loading):
    for argv in (
        ["data", "stats", "--dataset", "ml-1m", "--json", str(tmp_path)],
        ["evaluate", "--dataset", "ml-1m", "--model", "bias", "--json", str(tmp_path)],
        ["reproduce", "--dataset", "ml-1m", "--out", str(Path(__file__))],
    ):
        assert main(argv) == 2, argv
        line = one_error_line(capsys.readouterr().err)
        assert f"{argv[-2]} {argv[-1]}: is a" in line


def test_an_existing_model_folder_needs_overwrite(ratings_file, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m"
    argv = ["train", "--dataset", str(ratings_file), "--model", "bias", "-q", "--no-test"]
    argv += ["--output", str(out)]
    assert main(argv) == 0
    assert "replaced" not in capsys.readouterr().out
    before = (out / "model.json").read_text()
    assert main([*argv, "--set", "reg_user=1"]) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert (out / "model.json").read_text() == before
    assert main([*argv, "--set", "reg_user=1", "--overwrite"]) == 0
    assert "replaced" in capsys.readouterr().out
    assert json.loads((out / "model.json").read_text())["config"]["reg_user"] == 1.0
    # A non-empty folder that is not a model is never written into.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert main([*argv[:-1], str(tmp_path / "notes"), "--overwrite"]) == 2
    assert "holds no saved model" in capsys.readouterr().err


def test_the_default_model_folder_is_replaced_and_says_so(
    ratings_file, tmp_path: Path, capsys, monkeypatch
) -> None:
    # Re-running the README's main job must work: its default folder is the command's own.
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", str(ratings_file), "--model", "bias", "-q", "--no-test"]
    assert main(argv) == 0
    assert "replaced" not in capsys.readouterr().out
    assert main([*argv, "--set", "reg_user=1"]) == 0
    assert "replaced" in capsys.readouterr().out
    (saved,) = (tmp_path / "runs").iterdir()
    assert json.loads((saved / "model.json").read_text())["config"]["reg_user"] == 1.0


# -- 5: internal errors, Ctrl-C and SIGTERM --------------------------------------------------------
def test_internal_error_is_one_line_with_a_log_file(monkeypatch, capsys, log_dir: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't allocate memory\nsecond line")

    monkeypatch.setattr(autorec.data, "load_dataset", broken)
    assert main(["data", "stats", "--dataset", "ml-1m"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("autorec: error: RuntimeError: can't allocate memory")
    logged = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert logged.parent == log_dir
    text = logged.read_text()
    assert "Traceback" in text and "broken" in text and "data stats" in text

    assert main(["data", "stats", "--dataset", "ml-1m", "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("autorec: error:")


def test_keyboard_interrupt_is_one_line_exit_130(monkeypatch, capsys) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(autorec.data, "load_dataset", interrupted)
    assert main(["data", "stats", "--dataset", "ml-1m"]) == 130
    assert "interrupted" in one_error_line(capsys.readouterr().err)


def test_sigterm_is_one_line_exit_143(tmp_path: Path) -> None:
    # In a child process: before the fix, SIGTERM killed the process with no message.
    script = (
        "import os, signal, sys, time\n"
        "import autorec.data\n"
        "def hang(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "autorec.data.load_dataset = hang\n"
        "from autorec.cli import main\n"
        "sys.exit(main(['data', 'stats', '--dataset', 'ml-1m']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "AUTOREC_LOG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 143, done.stderr
    assert "terminated" in one_error_line(done.stderr)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # this process is untouched


# -- 6: a repeated item in --ratings ------------------------------------------------------------
def test_repeated_item_in_new_user_ratings_is_refused(bias_model: Path, capsys) -> None:
    argv = ["recommend", "--model-dir", str(bias_model), "--ratings", "m7:5,m3:4,m7:1"]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'m7'" in line and "twice" in line


# -- 7: a data set too small for the split --------------------------------------------------------
def test_too_small_for_the_split_is_refused_before_training(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(autorec.protocol, "run_protocol", no_training)
    path = tmp_path / "two.csv"
    path.write_text("1,1,5\n2,2,3\n")
    for argv in (
        ["train", "--dataset", str(path), "--model", "bias", "--output", str(tmp_path / "m")],
        ["evaluate", "--dataset", str(path), "--model", "bias"],
    ):
        assert main([*argv, "-q"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "no validation or test ratings" in line and "at least 7 ratings" in line
    assert not (tmp_path / "m").exists()


# -- 8: help a user can act on ---------------------------------------------------------------------
def test_bare_autorec_prints_usage_and_commands(capsys) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: autorec")
    for command in ("train", "evaluate", "reproduce", "predict", "recommend", "data"):
        assert f"\n    {command} " in err


def test_top_level_help_is_for_users(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "prints to stdout" not in out and "examples:" in out
    assert "-q, --quiet  " in out and "-v, --verbose  " in out


COMMANDS = [
    ["train"],
    ["evaluate"],
    ["reproduce"],
    ["predict"],
    ["recommend"],
    ["data"],
    ["data", "download"],
    ["data", "stats"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_an_example_and_every_option_help(command, capsys) -> None:
    from autorec.cli import build_parser

    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  autorec " + " ".join(command) in out
    parser = build_parser()
    for name in command:
        parser = next(
            a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
        ).choices[name]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            continue  # its commands have their help in the listing
        assert action.help, f"{' '.join(command)}: {action.option_strings or action.dest} no help"


def test_evaluate_help_describes_the_json(capsys) -> None:
    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    for field in ("test_rmse_mean", "test_rmse_ci95", "runs", "n_test_fallback", "candidates"):
        assert field in out
