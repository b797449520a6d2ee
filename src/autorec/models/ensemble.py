"""An ensemble: a blend of several member models with weights fitted on the validation set only.

Model: ``r_hat_ui = b + sum_m w_m r_hat^m_ui`` over the members' unclipped predicted ratings
(the base class clips the blend; ``recommend`` ranks on the blend before clipping). Cold pairs
(a user or item without training ratings) get the ensemble's fallback, which every member
shares: the ensemble hands its ``fallback``, ``fallback_rating`` and ``seed`` to every member.

Members are given as specs ``name[:field=value[:field=value...]]``, a registered model name and
config overrides (``"u-autorec:hidden=100"``, ``"i-autorec:lam=300:seed=1"``; a tuple field
separates its values by ``/``: ``hidden=500/250/500``). Member hyperparameters are fixed by the
spec (the protocol's grid search tunes the ensemble's own fields, not the members'); epochs are
early-stopped on validation by each iterative member as it does alone.

Fitting, ``fit(train, val)`` (the validation stage):

1. every member is fitted on ``train``, early-stopping on ``val``;
2. the blend weights are fitted on ``val`` only, on the pairs the model knows (the others get
   the fallback whatever the weights). Ridge least squares with an unpenalised intercept,
   shrunk toward the simple average rather than toward zero (Breiman 1996, "Stacked
   regressions", fits such blends on held-out predictions; the shrinkage target is ours):
   ``min_{b, d} ||y - P a - b - P d||^2 + alpha n ||d||^2``, ``a = 1/M``, ``w = a + d``,
   so alpha -> infinity gives the average plus a constant and alpha = 0 ordinary least
   squares. alpha (per rating, so it does not scale with the validation size) is chosen from
   :data:`RIDGE_ALPHAS` by 5-fold cross-validation (``config.ridge`` fixes it);
3. ridge against the plain average (``b = 0``, ``w = 1/M``): validation is cut at random into
   two halves; ridge is fitted on the first (alpha by 5-fold CV inside it) and both are scored
   on the second. The rule: ridge is kept when its held-out RMSE is lower than the average's,
   then refitted on the whole validation set with the alpha chosen; otherwise the average is
   kept (``blend="ridge"`` / ``"average"`` forces one). With fewer than
   :data:`MIN_RIDGE_PAIRS` validation pairs the average is kept whatever ``blend`` says.

Cross-fitted weights, ``blend_folds = K >= 2`` (stacking on out-of-fold predictions, Breiman
1996; Wolpert 1992): a 10% validation set is few ratings to weigh many members on (8,000 on
ML-100k's u1 fold, and the held-out half of step 3 is 4,000). With K folds the weights of
steps 2-3 are fitted on every rating of ``train + val`` instead: train + val is cut at random
into K folds; for each fold, fresh members are fitted on the other K - 1 (early-stopping on the
fold) and predict the fold, so every prediction is of a rating its members never trained on.
The members kept (step 1, fitted on ``train``, early-stopped on ``val``) and their epochs are
unchanged; the cost is K more fits of every member. ``blend_report["blend_folds"]`` records K.

Retrain (the protocol refits the chosen model on train + validation, which leaves no data to
fit weights on): :meth:`Ensemble.retrain_overrides` hands the validation stage's weights
(``config.weights``: intercept first, then one per member) and each member's early-stopped
epoch count (``config.member_epochs``, 0 for a member that is not iterative) to the refit.
With both set, ``fit(train)`` refits every member on ``train`` for its fixed number of epochs
and reuses the weights, so the retrained members are what validation chose, trained on more
data, and the weights are the ones validation fitted. ``fit(train)`` without weights and
without validation (``autorec train`` without a validation set, or a protocol resumed after
the validation-stage fit, which keeps no model) holds out a random 10% of ``train`` (seeded by
``config.seed``), runs the validation stage on the rest, then refits the members on all of
``train`` with the epochs and weights found: it never needs any other data.

Saving: the members' arrays are stored in the ensemble's own weights file under
``member<m>.<name>``, their configs, histories and extra values in its ``model.json``, so a
save or load is one atomic folder like any model's (:mod:`autorec.models.persistence`). Members
share the ensemble's vocabularies, training-set masks and bias baseline (fitted on the same
training set), which are stored once.

Fold-in blends the members' fold-ins with the same weights; it works when every member
supports it, and otherwise names the member that does not.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from autorec.data.ratings import Ratings
from autorec.data.split import holdout_validation, kfold
from autorec.errors import ConfigError
from autorec.models.base import BaseConfig, FitHistory, Recommender
from autorec.models.training import is_iterative
from autorec.textconfig import parse_value

log = logging.getLogger(__name__)

#: Ridge strengths tried by the 5-fold cross-validation (per validation rating). 0 is ordinary
#: least squares; 1 is already close to the average for predictions a fraction of a star apart.
RIDGE_ALPHAS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
CV_FOLDS = 5
# Fewer validation pairs than this leave 5-fold CV on half of them meaningless: the average.
MIN_RIDGE_PAIRS = 4 * CV_FOLDS
INTERNAL_VAL_FRACTION = 0.1  # held out of train when fit has no validation set (paper: 10%)


@dataclass(frozen=True)
class EnsembleConfig(BaseConfig):
    """Members and blend rule (module docstring). Defaults: the issue's candidate members, the
    four strongest single models of this repository on ML-1M (docs/experiments.md)."""

    members: tuple[str, ...] = ("i-autorec", "u-autorec:hidden=100", "biased-mf", "llorma")
    # "auto": ridge or the average, whichever wins on a held-out half of validation.
    blend: Literal["auto", "ridge", "average"] = "auto"
    ridge: float | None = None  # alpha per rating; None: 5-fold CV over RIDGE_ALPHAS
    # Fixed by the protocol's retrain (retrain_overrides): intercept, then one weight per member.
    weights: tuple[float, ...] | None = None
    member_epochs: tuple[int, ...] | None = None  # 0: the member is not iterative
    # 1: weights on the validation set; K >= 2: on out-of-fold predictions of train + validation
    # (module docstring, "Cross-fitted weights"), K more fits of every member.
    blend_folds: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.members:
            raise ConfigError("an ensemble needs at least one member")
        for spec in self.members:
            parse_member(spec)
        if self.blend not in ("auto", "ridge", "average"):
            raise ConfigError(f"blend must be auto, ridge or average, got {self.blend!r}")
        if self.ridge is not None and not (self.ridge >= 0 and math.isfinite(self.ridge)):
            raise ConfigError(f"ridge must be a finite number >= 0, got {self.ridge}")
        if self.blend_folds < 1:
            raise ConfigError(f"blend_folds must be >= 1, got {self.blend_folds}")
        n = len(self.members)
        if self.weights is not None:
            if len(self.weights) != n + 1:
                raise ConfigError(
                    f"weights holds the intercept and one weight per member: {n + 1} values "
                    f"for {n} members, got {len(self.weights)}"
                )
            if not all(math.isfinite(w) for w in self.weights):
                raise ConfigError(f"weights must be finite, got {list(self.weights)}")
        if self.member_epochs is not None:
            if self.weights is None:
                raise ConfigError(
                    "member_epochs fixes the members of a refit with fixed weights: set weights "
                    "too (without them the members early-stop on validation)"
                )
            if len(self.member_epochs) != n:
                raise ConfigError(
                    f"member_epochs needs one value per member ({n}), got {len(self.member_epochs)}"
                )
            if any(e < 0 for e in self.member_epochs):
                raise ConfigError(f"member_epochs must be >= 0, got {list(self.member_epochs)}")


def parse_member(spec: str) -> tuple[str, dict[str, Any]]:
    """``"u-autorec:hidden=100:lam=1"`` -> ``("u-autorec", {"hidden": (100,), "lam": 1.0})``,
    each value converted to the member config field's declared type.

    Raises:
        ConfigError: an unknown model or field, a malformed spec or value, or a field the
            ensemble sets for every member (fallback).
    """
    from autorec.models import get_model_class  # the registry imports this module

    name, *parts = spec.split(":")
    name = name.strip()
    if name == Ensemble.name:
        raise ConfigError(f"member {spec!r}: an ensemble cannot be a member of an ensemble")
    cls = get_model_class(name)
    hints = typing.get_type_hints(cls.config_class)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    overrides: dict[str, Any] = {}
    for part in parts:
        key, sep, text = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"member {spec!r}: expected name:field=value, got {part!r}")
        if key in ("fallback", "fallback_rating"):
            raise ConfigError(
                f"member {spec!r}: set {key} on the ensemble, which every member shares"
            )
        if key not in fields:
            raise ConfigError(
                f"member {spec!r}: model {name!r} has no field {key}; "
                f"its fields: {', '.join(sorted(fields))}"
            )
        overrides[key] = parse_value(text.strip(), hints[key], f"member {spec!r}, {key}", sep="/")
    return name, overrides


# -- blend weights ------------------------------------------------------------------------------
def fit_ridge(p: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Intercept and weights ``[b, w_1..w_M]`` of the ridge blend shrunk toward the average.

    ``p`` (n, M) member predictions, ``y`` (n,) ratings. Minimises
    ``||y - P a - b - P d||^2 + alpha n ||d||^2`` over ``b`` and ``d`` with ``a = 1/M`` and
    ``w = a + d``: centring ``P`` and the residual ``r = y - P a`` removes the intercept, then
    ``d = (Pc^T Pc + alpha n I)^-1 Pc^T rc`` and ``b = mean(r) - mean(P) d``.
    """
    n, n_members = p.shape
    average = np.full(n_members, 1.0 / n_members)
    residual = y - p @ average  # (n,)
    p_mean = p.mean(axis=0)  # (M,)
    pc = p - p_mean  # (n, M)
    gram = pc.T @ pc + alpha * n * np.eye(n_members)  # (M, M)
    # lstsq: with alpha = 0 two identical members make the Gram matrix singular.
    delta = np.linalg.lstsq(gram, pc.T @ (residual - residual.mean()), rcond=None)[0]  # (M,)
    intercept = residual.mean() - p_mean @ delta
    return np.concatenate([[intercept], average + delta])


