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
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from autorec.errors import AutorecError, ConfigError
from autorec.textconfig import parse_value, read_config_file


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
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    default_help: str = "",
    fixed_splits: bool = False,
) -> None:
    """The options that say which ratings to load (see :func:`dataset_from_args`);
    ``fixed_splits`` adds ``--split`` and ``--train``/``--test`` (see :func:`split_choice`)."""
    from autorec.data import KNOWN_DATASETS
    from autorec.data.loaders import DUPLICATE_POLICIES

    g = parser.add_argument_group("data set")
    g.add_argument(
        "--dataset",
        # with fixed splits, --train/--test may replace it (split_choice checks)
        required=required and not fixed_splits,
        metavar="NAME_OR_PATH",
        help=f"a known name ({', '.join(KNOWN_DATASETS)}), synthetic:PRESET, or a rating file"
        + default_help,
    )
    if fixed_splits:
        folds = "; ".join(
            f"{k}: {','.join(v.official_folds)}"
            for k, v in KNOWN_DATASETS.items()
            if v.official_folds
        )
        g.add_argument(
            "--split",
            metavar="official:FOLD[,FOLD...]",
            help=f"the data set's official train/test folds instead of the paper's random "
            f"90/10 split ({folds}); validation is 10%% of the fold's train, drawn with --seed",
        )
        g.add_argument(
            "--train",
            metavar="FILE",
            help="a rating file to train on, with --test FILE instead of --dataset (parsed with "
            "the options below); validation is 10%% of it, drawn with --seed",
        )
        g.add_argument(
            "--test",
            metavar="FILE",
            help="the rating file to test on, with --train; users and items only it has get "
            "the fallback and are counted",
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


@dataclass(frozen=True)
class SplitChoice:
    """The split ``--split`` / ``--train --test`` ask for, checked before any data is loaded.

    ``kind``: "paper" (random 90/10 splits of ``--dataset``, one per seed), "official" (the
    folds ``folds`` of ``--dataset``) or "files" (``train`` and ``test``)."""

    kind: Literal["paper", "official", "files"]
    folds: tuple[str, ...] = ()
    train: str | None = None
    test: str | None = None

    @property
    def fixed(self) -> bool:
        return self.kind != "paper"

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``split`` field."""
        if self.kind == "official":
            return {"kind": "official", "folds": list(self.folds)}
        if self.kind == "files":
            return {"kind": "files", "train": self.train, "test": self.test}
        return {"kind": "paper"}


def split_choice(args: argparse.Namespace) -> SplitChoice:
    """What ``--dataset``, ``--split``, ``--train`` and ``--test`` ask for, refused when they
    do not combine (one line each; the known folds listed for an unknown one)."""
    from autorec.data.loaders import check_official_fold

    train, test, spec = args.train, args.test, args.split
    if train is not None or test is not None:
        if train is None or test is None:
            raise ConfigError("--train and --test go together: give both files")
        if args.dataset is not None:
            raise ConfigError("--dataset and --train/--test both name the ratings: give one")
        if spec is not None:
            raise ConfigError("--split chooses folds of --dataset; --train/--test is a split")
        if args.download:
            raise ConfigError("--download fetches a named data set; --train/--test are files")
        return SplitChoice("files", train=train, test=test)
    if args.dataset is None:
        raise ConfigError("give --dataset NAME_OR_PATH, or --train FILE --test FILE")
    if spec is None:
        return SplitChoice("paper")
    kind, sep, listed = spec.partition(":")
    if kind.strip().lower() != "official" or not sep:
        raise ConfigError(f"--split expects official:FOLD[,FOLD...], got {spec!r}")
    folds = tuple(f.strip() for f in listed.split(","))
    if not all(folds):
        raise ConfigError(f"--split expects official:FOLD[,FOLD...], got {spec!r}")
    repeated = sorted({f for f in folds if folds.count(f) > 1})
    if repeated:
        raise ConfigError(f"--split names fold {', '.join(repeated)} more than once")
    for fold in folds:
        try:
            check_official_fold(args.dataset, fold)
        except AutorecError as exc:
            raise ConfigError(f"--split: {exc}") from None
    return SplitChoice("official", folds=folds)


def fixed_splits(args: argparse.Namespace, choice: SplitChoice, seed: int) -> tuple[str, list]:
    """The data set's name and one ``(fold label, Split)`` per fold of ``choice`` (official
    folds, or the ``--train``/``--test`` files re-indexed over the union of their vocabularies),
    each with 10% of its train held out as validation with ``seed`` (as the paper split holds
    out 10% of its train). A part left empty is refused."""
    from autorec.data import load_file, official_split
    from autorec.data.split import union_split, with_validation

    if choice.kind == "official":
        full = dataset_from_args(args)  # the vocabularies (and --download, --rating-scale)
        name = full.name
        parts = [
            (fold, official_split(name, fold, data_dir=args.data_dir, full=full.ratings))
            for fold in choice.folds
        ]
    else:
        assert choice.train is not None and choice.test is not None
        loaded = [
            load_file(
                path,
                sep=args.sep,
                columns=args.columns,
                header=args.header,
                rating_scale=args.rating_scale,
                duplicates=args.duplicates,
            )
            for path in (choice.train, choice.test)
        ]
        name = f"train {choice.train}, test {choice.test}"
        parts = [("files", union_split(loaded[0].ratings, loaded[1].ratings))]
    out = []
    for label, split in parts:
        carved = with_validation(split, seed=seed)
        sizes = carved.summary()
        if min(sizes["n_train"], sizes["n_val"], sizes["n_test"]) == 0:
            where = f"fold {label} of {name}" if choice.kind == "official" else name
            raise ConfigError(
                f"{where}: {sizes['n_train']} training, {sizes['n_val']} validation and "
                f"{sizes['n_test']} test ratings; holding out 10% of train as validation "
                "needs at least 6 training ratings (round(0.1 n) >= 1), and a test set one"
            )
        out.append((label, carved))
    return name, out


def dataset_stem(spec: str) -> str:
    """The data set's part of a default output name, known before loading: ``ml-1m``,
    ``synthetic-tiny``, or a file's name."""
    from autorec.data import KNOWN_DATASETS

    lowered = spec.lower()
    known = lowered.startswith("synthetic:") or lowered in KNOWN_DATASETS
    return (lowered if known else Path(spec).name).replace(":", "-")


