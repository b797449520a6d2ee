"""Progress: a bar per phase on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import io
import logging
import math

from autorec.cli import main
from autorec.cli.progress import EpochLogBridge, ProgressReporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_carry_epoch_total_best_and_time_left() -> None:
    stream = io.StringIO()
    reporter = ProgressReporter(stream)
    assert not reporter.interactive
    reporter.start("fit 1", 10)
    reporter.update(1, 1.10, 1.05, 1.05)
    reporter.update(2, 1.00, 1.07, 1.05)
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("fit 1: epoch 1/10  train 1.1000  val 1.0500  best val 1.0500")
    assert "best val 1.0500" in lines[1] and "left" in lines[1]


def test_a_terminal_gets_a_bar() -> None:
    stream = Terminal()
    reporter = ProgressReporter(stream)
    reporter.start("retrain", 4)
    for epoch in (1, 2, 3):
        reporter.update(epoch, 1.0, None, None)
    reporter.write("a log line")
    reporter.close()
    text = stream.getvalue()
    assert "retrain: 3/4 epochs" in text and "a log line\n" in text and "\r" in text


class Recorder(ProgressReporter):
    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.calls: list[tuple] = []

    def start(self, phase: str, total: int | None) -> None:
        self.calls.append(("start", phase, total))

    def update(self, epoch, train_rmse, val_rmse, best_val) -> None:
        self.calls.append(("update", epoch, val_rmse, best_val))


def _epoch_record(epoch: int, val: float) -> logging.LogRecord:
    return logging.LogRecord(
        "autorec.models.autorec",
        logging.INFO,
        __file__,
        1,
        "epoch %d%s train_rmse=%.4f val_rmse=%.4f seconds=%.2f",
        (epoch, "", 1.0, val, 0.1),
        None,
    )


def test_the_bridge_reads_phases_off_the_epoch_log_lines() -> None:
    reporter = Recorder()
    bridge = EpochLogBridge(reporter, max_epochs=50)
    # One grid point whose best validation is at epoch 2, then the retrain (val nan).
    for epoch, val in ((1, 0.95), (2, 0.90), (3, 0.92)):
        bridge.emit(_epoch_record(epoch, val))
    for epoch in (1, 2):
        bridge.emit(_epoch_record(epoch, math.nan))
    assert reporter.calls == [
        ("start", "fit 1", 50),
        ("update", 1, 0.95, 0.95),
        ("update", 2, 0.90, 0.90),
        ("update", 3, 0.92, 0.90),
        ("start", "retrain", 2),  # the protocol retrains for the best epoch
        ("update", 1, None, None),
        ("update", 2, None, None),
    ]


def test_train_shows_progress_unless_quiet(ratings_file, tmp_path, capsys) -> None:
    argv = ["train", "--dataset", str(ratings_file), "--model", "i-autorec", "--hidden", "4"]
    argv += ["--epochs", "3", "--output"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "fit 1: epoch 3/3" in err and "retrain: epoch" in err
    assert main([*argv, str(tmp_path / "b"), "-q"]) == 0
    assert capsys.readouterr().err == ""
