"""Full-ranking evaluation: top-k lists over the whole catalogue and the metrics of RecBole,
Cornac and Elliot.

From the command line, ``autorec evaluate ... --metrics rmse,ndcg@10,recall@20 [--relevance T]``
adds these metrics to every run of the paper's protocol (the retrained model, train and
validation items excluded; :func:`autorec.protocol.run_protocol` with ``ranking=``). From
Python, for any fitted model::

    from autorec.data import load_dataset, paper_split
    from autorec.models import make_model
    from autorec.ranking import evaluate_ranking

    split = paper_split(load_dataset("ml-100k").ratings, seed=0)
    model = make_model("ease").fit(split.train.merge(split.val))
    result = evaluate_ranking(
        model, split.train, split.test, val=split.val, metrics="ndcg@10,recall@20"
    )
    result.metrics["ndcg@10"], result.n_users, result.to_dict()  # to_dict(): JSON-ready

``rank_users(model, user_idx, k, exclude=[train])`` gives the lists themselves; a model's
``recommend(user_id, k)`` returns the same list for one user.

Protocol (every model, one code path):

* **Candidates.** Each evaluated user ranks every item of the catalogue except the items they
  rated in training (and in validation, when given). Never sampled negatives: Krichene and
  Rendle (KDD 2020) show sampled metrics can reverse the order of two models.
* **Relevance.** A test item is relevant when its test rating is ``>= relevance``. The default is
  ``low + 0.75 * (high - low)`` rounded to the rating step: 4 on 1..5 (the usual MovieLens
  threshold), 4.0 on 0.5..5 in half stars, 8 on 1..10 (:func:`default_relevance`). A user with no
  relevant test item is skipped and counted (``n_users_skipped``). A test rating of an item the
  user also rated in training or validation (a duplicate pair) cannot be recommended and is not
  relevant; it is counted (``n_relevant_excluded``).
* **Score.** Lists are ranked on the model's raw ranking score, never on the clipped rating (a
  clipped prediction makes every item above the top of the scale tie): the ranking hooks of
  :class:`~autorec.models.base.Recommender`, ``_rank_score`` for pairs and ``_score_block`` for
  whole rows. By default they are the unclipped ``predict`` path (``_score`` on the pairs the
  model knows, the fallback on the others); a ranking model whose score is not a rating
  (popularity, EASE) overrides them, and AutoRec scores whole rows with one matrix product
  (:func:`score_block`). ``Recommender.recommend`` ranks on the same scores, so its lists are
  the ones evaluated here.
* **Ties.** Equal scores: the lower item index first. The order is deterministic and does not
  depend on ``argpartition``'s internal order (:func:`top_k`).
* **Memory.** Users are scored in blocks of ``block_users = max_block_bytes // (64 * n_items)``
  (at least 1). 64 bytes per (user, item) cell covers the float64 score block (8 B) and the
  temporaries of scoring it (int64 pair indices, the known mask, the fallback and model scores,
  the top-k selection masks), so a block's working set stays near ``max_block_bytes`` (64 MiB by
  default: 282 users x 3,706 items on ML-1M, a 8.4 MB float64 score block). Only the top-k
  indices of each user outlive the block.

Metrics for a user u with relevant set R_u, list L_u of length k, hit indicator h_i at position
i = 1..k (averaged over the evaluated users; ``coverage`` and ``gini`` are over all lists):

* ``precision@k`` = sum_i h_i / k (RecBole, Cornac).
* ``recall@k`` = sum_i h_i / |R_u| (RecBole, Cornac; not the "truncated" recall of Liang et al.
  2018, which divides by min(k, |R_u|)).
* ``recall_trunc@k`` = sum_i h_i / min(k, |R_u|): that truncated recall (Liang et al., "Variational
  autoencoders for collaborative filtering", WWW 2018, Eq. 9; the Recall of Steck's EASE paper),
  which reaches 1 whenever the list is as good as it can be.
* ``ndcg@k`` (binary gain) = sum_i h_i / log2(i + 1) divided by the ideal
  sum_{i <= min(k, |R_u|)} 1 / log2(i + 1) (RecBole).
* ``ndcg_graded@k``: the same with gain g(r) = 2^(r - t + 1) - 1 for a relevant test rating r at
  threshold t (1 at the threshold, 3 for a 5 at t = 4), 0 otherwise, the ideal list being the
  user's relevant gains sorted descending (Elliot's ``DiscountedRelevance``; Jarvelin and
  Kekalainen 2002).
* ``map@k`` = sum_i h_i * precision@i / min(k, |R_u|) (RecBole).
* ``mrr@k`` = 1 / (position of the first hit), 0 when the list has none.
* ``hit@k`` = 1 when the list holds at least one relevant item.
* ``coverage@k`` = |union of the top-k lists| / n_items (catalogue coverage, RecBole's
  ``ItemCoverage``).
* ``gini@k``: Gini index of how often each item of the catalogue (never-recommended ones count
  as 0) appears in the top-k lists, sum_j (2j - n - 1) c_(j) / (n sum_j c_j) over the counts
  sorted ascending (RecBole's ``GiniIndex``): 0 = every item equally often, near 1 = the same
  few items for everyone.

When a user has fewer than k candidates, the list is shorter and precision still divides by k.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError

log = logging.getLogger(__name__)

RATING_METRICS = ("rmse", "mae")
RANKING_KINDS = (
    "precision",
    "recall",
    "recall_trunc",
    "ndcg",
    "ndcg_graded",
    "map",
    "mrr",
    "hit",
    "coverage",
    "gini",
)
DEFAULT_CUTOFFS = (10, 20)
#: Planning figure for the working memory of one scored (user, item) cell (see module docstring).
BYTES_PER_CELL = 64
DEFAULT_BLOCK_BYTES = 64 * 2**20

_METRIC_RE = re.compile(r"^([a-z_]+)@(\d+)$")


@dataclass(frozen=True, order=True)
class RankingMetric:
    """One ranking metric at one cutoff, e.g. ``RankingMetric("ndcg", 10)`` = ``ndcg@10``."""

    kind: str
    k: int

    def __post_init__(self) -> None:
        if self.kind not in RANKING_KINDS:
            raise ConfigError(
                f"unknown ranking metric {self.kind!r}; known: {', '.join(RANKING_KINDS)}"
            )
        if self.k < 1:
            raise ConfigError(f"{self.kind}@{self.k}: the cutoff must be >= 1")

    def __str__(self) -> str:
        return f"{self.kind}@{self.k}"


DEFAULT_RANKING_METRICS = tuple(RankingMetric(m, k) for m in RANKING_KINDS for k in DEFAULT_CUTOFFS)


def _known_names() -> str:
    return ", ".join([*RATING_METRICS, *(f"{m}@K" for m in RANKING_KINDS)])


def parse_metrics(
    spec: str | Iterable[str | RankingMetric],
) -> tuple[tuple[str, ...], tuple[RankingMetric, ...]]:
    """Split a metric list into rating metrics and ranking metrics, in the order given.

    ``parse_metrics("rmse,mae,ndcg@10,recall@20")`` ->
    ``(("rmse", "mae"), (RankingMetric("ndcg", 10), RankingMetric("recall", 20)))``.
    Names are case-insensitive; a repeated name is kept once.

    Raises:
        ConfigError: an unknown name, a ranking metric without ``@K``, or a cutoff < 1.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    rating: list[str] = []
    ranking: list[RankingMetric] = []
    for item in items:
        if isinstance(item, RankingMetric):
            if item not in ranking:
                ranking.append(item)
            continue
        name = str(item).strip().lower()
        if not name:
            continue
        if name in RATING_METRICS:
            if name not in rating:
                rating.append(name)
            continue
        match = _METRIC_RE.match(name)
        if name in RANKING_KINDS:
            raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {name}@10")
        if match is None or match.group(1) not in RANKING_KINDS:
            raise ConfigError(f"unknown metric {str(item).strip()!r}; known: {_known_names()}")
        metric = RankingMetric(match.group(1), int(match.group(2)))
        if metric not in ranking:
            ranking.append(metric)
    if not rating and not ranking:
        raise ConfigError(f"no metric given; known: {_known_names()}")
    return tuple(rating), tuple(ranking)


