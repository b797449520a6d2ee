"""Command-line pieces for data: the dataset options every command shares, and ``autorec data``.

``autorec data download NAME [--url MIRROR_URL] [--data-dir DIR] [--sha256 HEX]`` fetches and
verifies an official MovieLens archive (see :mod:`autorec.data.download`);
``autorec data stats --dataset NAME_OR_PATH [...] [--json FILE]`` prints the size of a data set.
Handlers return an exit code and raise :class:`~autorec.errors.AutorecError` on user errors; the
main CLI turns those into one ``error: ...`` line. This module may print (it is CLI code).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from autorec.data.loaders import (
    DUPLICATE_POLICIES,
    KNOWN_DATASETS,
    LoadedDataset,
    load_dataset,
)

STATS_KEYS: tuple[str, ...] = (
    "n_users",
    "n_items",
    "n_ratings",
    "rating_min",
    "rating_max",
    "density",
    "n_duplicates_dropped",
)


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


def dataset_from_args(args: argparse.Namespace) -> LoadedDataset:
    """Load the data set the options of :func:`add_dataset_arguments` describe."""
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


class _StderrProgress:
    """Download progress on stderr: one line, rewritten at most ten times a second."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        mib = done / 2**20
        text = (
            f"{self.name}: {mib:.1f} of {total / 2**20:.1f} MiB ({100 * done / total:.0f}%)"
            if total
            else f"{self.name}: {mib:.1f} MiB"
        )
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.last:
            print(file=sys.stderr, flush=True)


def _cmd_download(args: argparse.Namespace) -> int:
    from autorec.data.download import download_dataset

    progress = None if getattr(args, "quiet", False) else _StderrProgress(args.name)
    try:
        folder = download_dataset(
            args.name, data_dir=args.data_dir, url=args.url, progress=progress, sha256=args.sha256
        )
    finally:
        if progress is not None:
            progress.finish()
    print(f"{args.name}: {folder}")
    return 0


def _format(key: str, value: Any) -> str:
    if key == "density":
        return f"{value:.6f} ({100 * value:.3f}%)"
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}"


def _cmd_stats(args: argparse.Namespace) -> int:
    dataset = dataset_from_args(args)
    stats = dataset.stats()
    print(f"{dataset.name}  ({dataset.source})")
    for key in STATS_KEYS:
        print(f"  {key:<22}{_format(key, stats[key])}")
    if args.json:
        target = Path(args.json)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({k: stats[k] for k in STATS_KEYS}, indent=2) + "\n")
    return 0


def register(subparsers: Any) -> None:
    """Add ``data`` (``download``, ``stats``) to the main parser's subcommands."""
    data = subparsers.add_parser("data", help="download data sets, show their statistics")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{download,stats}")

    p = sub.add_parser("download", help="download and verify an official MovieLens archive")
    p.add_argument(
        "name",
        metavar="NAME",
        help=f"one of {', '.join(n for n, i in KNOWN_DATASETS.items() if i.archive)}",
    )
    p.add_argument(
        "--url",
        metavar="MIRROR_URL",
        help="full URL of the archive on a mirror (the pinned sha256 is still checked)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where to put it (default $AUTOREC_DATA_DIR, else ~/.cache/autorec)",
    )
    p.add_argument(
        "--sha256",
        metavar="HEX",
        help="expected digest; required for ml-latest, which has no pinned one",
    )
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("stats", help="users, items, ratings, scale and density of a data set")
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of a synthetic:PRESET (default 0)")
    p.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    p.set_defaults(func=_cmd_stats)
