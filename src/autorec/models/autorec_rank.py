"""Ranking head for I-AutoRec: a second item-based autoencoder fitted on the implicit matrix,
whose scores rank items for top-N lists while the rating autoencoder keeps predicting ratings.

Why. I-AutoRec is fitted to the *values* of the observed ratings only, so it ranks the items a
user would rate highly if they saw them, not the items they go on to rate: on ML-1M its
predicted-rating order ranks below popularity (docs/experiments.md, "Ranking head"). Top-N
autoencoders instead learn from *which* entries are observed, unobserved ones counting as
negatives (CDAE, Wu et al., WSDM 2016; Mult-DAE, Liang et al., WWW 2018).

The model. With X the binary (n_items x n_users) training matrix (X_iu = 1 when user u rated
item i, any value) and x^(i) its row for item i (the I-AutoRec orientation), the head is

.. math::  z_{ui} = w_u^\\top \\, \\sigma(V \\tilde x^{(i)} + \\mu) + b_u

with V (k x n_users), one output vector w_u and bias b_u per user, and ``\\tilde x`` the input
with each observed entry dropped with probability p (and the rest scaled by 1/(1-p)): the
denoising of CDAE / Mult-DAE, without which the head could copy X_iu from input to output and
learn nothing about unobserved entries. Two likelihoods (``rank_loss``):

* ``"softmax"`` (Mult-DAE's multinomial, per user over the items):
  :math:`-\\sum_u \\sum_i X_{iu} \\log \\operatorname{softmax}_i(z_{u\\cdot})`;
* ``"wmse"`` (weighted squared error over every cell, unobserved entries as negatives of
  weight w, as in WMF / CDAE): :math:`\\sum_{u,i} c_{ui} (X_{iu} - z_{ui})^2`,
  ``c = 1`` observed, ``c = w`` unobserved.

Both plus :math:`\\frac{\\lambda}{2}(\\|V\\|_F^2 + \\|W\\|_F^2)`, the loss a sum (over users, as
the rating model's is over ratings). Adam on minibatches of users: each step encodes every item
(a sparse product, about nnz x k multiply-adds) and decodes the batch's users only.

Ranking score. Per user, over the whole catalogue,
``s_ui = zscore_u(z_ui) + beta * zscore_u(r_hat_ui)`` with ``r_hat`` the rating model's
unclipped prediction (the fallback at pairs it does not know). ``beta = 0`` ranks by the head
alone; a positive beta lets the predicted rating reorder items the head finds alike. beta is
chosen on validation NDCG@10 from :data:`BETA_GRID` unless the config fixes it.

Selection. The head's number of epochs is chosen on validation: every ``rank_eval_every``
epochs its validation NDCG@10 (val ratings ``>= relevance`` as positives, train items excluded
from the lists, the protocol of :func:`autorec.ranking.select_on_validation`) is measured, the
best weights are kept, and training stops after ``rank_patience`` evaluations without a gain.
Without a validation set the head trains ``rank_epochs`` epochs and beta is 0 (or as fixed).

Cost (ML-1M, 3,706 items x 6,040 users, k = 200): the dense user x item target, 90 MB of float32,
is the only dense matrix of the training matrix's size (the rating model's sparse engine is not
touched); per epoch about 3 x n_items x n_users x k = 13 GFLOP of dense products.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autorec.data.ratings import Ratings
from autorec.errors import ConfigError, ModelFitError
from autorec.models.sparse import SparseRows, spmm
from autorec.ranking import default_relevance, rating_step

log = logging.getLogger(__name__)

#: beta candidates for the weight of the z-scored predicted rating (0: the head alone).
BETA_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: Cells of one dense (users x items) block when scoring, 16 MB of float32.
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class HeadSettings:
    """The head's hyperparameters (copied from :class:`~autorec.models.autorec.AutoRecConfig`'s
    ``rank_*`` fields)."""

    hidden: int
    loss: str
    negative_weight: float
    lam: float
    dropout: float
    lr: float
    batch_users: int
    epochs: int
    eval_every: int
    patience: int
    relevance: float | None
    eval_users: int  # validation users per epoch evaluation (0: all)


class RankingHead(nn.Module):
    """``z = W sigma(V x + mu) + b``, item rows in, one output per user (see module docstring).

    ``encoder`` = V^T (n_users x k), ``decoder`` = W (n_users x k): one row per user each.
    """

    def __init__(self, n_users: int, k: int, generator: torch.Generator) -> None:
        super().__init__()
        bound_in, bound_out = 1.0 / math.sqrt(n_users), 1.0 / math.sqrt(k)

        def uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
            return nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)

        self.encoder = uniform((n_users, k), bound_in)  # V^T
        self.encoder_bias = uniform((k,), bound_in)  # mu
        self.decoder = uniform((n_users, k), bound_out)  # W
        self.decoder_bias = nn.Parameter(torch.zeros(n_users))  # b

    def codes(self, x: SparseRows) -> torch.Tensor:
        """(n_items, k) codes of the binary item rows ``x`` (n_items x n_users)."""
        return torch.sigmoid(spmm(x, self.encoder) + self.encoder_bias)

    def logits(self, codes: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) scores z of every item for the given users.

        One ``addmm`` rather than a product and then a broadcast add of the biases: the add
        alone took 27 ms of 47 for a 2,048-user batch on ML-1M (2 cores), the fused call 21 ms
        in all. With MKL the two agree bit for bit while the product's inner dimension k fits
        one of its blocks (measured: k = 16 and 200, the default; at k = 500 they differ by
        about 1e-5, a rounding of the same sum)."""
        return torch.addmm(
            self.decoder_bias[users, None], self.decoder[users], codes.t()
        )  # (b, n_items)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"head_{k}": v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, state: dict[str, np.ndarray]) -> RankingHead:
        n_users, k = state["head_encoder"].shape
        head = cls(int(n_users), int(k), torch.Generator().manual_seed(0))
        head.load_state_dict(
            {k.removeprefix("head_"): torch.from_numpy(v) for k, v in state.items()}
        )
        return head