def rating_step(*parts: Ratings) -> float:
    """The smallest gap between distinct rating values (1 on MovieLens 1..5, 0.5 in half stars);
    1 when the data hold a single value."""
    values = np.unique(np.concatenate([np.unique(p.rating) for p in parts]).astype(np.float64))
    gaps = np.diff(values)
    gaps = gaps[gaps > 1e-9]
    return float(gaps.min()) if len(gaps) else 1.0


def default_relevance(rating_scale: tuple[float, float], step: float = 1.0) -> float:
    """``low + 0.75 * (high - low)`` rounded to the rating grid ``low + n * step``.

    1..5 -> 4 (the usual MovieLens "liked" threshold); 0.5..5 step 0.5 -> 4.0; 1..10 -> 8.
    """
    low, high = rating_scale
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    n_steps = math.floor(0.75 * (high - low) / step + 0.5)  # round half up, not to even
    return float(min(high, low + n_steps * step))


# -- scoring ---------------------------------------------------------------------------------
def rank_scores(model: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    """Raw ranking scores (float64) for aligned in-vocabulary index arrays:
    ``model._rank_score`` (see :class:`~autorec.models.base.Recommender`)."""
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    return np.asarray(model._rank_score(users, items), dtype=np.float64)


def score_block(model: Any, user_idx_block: np.ndarray) -> np.ndarray:
    """(n_block, n_items) float64 raw ranking scores of every item for each user of the block:
    ``model._score_block`` (a dense matrix product for I-AutoRec instead of 22 M gathered dot
    products on ML-1M), checked for finiteness.

    Raises:
        ValueError: a non-finite score, naming the model, user and item index.
    """
    users = np.asarray(user_idx_block, dtype=np.int64).reshape(-1)
    n_items = int(model.n_items)
    scores = np.asarray(model._score_block(users), dtype=np.float64)
    if scores.shape != (len(users), n_items):
        raise ValueError(
            f"{type(model).__name__}._score_block gave shape {scores.shape}, "
            f"expected {(len(users), n_items)}"
        )
    bad = np.flatnonzero(~np.isfinite(scores.reshape(-1)))
    if len(bad):
        row, col = divmod(int(bad[0]), n_items)
        raise ValueError(
            f"{type(model).__name__} gave a non-finite ranking score {scores[row, col]} "
            f"for user_idx {users[row]}, item_idx {col}"
        )
    return scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(n_rows, min(k, n_cols)) column indices of each row's k largest scores, best first;
    equal scores: the lower column index first.

    ``argpartition`` finds each row's k-th largest value t; every column scoring above t is
    taken, then the columns equal to t in index order until the row has k. Only those k are
    sorted. Scores of ``-inf`` (excluded items) sort last.
    """
    n_rows, n_cols = scores.shape
    k = min(int(k), n_cols)
    if k < 1 or n_rows == 0:
        return np.empty((n_rows, max(k, 0)), dtype=np.int64)
    kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]  # (n_rows,) k-th largest
    above = scores > kth[:, None]  # (n_rows, n_cols)
    n_tied = k - above.sum(axis=1)  # (n_rows,) columns still to take from the tie at kth
    tied = scores == kth[:, None]
    take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= n_tied[:, None]))
    del above, tied
    cols = np.nonzero(take)[1].reshape(n_rows, k)  # row-major: ascending column in each row
    values = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -values), axis=-1)  # score descending, then column ascending
    return np.take_along_axis(cols, order, axis=1)


@dataclass(frozen=True, eq=False)
class _UserLists:
    """Items per user as CSR over the user vocabulary: ``values[indptr[u]:indptr[u + 1]]``."""

    indptr: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray

    @classmethod
    def build(
        cls,
        n_users: int,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        rating: np.ndarray | None = None,
    ) -> _UserLists:
        """Sorted by (user, item); a repeated pair is kept once, with its highest rating."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        ratings = np.zeros(len(users)) if rating is None else np.asarray(rating, np.float64)
        order = np.lexsort((-ratings, items, users))
        users, items, ratings = users[order], items[order], ratings[order]
        first = np.ones(len(users), dtype=bool)
        first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
        users, items, ratings = users[first], items[first], ratings[first]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return cls(indptr, items, ratings)

    def keys(self, n_items: int) -> np.ndarray:
        """Sorted ``user * n_items + item`` of every entry."""
        users = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
        return users * n_items + self.item_idx

    def gather(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position of the user in ``users``, item, rating) of every entry of those users."""
        starts = self.indptr[users]
        lengths = self.indptr[users + 1] - starts
        row = np.repeat(np.arange(len(users)), lengths)
        offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        at = np.repeat(starts, lengths) + offset
        return row, self.item_idx[at], self.rating[at]


def _exclusions(n_users: int, parts: Sequence[Ratings]) -> _UserLists:
    users = np.concatenate([p.user_idx for p in parts]).astype(np.int64)
    items = np.concatenate([p.item_idx for p in parts]).astype(np.int64)
    return _UserLists.build(n_users, users, items)


def rank_users(
    model: Any,
    user_idx: np.ndarray,
    k: int,
    *,
    exclude: Sequence[Ratings] = (),
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> np.ndarray:
    """Top-``k`` item indices (n_users, k) for each user, best first, by raw ranking score.

    Items each user rated in any of ``exclude`` (e.g. train and validation) are left out; a row
    with fewer than ``k`` candidates is padded with -1. Ties: lower item index first.
    """
    users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
    excluded = _exclusions(int(model.n_users), exclude) if exclude else None
    out = np.full((len(users), min(k, int(model.n_items))), -1, dtype=np.int64)
    for start, block in _blocks(users, int(model.n_items), max_block_bytes):
        top, n_candidates = _block_top(model, block, excluded, k)
        valid = np.arange(top.shape[1])[None, :] < n_candidates[:, None]
        out[start : start + len(block)] = np.where(valid, top, -1)
    return out


def _blocks(users: np.ndarray, n_items: int, max_block_bytes: int):
    block_users = block_size(n_items, max_block_bytes)
    for start in range(0, len(users), block_users):
        yield start, users[start : start + block_users]


def block_size(n_items: int, max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Users per scored block: ``max_block_bytes // (BYTES_PER_CELL * n_items)``, at least 1."""
    return max(1, int(max_block_bytes) // (BYTES_PER_CELL * max(1, n_items)))


def _block_top(
    model: Any, users: np.ndarray, excluded: _UserLists | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one block (n_block, k) and each user's number of candidates (n_block,)."""
    scores = score_block(model, users)
    n_candidates = np.full(len(users), scores.shape[1], dtype=np.int64)
    if excluded is not None:
        row, item, _ = excluded.gather(users)
        scores[row, item] = -np.inf
        n_candidates -= np.bincount(row, minlength=len(users))  # pairs are unique in the lists
    return top_k(scores, k), n_candidates


# -- metrics ---------------------------------------------------------------------------------
@dataclass
class RankingResult:
    """Means over the evaluated users (coverage and Gini: over all their lists)."""

    metrics: dict[str, float]
    relevance: float
    n_users: int  # users with at least one relevant test item: the ones averaged over
    n_users_skipped: int  # users with test ratings but none relevant
    n_relevant: int  # relevant (user, item) test pairs
    n_relevant_excluded: int  # relevant test pairs also rated in train/validation: dropped
    block_users: int
    seconds: float
    tie_break: str = "equal scores: lower item index first"
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "relevance": self.relevance,
            "n_users": self.n_users,
            "n_users_skipped": self.n_users_skipped,
            "n_relevant": self.n_relevant,
            "n_relevant_excluded": self.n_relevant_excluded,
            "block_users": self.block_users,
            "seconds": self.seconds,
            "tie_break": self.tie_break,
        }


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))  # (k,) 1/log2(i+1) for positions i = 1..k


