"""``autorec data``: the group of the data commands (``download``, ``stats``)."""

from __future__ import annotations

from typing import Any

from autorec.cli import download, stats


def register(subparsers: Any) -> None:
    """Add ``data`` (``download``, ``stats``) to a parser's subcommands."""
    data = subparsers.add_parser(
        "data",
        help="download data sets, show their statistics",
        description="Data sets: download the official MovieLens archives, or show the size of "
        "any data set autorec can read.",
        epilog="examples:\n  autorec data download ml-1m\n  autorec data stats --dataset ml-1m",
    )
    sub = data.add_subparsers(
        dest="data_command", required=True, metavar="{download,stats}", title="commands"
    )
    download.register(sub)
    stats.register(sub)
