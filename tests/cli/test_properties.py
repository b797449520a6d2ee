"""Property: any argument list drawn from the real option names with random values ends in exit
0, 1 (only the stub below) or 2, with no traceback and at most one error line.

The surface is read from the parser itself, so a new option is covered without editing this file.
Data loading is replaced by a stub that stops the command once every check has passed (exit 1
naming the stub), which keeps each example fast; predict and recommend run for real on a saved
bias model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autorec.data
from autorec.cli import build_parser, main

VALUES = [
    "1",
    "0",
    "-3",
    "2.5",
    "8,4",
    "1e400",
    "nan",
    "none",
    "true",
    "abc",
    "",
    "m7:5,m7:1",
    "m7:5",
    ",",
    "=",
    "lam=3",
    "hidden=0",
    "n_epochs=x",
    "seed=2",
    "sigmoid",
    "adam",
    "synthetic:tiny",
    "ml-1m",
    "u1",
    "m3",
]


class ChecksPassed(Exception):
    """The stubbed loader was reached: every check before loading passed."""


def _subparser(parser: argparse.ArgumentParser, path: list[str]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


COMMANDS = [
    ["train"],
    ["evaluate"],
    ["reproduce"],
    ["predict"],
    ["recommend"],
    ["data", "stats"],
    ["data", "download"],
]
PARSER = build_parser()


def _option_args(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda f: [f])
    values = list(action.choices) if action.choices else VALUES
    return st.tuples(flag, st.sampled_from(values) | st.sampled_from(VALUES)).map(list)


@st.composite
def argv_lists(draw: st.DrawFn, tmp: Path, model_dir: Path) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    parser = _subparser(PARSER, command)
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    argv = list(command)
    for action in draw(st.lists(st.sampled_from(actions), max_size=8)):
        argv += draw(_option_args(action))
    # Usually give what is required, so the run reaches the later checks.
    if draw(st.booleans()):
        if command[0] in ("predict", "recommend"):
            argv += ["--model-dir", str(model_dir), "--user", draw(st.sampled_from(["u1", "x"]))]
            argv += ["--item", "m3"] if command[0] == "predict" else []
        elif command == ["data", "download"]:
            argv += [draw(st.sampled_from(["ml-100k", "netflix", "nope"]))]
        else:
            argv += ["--dataset", draw(st.sampled_from(["synthetic:tiny", "ml-1m", "nope"]))]
            if command[0] in ("train", "evaluate"):
                argv += ["--model", draw(st.sampled_from(["bias", "i-autorec", "i-rbm"]))]
    # Outputs always land in the test's folder (existing file, folder, or new name).
    for flag in ("--output", "--json", "--out", "--data-dir"):
        if flag in argv:
            i = argv.index(flag) + 1
            if i < len(argv):
                argv[i] = str(tmp / draw(st.sampled_from(["file", "dir", "new", "dir/new"])))
    return argv


def test_no_argument_list_gives_a_traceback(
    bias_model: Path, tmp_path_factory, monkeypatch, capsys
) -> None:
    tmp = tmp_path_factory.mktemp("outputs")
    (tmp / "file").write_text("x")
    (tmp / "dir").mkdir()

    def stop(*args: object, **kwargs: object) -> None:
        raise ChecksPassed

    monkeypatch.setattr(autorec.data, "load_dataset", stop)
    monkeypatch.setattr(autorec.data, "download_dataset", stop)
    monkeypatch.setenv("AUTOREC_LOG_DIR", str(tmp / "logs"))

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(argv=argv_lists(tmp, bias_model))
    def check(argv: list[str]) -> None:
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        if code == 1 and ("-v" in argv or "--verbose" in argv):
            err = err.strip().splitlines()[-1]  # -v prints the traceback, then the line
        assert "Traceback" not in err, (argv, err)
        if code == 0:
            return
        lines = err.strip().splitlines()
        assert lines, argv
        if code == 1:
            assert len(lines) == 1 and "ChecksPassed" in lines[0], (argv, err)
        else:
            # One line, or argparse's usage line before it.
            assert code == 2, (argv, code, err)
            assert lines[-1].startswith("error: "), (argv, err)
            assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("usage:")), err

    check()
