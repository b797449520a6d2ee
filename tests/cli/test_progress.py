"""Progress: a bar per phase on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import io
import logging

from autorec.cli import main
from autorec.cli.progress import ProgressReporter, ReporterLogHandler
from autorec.models.training import Progress, epoch_log
from autorec.protocol import run_protocol


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

    def start(self, phase: str, total: int | None, done: int = 0) -> None:
        super().start(phase, total, done)
        self.calls.append(("start", phase, total, done))

    def update(self, epoch, train_rmse, val_rmse, best_val, stopping=False) -> None:
        self.calls.append(("update", epoch, val_rmse, best_val))


def test_the_protocol_reports_each_fit_as_a_phase(low_rank) -> None:
    # Through the real hook path: run_protocol -> fit -> run_epochs -> Progress -> reporter.
    reporter = Recorder()
    result = run_protocol(
        low_rank,
        "i-autorec",
        seed=0,
        grid={"lam": (1.0, 100.0)},
        open_above=(),
        overrides={"hidden": (4,), "n_epochs": 6, "patience": 2},
        progress=reporter.phase_hook("seed 0: "),
    )
    starts = [c[1:] for c in reporter.calls if c[0] == "start"]
    chosen = result.record["hyperparameters"]["n_epochs"]
    # Each grid point runs at most n_epochs; the retrain exactly the epochs validation chose.
    assert starts == [("seed 0: lam=1 (1/2)", 6, 0), ("seed 0: lam=100 (2/2)", 6, 0)] + [
        ("seed 0: retrain", chosen, 0)
    ]
    first = [c for c in reporter.calls[1:] if c[0] == "update"][
        : result.candidates[0]["best_epoch"]
    ]
    vals = [c[2] for c in first]
    assert [c[3] for c in first] == [min(vals[: i + 1]) for i in range(len(vals))]  # best so far
    retrain = reporter.calls[-chosen:]
    assert [c[1] for c in retrain] == list(range(1, chosen + 1))
    assert all(c[2] is None and c[3] is None for c in retrain)  # no validation: no val_rmse=nan


def test_a_resumed_phase_starts_where_its_checkpoint_was() -> None:
    reporter = Recorder()
    hook = reporter.phase_hook()
    for epoch in (5, 6):
        hook("fit", Progress(epoch, 8, 1.0, 0.9, 0.9, epoch, 0.1, 0.1, epoch == 6))
    assert reporter.calls[0] == ("start", "fit", 8, 4)
    assert reporter.phase is None  # the last epoch closed the phase


def test_log_lines_go_through_the_reporter_without_the_epoch_lines() -> None:
    stream = io.StringIO()
    handler = ReporterLogHandler(ProgressReporter(stream))
    info = dict(level=logging.INFO, pathname=__file__, lineno=1, args=(), exc_info=None)
    handler.emit(logging.LogRecord(epoch_log.name, msg="epoch 1 train_rmse=1.0", **info))
    handler.emit(logging.LogRecord("autorec.protocol", msg="validation RMSE 0.9", **info))
    assert stream.getvalue() == "validation RMSE 0.9\n"
    verbose = ReporterLogHandler(ProgressReporter(stream), epoch_lines=True)
    verbose.emit(logging.LogRecord(epoch_log.name, msg="epoch 1 train_rmse=1.0", **info))
    assert stream.getvalue().endswith("epoch 1 train_rmse=1.0\n")


def test_train_shows_progress_unless_quiet(ratings_file, tmp_path, capsys) -> None:
    argv = ["train", "--dataset", str(ratings_file), "--model", "i-autorec", "--hidden", "4"]
    argv += ["--epochs", "3", "--output"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "fit: epoch 3/3" in err and "retrain: epoch 3/3" in err
    assert "nan" not in err and "train_rmse=" not in err  # progress lines, not the log lines
    assert "validation RMSE" in err  # other INFO messages still reach the user
    assert main([*argv, str(tmp_path / "b"), "-q"]) == 0
    assert capsys.readouterr().err == ""
