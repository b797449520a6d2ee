"""Exceptions. The CLI turns every :class:`AutorecError` into one line, never a traceback."""

from __future__ import annotations


class AutorecError(Exception):
    """Base class of the errors a user can cause and fix (bad input, missing data, bad options)."""


class DataError(AutorecError, ValueError):
    """Unreadable, invalid or missing rating data. The message names the file, line and value."""


class ModelFitError(AutorecError, RuntimeError):
    """Training diverged (non-finite loss) or cannot proceed."""


class ConfigError(AutorecError, ValueError):
    """An invalid model configuration or command-line option."""


class ModelFileError(AutorecError, ValueError):
    """A model folder that cannot be saved into or loaded: missing, damaged, edited, of an
    unsupported format, or already holding a model. The message names the file and the problem."""
