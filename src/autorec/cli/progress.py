"""Training progress on stderr: a tqdm bar per phase on a terminal, plain lines otherwise.

:class:`ProgressReporter` draws what the training loop reports through its progress hook
(:class:`~autorec.models.training.Progress`): :meth:`ProgressReporter.phase_hook` is the
``progress`` of :func:`autorec.protocol.run_protocol`, and :meth:`ProgressReporter.fit_hook` that
of one ``fit``. A phase (one grid point, the retrain) starts at its first epoch with the number
of epochs it runs at most (early stopping may end it sooner: the bar then closes where it
stopped). On a terminal each phase is one bar showing epoch/total, the best validation RMSE so
far and the time left; when stderr is not a terminal (a log file, CI) it writes one plain line
per epoch with the same numbers. ``--quiet`` attaches no hook at all.

:class:`ReporterLogHandler` is the handler of the CLI's ``autorec`` logger: every message goes
through the reporter (so it never breaks a bar), except the loop's one line per epoch, which the
progress already shows (``-v`` keeps those lines too).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autorec.models.training import Progress


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

    def start(self, phase: str, total: int | None, done: int = 0) -> None:
        """A new phase of at most ``total`` epochs, ``done`` of which ran before (a resume)."""
        self.close()
        self.phase, self.total = phase, total
        self._started = time.monotonic()
        self._epochs_done = 0
        if self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=done,
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
        self,
        epoch: int,
        train_rmse: float,
        val_rmse: float | None,
        best_val: float | None,
        stopping: bool = False,
    ) -> None:
        """Epoch ``epoch`` finished; ``stopping``: it is the last of the phase."""
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
        if stopping:
            early = " (early stop)" if self.total and epoch < self.total else ""
            line += f"  ({_duration(elapsed)} elapsed){early}"
        elif self.total and epoch < self.total:
            left = elapsed / self._epochs_done * (self.total - epoch)
            line += f"  ({_duration(elapsed)} elapsed, at most {_duration(left)} left)"
        else:
            line += f"  ({_duration(elapsed)} elapsed)"
        print(line, file=self.stream, flush=True)

    def phase_hook(self, prefix: str = "") -> Callable[[str, Progress], None]:
        """The ``progress`` of :func:`~autorec.protocol.run_protocol`: one phase per fit,
        named ``prefix + phase``."""

        def hook(phase: str, progress: Progress) -> None:
            name = prefix + phase
            if self.phase != name:
                # The first epoch this process runs: epoch 1, or the one after a checkpoint.
                self.start(name, progress.n_epochs, done=progress.epoch - 1)
            self.update(
                progress.epoch,
                progress.train_rmse,
                progress.val_rmse,
                progress.best_val_rmse,
                stopping=progress.stopping,
            )
            if progress.stopping:
                self.close()

        return hook

    def fit_hook(self, phase: str) -> Callable[[Progress], None]:
        """The ``progress`` of one ``fit``, shown as ``phase``."""
        hook = self.phase_hook()
        return lambda progress: hook(phase, progress)

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


class ReporterLogHandler(logging.Handler):
    """Writes each log record as one line through a :class:`ProgressReporter`; the training
    loop's per-epoch lines are left out unless ``epoch_lines`` (the progress shows them)."""

    def __init__(self, reporter: ProgressReporter, epoch_lines: bool = False) -> None:
        super().__init__()
        self.reporter = reporter
        self.epoch_lines = epoch_lines

    def emit(self, record: logging.LogRecord) -> None:
        from autorec.models.training import epoch_log

        if record.name == epoch_log.name and not self.epoch_lines:
            return
        try:
            self.reporter.write(self.format(record))
        except Exception:  # a display problem must never stop training
            self.handleError(record)

    def close(self) -> None:
        self.reporter.close()
        super().close()
