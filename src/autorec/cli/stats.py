"""``autorec data stats``: users, items, ratings, scale and density of a data set."""

from __future__ import annotations

import argparse
from typing import Any

from autorec.atomic import atomic_write_text
from autorec.cli.options import add_command, add_dataset_arguments, dataset_from_args
from autorec.cli.outputs import check_output_file

STATS_KEYS: tuple[str, ...] = (
    "n_users",
    "n_items",
    "n_ratings",
    "rating_min",
    "rating_max",
    "density",
    "n_duplicates_dropped",
)

EXAMPLES = """\
  autorec data stats --dataset ml-1m --json s.json
  autorec data stats --dataset my.csv --sep , --columns user,item,rating --header
  autorec data stats --dataset synthetic:netflix
  autorec data stats --dataset synthetic:tiny --seed 2
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "stats",
        help="users, items, ratings, scale and density of a data set",
        description="Load a data set as training would (same options, same checks) and print "
        f"its size: {', '.join(STATS_KEYS)}.",
        examples=EXAMPLES,
    )
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of a synthetic:PRESET (default 0)")
    p.add_argument(
        "--json", metavar="FILE", help="also write the statistics as JSON (the keys above)"
    )
    p.set_defaults(func=run)


def _format(key: str, value: Any) -> str:
    if key == "density":
        return f"{value:.6f} ({100 * value:.3f}%)"
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}"


def run(args: argparse.Namespace) -> int:
    import json

    check_output_file(args.json, "--json")
    dataset = dataset_from_args(args)
    stats = dataset.stats()
    print(f"{dataset.name}  ({dataset.source})")
    for key in STATS_KEYS:
        print(f"  {key:<22}{_format(key, stats[key])}")
    if args.json:
        atomic_write_text(args.json, json.dumps({k: stats[k] for k in STATS_KEYS}, indent=2) + "\n")
    return 0
