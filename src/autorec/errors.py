"""Exceptions. The CLI turns every :class:`AutorecError` into one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class AutorecError(Exception):
    """Base class of the errors a user can cause and fix (bad input, missing data, bad options)."""


class DataError(AutorecError, ValueError):
    """Unreadable, invalid or missing rating data. The message names the file, line and value."""


class ModelFitError(AutorecError, RuntimeError):
    """Training diverged (non-finite loss) or cannot proceed."""


class ConfigError(AutorecError, ValueError):
    """An invalid model configuration or command-line option."""


class TrainingInterrupted(AutorecError):
    """SIGINT or SIGTERM stopped training. ``checkpoint`` is the last checkpoint written (resume
    from it), or None when the fit had no checkpoint folder; ``epoch`` the last finished epoch
    (None when a second signal stopped it mid-epoch)."""

    def __init__(self, signal_name: str, epoch: int | None, checkpoint: Path | None) -> None:
        self.signal_name, self.epoch, self.checkpoint = signal_name, epoch, checkpoint
        where = f"after epoch {epoch}" if epoch is not None else "during an epoch"
        kept = (
            f"checkpoint kept at {checkpoint} (resume from it)"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(f"training interrupted by {signal_name} {where}; {kept}")


class ModelFileError(AutorecError, ValueError):
    """A model folder that cannot be saved into or loaded: missing, damaged, edited, of an
    unsupported format, or already holding a model. The message names the file and the problem."""
