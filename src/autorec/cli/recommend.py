"""``autorec recommend``: top-k unseen items for a known user, or for a new user's ratings."""

from __future__ import annotations

import argparse
import math
from typing import Any

from autorec.cli.options import add_command, positive_int
from autorec.cli.predict import add_model_dir, load_model
from autorec.errors import ConfigError

EXAMPLES = """\
  autorec recommend --model-dir runs/ml-1m-i-autorec-0 --user 1 -k 10
  autorec recommend --model-dir runs/ml-1m-i-autorec-0 --ratings 1193:5,661:3,914:4 -k 5
  autorec recommend --model-dir runs/ml-1m-bias-0 --ratings 1193:5,99999:4 --ignore-unknown
"""


def new_user_ratings(text: str) -> dict[str, float]:
    """``ITEM:RATING[,ITEM:RATING...]`` as {raw item id: rating}; an item given twice is refused
    (which of its ratings counts would be a guess)."""
    ratings: dict[str, float] = {}
    for part in text.split(","):
        item_id, sep, value = part.strip().rpartition(":")
        try:
            if not sep or not item_id:
                raise ValueError
            rating = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected ITEM:RATING[,ITEM:RATING...], got {part.strip()!r}"
            ) from None
        if not math.isfinite(rating):
            raise argparse.ArgumentTypeError(f"rating of item {item_id!r} is {value!r}")
        if item_id in ratings:
            raise argparse.ArgumentTypeError(
                f"item {item_id!r} is rated twice ({ratings[item_id]:g} and {rating:g}); "
                "give each item once"
            )
        ratings[item_id] = rating
    return ratings


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "recommend",
        help="top-k unseen items for a user with a saved model",
        description="Print the k items a saved model scores highest for a user, among the items "
        "the user has not rated, one per line: rank, raw item id, predicted rating. --ratings "
        "folds a new user's ratings into the model without retraining and leaves the rated "
        "items out of the list.",
        examples=EXAMPLES,
    )
    add_model_dir(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw user id of a user the model was trained on")
    who.add_argument(
        "--ratings",
        type=new_user_ratings,
        metavar="ITEM:RATING,...",
        help="a new user's ratings, each item once, folded in without retraining",
    )
    p.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="with --ratings: leave out item ids the model does not know (default: an error "
        "listing them)",
    )
    p.add_argument(
        "--support-shrinkage",
        type=float,
        default=0.0,
        metavar="S",
        help="with --ratings: rank on the prediction shrunk toward the bias baseline by "
        "n_i / (n_i + S), n_i the item's training ratings, so items the model saw rated once "
        "or twice do not top the list (default 0: the raw score; docs/results/fold-in.md)",
    )
    p.add_argument(
        "-k", type=positive_int, default=10, metavar="K", help="number of items (default 10)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model_dir)
    if args.ratings is not None:
        recs = model.recommend_new_user(
            args.ratings,
            args.k,
            support_shrinkage=args.support_shrinkage,
            ignore_unknown=args.ignore_unknown,
        )
    else:
        if args.ignore_unknown or args.support_shrinkage:
            raise ConfigError("--ignore-unknown and --support-shrinkage go with --ratings")
        if model.users.index_of(args.user) < 0:
            raise ConfigError(f"user {args.user!r} is not in the model's {model.n_users} users")
        recs = model.recommend(args.user, args.k)
    for rank, (item_id, score) in enumerate(recs, start=1):
        print(f"{rank}\t{item_id}\t{score:.4f}")
    return 0
