"""Training progress on stderr: a tqdm bar per phase on a terminal, plain lines otherwise.

:class:`ProgressReporter` knows nothing of logging or of the models: a training loop calls
``start(phase, total)``, ``update(epoch, train_rmse, val_rmse, best_val)`` once per epoch and
``close()``. On a terminal each phase (one grid point, the retrain) is one bar showing
epoch/total, the best validation RMSE so far and the time left; when stderr is not a terminal
(a log file, CI) it writes one plain line per epoch with the same numbers. ``--quiet`` makes no
reporter at all.

Until the models report through a shared loop's hook, :class:`EpochLogBridge` feeds the reporter
from the one line per epoch the models log today (``FitHistory.record``).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import IO, Any


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressReporter:
    """Progress of the phases of a run (see the module docstring).

    ``total`` is the number of epochs a phase runs at most (early stopping may end it sooner;
    the bar then closes where it stopped). ``interactive`` defaults to whether ``stream`` is a
    terminal.
    """

    def __init__(self, stream: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty()) if interactive is None else interactive
        self.phase: str | None = None
        self.total: int | None = None
        self._bar: Any = None
        self._started = 0.0
        self._epochs_done = 0

    def start(self, phase: str, total: int | None) -> None:
        self.close()
        self.phase, self.total = phase, total
        self._started = time.monotonic()
        self._epochs_done = 0
        if self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=phase,
                unit="epoch",
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                # tqdm puts ", " before a postfix: "[00:12<01:40, best val 0.8512]".
                bar_format="{desc}: {n_fmt}/{total_fmt} epochs |{bar}| [{elapsed}<{remaining}"
                "{postfix}]",
            )

    def update(
        self, epoch: int, train_rmse: float, val_rmse: float | None, best_val: float | None
    ) -> None:
        if self.phase is None:
            self.start("training", None)
        self._epochs_done += 1
        numbers = [f"train {train_rmse:.4f}"]
        if val_rmse is not None and math.isfinite(val_rmse):
            numbers.append(f"val {val_rmse:.4f}")
        if best_val is not None and math.isfinite(best_val):
            numbers.append(f"best val {best_val:.4f}")
        if self._bar is not None:
            self._bar.set_postfix_str(", ".join(numbers), refresh=False)
            self._bar.update(epoch - self._bar.n)
            return
        elapsed = time.monotonic() - self._started
        of_total = f"/{self.total}" if self.total else ""
        line = f"{self.phase}: epoch {epoch}{of_total}  " + "  ".join(numbers)
        if self.total and epoch < self.total:
            left = elapsed / self._epochs_done * (self.total - epoch)
            line += f"  ({_duration(elapsed)} elapsed, at most {_duration(left)} left)"
        else:
            line += f"  ({_duration(elapsed)} elapsed)"
        print(line, file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """A log line that must not break an open bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.phase = None


# The per-epoch line of FitHistory.record: "epoch %d%s train_rmse=%.4f val_rmse=%.4f seconds=%.2f"
_EPOCH_MESSAGE = "epoch %d%s train_rmse=%.4f val_rmse=%.4f seconds=%.2f"


class EpochLogBridge(logging.Handler):
    """The handler of the CLI's ``autorec`` logger: epoch records go to a
    :class:`ProgressReporter`, every other record is written as one line through it.

    Phases are read off the records: epoch 1 starts a phase; a phase without a validation score
    (``val_rmse=nan``) is the retrain on train + validation, whose length is the best epoch of
    the best phase before it (the protocol retrains for exactly that many epochs). ``max_epochs``
    is the configured upper bound of a fit (None when unknown).
    """

    def __init__(self, reporter: ProgressReporter, max_epochs: int | None = None) -> None:
        super().__init__()
        self.reporter = reporter
        self.max_epochs = max_epochs
        self._n_fits = 0
        self._best_val = math.inf  # best validation RMSE of the current phase
        self._chosen: tuple[float, int] = (math.inf, 0)  # best (val, epoch) over fit phases

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.msg == _EPOCH_MESSAGE and isinstance(record.args, tuple):
                self._epoch(*record.args[:4])
            else:
                self.reporter.write(self.format(record))
        except Exception:  # a display problem must never stop training
            self.handleError(record)

    def _epoch(self, epoch: int, note: str, train_rmse: float, val_rmse: float) -> None:
        validating = math.isfinite(val_rmse)
        if epoch == 1:
            if validating:
                self._n_fits += 1
                self.reporter.start(f"fit {self._n_fits}", self.max_epochs)
            elif self._n_fits:
                # The protocol's retrain; the next fit phase belongs to the next seed.
                self.reporter.start("retrain", self._chosen[1] or self.max_epochs)
                self._n_fits, self._chosen = 0, (math.inf, 0)
            else:
                self.reporter.start("train", self.max_epochs)
            self._best_val = math.inf
        if validating and val_rmse < self._best_val:
            self._best_val = val_rmse
            if val_rmse < self._chosen[0]:
                self._chosen = (val_rmse, epoch)
        best = self._best_val if math.isfinite(self._best_val) else None
        self.reporter.update(epoch, train_rmse, val_rmse if validating else None, best)

    def close(self) -> None:
        self.reporter.close()
        super().close()


def _bridges() -> list[EpochLogBridge]:
    return [h for h in logging.getLogger("autorec").handlers if isinstance(h, EpochLogBridge)]


def expect_epochs(max_epochs: int | None) -> None:
    """Tell the CLI's bridge (if progress is shown) the configured upper bound of a fit."""
    for bridge in _bridges():
        bridge.max_epochs = max_epochs


def end_phase() -> None:
    """Close an open bar, so that results printed next do not share its line."""
    for bridge in _bridges():
        bridge.reporter.close()
