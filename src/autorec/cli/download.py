"""``autorec data download``: fetch and verify an official MovieLens archive."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from autorec.cli.options import add_command
from autorec.cli.outputs import check_output_dir

EXAMPLES = """\
  autorec data download ml-1m
  autorec data download ml-100k --data-dir ~/data
  autorec data download ml-1m --url https://mirror.example.org/ml-1m.zip
"""


class StderrProgress:
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


def register(subparsers: Any) -> None:
    from autorec.data import KNOWN_DATASETS

    p = add_command(
        subparsers,
        "download",
        help="download and verify an official MovieLens archive",
        description="Download a MovieLens archive, check its size and sha256 against the pinned "
        "values, and extract it atomically into <data dir>/<name>/.",
        examples=EXAMPLES,
    )
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorec.data import download_dataset

    if args.data_dir is not None:
        check_output_dir(args.data_dir, "--data-dir")
    progress = None if getattr(args, "quiet", False) else StderrProgress(args.name)
    try:
        folder = download_dataset(
            args.name, data_dir=args.data_dir, url=args.url, progress=progress, sha256=args.sha256
        )
    finally:
        if progress is not None:
            progress.finish()
    print(f"{args.name}: {folder}")
    return 0
