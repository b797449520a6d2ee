"""The model contract shared by every algorithm.

The base class owns the policy, a model writes only its scoring (as Surprise's ``AlgoBase`` and
cornac's ``Recommender`` do):

* ``fit(train, val=None) -> self`` records the vocabularies, the rating scale and which users and
  items have a training rating, fits the fallback predictor, then calls the model's ``_fit``.
* ``predict(user_idx, item_idx)`` is vectorised over aligned index arrays. A pair whose user or item
  has no training rating (or whose index is -1: an id outside the vocabulary) gets the fallback;
  an index >= n_users / n_items raises ``IndexError``. Every prediction is clipped to the scale.
* ``recommend(user_id, k)`` ranks the items the user has not rated in training on the model's
  raw ranking score (``by="score"``) or on the predicted rating (``by="rating"``).
* Ranking hooks: ``_rank_score(user_idx, item_idx)`` is the raw score lists are ranked on. By
  default it is the unclipped prediction (``_score`` on known pairs, the fallback on the others),
  so that items predicted above the top of the scale do not tie; a ranking model whose score is
  not a rating (popularity, EASE) overrides it. ``_score_block(user_idx)`` gives the same scores
  for every item of a block of users, (n_block, n_items); a model that can compute whole rows at
  once (a dense matrix product) overrides it. :mod:`autorec.ranking` and ``recommend`` use both.
* ``fold_in(ratings)`` / ``recommend_new_user(ratings, k)``: a user the model was not trained
  on, from ``{raw item id: rating}``, without retraining. The base class owns the policy (every
  rating on the scale, unknown item ids listed in one error or left out with
  ``ignore_unknown``, the items rated excluded from the list, optional shrinkage of the ranking
  toward the bias baseline by item support); a model writes ``_fold_in_user(item_idx, rating)
  -> state`` (fit the user's own parameters, every trained weight frozen) and
  ``_fold_in_scores(state)`` (every item's prediction), and ``_fold_in_rank`` when it ranks on
  a score that is not its rating. A model without these hooks raises ``ConfigError``
  saying so.
* ``save(dir)`` / ``load(dir)``: weights in safetensors plus ``model.json`` with the config,
  vocabularies and versions. Loading never unpickles anything.

The fallback is one rule for every model (``BaseConfig.fallback``), so that models compared on
one split answer their cold pairs alike: ``"bias"`` (the default) is the damped bias baseline
mu + b_u + b_i, fitted on the training ratings whatever the model; ``"constant"`` is Sedhain et
al. (2015), Sec. 3's "default rating of 3" for test users or items without training ratings,
the middle of the scale (``fallback_rating`` overrides the value).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np

from autorec.data.ratings import IdIndex, Ratings
from autorec.errors import ConfigError
from autorec.models.biases import fit_biases
from autorec.ranking import top_k

if TYPE_CHECKING:
    from autorec.models.training import Checkpointer, Progress

log = logging.getLogger(__name__)

# 2: content-addressed weights, sha256 of weights and model.json, tensor shapes (persistence.py)
FORMAT_VERSION = 2


@dataclass(frozen=True)
class BaseConfig:
    """Fields every model shares: the fallback policy and the seed."""

    #: Trains epoch by epoch (:class:`autorec.models.training.IterativeConfig` sets it).
    iterative: ClassVar[bool] = False
    #: Renamed fields: old name -> (value -> (new name, new value)), so that model folders
    #: saved before a rename still load.
    legacy_fields: ClassVar[dict[str, Callable[[Any], tuple[str, Any]]]] = {}

    # The prediction for a pair whose user or item has no training rating, the same rule for
    # every model so that a comparison scores cold pairs alike (issue 15). "bias": the damped
    # bias baseline mu + b_u + b_i (Koren 2010, Sec. 2.1), the default: on scales whose middle
    # sits far below the mean rating it beats the constant. "constant": the middle of the scale,
    # Sedhain et al. 2015, Sec. 3's "default rating of 3" on 1..5 (what `reproduce` uses).
    fallback: Literal["constant", "bias"] = "bias"
    # None means the middle of the data's rating scale (3 on 1..5).
    fallback_rating: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fallback not in ("constant", "bias"):
            raise ConfigError(f"fallback must be 'constant' or 'bias', got {self.fallback!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        names = {f.name: f for f in dataclasses.fields(cls)}
        values = dict(
            cls.legacy_fields[k](v) if k in cls.legacy_fields else (k, v) for k, v in values.items()
        )
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        # JSON has no tuples: sequences (e.g. hidden layer sizes) come back as lists.
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@dataclass
class FitOptions:
    """The keyword options of :meth:`Recommender.fit`, read by the training loop
    (:func:`autorec.models.training.run_epochs`)."""

    # Returning True asks the loop to stop after this epoch (pruning, FitHistory.pruned).
    progress: Callable[[Progress], bool | None] | None = None
    checkpoint: Checkpointer | None = None
    resume: bool = False


@dataclass
class FitHistory:
    """Per-epoch training record (filled by iterative models; ``val_rmse`` stays empty when
    training has no validation set)."""

    train_rmse: list[float] = dataclasses.field(default_factory=list)
    val_rmse: list[float] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch whose weights were kept; 0 when not iterative
    pruned: bool = False  # the progress hook stopped the fit early (run_epochs)

    @property
    def n_epochs(self) -> int:
        return len(self.epoch_seconds)

    def record(
        self,
        logger: logging.Logger,
        epoch: int,
        train_rmse: float,
        val_rmse: float | None,
        seconds: float,
        note: str = "",
    ) -> None:
        """Append one epoch and log it as one line (``note``, e.g. ``"CD-3"``, after the epoch);
        ``val_rmse`` None: no validation set."""
        self.train_rmse.append(train_rmse)
        if val_rmse is not None:
            self.val_rmse.append(val_rmse)
        self.epoch_seconds.append(seconds)
        logger.info(
            "epoch %d%s train_rmse=%.4f%s seconds=%.2f",
            epoch,
            f" {note}" if note else "",
            train_rmse,
            "" if val_rmse is None else f" val_rmse={val_rmse:.4f}",
            seconds,
        )

    @property
    def best_val_rmse(self) -> float | None:
        return self.val_rmse[self.best_epoch - 1] if self.val_rmse and self.best_epoch else None


@dataclass(frozen=True)
class FoldedUser:
    """A new user folded into a trained model (:meth:`Recommender.fold_in`).

    Attributes:
        item_idx: (n_rated,) int64 indices of the items the user rated (ignored ids left out).
        rating: (n_rated,) float64 their ratings.
        predictions: (n_items,) float32 predicted rating of every item, clipped to the scale
            (the fallback for items without training ratings), as :meth:`Recommender.predict`.
        scores: (n_items,) float64 raw ranking score of every item, as
            :meth:`Recommender._score_block` gives a training user (the unclipped prediction,
            or a ranking model's own score).
        user_bias: the user's damped bias ``sum_i (r_ui - mu - b_i) / (15 + n_u)`` against the
            fallback's bias baseline (what support shrinkage shrinks toward).
        ignored: raw ids left out because the model does not know them (``ignore_unknown``).
    """

    item_idx: np.ndarray
    rating: np.ndarray
    predictions: np.ndarray
    scores: np.ndarray
    user_bias: float
    ignored: tuple[object, ...] = ()


class Recommender(ABC):
    """Base class of every model. Subclasses set ``name``, ``config_class`` and implement
    ``_fit``, ``_score`` and (when they hold weights) ``_state`` / ``_load_state``."""

    name: ClassVar[str]
    config_class: ClassVar[type[BaseConfig]]
    #: Hyperparameters tuned on validation by ``autorec evaluate`` (name -> candidate values).
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: Grid keys whose range has no natural top (a weight decay whose useful scale depends on
    #: the data): when validation picks the largest value, the protocol tries larger ones
    #: (:func:`autorec.protocol.run_protocol`).
    open_above: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: BaseConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config.replace(**overrides) if overrides else config
        self.history = FitHistory()
        self._fitted = False

    @property
    def model_name(self) -> str:
        """The registry name (``--model``) this model is saved and loaded under."""
        return self.name

    # -- the contract ------------------------------------------------------------------------
    def fit(
        self,
        train: Ratings,
        val: Ratings | None = None,
        *,
        progress: Callable[[Progress], None] | None = None,
        checkpoint: Checkpointer | None = None,
        resume: bool = False,
    ) -> Self:
        """Fit on ``train``; ``val`` (same vocabularies) is used for early stopping only.

        Iterative models (config derived from
        :class:`~autorec.models.training.IterativeConfig`) also take:

        * ``progress``: called after every epoch with a
          :class:`~autorec.models.training.Progress` (epoch / total, best validation RMSE so
          far, elapsed seconds);
        * ``checkpoint``: a :class:`~autorec.models.training.Checkpointer`
          (``Checkpointer(dir, every_epochs=5, every_seconds=600)``): the training state is
          written atomically to ``dir/checkpoint.safetensors`` when due and on SIGINT/SIGTERM,
          which then raise :class:`~autorec.errors.TrainingInterrupted` naming the file;
        * ``resume``: continue from that checkpoint when it exists (same config and data; with
          one torch thread the result is bit-identical to an uninterrupted fit).

        Raises:
            ConfigError: an empty training set, other vocabularies, or checkpoint/resume for a
                model that is not iterative.
        """
        if (checkpoint is not None or resume) and not self.config_class.iterative:
            raise ConfigError(
                f"{self.model_name} trains in one step: there is nothing to checkpoint or resume"
            )
        if train.n_ratings == 0:
            raise ConfigError("cannot fit on an empty training set")
        if val is not None and (val.users != train.users or val.items != train.items):
            raise ConfigError("validation ratings must share the training vocabularies")
        self.users: IdIndex = train.users
        self.items: IdIndex = train.items
        self.n_users = train.n_users
        self.n_items = train.n_items
        self.rating_scale = train.rating_scale
        self.global_mean = float(train.rating.mean(dtype=np.float64))
        self.user_seen = train.user_counts() > 0
        self.item_seen = train.item_counts() > 0
        self._fit_fallback(train)
        self.history = FitHistory()
        self._fit_options = FitOptions(progress, checkpoint, resume)
        try:
            self._fit(train, val)
        finally:
            self._fit_options = FitOptions()
        self._fitted = True
        return self

    def predict(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Predicted ratings (float32) for aligned index arrays; -1 = "not in the vocabulary"."""
        self._check_fitted()
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        items = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ValueError(f"user_idx has {users.size} entries but item_idx has {items.size}")
        for name, arr, n in (("user_idx", users, self.n_users), ("item_idx", items, self.n_items)):
            bad = np.flatnonzero((arr < -1) | (arr >= n))
            if len(bad):
                raise IndexError(f"{name}[{bad[0]}] = {arr[bad[0]]} is outside -1..{n - 1}")
        low, high = self.rating_scale
        return np.clip(self._unclipped(users, items), low, high).astype(np.float32)

    def _unclipped(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64 predictions before clipping: ``_score`` where the model knows the pair, the
        fallback elsewhere."""
        known = self.known_mask(users, items)
        out = self._fallback_scores(users, items)
        if known.any():
            out[known] = self._score(users[known], items[known])
        return out

    def known_mask(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """True where the model scores the pair itself (both have training ratings)."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        ok = (users >= 0) & (items >= 0)
        ok[ok] = self.user_seen[users[ok]] & self.item_seen[items[ok]]
        return ok

    def recommend(
        self,
        user_id: object,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        by: Literal["score", "rating"] = "score",
    ) -> list[tuple[object, float]]:
        """Top-``k`` items for a raw user id, as ``(item_id, predicted rating)``, best first.

        ``by="score"`` (the default) ranks on the model's raw ranking score (:meth:`_score_block`,
        the lists :mod:`autorec.ranking` evaluates): a prediction above the top of the scale
        still outranks a lower one, and a ranking model (``pop``, ``ease``) ranks on its own
        score. ``by="rating"`` ranks on the predicted rating as :meth:`predict` returns it
        (clipped to the scale, so items predicted at or above the top tie). Either way the value
        returned with each item is its predicted rating, so with ``by="score"`` the values need
        not be in descending order. Items the user rated in training are excluded
        (``exclude_seen``). Equal scores: the lower item index first
        (:func:`autorec.ranking.top_k`).

        Raises:
            KeyError: the user id is not in the vocabulary.
            ValueError: ``k < 1`` or an unknown ``by``.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if by not in ("score", "rating"):
            raise ValueError(f"by must be 'score' or 'rating', got {by!r}")
        user_idx = self.users.index_of(user_id)
        if user_idx < 0:
            raise KeyError(f"unknown user id {user_id!r}")
        if by == "score":
            scores = np.array(self._score_block(np.array([user_idx]))[0], dtype=np.float64)
        else:
            scores = self.predict(np.full(self.n_items, user_idx), np.arange(self.n_items))
            scores = scores.astype(np.float64)
        if exclude_seen:
            scores[self._seen_items(user_idx)] = -np.inf
        n_candidates = int(np.isfinite(scores).sum())
        if n_candidates == 0:
            return []
        top = top_k(scores[None, :], min(k, n_candidates))[0]  # (k,) item indices
        rating = self.predict(np.full(len(top), user_idx), top)
        return [(self.items.ids[i].item(), float(r)) for i, r in zip(top, rating, strict=True)]

    # -- folding in a new user ---------------------------------------------------------------
    def fold_in(
        self,
        ratings: dict[object, float] | tuple[Sequence[object], Sequence[float]],
        *,
        ignore_unknown: bool = False,
    ) -> FoldedUser:
        """Predictions for a user the model was not trained on, from their ratings, without
        retraining.

        ``ratings`` is ``{raw item id: rating}`` or aligned ``(item ids, ratings)``. The base
        class owns the policy: every rating must lie on the model's scale, each item is given
        once, and an item id outside the vocabulary is an error listing every such id (or is
        left out with ``ignore_unknown``). The model's hooks do the rest:
        ``_fold_in_user(item_idx, rating) -> state`` fits the user's own parameters with every
        trained weight frozen, ``_fold_in_scores(state)`` predicts every item and
        ``_fold_in_rank(state, scores)`` gives the ranking score (default: the prediction).
        Items without training ratings get the fallback, as for a training user.

        Raises:
            ConfigError: no ratings, a rating off the scale or not finite, an item given twice,
                unknown item ids (without ``ignore_unknown``), or a model that cannot fold in.
        """
        self._check_fitted()
        item_idx, rating, ignored = self._fold_in_input(ratings, ignore_unknown)
        state = self._fold_in_user(item_idx, rating)
        scores = np.asarray(self._fold_in_scores(state), dtype=np.float64).copy()  # (n_items,)
        unseen = np.flatnonzero(~self.item_seen)
        if len(unseen):
            scores[unseen] = self._fallback_scores(np.full(len(unseen), -1), unseen)
        low, high = self.rating_scale
        predictions = np.clip(scores, low, high).astype(np.float32)
        rank = np.asarray(self._fold_in_rank(state, scores), dtype=np.float64)
        return FoldedUser(
            item_idx, rating, predictions, rank, self._fold_in_bias(item_idx, rating), ignored
        )

    def recommend_new_user(
        self,
        ratings: dict[object, float] | tuple[Sequence[object], Sequence[float]],
        k: int = 10,
        *,
        exclude_rated: bool = True,
        by: Literal["score", "rating"] = "score",
        support_shrinkage: float = 0.0,
        ignore_unknown: bool = False,
    ) -> list[tuple[object, float]]:
        """Top-``k`` items for a new user (:meth:`fold_in`), as ``(item_id, predicted rating)``,
        best first; the items rated are excluded (``exclude_rated``). ``by`` as in
        :meth:`recommend`; equal scores: the lower item index first.

        ``support_shrinkage`` s > 0 ranks on the prediction shrunk toward the bias baseline by
        the item's number of training ratings n_i:
        ``b_ui + n_i / (n_i + s) * (r_hat_ui - b_ui)`` with ``b_ui = mu + b_u + b_i``. An item
        the model saw rated once or twice then cannot top the list on a confident-looking 5.0
        (docs/results/fold-in.md chooses s on validation). 0 ranks on the raw score. Ranking
        models (``pop``, ``ease``), whose score is not a rating, refuse it.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if by not in ("score", "rating"):
            raise ValueError(f"by must be 'score' or 'rating', got {by!r}")
        if not (support_shrinkage >= 0 and math.isfinite(support_shrinkage)):
            raise ConfigError(f"support_shrinkage must be >= 0, got {support_shrinkage}")
        if support_shrinkage > 0 and not self._ranks_on_rating():
            raise ConfigError(
                f"{self.model_name} ranks on a score that is not a rating: "
                "support shrinkage does not apply"
            )
        folded = self.fold_in(ratings, ignore_unknown=ignore_unknown)
        scores = (folded.scores if by == "score" else folded.predictions).astype(np.float64)
        if support_shrinkage > 0:
            scores = self.shrink_by_support(scores, folded.user_bias, support_shrinkage)
        if exclude_rated:
            scores[folded.item_idx] = -np.inf
        n_candidates = int(np.isfinite(scores).sum())
        if n_candidates == 0:
            return []
        top = top_k(scores[None, :], min(k, n_candidates))[0]  # (k,) item indices
        return [(self.items.ids[i].item(), float(folded.predictions[i])) for i in top]

    def shrink_by_support(
        self, scores: np.ndarray, user_bias: float | np.ndarray, shrinkage: float
    ) -> np.ndarray:
        """``b_ui + n_i / (n_i + s) (score - b_ui)``, ``b_ui = mu + b_u + b_i`` the fallback's bias
        baseline; ``scores`` (..., n_items), ``user_bias`` a scalar or broadcastable to it."""
        support = self.item_support()
        weight = support / (support + shrinkage)  # (n_items,)
        base = self._fallback_mean + np.asarray(user_bias, dtype=np.float64) + self._item_bias
        return base + weight * (scores - base)

    def item_support(self) -> np.ndarray:
        """(n_items,) float64 number of training ratings of each item."""
        return np.bincount(self._seen_item_idx, minlength=self.n_items).astype(np.float64)

    def _fold_in_input(
        self,
        ratings: dict[object, float] | tuple[Sequence[object], Sequence[float]],
        ignore_unknown: bool,
        index: IdIndex | None = None,
        what: str = "item",
    ) -> tuple[np.ndarray, np.ndarray, tuple[object, ...]]:
        """(item_idx, rating, ignored ids) of a new user's ratings, checked (see fold_in);
        ``index``/``what``: the user vocabulary and "user" for a new item's ratings."""
        index = self.items if index is None else index
        if isinstance(ratings, dict):
            ids, values = list(ratings), list(ratings.values())
        else:
            ids, values = list(ratings[0]), list(ratings[1])
            if len(ids) != len(values):
                raise ConfigError(f"{len(ids)} item ids but {len(values)} ratings")
        if not ids:
            raise ConfigError(f"folding in needs at least one ({what} id, rating)")
        rating = np.asarray(values, dtype=np.float64)
        low, high = self.rating_scale
        bad = np.flatnonzero(~np.isfinite(rating) | (rating < low) | (rating > high))
        if len(bad):
            shown = ", ".join(f"{ids[i]!r}: {values[i]}" for i in bad[:5])
            raise ConfigError(f"ratings outside the scale {low:g}..{high:g}: {shown}")
        item_idx = index.indices(ids).astype(np.int64)
        unknown = np.flatnonzero(item_idx < 0)
        ignored = tuple(ids[i] for i in unknown)
        if len(unknown) and not ignore_unknown:
            shown = ", ".join(repr(v) for v in ignored[:10])
            more = f" and {len(ignored) - 10} more" if len(ignored) > 10 else ""
            raise ConfigError(
                f"{len(ignored)} unknown {what} id(s), not in the model's vocabulary: "
                f"{shown}{more} (ignore_unknown / --ignore-unknown leaves them out)"
            )
        keep = item_idx >= 0
        item_idx, rating = item_idx[keep], rating[keep]
        if not len(item_idx):
            raise ConfigError(f"none of the rated {what}s is known to the model")
        if len(np.unique(item_idx)) != len(item_idx):
            raise ConfigError(f"the same {what} is rated twice: give each {what} once")
        return item_idx, rating, ignored

    def _fold_in_bias(self, item_idx: np.ndarray, rating: np.ndarray) -> float:
        """The new user's damped bias against the fallback's baseline: one step of
        :func:`autorec.models.biases.fit_biases` with the fallback's lambda_u."""
        residual = rating - self._fallback_mean - self._item_bias[item_idx]
        return float(residual.sum() / (self._fallback_regs()[0] + len(rating)))

    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> Any:
        """Fit a new user's own parameters from their ratings, every trained weight frozen;
        returns whatever ``_fold_in_scores`` needs. Default: the model cannot."""
        raise ConfigError(
            f"model {self.model_name} cannot fold in a new user; retrain it with the user's ratings"
        )

    def _fold_in_scores(self, state: Any) -> np.ndarray:
        """(n_items,) unclipped predicted ratings of a folded-in user (``state`` from
        ``_fold_in_user``); entries of items without training ratings are overwritten."""
        raise NotImplementedError

    def _ranks_on_rating(self) -> bool:
        """Whether a folded-in user's ranking score is the predicted rating (so support
        shrinkage applies); default: unless the model overrides ``_fold_in_rank``."""
        return type(self)._fold_in_rank is Recommender._fold_in_rank

    def _fold_in_rank(self, state: Any, scores: np.ndarray) -> np.ndarray:
        """(n_items,) ranking scores of a folded-in user; default: the predictions ``scores``
        (a ranking model overrides it, as it overrides ``_rank_score``)."""
        return scores

    @classmethod
    def hands_over(cls, config: BaseConfig) -> bool:
        """Whether a model of ``config`` may hand its refit anything
        (:meth:`retrain_overrides`), known before fitting: the protocol then keeps the
        validation-stage model, which a grid worker must send back. Default: when the class
        overrides :meth:`retrain_overrides`."""
        return cls.retrain_overrides is not Recommender.retrain_overrides

    def retrain_overrides(self) -> dict[str, Any]:
        """Config fields that a refit on train + validation (the protocol's retrain, which has
        no validation set left) takes from this validation-stage fit. Default: none (the
        protocol itself fixes an iterative model's epochs); an ensemble hands over its blend
        weights and its members' epochs."""
        return {}

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save into the folder ``path``: content-addressed safetensors weights, then
        ``model.json`` (the commit point) with hashes, config, vocabularies and versions.

        Atomic (a reader sees the old model or the new one), locked against a second writer,
        and refused over an existing model unless ``overwrite``: see
        :mod:`autorec.models.persistence`.
        """
        from autorec.models.persistence import save_model

        return save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load and verify a model saved by :meth:`save` (any registered model when called on
        the base); anything damaged or edited raises one ``ModelFileError``."""
        from autorec.models.persistence import load_model

        return load_model(cls, path)

    # -- for subclasses ----------------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        """Learn the model's parameters. Raise ModelFitError on divergence."""

    @abstractmethod
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Raw scores for pairs whose user and item both have training ratings."""

    def _rank_score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Raw ranking scores (float64) for aligned in-vocabulary index arrays (no -1).

        Default: the unclipped prediction, ``_score`` on the pairs the model knows and the
        fallback on the others. A model whose ranking score is not its rating prediction
        overrides it and then answers every pair itself.
        """
        return self._unclipped(
            np.asarray(user_idx, dtype=np.int64), np.asarray(item_idx, dtype=np.int64)
        )

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """(n_block, n_items) float64 ranking scores of every item for each user of the block:
        ``_rank_score`` of every (user, item) pair of the block.

        Default: ``_rank_score`` on the flattened grid (16 bytes of indices per cell besides the
        scores). A model that can score whole rows at once (a matrix product) overrides it, and
        :meth:`_block_with_fallback` then puts the fallback where the model does not know the
        pair.
        """
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        pair_users = np.repeat(users, self.n_items)  # (n_block * n_items,)
        pair_items = np.tile(np.arange(self.n_items, dtype=np.int64), len(users))
        scores = self._rank_score(pair_users, pair_items)
        return np.asarray(scores, dtype=np.float64).reshape(len(users), self.n_items)

    def _block_with_fallback(self, user_idx: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``scores`` (n_block, n_items) with the fallback written, in place, over the cells of
        pairs the model does not know (a user or item without training ratings)."""
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        unknown = ~(self.user_seen[users][:, None] & self.item_seen[None, :])  # (n_block, n_items)
        rows, cols = np.nonzero(unknown)
        if len(rows):
            scores[rows, cols] = self._fallback_scores(users[rows], cols)
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays to save (float32 / int arrays)."""
        return {}

    def _load_state(  # noqa: B027 - optional hook: models without weights keep nothing
        self, state: dict[str, np.ndarray], extra: dict[str, Any]
    ) -> None:
        """Restore what :meth:`_state` and :meth:`_extra_meta` returned."""

    def _extra_meta(self) -> dict[str, Any]:
        """JSON-able values to save beside the config."""
        return {}

    # -- fallback ----------------------------------------------------------------------------
    def _fallback_regs(self) -> tuple[float, float]:
        """(lambda_u, lambda_i) of the fallback's damped biases: fit_biases' defaults (Koren
        2010's damping; the bias model's defaults). A model whose config tunes them overrides
        this."""
        return 15.0, 10.0

    def _fit_fallback(self, train: Ratings) -> None:
        self._fallback_mean = self.global_mean
        reg_user, reg_item = self._fallback_regs()
        self._user_bias, self._item_bias = fit_biases(
            train, self.global_mean, reg_user=reg_user, reg_item=reg_item
        )
        # Items of each user, grouped by user (for recommend's "exclude seen"); no CSR cache
        # on the Ratings, which would keep an int64 order array as large as the data alive.
        order = np.argsort(train.user_idx, kind="stable")
        self._seen_item_idx = train.item_idx[order]
        del order
        self._seen_indptr = np.zeros(train.n_users + 1, dtype=np.int64)
        np.cumsum(train.user_counts(), out=self._seen_indptr[1:])

    def _fallback_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        low, high = self.rating_scale
        if self.config.fallback == "constant":
            value = (
                self.config.fallback_rating
                if self.config.fallback_rating is not None
                else (low + high) / 2.0
            )
            return np.full(users.shape, value, dtype=np.float64)
        out = np.full(users.shape, self._fallback_mean, dtype=np.float64)
        has_user = users >= 0
        has_item = items >= 0
        out[has_user] += self._user_bias[users[has_user]]
        out[has_item] += self._item_bias[items[has_item]]
        return out

    def _seen_items(self, user_idx: int) -> np.ndarray:
        return self._seen_item_idx[self._seen_indptr[user_idx] : self._seen_indptr[user_idx + 1]]

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