def blend(p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``b + P w`` for ``weights = [b, w_1..w_M]``; ``p`` (n, M) -> (n,)."""
    return weights[0] + p @ weights[1:]


def average_weights(n_members: int) -> np.ndarray:
    return np.concatenate([[0.0], np.full(n_members, 1.0 / n_members)])


def _rmse(y: np.ndarray, pred: np.ndarray, scale: tuple[float, float]) -> float:
    """RMSE of the clipped blend (what ``predict`` returns)."""
    return float(np.sqrt(np.mean((np.clip(pred, *scale) - y) ** 2)))


def choose_alpha(
    p: np.ndarray, y: np.ndarray, rng: np.random.Generator, scale: tuple[float, float]
) -> tuple[float, dict[str, float]]:
    """The alpha of :data:`RIDGE_ALPHAS` with the lowest 5-fold cross-validated RMSE (ties: the
    larger alpha, the one closer to the average), and every alpha's CV RMSE."""
    fold = rng.permutation(len(y)) % CV_FOLDS  # (n,) balanced random folds
    scores: dict[str, float] = {}
    for alpha in RIDGE_ALPHAS:
        squared = 0.0
        for k in range(CV_FOLDS):
            held = fold == k
            w = fit_ridge(p[~held], y[~held], alpha)
            squared += float(((np.clip(blend(p[held], w), *scale) - y[held]) ** 2).sum())
        scores[f"{alpha:g}"] = math.sqrt(squared / len(y))
    best = min(RIDGE_ALPHAS, key=lambda a: (scores[f"{a:g}"], -a))
    return best, scores


# -- the model ----------------------------------------------------------------------------------
class Ensemble(Recommender):
    """A validation-weighted blend of member models (module docstring)."""

    name: ClassVar[str] = "ensemble"
    config_class = EnsembleConfig

    def _member_models(self) -> list[Recommender]:
        from autorec.models import make_model

        members = []
        for spec in self.config.members:
            name, overrides = parse_member(spec)
            shared = {
                "fallback": self.config.fallback,
                "fallback_rating": self.config.fallback_rating,
                "seed": self.config.seed,
            }
            members.append(make_model(name, **{**shared, **overrides}))
        return members

    def _fit(self, train: Ratings, val: Ratings | None) -> None:
        cfg = self.config
        if cfg.weights is not None:
            self._fit_fixed(train, np.asarray(cfg.weights, dtype=np.float64), cfg.member_epochs)
        elif val is not None:
            self._fit_validated(train, val)
        else:
            # No validation set and no weights: hold out part of train to choose them, then
            # refit the members on all of it (the module docstring's retrain path).
            inner = holdout_validation(train, INTERNAL_VAL_FRACTION, seed=cfg.seed)
            log.info(
                "ensemble: no validation set; weights fitted on %d held-out training ratings",
                inner.test.n_ratings,
            )
            self._fit_validated(inner.train, inner.test)
            report, weights, epochs = self.blend_report, self.blend_weights, self.member_epochs
            handed = [m.retrain_overrides() for m in self.members]
            self._fit_fixed(train, weights, tuple(epochs), handed)
            self.blend_report = {**report, "internal_validation": True}

    def _fit_validated(self, train: Ratings, val: Ratings) -> None:
        """Members on ``train`` (early-stopped on ``val``), then the weights on ``val``."""
        members = self._member_models()
        for spec, member in zip(self.config.members, members, strict=True):
            member.fit(train, val)
            log.info("ensemble member %s fitted (best epoch %d)", spec, member.history.best_epoch)
        self.members = members
        self.member_epochs = [
            m.history.best_epoch if is_iterative(type(m.config)) else 0 for m in members
        ]
        if self.config.blend_folds > 1:
            p, y = self._out_of_fold(train.merge(val))
        else:
            p, y = _known_predictions(members, val)
        self.blend_weights, self.blend_report = self._choose_weights(p, y)
        self.blend_report["blend_folds"] = self.config.blend_folds

    def _out_of_fold(self, pool: Ratings) -> tuple[np.ndarray, np.ndarray]:
        """(n, M) member predictions of every rating of ``pool`` the fold's members know, each
        by members fitted on the other folds (early-stopped on its own), and the ratings."""
        n_folds = self.config.blend_folds
        # A stream of its own: the folds must not repeat the validation carve's draws.
        rng = np.random.default_rng([self.config.seed, 18, n_folds])
        predictions, ratings = [], []
        for k, split in enumerate(kfold(pool, n_folds, seed=rng)):
            members = self._member_models()
            for member in members:
                member.fit(split.train, split.test)
            p, y = _known_predictions(members, split.test)
            log.info("ensemble: fold %d/%d, %d out-of-fold predictions", k + 1, n_folds, len(y))
            predictions.append(p)
            ratings.append(y)
        return np.concatenate(predictions), np.concatenate(ratings)

    def _choose_weights(self, p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        cfg = self.config
        scale = self.rating_scale
        n_members = p.shape[1]
        rng = np.random.default_rng([cfg.seed, 18])  # 18: the issue, a stream of its own
        report: dict[str, Any] = {
            "n_val": int(len(y)),
            "member_val_rmse": [_rmse(y, p[:, m], scale) for m in range(n_members)],
        }
        average = average_weights(n_members)
        if cfg.blend == "average" or len(y) < MIN_RIDGE_PAIRS:
            if cfg.blend != "average":
                log.warning(
                    "ensemble: %d validation pairs (< %d) cannot weigh ridge against the "
                    "average: the plain average is used",
                    len(y),
                    MIN_RIDGE_PAIRS,
                )
            rule, weights = "average", average
        else:
            order = rng.permutation(len(y))
            first, second = order[: len(y) // 2], order[len(y) // 2 :]
            if cfg.ridge is None:
                alpha, cv = choose_alpha(p[first], y[first], rng, scale)
                report["ridge_cv_rmse"] = cv
            else:
                alpha = cfg.ridge
            half = fit_ridge(p[first], y[first], alpha)
            held = {
                "ridge": _rmse(y[second], blend(p[second], half), scale),
                "average": _rmse(y[second], blend(p[second], average), scale),
            }
            report.update(alpha=alpha, held_out_rmse=held)
            rule = "ridge" if cfg.blend == "ridge" or held["ridge"] < held["average"] else "average"
            weights = fit_ridge(p, y, alpha) if rule == "ridge" else average
        report["rule"] = rule
        report["val_rmse"] = _rmse(y, blend(p, weights), scale)
        held_out = report.get("held_out_rmse")
        log.info(
            "ensemble blend: %s, intercept %.4f, weights %s, validation RMSE %.4f%s",
            rule,
            weights[0],
            ", ".join(f"{w:.3f}" for w in weights[1:]),
            report["val_rmse"],
            ""
            if held_out is None
            else f" (held-out half: ridge {held_out['ridge']:.4f}, "
            f"average {held_out['average']:.4f})",
        )
        return weights, report

    def _fit_fixed(
        self,
        train: Ratings,
        weights: np.ndarray,
        epochs: tuple[int, ...] | None,
        handed: list[dict[str, Any]] | None = None,
    ) -> None:
        """Members on ``train`` alone (an iterative member for its fixed epoch count, a member
        with choices of its own, such as GLocal-K's rounds per stage, with ``handed[m]``), the
        weights as given."""
        members = self._member_models()
        for m, member in enumerate(members):
            if handed is not None and handed[m]:
                member.config = member.config.replace(**handed[m])
            if epochs is not None and epochs[m] > 0:
                if not is_iterative(type(member.config)):
                    raise ConfigError(
                        f"member {self.config.members[m]} is not iterative; "
                        f"member_epochs[{m}] must be 0, got {epochs[m]}"
                    )
                member.config = member.config.replace(n_epochs=epochs[m])
            member.fit(train)
        self.members = members
        self.member_epochs = [
            m.history.n_epochs if is_iterative(type(m.config)) else 0 for m in members
        ]
        self.blend_weights = np.asarray(weights, dtype=np.float64)
        self.blend_report = {"rule": "fixed"}

    def retrain_overrides(self) -> dict[str, Any]:
        """The validation stage's weights and member epochs, for a refit without validation;
        a member that hands over choices of its own (:meth:`Recommender.retrain_overrides`,
        e.g. GLocal-K's rounds per stage) gets them appended to its spec
        (``glocal-k:pretrain_epochs=12:finetune_epochs=30``; a later field wins)."""
        self._check_fitted()
        specs = []
        for spec, member in zip(self.config.members, self.members, strict=True):
            for key, value in member.retrain_overrides().items():
                if not isinstance(value, int | float | str | bool):
                    raise ConfigError(
                        f"member {spec!r} hands over {key} = {value!r}, which a member spec "
                        "cannot hold (numbers, text and booleans only)"
                    )
                spec += f":{key}={str(value).lower() if isinstance(value, bool) else value}"
            specs.append(spec)
        return {
            "weights": tuple(float(w) for w in self.blend_weights),
            "member_epochs": tuple(int(e) for e in self.member_epochs),
            "members": tuple(specs),
        }

    # -- scoring ---------------------------------------------------------------------------------
    def _member_predictions(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _stacked(self.members, users, items)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        p = self._member_predictions(
            np.asarray(user_idx, dtype=np.int64), np.asarray(item_idx, dtype=np.int64)
        )
        return blend(p, self.blend_weights)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        scores = np.full((len(users), self.n_items), self.blend_weights[0])  # (n_block, n_items)
        for weight, member in zip(self.blend_weights[1:], self.members, strict=True):
            scores += weight * _prediction_block(member, users)
        return self._block_with_fallback(users, scores)

    # -- folding in ------------------------------------------------------------------------------
    def _fold_in_user(self, item_idx: np.ndarray, rating: np.ndarray) -> list[Any]:
        states = []
        for spec, member in zip(self.config.members, self.members, strict=True):
            try:
                states.append(member._fold_in_user(item_idx, rating))
            except ConfigError as exc:
                raise ConfigError(
                    f"ensemble member {spec} cannot fold in a new user, so the ensemble "
                    f"cannot ({exc}); retrain it with the user's ratings"
                ) from None
        return states

    def _fold_in_scores(self, state: list[Any]) -> np.ndarray:
        scores = np.full(self.n_items, self.blend_weights[0])  # (n_items,)
        for weight, member, member_state in zip(
            self.blend_weights[1:], self.members, state, strict=True
        ):
            scores += weight * np.asarray(member._fold_in_scores(member_state), dtype=np.float64)
        return scores

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        arrays = {"blend_weights": self.blend_weights}
        for m, member in enumerate(self.members):
            for key, value in member._state().items():
                arrays[f"member{m}.{key}"] = value
        return arrays

    def _extra_meta(self) -> dict[str, Any]:
        return {
            "member_epochs": [int(e) for e in self.member_epochs],
            "blend": self.blend_report,
            "members": [
                {
                    "model": member.model_name,
                    "config": member.config.to_dict(),
                    "history": dataclasses.asdict(member.history),
                    "extra": member._extra_meta(),
                }
                for member in self.members
            ],
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        from autorec.models import get_model_class

        weights = state["blend_weights"].astype(np.float64)
        saved = extra.get("members")
        if not isinstance(saved, list) or not isinstance(extra.get("member_epochs"), list):
            raise ValueError("model.json extra holds no member records")
        if len(saved) != len(self.config.members) or weights.shape != (len(saved) + 1,):
            raise ValueError(
                f"{len(self.config.members)} member specs, {len(saved)} saved members and "
                f"{weights.size} blend weights do not agree"
            )
        members = []
        for m, record in enumerate(saved):
            cls = get_model_class(record["model"])
            member = cls(cls.config_class.from_dict(record["config"]))
            for attr in (
                "users",
                "items",
                "n_users",
                "n_items",
                "rating_scale",
                "global_mean",
                "_fallback_mean",
                "user_seen",
                "item_seen",
                "_user_bias",
                "_item_bias",
                "_seen_indptr",
                "_seen_item_idx",
            ):
                setattr(member, attr, getattr(self, attr))
            member.history = FitHistory(**record["history"])
            prefix = f"member{m}."
            member._load_state(
                {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)},
                record["extra"],
            )
            member._fitted = True
            members.append(member)
        self.members = members
        self.blend_weights = weights
        self.member_epochs = [int(e) for e in extra["member_epochs"]]
        self.blend_report = extra["blend"]


def _known_predictions(members: list[Recommender], held: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """(n, M) unclipped member predictions of the ratings of ``held`` whose user and item the
    members saw in training (the others get the fallback whatever the weights), and those
    ratings (n,).

    Raises:
        ConfigError: no such rating, so no weights can be fitted.
    """
    known = members[0].known_mask(held.user_idx, held.item_idx)
    if not known.any():
        raise ConfigError(
            "the validation set has no rating of a user and an item seen in training: "
            "no blend weights can be fitted"
        )
    return _stacked(members, held.user_idx[known], held.item_idx[known]), held.rating[known]


def _stacked(members: list[Recommender], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(n, M) unclipped member predictions of aligned pairs."""
    return np.stack([m._unclipped(users, items) for m in members], axis=1)


def _prediction_block(member: Recommender, users: np.ndarray) -> np.ndarray:
    """(n_block, n_items) unclipped predicted ratings of a member (fallback where it does not
    know the pair): its whole-row product where it has one for ratings."""
    rating_block = getattr(member, "_rating_block", None)
    if rating_block is not None:  # AutoRec: its _score_block may be a ranking head's
        return rating_block(users)
    if type(member)._rank_score is Recommender._rank_score:  # it ranks on its prediction
        return member._score_block(users)
    n_items = member.n_items
    pair_users = np.repeat(users, n_items)  # (n_block * n_items,)
    pair_items = np.tile(np.arange(n_items, dtype=np.int64), len(users))
    return member._unclipped(pair_users, pair_items).reshape(len(users), n_items)