def binary_items(
    item_idx: np.ndarray, user_idx: np.ndarray, n_items: int, n_users: int
) -> SparseRows:
    """The (n_items x n_users) implicit matrix, 1 where a rating exists (repeats count once)."""
    keys = np.unique(np.asarray(item_idx, np.int64) * n_users + np.asarray(user_idx, np.int64))
    return SparseRows.from_coo(
        keys // n_users, keys % n_users, np.ones(len(keys), np.float32), (n_items, n_users)
    )


def dense_users(x: SparseRows) -> torch.Tensor:
    """(n_users, n_items) dense float32 transpose of the binary item rows (the training target)."""
    return x.csr_t.to_dense()


def _zscore(s: torch.Tensor) -> torch.Tensor:
    """Per row: (s - mean) / std over the row (std 0: all zero)."""
    mean = s.mean(dim=1, keepdim=True)
    std = s.std(dim=1, keepdim=True)
    return (s - mean) / torch.where(std > 0, std, torch.ones_like(std))


def combine(head_scores: torch.Tensor, rating_scores: torch.Tensor | None, beta: float):
    """``zscore(head) + beta * zscore(rating)`` per row; the head alone when beta is 0."""
    out = _zscore(head_scores.double())
    if beta != 0.0 and rating_scores is not None:
        out = out + beta * _zscore(rating_scores.double())
    return out


def _ndcg_sum(s: torch.Tensor, seen: torch.Tensor, positives: torch.Tensor, k: int) -> float:
    """Sum over the rows of binary NDCG@k: ``s`` (b, n_items) scores, ``seen`` and ``positives``
    (b, n_items) masks (> 0: excluded, relevant); every row has a positive."""
    disc = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))  # (k,)
    ideal_at = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(disc, 0)])
    s = s.double().masked_fill(seen > 0, -math.inf)  # (b, n_items)
    top = torch.topk(s, min(k, s.shape[1]), dim=1).indices  # (b, k)
    hits = (positives.gather(1, top) > 0).double()  # (b, k)
    n_rel = (positives > 0).sum(dim=1).clamp(max=k)
    return float(((hits * disc[: hits.shape[1]]).sum(1) / ideal_at[n_rel]).sum())


