"""``autorec train`` stopped by SIGINT or SIGTERM at a random epoch, then ``--resume``: one
line naming the checkpoint, exit 130 / 143, and a final model and test RMSE bit-identical to an
uninterrupted run (one torch thread). In child processes, as a user would run it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autorec.cli import main
from autorec.models import Recommender

REPO_ROOT = Path(__file__).resolve().parents[2]
# Early stopping on validation around epoch 30, so both phases last long enough to interrupt.
TRAIN = ["train", "--dataset", "synthetic:tiny", "--model", "i-autorec", "--hidden", "16"]
TRAIN += ["--epochs", "40", "--patience", "5", "--threads", "1", "--checkpoint-every", "2"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "AUTOREC_LOG_DIR": str(tmp_path)}


def _train(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autorec",
        *TRAIN,
        "--output",
        str(out),
        "--json",
        f"{out}.json",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "model"
    done = subprocess.run(
        _train(out, "-q"), env=_env(out.parent), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return out


def _stop_at(cmd: list[str], env, phase: str, epoch: int, signum: int):
    """Run ``cmd``, send ``signum`` once the progress line of ``epoch`` of ``phase`` is out."""
    child = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith(f"{phase}: epoch {epoch}/"):
            child.send_signal(signum)
    return child.wait(timeout=300), lines


def _same_model(a: Path, b: Path) -> None:
    first, second = Recommender.load(a), Recommender.load(b)
    users = np.repeat(np.arange(first.n_users), first.n_items)
    items = np.tile(np.arange(first.n_items), first.n_users)
    assert np.array_equal(first.predict(users, items), second.predict(users, items))
    assert (
        json.loads(Path(f"{a}.json").read_text())["runs"][0]["test_rmse"]
        == json.loads(Path(f"{b}.json").read_text())["runs"][0]["test_rmse"]
    )


@pytest.mark.parametrize(
    ("signum", "phase", "code", "word"),
    [(signal.SIGINT, "fit", 130, "interrupted"), (signal.SIGTERM, "retrain", 143, "terminated")],
    ids=["sigint-in-fit", "sigterm-in-retrain"],
)
def test_interrupt_then_resume_is_bit_identical(reference, tmp_path, signum, phase, code, word):
    out = tmp_path / "model"
    env = _env(tmp_path)
    # A random epoch of the phase (seeded, so a failure can be replayed: the id says which).
    epoch = random.Random(f"{signum}{phase}").randrange(3, 12)
    rc, lines = _stop_at(_train(out), env, phase, epoch, signum)
    err = "".join(lines)
    assert rc == code, err
    assert "Traceback" not in err
    last = lines[-1].strip()
    name = signal.Signals(signum).name
    assert last.startswith(f"autorec: {word} ({name}) after epoch "), last
    assert "checkpoint.safetensors" in last and "--resume" in last
    checkpoints = out.parent / "model.checkpoints"
    assert (checkpoints / phase / "checkpoint.safetensors").is_file()
    assert not out.exists()  # nothing saved: the model folder stays clean

    # Without --resume the checkpoints are not thrown away silently.
    again = subprocess.run(_train(out), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = subprocess.run(
        _train(out, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming i-autorec from {checkpoints / phase}" in resumed.stderr
    _same_model(out, reference)
    assert not checkpoints.exists()  # removed once the model was saved


def test_resume_with_other_options_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "model"
    rc, _ = _stop_at(_train(out), _env(tmp_path), "fit", 4, signal.SIGINT)
    assert rc == 130
    argv = [*TRAIN, "--output", str(out), "--resume", "--lambda", "3", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "another run" in err and "\n" not in err
