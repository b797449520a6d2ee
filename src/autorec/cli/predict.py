"""``autorec predict``: one rating from a saved model."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from autorec.cli.options import add_command
from autorec.errors import ConfigError

EXAMPLES = """\
  autorec predict --model-dir runs/ml-1m-i-autorec-0 --user 1 --item 1193
  autorec predict --model-dir runs/ml-1m-i-autorec-0 --user 99999 --item 1193 --allow-unknown
"""


def add_model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        required=True,
        metavar="DIR",
        help="folder of a model saved by autorec train (model.json, weights.safetensors)",
    )


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "predict",
        help="predict one rating with a saved model",
        description="Print the rating a saved model predicts for one (user, item) pair, "
        "clipped to the rating scale. Ids are the raw ids of the rating file. A pair whose "
        "user or item the model never saw is an error unless --allow-unknown, which prints the "
        "fallback rating followed by '(fallback)'.",
        examples=EXAMPLES,
    )
    add_model_dir(p)
    p.add_argument("--user", required=True, help="raw user id")
    p.add_argument("--item", required=True, help="raw item id")
    p.add_argument(
        "--allow-unknown", action="store_true", help="answer unknown ids with the fallback"
    )
    p.set_defaults(func=run)


def load_model(model_dir: str) -> Any:
    from autorec.models.base import Recommender

    return Recommender.load(model_dir)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model_dir)
    user_idx = model.users.index_of(args.user)
    item_idx = model.items.index_of(args.item)
    notes = []
    if user_idx < 0:
        notes.append(f"user {args.user!r} is not in the model's {model.n_users} users")
    if item_idx < 0:
        notes.append(f"item {args.item!r} is not in the model's {model.n_items} items")
    if notes and not args.allow_unknown:
        raise ConfigError("; ".join(notes) + " (pass --allow-unknown to get the fallback rating)")
    value = float(model.predict(np.array([user_idx]), np.array([item_idx]))[0])
    known = bool(model.known_mask(np.array([user_idx]), np.array([item_idx]))[0])
    print(f"{value:.4f}" if known else f"{value:.4f}\t(fallback)")
    return 0