def _rated(positives: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
    """The users (of ``users``, default all) with at least one positive."""
    has = positives.sum(dim=1) > 0
    if users is None:
        return torch.nonzero(has).flatten()
    return users[has[users]]


def ndcg_at(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    seen: torch.Tensor,
    positives: torch.Tensor,
    k: int = 10,
    users: torch.Tensor | None = None,
) -> float:
    """Mean binary NDCG@k over the users with a positive (the definition of
    :mod:`autorec.ranking`), the lists excluding ``seen`` items.

    Args:
        score_rows: users (int64) -> (len(users), n_items) scores.
        seen: (n_users, n_items) float, > 0 where the item is excluded (training items).
        positives: (n_users, n_items) float, > 0 where the item is relevant.
        users: average over these users only (those of them with a positive); None: all.
    """
    users = _rated(positives, users)
    if len(users) == 0:
        return math.nan
    step = max(1, _BLOCK_CELLS // seen.shape[1])
    total = 0.0
    for start in range(0, len(users), step):
        block = users[start : start + step]
        total += _ndcg_sum(score_rows(block), seen[block], positives[block], k)
    return total / len(users)


def beta_ndcg(
    model,
    scorer: HeadScorer,
    seen: torch.Tensor,
    positives: torch.Tensor,
    betas: tuple[float, ...],
    k: int = 10,
) -> dict[float, float]:
    """Validation NDCG@k of the ranking score (:func:`combine`) at every beta of ``betas``, in
    one pass over the users: each block's head and rating z-scores are computed once (the
    rating model's dense block dominates the cost, so 7 betas cost about what 1 does)."""
    users = _rated(positives, None)
    if len(users) == 0:
        return {beta: math.nan for beta in betas}
    step = max(1, _BLOCK_CELLS // seen.shape[1])
    totals = dict.fromkeys(betas, 0.0)
    for start in range(0, len(users), step):
        block = users[start : start + step]
        head_z = _zscore(scorer.head_block(block).double())  # (b, n_items)
        rating_z = None
        if any(beta != 0.0 for beta in betas):
            rating_z = _zscore(torch.from_numpy(model._rating_block(block.numpy())))
        for beta in betas:
            s = head_z if beta == 0.0 or rating_z is None else head_z + beta * rating_z
            totals[beta] += _ndcg_sum(s, seen[block], positives[block], k)
    return {beta: total / len(users) for beta, total in totals.items()}


def eval_sample(positives: torch.Tensor, n_users: int, seed: int) -> torch.Tensor | None:
    """A fixed random sample of ``n_users`` of the users with a validation positive, sorted
    (None: all of them, when ``n_users`` is 0 or not smaller): the users the head's
    per-epoch validation NDCG@10 is measured on, so an evaluation costs a fraction of a pass."""
    users = _rated(positives, None)
    if n_users <= 0 or n_users >= len(users):
        return None
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(users), n_users, replace=False))
    return users[torch.from_numpy(chosen)]


def fit_head(
    x: SparseRows,
    settings: HeadSettings,
    generator: torch.Generator,
    val_positives: torch.Tensor | None,
    eval_users: torch.Tensor | None = None,
) -> tuple[RankingHead, int, list[float]]:
    """Train the head on the binary item rows ``x`` (n_items x n_users).

    ``val_positives``: (n_users, n_items) validation positives, or None (no early stopping);
    ``eval_users``: the users each evaluation averages over (None: all, :func:`eval_sample`).
    Returns the head with the kept weights, the epoch they come from, and the validation NDCG@10
    of every evaluation.

    Raises:
        ModelFitError: the loss became NaN or infinite.
    """
    n_items, n_users = x.shape
    head = RankingHead(n_users, settings.hidden, generator)
    target = dense_users(x)  # (n_users, n_items): 90 MB on ML-1M
    opt = torch.optim.Adam(head.parameters(), lr=settings.lr)
    p, w = settings.dropout, settings.negative_weight
    ones = torch.ones_like(x.values)
    best, best_epoch, best_state, bad, history = -math.inf, 0, None, 0, []
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        order = torch.randperm(n_users, generator=generator)
        total = 0.0
        for start in range(0, n_users, settings.batch_users):
            users = order[start : start + settings.batch_users]
            keep = (torch.rand(x.nnz, generator=generator) >= p).float()
            x_in = x.with_values(ones * keep / (1.0 - p)) if p > 0 else x
            z = head.logits(head.codes(x_in), users)  # (b, n_items)
            t = target[users]  # (b, n_items)
            if settings.loss == "softmax":
                data = -(t * torch.log_softmax(z, dim=1)).sum()
            else:
                data = ((w + (1.0 - w) * t) * (t - z).pow(2)).sum()
            share = len(users) / n_users
            penalty = head.encoder.pow(2).sum() + head.decoder.pow(2).sum()
            loss = data + 0.5 * settings.lam * share * penalty
            if not torch.isfinite(loss):
                raise ModelFitError(
                    f"ranking head diverged: loss became {float(loss)} at epoch {epoch} "
                    "(try a smaller rank_lr or a larger rank_lam)"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(data.detach())
        note = ""
        if val_positives is not None and (
            epoch % settings.eval_every == 0 or epoch == settings.epochs
        ):
            with torch.no_grad():
                codes = head.codes(x)
                score = ndcg_at(
                    lambda u, c=codes: head.logits(c, u), target, val_positives, users=eval_users
                )
            history.append(score)
            note = f" val_ndcg@10={score:.4f}"
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:
                bad += 1
        log.info(
            "ranking head epoch %d loss=%.1f%s seconds=%.2f",
            epoch,
            total,
            note,
            time.perf_counter() - started,
        )
        if val_positives is not None and bad >= settings.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    else:
        best_epoch = settings.epochs
    return head, best_epoch, history


def head_wanted(cfg, distributed: bool = False) -> bool:
    """Whether a fit of ``cfg`` (an :class:`~autorec.models.autorec.AutoRecConfig`) gets a
    ranking head. ``ranking_head=None`` (auto, the default): on for I-AutoRec when not
    distributed, off for U-AutoRec and under torchrun; True or False as given.

    Raises:
        ConfigError: ``ranking_head=True`` when training distributed (not implemented).
    """
    if cfg.ranking_head is None:
        return cfg.variant == "item" and not distributed
    if cfg.ranking_head and distributed:
        raise ConfigError(
            "ranking_head does not train distributed yet: leave it unset (auto: off under "
            "torchrun) or set ranking_head=false"
        )
    return bool(cfg.ranking_head)


def check_config(cfg) -> None:
    """Validate the ``rank_*`` fields of an :class:`~autorec.models.autorec.AutoRecConfig`."""
    if cfg.ranking_head is not None and not isinstance(cfg.ranking_head, bool):
        raise ConfigError(f"ranking_head must be true, false or None, got {cfg.ranking_head!r}")
    if cfg.ranking_head and cfg.variant != "item":
        raise ConfigError("ranking_head is implemented for I-AutoRec (variant='item') only")
    if not head_wanted(cfg):
        return
    if cfg.rank_loss not in ("softmax", "wmse"):
        raise ConfigError(f"rank_loss must be softmax or wmse, got {cfg.rank_loss!r}")
    for name in ("rank_hidden", "rank_batch_users", "rank_epochs", "rank_eval_every"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.rank_patience < 1:
        raise ConfigError(f"rank_patience must be >= 1, got {cfg.rank_patience}")
    if cfg.rank_eval_users < 0:
        raise ConfigError(f"rank_eval_users must be >= 0 (0: all), got {cfg.rank_eval_users}")
    if not (cfg.rank_lam >= 0 and math.isfinite(cfg.rank_lam)):
        raise ConfigError(f"rank_lam must be a finite number >= 0, got {cfg.rank_lam}")
    if not 0.0 <= cfg.rank_dropout < 1.0:
        raise ConfigError(f"rank_dropout must be in [0, 1), got {cfg.rank_dropout}")
    if not 0.0 < cfg.rank_negative_weight <= 1.0:
        raise ConfigError(f"rank_negative_weight must be in (0, 1], got {cfg.rank_negative_weight}")
    if not cfg.rank_lr > 0:
        raise ConfigError(f"rank_lr must be > 0, got {cfg.rank_lr}")
    if cfg.rank_beta is not None and not (cfg.rank_beta >= 0 and math.isfinite(cfg.rank_beta)):
        raise ConfigError(f"rank_beta must be a finite number >= 0 or None, got {cfg.rank_beta}")


def settings_of(cfg) -> HeadSettings:
    return HeadSettings(
        hidden=int(cfg.rank_hidden),
        loss=cfg.rank_loss,
        negative_weight=float(cfg.rank_negative_weight),
        lam=float(cfg.rank_lam),
        dropout=float(cfg.rank_dropout),
        lr=float(cfg.rank_lr),
        batch_users=int(cfg.rank_batch_users),
        epochs=int(cfg.rank_epochs),
        eval_every=int(cfg.rank_eval_every),
        patience=int(cfg.rank_patience),
        relevance=cfg.rank_relevance,
        eval_users=int(cfg.rank_eval_users),
    )


class HeadScorer:
    """A fitted head with what scoring needs: the binary training rows, the item codes (kept
    after the first use) and beta."""

    def __init__(self, head: RankingHead, x: SparseRows, beta: float, epoch: int) -> None:
        self.head, self.x, self.beta, self.epoch = head.eval(), x, float(beta), int(epoch)
        self._codes: torch.Tensor | None = None
        #: Validation NDCG@10 of the ranking score at the kept epoch and beta (None: no
        #: validation); set by :func:`fit_ranking_head`, not saved.
        self.val_ndcg: float | None = None
        #: Validation NDCG@10 at every beta tried (same provenance).
        self.val_by_beta: dict[float, float] = {}

    @torch.no_grad()
    def head_block(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) head scores z."""
        if self._codes is None:
            self._codes = self.head.codes(self.x)  # (n_items, k)
        return self.head.logits(self._codes, users)


def val_positives(model, train: Ratings, val: Ratings | None, relevance: float | None):
    """(n_users, n_items) float32, 1 at validation ratings ``>= relevance`` (None: the default
    threshold of :func:`autorec.ranking.default_relevance`); None without any."""
    if val is None or val.n_ratings == 0:
        return None
    if relevance is None:
        relevance = default_relevance(train.rating_scale, rating_step(train, val))
    keep = val.rating >= relevance
    if not keep.any():
        return None
    out = torch.zeros(model.n_users, model.n_items)
    out[
        torch.from_numpy(val.user_idx[keep].astype(np.int64)),
        torch.from_numpy(val.item_idx[keep].astype(np.int64)),
    ] = 1.0
    return out


def fit_ranking_head(model, train: Ratings, val: Ratings | None) -> HeadScorer:
    """Fit the head of a fitted rating model ``model`` (an I-AutoRec) and choose beta.

    Epochs: validation NDCG@10 every ``rank_eval_every`` epochs, on a fixed sample of
    ``rank_eval_users`` validation users (:func:`eval_sample`). beta: ``model.config.rank_beta``
    when set; else the value of :data:`BETA_GRID` with the best validation NDCG@10 of the
    combined score over every validation user (the first of equal ones; :func:`beta_ndcg`).
    Without validation: ``rank_epochs`` epochs and beta 0 (or as fixed), nothing chosen.
    """
    cfg = model.config
    started = time.perf_counter()
    x = binary_items(train.item_idx, train.user_idx, model.n_items, model.n_users)
    positives = val_positives(model, train, val, cfg.rank_relevance)
    settings = settings_of(cfg)
    if positives is None:
        log.warning(
            "ranking head: no validation positives, so nothing is chosen on validation: it "
            "trains a fixed rank_epochs=%d epochs with beta %g (the protocol instead fits it on "
            "train with validation and carries it to the retrained model: transfer_head)",
            settings.epochs,
            cfg.rank_beta or 0.0,
        )
    # The head's own stream: seeded from the config, so the rating model's is never touched.
    generator = torch.Generator().manual_seed(cfg.seed)
    sample = None if positives is None else eval_sample(positives, settings.eval_users, cfg.seed)
    head, epoch, history = fit_head(x, settings, generator, positives, sample)
    scorer = HeadScorer(head, x, 0.0, epoch)
    betas = BETA_GRID if cfg.rank_beta is None else (float(cfg.rank_beta),)
    if positives is not None:
        scores = beta_ndcg(model, scorer, dense_users(x), positives, betas)
        for beta, score in scores.items():
            log.info("ranking head: validation ndcg@10 = %.4f at beta %g", score, beta)
        scorer.val_by_beta = scores
        scorer.beta = max(scores, key=lambda b: scores[b])  # the first of equal scores
        scorer.val_ndcg = scores[scorer.beta]
    else:
        scorer.beta = betas[0] if cfg.rank_beta is not None else 0.0
    log.info(
        "ranking head: epoch %d kept (validation ndcg@10 %s on %s users), beta %g, %.1f s",
        epoch,
        f"{max(history):.4f}" if history else "not measured",
        "all" if sample is None else len(sample),
        scorer.beta,
        time.perf_counter() - started,
    )
    return scorer


def attach_head(model, train: Ratings, val: Ratings | None) -> None:
    """Fit a head for the fitted I-AutoRec ``model`` (:func:`fit_ranking_head`) and attach it;
    its config then says ``ranking_head=True`` (the model has one, whatever the fit asked)."""
    model._head = fit_ranking_head(model, train, val)
    model.config = model.config.replace(ranking_head=True)


def transfer_head(from_model, to_model, train_plus_val: Ratings) -> None:
    """Carry the head of ``from_model`` (fitted on train, its epochs and beta chosen on
    validation) over to ``to_model`` (the same setting retrained on train + validation), with
    no refit.

    The head's weights, epoch and beta are kept; its input, the binary who-rated-what matrix,
    is rebuilt from ``train_plus_val``. The head encodes each item from the users who rated it,
    so scoring with the larger input folds the validation ratings in, as a trained autoencoder
    scores any input row; the decoder's per-user vectors are unchanged. The combined score then
    uses ``to_model``'s predicted ratings (the retrained rating model).

    Raises:
        ValueError: ``from_model`` has no head, or the two models index users and items
            differently.
    """
    scorer = getattr(from_model, "_head", None)
    if scorer is None:
        raise ValueError("transfer_head: the source model has no ranking head")
    if (from_model.n_users, from_model.n_items) != (to_model.n_users, to_model.n_items) or not (
        np.array_equal(from_model.users.ids, to_model.users.ids)
        and np.array_equal(from_model.items.ids, to_model.items.ids)
    ):
        raise ValueError("transfer_head: the two models index users and items differently")
    x = binary_items(
        train_plus_val.item_idx, train_plus_val.user_idx, to_model.n_items, to_model.n_users
    )
    moved = HeadScorer(scorer.head, x, scorer.beta, scorer.epoch)
    moved.val_ndcg = scorer.val_ndcg
    to_model._head = moved
    to_model.config = to_model.config.replace(ranking_head=True)
    log.info(
        "ranking head carried over (epoch %d, beta %g, chosen on validation); input rebuilt "
        "from %d ratings",
        scorer.epoch,
        scorer.beta,
        train_plus_val.n_ratings,
    )


def score_rows(model, scorer: HeadScorer, user_idx: np.ndarray) -> np.ndarray:
    """(len(user_idx), n_items) float64 ranking scores: the head's z-score plus beta times the
    z-scored unclipped rating prediction (see the module docstring)."""
    users = torch.from_numpy(np.asarray(user_idx, dtype=np.int64))
    head_scores = scorer.head_block(users)
    rating = None
    if scorer.beta != 0.0:
        rating = torch.from_numpy(model._rating_block(users.numpy()))
    return combine(head_scores, rating, scorer.beta).numpy()


def score_pairs(model, scorer: HeadScorer, user_idx: np.ndarray, item_idx: np.ndarray):
    """Ranking scores (float64) of aligned pairs: whole rows of the users involved, a bounded
    number of users at a time, then the asked-for cells."""
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    unique, inverse = np.unique(users, return_inverse=True)
    out = np.empty(len(users), dtype=np.float64)
    order = np.argsort(inverse, kind="stable")  # pairs grouped by user
    sorted_inverse = inverse[order]
    step = max(1, _BLOCK_CELLS // max(1, model.n_items))
    for start in range(0, len(unique), step):
        rows = score_rows(model, scorer, unique[start : start + step])  # (chunk, n_items)
        lo, hi = np.searchsorted(sorted_inverse, [start, start + step])
        at = order[lo:hi]
        out[at] = rows[inverse[at] - start, items[at]]
    return out


@dataclass(frozen=True)
class FoldedHeadUser:
    """A folded-in user of an I-AutoRec with a head: the rating model's state and the head's
    output vector ``w`` (k,) and bias ``b`` (see :func:`fold_in_user`)."""

    rating: object
    w: torch.Tensor
    b: float


@torch.no_grad()
def fold_in_user(model, scorer: HeadScorer, item_idx: np.ndarray, rating_state) -> FoldedHeadUser:
    """The head's output vector and bias of a new user who rated ``item_idx``, every trained
    weight frozen (the head's counterpart of the rating model's closed-form column fit).

    A new user is a new input coordinate of the head (an encoder row, left at 0 as in the
    rating fold-in, which keeps every item's code) and a new output coordinate (w, b). With C
    the (n_items, k) item codes, R the rated items and lambda = ``rank_lam``, they minimise the
    head's training objective restricted to them:

    * softmax: :math:`-\\sum_{i \\in R} \\log \\operatorname{softmax}_i(C w)
      + \\frac{\\lambda}{2} \\|w\\|^2`, convex; Newton's method (b cancels in the softmax);
    * wmse: :math:`\\sum_i c_i (x_i - c_i^\\top w - b)^2 + \\frac{\\lambda}{2} \\|w\\|^2`,
      a weighted ridge regression solved in closed form (b unpenalised).
    """
    cfg = model.config
    if scorer._codes is None:
        scorer._codes = scorer.head.codes(scorer.x)
    codes = scorer._codes.double()  # (n_items, k)
    n_items, k = codes.shape
    target = torch.zeros(n_items, dtype=torch.float64)
    target[torch.from_numpy(np.asarray(item_idx, dtype=np.int64))] = 1.0
    lam = float(cfg.rank_lam) + 1e-8  # lambda = 0 leaves the system singular
    if cfg.rank_loss == "softmax":
        n_rated = float(target.sum())
        pull = codes.t() @ target  # (k,)
        w = torch.zeros(k, dtype=torch.float64)
        for _ in range(50):
            p = torch.softmax(codes @ w, dim=0)  # (n_items,)
            mean = codes.t() @ p  # (k,)
            grad = n_rated * mean - pull + lam * w
            hess = n_rated * ((codes.t() * p) @ codes - torch.outer(mean, mean))  # (k, k)
            hess.diagonal().add_(lam)
            step = torch.linalg.solve(hess, grad)
            w -= step
            if float(step.abs().max()) < 1e-9:
                break
        return FoldedHeadUser(rating_state, w, 0.0)
    weight = cfg.rank_negative_weight + (1.0 - cfg.rank_negative_weight) * target  # (n_items,)
    design = torch.cat([codes, torch.ones(n_items, 1, dtype=torch.float64)], dim=1)  # (n, k+1)
    gram = (design.t() * weight) @ design  # (k+1, k+1)
    gram.diagonal()[:k].add_(lam / 2.0)
    solution = torch.linalg.solve(gram, design.t() @ (weight * target))
    return FoldedHeadUser(rating_state, solution[:k], float(solution[k]))


@torch.no_grad()
def fold_in_rank(scorer: HeadScorer, user: FoldedHeadUser, predictions: np.ndarray) -> np.ndarray:
    """(n_items,) ranking scores of a folded-in user: :func:`combine` of the head's
    ``C w + b`` and the user's unclipped predicted ratings ``predictions``, as for a training
    user."""
    assert scorer._codes is not None  # set by fold_in_user
    z = (scorer._codes.double() @ user.w + user.b)[None, :]  # (1, n_items)
    rating = torch.from_numpy(np.asarray(predictions, dtype=np.float64))[None, :]
    return combine(z, rating, scorer.beta)[0].numpy()