def graded_gain(rating: np.ndarray, relevance: float) -> np.ndarray:
    """Elliot's graded gain 2^(r - t + 1) - 1 for r >= t, else 0."""
    r = np.asarray(rating, dtype=np.float64)
    return np.where(r >= relevance, np.exp2(r - relevance + 1.0) - 1.0, 0.0)


def user_metrics(
    hits: np.ndarray,
    gains: np.ndarray,
    n_relevant: np.ndarray,
    ideal_gains: Callable[[int], np.ndarray],
    metric: RankingMetric,
) -> np.ndarray:
    """Per-user values of one metric from the hit matrix of the lists.

    Args:
        hits: (n_users, >= k) bool, position i holds a relevant item.
        gains: (n_users, >= k) graded gain at each position (0 for a miss).
        n_relevant: (n_users,) |R_u| >= 1.
        ideal_gains: k -> (n_users,) ideal graded DCG@k.
        metric: a per-user metric (not coverage or Gini).
    """
    k = metric.k
    h = hits[:, :k]
    n_hits = h.sum(axis=1)
    disc = _discounts(h.shape[1])
    if metric.kind == "precision":
        return n_hits / k
    if metric.kind == "recall":
        return n_hits / n_relevant
    if metric.kind == "recall_trunc":
        return n_hits / np.minimum(n_relevant, k)
    if metric.kind == "hit":
        return (n_hits > 0).astype(np.float64)
    if metric.kind == "ndcg":
        ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])[np.minimum(n_relevant, k)]
        return (h * disc).sum(axis=1) / ideal
    if metric.kind == "ndcg_graded":
        return (gains[:, :k] * disc).sum(axis=1) / ideal_gains(k)
    if metric.kind == "map":
        precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
        return (precision_at * h).sum(axis=1) / np.minimum(n_relevant, k)
    if metric.kind == "mrr":
        first = np.argmax(h, axis=1)
        return np.where(n_hits > 0, 1.0 / (first + 1), 0.0)
    raise ValueError(f"{metric} is not a per-user metric")