def split_stem(args: argparse.Namespace, choice: SplitChoice) -> str:
    """The data set's part of a default output folder, with its fixed split: ``ml-1m``,
    ``ml-100k-u1`` (an official fold), ``a.csv`` (the --train file's name)."""
    if choice.kind == "files":
        return Path(choice.train).name
    stem = dataset_stem(args.dataset)
    return f"{stem}-{choice.folds[0]}" if choice.kind == "official" else stem


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
        "the one rule for test pairs whose user or item has no training rating: bias (default: "
        "the damped bias baseline mu + b_u + b_i) or constant (the middle of the scale, the "
        "paper's 3 on 1..5)",
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
        "--config",
        metavar="FILE",
        help='model options from a JSON or TOML file ({"model": M, "options": {FIELD: '
        "VALUE}}, e.g. the best.json of autorec tune); options on the command line win",
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


def add_grid_run_arguments(group: Any) -> None:
    """``--jobs`` and ``--no-prune``: HOW the protocol runs its validation grid (processes,
    pruning), which never changes the choice; WHAT it searches (the adaptive policy,
    ``--no-refine``) is :class:`autorec.search.SearchPolicy`."""
    group.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="fit up to N grid points at once, each in its own process with one torch thread "
        "(default 1); the results are the same as with --jobs 1",
    )
    group.add_argument(
        "--no-prune",
        action="store_true",
        help="run every grid point to its end (by default a point whose validation RMSE "
        "cannot catch up with the best point so far is stopped early; the choice is the same)",
    )


def grid_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``prune`` and ``jobs`` keywords of :func:`autorec.protocol.run_protocol`."""
    from autorec.protocol import DEFAULT_PRUNE

    return {"prune": None if args.no_prune else DEFAULT_PRUNE, "jobs": args.jobs}


def config_fields(model_name: str) -> dict[str, Any]:
    """Field name -> declared type of the config class of ``model_name``."""
    from autorec.models import get_model_class

    config_class = get_model_class(model_name).config_class
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


#: The keys of a ``--config`` file: ``tuned`` (where ``autorec tune`` found it) is not read.
CONFIG_FILE_KEYS = ("model", "options", "tuned")


def _as_text(value: Any) -> str:
    """A JSON/TOML value as the command line would give it, for :func:`parse_value`."""
    if isinstance(value, list | tuple):
        return ",".join(_as_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def config_file_options(path: str, model_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The config fields of a ``--config`` file (JSON, or TOML by its ``.toml`` suffix),
    converted like command-line values; an unknown key or field, a value of the wrong type or a
    config of another model is refused naming the file."""
    raw = read_config_file(path, "--config")
    if not isinstance(raw, dict) or not isinstance(raw.get("options", {}), dict):
        raise ConfigError(f'{path}: expected {{"model": NAME, "options": {{FIELD: VALUE}}}}')
    unknown = sorted(set(raw) - set(CONFIG_FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)} (expected {', '.join(CONFIG_FILE_KEYS)})"
        )
    if raw.get("model", model_name) != model_name:
        raise ConfigError(f"{path} configures model {raw['model']!r}, not --model {model_name}")
    options: dict[str, Any] = {}
    for key, value in raw.get("options", {}).items():
        if key not in fields:
            raise ConfigError(
                f"{path}: model {model_name!r} has no option {key}; "
                f"its fields: {', '.join(sorted(fields))}"
            )
        options[key] = parse_value(_as_text(value), fields[key], f"{path}: {key}")
    return options


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line (over those of a ``--config`` file), converted
    and checked against the model's config class (a field it does not have, a bad value or a
    config it rejects: ConfigError). Includes ``seed``."""
    from autorec.models import make_model

    fields = config_fields(args.model)
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None):
        overrides.update(config_file_options(args.config, args.model, fields))
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
