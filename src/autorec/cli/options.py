"""Options several commands share, defined once: the parser class, the global switches, the data
set options and the model options.

Model options are checked against the chosen model's config class, not against a fixed list:
``--hidden 8 --model bias`` is refused ("model 'bias' has no option hidden") and every value is
converted with the field's declared type (``dataclasses.fields`` + ``typing.get_type_hints``:
int, float, bool, str, ``Literal[...]``, ``tuple[int, ...]``, ``X | None``). ``--set FIELD=VALUE``
reaches any field the same way. All of this happens before any data is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

from autorec.errors import ConfigError


class CliParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2), keeps the examples of an epilog
    as written, and lets every subcommand inherit both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def add_command(
    subparsers: Any, name: str, *, help: str, description: str, examples: str
) -> CliParser:
    """One subcommand parser: ``help`` in the command list, ``description`` on top of its own
    help and ``examples`` (lines of commands) as the epilog."""
    return subparsers.add_parser(
        name,
        parents=[global_switches()],
        help=help,
        description=textwrap.fill(description, 88),
        epilog="examples:\n" + examples.strip("\n"),
    )


def global_switches() -> argparse.ArgumentParser:
    """``-q`` / ``-v``, accepted before the command (``autorec -q train``) and after it."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress on stderr (results and errors are still printed)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging, and print the traceback of an internal error instead of saving it",
    )
    return common


# -- small value parsers (syntax only; what a value means is the config's business) -------------
def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _checked(check: typing.Callable[[str], Any]) -> typing.Callable[[str], str]:
    """A type for argparse that checks the syntax with ``check`` and keeps the text, so the
    model's config type converts it later (one conversion path for named options and --set)."""

    def parse(text: str) -> str:
        check(text)
        return text

    parse.__name__ = check.__name__  # argparse names the type in "invalid <name> value"
    return parse


def _layer_sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return values


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# -- data set options ----------------------------------------------------------------------------
def _columns(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def _scale(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        low, high = (float(parts[0]), float(parts[1])) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or high is None or not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH, got {text!r}")
    return low, high


def add_dataset_arguments(
    parser: argparse.ArgumentParser, *, required: bool = True, default_help: str = ""
) -> None:
    """The options that say which ratings to load (see :func:`dataset_from_args`)."""
    from autorec.data import KNOWN_DATASETS
    from autorec.data.loaders import DUPLICATE_POLICIES

    g = parser.add_argument_group("data set")
    g.add_argument(
        "--dataset",
        required=required,
        metavar="NAME_OR_PATH",
        help=f"a known name ({', '.join(KNOWN_DATASETS)}), synthetic:PRESET, or a rating file"
        + default_help,
    )
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where named sets live (default $AUTOREC_DATA_DIR, else ~/.cache/autorec)",
    )
    g.add_argument(
        "--sep", help="field separator of a custom file, e.g. , or :: or tab (default: detected)"
    )
    g.add_argument(
        "--columns",
        type=_columns,
        metavar="user,item,rating[,timestamp]",
        help="column order of a custom file; other names (e.g. _) are ignored",
    )
    g.add_argument("--header", action="store_true", help="a custom file starts with a header line")
    g.add_argument(
        "--rating-scale",
        type=_scale,
        metavar="LOW,HIGH",
        help="rating scale; ratings outside it are an error (default: the data set's)",
    )
    g.add_argument(
        "--duplicates",
        choices=DUPLICATE_POLICIES,
        default="last",
        help="repeated (user, item) pairs: keep the last (default), average, or fail",
    )
    g.add_argument(
        "--download", action="store_true", help="download a missing named MovieLens set first"
    )


def dataset_from_args(args: argparse.Namespace) -> Any:
    """Load the data set the options of :func:`add_dataset_arguments` describe."""
    from autorec.data import load_dataset

    return load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        sep=args.sep,
        columns=args.columns,
        header=args.header,
        rating_scale=args.rating_scale,
        duplicates=args.duplicates,
        download=args.download,
        seed=getattr(args, "seed", 0) or 0,
    )


def dataset_stem(spec: str) -> str:
    """The data set's part of a default output name, known before loading: ``ml-1m``,
    ``synthetic-tiny``, or a file's name."""
    from autorec.data import KNOWN_DATASETS

    lowered = spec.lower()
    known = lowered.startswith("synthetic:") or lowered in KNOWN_DATASETS
    return (lowered if known else Path(spec).name).replace(":", "-")


# -- model options -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelOption:
    """A named shortcut for one config field (``--lambda 300`` is ``--set lam=300``)."""

    flag: str
    field: str
    help: str
    check: typing.Callable[[str], Any] | None = None  # syntax check at parse time
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return "opt_" + self.flag.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        return self.flag.lstrip("-")


MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption("--lambda", "lam", "weight decay lambda", _number, "LAMBDA"),
    ModelOption("--hidden", "hidden", "hidden layer sizes, e.g. 500 or 500,250,500", _layer_sizes),
    ModelOption("--f", "f", "output activation: identity, sigmoid, relu, tanh, elu, selu"),
    ModelOption("--g", "g", "hidden activation: identity, sigmoid, relu, tanh, elu, selu"),
    ModelOption("--optimizer", "optimizer", "rprop, lbfgs or adam"),
    ModelOption("--epochs", "n_epochs", "maximum number of epochs", positive_int, "N"),
    ModelOption("--patience", "patience", "early-stopping patience in epochs", positive_int, "N"),
    ModelOption("--lr", "lr", "initial step (rprop) / learning rate (adam, RBM)", _number),
    ModelOption("--batch-size", "batch_size", "rows per minibatch", positive_int, "N"),
    ModelOption("--dropout", "input_dropout", "input dropout (denoising), default 0", _number),
    ModelOption("--engine", "engine", "auto, sparse or dense"),
    ModelOption("--device", "device", "cpu, cuda, cuda:N or auto"),
    ModelOption("--precision", "precision", "fp32 (default), tf32 CUDA matmuls, or bf16 autocast"),
    ModelOption(
        "--fallback",
        "fallback",
        "prediction for unseen users/items: constant mid-scale (paper) or bias",
    ),
)


def _models_with(field: str) -> list[str]:
    from autorec.models import MODEL_NAMES, get_model_class

    return [
        n
        for n in MODEL_NAMES
        if field in {f.name for f in dataclasses.fields(get_model_class(n).config_class)}
    ]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--seed``, ``--threads``, the named model options and ``--set``."""
    from autorec.models import MODEL_NAMES

    p.add_argument("--model", required=True, choices=MODEL_NAMES, help="model to train")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch")
    g = p.add_argument_group(
        "model options",
        textwrap.fill(
            "Defaults are the paper's; only the options given are set. Each applies only to "
            "the models listed in brackets; any other model refuses it.",
            88,
        ),
    )
    for opt in MODEL_OPTIONS:
        models = _models_with(opt.field)
        g.add_argument(
            opt.flag,
            dest=opt.dest,
            type=_checked(opt.check) if opt.check else str,
            metavar=opt.metavar or opt.name.upper().replace("-", "_"),
            help=f"{opt.help} [{', '.join(models) or 'no model'}]",
        )
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any field of the chosen model's config, e.g. --set min_epochs=50 (repeatable); "
        "an unknown FIELD lists the model's fields",
    )


def parse_value(text: str, hint: Any, where: str) -> Any:
    """``text`` converted to the declared type ``hint`` of a config field; ``where`` names the
    option in the error (``--epochs``, ``--set patience=x``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint) and text.strip().lower() in ("none", "null"):
            return None
        if len(options) == 1:
            return parse_value(text, options[0], where)
    elif origin is Literal:
        for choice in typing.get_args(hint):
            if text == str(choice):
                return choice
        choices = ", ".join(str(c) for c in typing.get_args(hint))
        raise ConfigError(f"{where}: expected one of {choices}, got {text!r}")
    elif origin is tuple:
        args = typing.get_args(hint)
        parts = [p.strip() for p in text.split(",")]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(p, args[0], where) for p in parts)
        if len(args) != len(parts):
            raise ConfigError(f"{where}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(p, a, where) for p, a in zip(parts, args, strict=True))
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
    raise ConfigError(f"{where}: a field of type {hint} cannot be set from the command line")


def config_fields(model_name: str) -> dict[str, Any]:
    """Field name -> declared type of the config class of ``model_name``."""
    from autorec.models import get_model_class

    config_class = get_model_class(model_name).config_class
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line, converted and checked against the model's
    config class (a field it does not have, a bad value or a config it rejects: ConfigError).
    Includes ``seed``."""
    from autorec.models import make_model

    fields = config_fields(args.model)
    overrides: dict[str, Any] = {}
    for opt in MODEL_OPTIONS:
        text = getattr(args, opt.dest, None)
        if text is None:
            continue
        if opt.field not in fields:
            raise ConfigError(f"model {args.model!r} has no option {opt.name}")
        overrides[opt.field] = parse_value(text, fields[opt.field], opt.flag)
    for item in args.overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        if key not in fields:
            raise ConfigError(
                f"model {args.model!r} has no option {key} (--set); "
                f"its fields: {', '.join(sorted(fields))}"
            )
        overrides[key] = parse_value(text, fields[key], f"--set {key}")
    overrides.setdefault("seed", args.seed)
    # Build the config once now, so a value it rejects fails before any data is loaded.
    try:
        make_model(args.model, **overrides)
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError: keep its message
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model {args.model!r}: {exc}") from None
    return overrides