def _ideal_graded_dcg(
    row: np.ndarray, rating: np.ndarray, n_rows: int, relevance: float, k: int
) -> np.ndarray:
    """(n_rows,) ideal graded DCG@k: each row's relevant gains sorted descending, discounted by
    position, first k. ``row`` (sorted) and ``rating`` list the relevant test pairs."""
    g = graded_gain(rating, relevance)
    order = np.lexsort((-g, row))
    g, row = g[order], row[order]
    starts = np.searchsorted(row, np.arange(n_rows))
    pos = np.arange(len(row)) - starts[row]
    keep = pos < k
    return np.bincount(row[keep], g[keep] * _discounts(k)[pos[keep]], minlength=n_rows)


def gini_index(counts: np.ndarray) -> float:
    """Gini index of non-negative counts (RecBole's ``GiniIndex``); 0 when all are zero."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(c)
    total = c.sum()
    if n == 0 or total == 0:
        return 0.0
    j = np.arange(1, n + 1)
    return float(np.sum((2 * j - n - 1) * c) / (n * total))


def evaluate_ranking(
    model: Any,
    train: Ratings,
    test: Ratings,
    *,
    val: Ratings | None = None,
    metrics: str | Iterable[str | RankingMetric] | None = None,
    relevance: float | None = None,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
    keep_per_user: bool = False,
) -> RankingResult:
    """Full-ranking metrics of a fitted model on ``test`` (see the module docstring).

    Args:
        model: a fitted :class:`~autorec.models.base.Recommender` (or any object with its
            ``_score_block``, ``n_users`` and ``n_items``).
        train: the training ratings; each user's items are excluded from their list.
        test: the ratings that define relevance.
        val: validation ratings, excluded too.
        metrics: ranking metrics (``"ndcg@10,recall@20"``, names, or :class:`RankingMetric`);
            rating metrics in the list are ignored here. None: every metric at 10 and 20.
        relevance: the threshold; None = :func:`default_relevance` of the scale.
        max_block_bytes: working-memory bound of one scored block (see the module docstring).
        keep_per_user: also return each metric's per-user values (``per_user``).

    Raises:
        ConfigError: vocabularies that differ, or a threshold outside the rating scale.
    """
    started = time.perf_counter()
    parts = [train] if val is None else [train, val]
    for name, part in (("validation", val), ("test", test)):
        if part is not None and (part.users != train.users or part.items != train.items):
            raise ConfigError(f"{name} ratings must share the training vocabularies")
    n_users, n_items = int(model.n_users), int(model.n_items)
    if (n_users, n_items) != (train.n_users, train.n_items):
        raise ConfigError(
            f"the model has {n_users} users x {n_items} items but the ratings "
            f"{train.n_users} x {train.n_items}"
        )
    if metrics is None:
        wanted = DEFAULT_RANKING_METRICS
    else:
        wanted = parse_metrics(metrics)[1]
    if not wanted:
        raise ConfigError("no ranking metric asked for")
    low, high = test.rating_scale
    if relevance is None:
        relevance = default_relevance(test.rating_scale, rating_step(*parts, test))
    elif not low <= relevance <= high:
        raise ConfigError(f"relevance {relevance} is outside the rating scale {low}..{high}")
    relevance = float(relevance)

    excluded = _exclusions(n_users, parts)
    # Relevant test pairs, one per (user, item) (a duplicate keeps its highest rating), minus
    # those the user also rated in train/validation (they are never candidates).
    is_rel = test.rating >= relevance
    rel = _UserLists.build(
        n_users, test.user_idx[is_rel], test.item_idx[is_rel], test.rating[is_rel]
    )
    key = rel.keys(n_items)
    excl_key = excluded.keys(n_items)
    at = np.minimum(np.searchsorted(excl_key, key), max(len(excl_key) - 1, 0))
    dropped = excl_key[at] == key if len(excl_key) else np.zeros(len(key), dtype=bool)
    n_relevant_excluded = int(dropped.sum())
    key, rel_r = key[~dropped], rel.rating[~dropped]
    relevant = _UserLists.build(n_users, key // n_items, key % n_items, rel_r)
    n_rel_per_user = np.diff(relevant.indptr)
    users = np.flatnonzero(n_rel_per_user > 0)
    n_skipped = int((np.bincount(test.user_idx, minlength=n_users) > 0).sum() - len(users))

    k_max = max(m.k for m in wanted)
    per_user_metrics = [m for m in wanted if m.kind not in ("coverage", "gini")]
    list_metrics = [m for m in wanted if m.kind in ("coverage", "gini")]
    sums = {str(m): 0.0 for m in per_user_metrics}
    per_user = {str(m): np.empty(len(users)) for m in per_user_metrics} if keep_per_user else {}
    counts = {m.k: np.zeros(n_items, dtype=np.int64) for m in list_metrics}
    for start, block in _blocks(users, n_items, max_block_bytes):
        top, n_candidates = _block_top(model, block, excluded, k_max)  # (b, k'), (b,)
        valid = np.arange(top.shape[1])[None, :] < n_candidates[:, None]  # (b, k')
        b_row, b_item, b_rating = relevant.gather(block)
        b_key = b_row * n_items + b_item  # sorted: rows ascending, items ascending within
        top_key = np.arange(len(block))[:, None] * n_items + top  # (b, k')
        at = np.minimum(np.searchsorted(b_key, top_key), len(b_key) - 1)
        hits = (b_key[at] == top_key) & valid  # (b, k')
        gains = np.where(hits, graded_gain(b_rating[at], relevance), 0.0)  # (b, k')
        n_rel = n_rel_per_user[block]

        ideal = functools.partial(_ideal_graded_dcg, b_row, b_rating, len(block), relevance)

        for m in per_user_metrics:
            values = user_metrics(hits, gains, n_rel, ideal, m)
            sums[str(m)] += float(values.sum())
            if keep_per_user:
                per_user[str(m)][start : start + len(block)] = values
        for k, count in counts.items():
            kk = min(k, top.shape[1])
            count += np.bincount(top[:, :kk][valid[:, :kk]], minlength=n_items)

    out: dict[str, float] = {}
    n_eval = len(users)
    for m in wanted:
        if m.kind == "coverage":
            out[str(m)] = float((counts[m.k] > 0).sum() / n_items)
        elif m.kind == "gini":
            out[str(m)] = gini_index(counts[m.k])
        else:
            out[str(m)] = sums[str(m)] / n_eval if n_eval else math.nan
    seconds = time.perf_counter() - started
    log.info(
        "ranking: %d users (%d skipped), relevance >= %g, %.2f s",
        n_eval,
        n_skipped,
        relevance,
        seconds,
    )
    return RankingResult(
        metrics=out,
        relevance=relevance,
        n_users=n_eval,
        n_users_skipped=n_skipped,
        n_relevant=int(len(key)),
        n_relevant_excluded=n_relevant_excluded,
        block_users=block_size(n_items, max_block_bytes),
        seconds=seconds,
        per_user=per_user,
    )


def select_on_validation(
    make_model: Callable[[Any], Any],
    values: Sequence[Any],
    train: Ratings,
    val: Ratings,
    *,
    metric: str | RankingMetric = "ndcg@10",
    relevance: float | None = None,
) -> tuple[Any, dict[Any, float]]:
    """The value of ``values`` whose model, fitted on ``train``, ranks ``val`` best.

    ``make_model(value)`` returns an unfitted model; each is fitted on ``train`` and its lists
    (train items excluded) are scored against ``val`` as the test set. Ties: the first value.
    Returns the chosen value and every value's score.
    """
    chosen = parse_metrics([metric] if isinstance(metric, RankingMetric) else metric)[1]
    if len(chosen) != 1:
        raise ConfigError(f"select_on_validation takes one ranking metric, got {metric!r}")
    target = chosen[0]
    scores: dict[Any, float] = {}
    for value in values:
        model = make_model(value).fit(train)
        result = evaluate_ranking(model, train, val, metrics=[target], relevance=relevance)
        scores[value] = result.metrics[str(target)]
        log.info("validation %s = %.4f at %r", target, scores[value], value)
    best = max(scores, key=lambda v: scores[v])  # max keeps the first of equal scores
    return best, scores
