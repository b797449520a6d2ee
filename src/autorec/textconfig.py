"""Config values and config files given as text: the one conversion behind the CLI's model
options (``--epochs``, ``--set FIELD=VALUE``, ``--config FILE``), an ensemble's member specs and
``autorec tune``'s ``--space FILE``.

Foundation layer: no autorec imports but the errors, and no torch, so the CLI can use it before
any model is imported.
"""

from __future__ import annotations

import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from autorec.errors import ConfigError


def parse_value(text: str, hint: Any, where: str, *, sep: str = ",") -> Any:
    """``text`` converted to the declared type ``hint`` of a config field (int, float, bool,
    str, ``Literal[...]``, ``tuple[X, ...]`` or a fixed tuple with items separated by ``sep``,
    ``X | None``); ``where`` names the option or spec in the error."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint) and text.strip().lower() in ("none", "null"):
            return None
        if len(options) == 1:
            return parse_value(text, options[0], where, sep=sep)
    elif origin is Literal:
        for choice in typing.get_args(hint):
            if text == str(choice):
                return choice
        choices = ", ".join(str(c) for c in typing.get_args(hint))
        raise ConfigError(f"{where}: expected one of {choices}, got {text!r}")
    elif origin is tuple:
        args = typing.get_args(hint)
        parts = [p.strip() for p in text.split(sep)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(p, args[0], where, sep=sep) for p in parts)
        if len(args) != len(parts):
            values = "comma-separated values" if sep == "," else f"values separated by {sep}"
            raise ConfigError(f"{where}: expected {len(args)} {values}, got {text!r}")
        return tuple(parse_value(p, a, where, sep=sep) for p, a in zip(parts, args, strict=True))
    elif hint is bool:
        value = text.strip().lower()
        if value in ("true", "1", "yes", "on"):
            return True
        if value in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {text!r}")
    elif hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {text!r}") from None
    elif hint is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {text!r}")
        return value
    elif hint is str:
        return text
    raise ConfigError(f"{where}: a field of type {hint} cannot be given as text")


def read_config_file(path: str | Path, flag: str) -> Any:
    """The content of a JSON file, or TOML by its ``.toml`` suffix; an unreadable or invalid
    file is refused naming ``flag`` (``--config``) and the file."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    toml = file.suffix.lower() == ".toml"
    try:
        return tomllib.loads(text) if toml else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{path}: not valid {'TOML' if toml else 'JSON'} ({exc})") from None
