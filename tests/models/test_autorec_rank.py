"""The ranking head of I-AutoRec (autorec.models.autorec_rank)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.data import IdIndex, Ratings, paper_split
from autorec.errors import ConfigError
from autorec.models import make_model
from autorec.models.autorec import AutoRec, AutoRecConfig
from autorec.models.autorec_rank import (
    BETA_GRID,
    RankingHead,
    beta_ndcg,
    binary_items,
    combine,
    dense_users,
    eval_sample,
    fold_in_user,
    head_wanted,
    ndcg_at,
    score_rows,
    transfer_head,
    val_positives,
)
from autorec.models.popularity import Popularity
from autorec.ranking import evaluate_ranking, rank_scores, score_block

RATING = dict(hidden=(8,), lam=1.0, n_epochs=8, patience=5)
HEAD = dict(ranking_head=True, rank_hidden=16, rank_epochs=40, rank_lr=0.02, rank_lam=1.0)
PLAIN = dict(RATING, ranking_head=False)


def planted_groups(
    n_users: int = 240, n_items: int = 120, n_groups: int = 4, seed: int = 0
) -> Ratings:
    """Users and items in ``n_groups`` equal blocks; each user rates 12 random items of their own
    block and 2 of the whole catalogue, all 4 or 5 (so every held-out rating is relevant).

    Item popularity is the same in expectation across blocks, so popularity ranks a user's block
    no better than chance (NDCG@10 about that of a random list), while a model that learns the
    blocks puts its held-out items first."""
    rng = np.random.default_rng(seed)
    group_items = np.array_split(np.arange(n_items), n_groups)
    users, items = [], []
    for u in range(n_users):
        own = rng.choice(group_items[u % n_groups], 12, replace=False)
        other = rng.choice(n_items, 2, replace=False)
        chosen = np.unique(np.concatenate([own, other]))
        users.extend([u] * len(chosen))
        items.extend(chosen.tolist())
    users, items = np.array(users), np.array(items)
    return Ratings(
        users,
        items,
        rng.integers(4, 6, len(users)).astype(float),
        IdIndex(np.arange(n_users) + 1),
        IdIndex(np.arange(n_items) + 1000),
        (1.0, 5.0),
    )


@pytest.fixture(scope="module")
def planted():
    return paper_split(planted_groups(), seed=0, test_fraction=0.15, val_fraction=0.15)


@pytest.fixture(scope="module")
def with_head(planted):
    torch.manual_seed(0)
    return AutoRec(AutoRecConfig(**RATING, **HEAD)).fit(planted.train, planted.val)


class _BlockOracle:
    """Scores 1 for the items of the user's own block, 0 elsewhere: the planted structure with
    nothing else (ties by item index, which is unrelated to what was held out)."""

    def __init__(self, n_users: int, n_items: int, n_groups: int = 4) -> None:
        self.n_users, self.n_items = n_users, n_items
        self.item_group = np.repeat(np.arange(n_groups), n_items // n_groups)

    def _score_block(self, user_idx):
        users = np.asarray(user_idx)[:, None]  # (n_block, 1)
        return (self.item_group[None, :] == users % 4).astype(float)  # (n_block, n_items)


def test_head_learns_planted_groups_better_than_popularity(planted, with_head):
    # Popularity cannot see the blocks (item popularity is the same in expectation in every
    # block), so its lists are near random; the block oracle knows the blocks exactly. The head
    # must beat popularity by 2x and get most of the way to the oracle.
    train, test, val = planted.train, planted.test, planted.val
    metric = "ndcg@10"

    def ndcg(model) -> float:
        return evaluate_ranking(model, train, test, val=val, metrics=metric).metrics[metric]

    pop = ndcg(Popularity().fit(train))
    oracle = ndcg(_BlockOracle(train.n_users, train.n_items))
    head = ndcg(with_head)
    assert head > 2 * pop
    assert head > 0.8 * oracle


def test_rating_part_is_bit_identical_with_and_without_the_head(planted, with_head):
    plain = AutoRec(AutoRecConfig(**PLAIN)).fit(planted.train, planted.val)
    users = np.repeat(np.arange(planted.train.n_users), planted.train.n_items)
    items = np.tile(np.arange(planted.train.n_items), planted.train.n_users)
    np.testing.assert_array_equal(plain.predict(users, items), with_head.predict(users, items))
    assert plain.history.val_rmse == with_head.history.val_rmse
    for key, value in plain.net.state_dict().items():
        assert torch.equal(value, with_head.net.state_dict()[key]), key


def test_config_saved_before_the_head_loads_with_the_auto_default():
    # A config saved before the head existed has no rank_* fields: it loads with today's
    # default, auto (None), which gives I-AutoRec a head and U-AutoRec none.
    old = {k: v for k, v in AutoRecConfig().to_dict().items() if not k.startswith("rank")}
    cfg = AutoRecConfig.from_dict(old)
    assert cfg == AutoRecConfig() and cfg.ranking_head is None


def test_head_is_on_by_default_for_i_autorec_only():
    assert head_wanted(AutoRecConfig()) and AutoRecConfig().ranking_head is None
    assert not head_wanted(AutoRecConfig(variant="user"))
    assert not head_wanted(AutoRecConfig(ranking_head=False))
    # Auto is off under torchrun (the head does not train distributed); asking for it errors.
    assert not head_wanted(AutoRecConfig(), distributed=True)
    with pytest.raises(ConfigError, match="distributed"):
        head_wanted(AutoRecConfig(ranking_head=True), distributed=True)
    # The registered models: i-autorec fits one, u-autorec none.
    data = planted_groups(n_users=60, n_items=60)
    i_model = make_model("i-autorec", **RATING, rank_hidden=4, rank_epochs=2).fit(data)
    u_model = make_model("u-autorec", **RATING).fit(data)
    assert i_model._head is not None and i_model.config.ranking_head is None
    assert u_model._head is None


def test_head_off_ranks_by_the_unclipped_predicted_rating(planted):
    plain = AutoRec(AutoRecConfig(**PLAIN)).fit(planted.train)
    users = np.repeat(np.arange(5), planted.train.n_items)
    items = np.tile(np.arange(planted.train.n_items), 5)
    known = plain.known_mask(users, items)
    expected = plain._fallback_scores(users, items)
    expected[known] = plain._score(users[known], items[known])
    np.testing.assert_array_equal(plain._rank_score(users, items), expected)
    block = plain._score_block(np.arange(5)).reshape(-1)
    np.testing.assert_allclose(block, expected, rtol=1e-6)


def test_block_and_pair_scores_agree(planted, with_head):
    users = np.array([3, 0, 7])
    block = with_head._score_block(users)  # (3, n_items)
    pairs_u = np.repeat(users, with_head.n_items)
    pairs_i = np.tile(np.arange(with_head.n_items), len(users))
    np.testing.assert_allclose(rank_scores(with_head, pairs_u, pairs_i), block.reshape(-1))
    np.testing.assert_allclose(score_block(with_head, users), block)


def test_beta_is_chosen_from_the_grid_or_fixed(planted, with_head):
    assert with_head._head.beta in BETA_GRID
    fixed = AutoRec(AutoRecConfig(**RATING, **{**HEAD, "rank_epochs": 2}, rank_beta=0.7))
    fixed.fit(planted.train, planted.val)
    assert fixed._head.beta == 0.7


def test_save_load_round_trip(tmp_path, planted, with_head):
    with_head.save(tmp_path / "m")
    loaded = AutoRec.load(tmp_path / "m")
    users = np.arange(planted.train.n_users)
    np.testing.assert_array_equal(loaded._score_block(users), with_head._score_block(users))
    assert loaded._head.beta == with_head._head.beta
    assert loaded._head.epoch == with_head._head.epoch
    u = np.repeat(users[:4], planted.train.n_items)
    i = np.tile(np.arange(planted.train.n_items), 4)
    np.testing.assert_array_equal(loaded.predict(u, i), with_head.predict(u, i))


def test_combine_is_zscore_plus_beta_zscore():
    head = torch.tensor([[1.0, 2.0, 3.0]])
    rating = torch.tensor([[5.0, 3.0, 1.0]])
    # z(head) = [-1, 0, 1], z(rating) = [1, 0, -1] (std with Bessel's correction: 1 and 2).
    np.testing.assert_allclose(combine(head, rating, 0.0).numpy(), [[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(combine(head, rating, 0.5).numpy(), [[-0.5, 0.0, 0.5]])


def test_ndcg_at_known_answer():
    # User 0: relevant items 1 and 3, list [3, 2, 1] (item 0 seen): hits at ranks 1 and 3,
    # DCG = 1 + 1/2, IDCG = 1 + 1/log2(3). User 1 has no relevant item: not averaged.
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    seen = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    positives = torch.tensor([[0.0, 1, 0, 1], [0, 0, 0, 0]])
    got = ndcg_at(lambda u: scores[u], seen, positives, k=3)
    assert got == pytest.approx(1.5 / (1 + 1 / np.log2(3)))


@pytest.mark.parametrize(
    "bad",
    [
        dict(variant="user"),
        dict(rank_loss="bpr"),
        dict(rank_dropout=1.0),
        dict(rank_negative_weight=0.0),
        dict(rank_hidden=0),
        dict(rank_beta=-1.0),
    ],
)
def test_bad_head_config_is_refused(bad):
    with pytest.raises(ConfigError):
        AutoRecConfig(ranking_head=True, **bad)


def test_memory_estimate_counts_the_head_only_when_on():
    plain = AutoRecConfig(ranking_head=False).memory_estimate(3706, 6040, 800_000)
    with_head = AutoRecConfig(ranking_head=True).memory_estimate(3706, 6040, 800_000)
    assert "ranking head" not in plain
    # The dense 3,706 x 6,040 float32 target alone is 89.5 MB.
    assert with_head["ranking head"] >= 4 * 3706 * 6040
    assert {k: v for k, v in with_head.items() if k != "ranking head"} == plain


def test_beta_ndcg_of_one_pass_equals_ndcg_at_each_beta(planted, with_head):
    # beta_ndcg shares each block's z-scores across betas; it must give, at every beta, what
    # ndcg_at gives for the combined score of autorec_rank.score_rows at that beta alone.
    train, val = planted.train, planted.val
    scorer = with_head._head
    x = binary_items(train.item_idx, train.user_idx, with_head.n_items, with_head.n_users)
    seen, positives = dense_users(x), val_positives(with_head, train, val, None)
    got = beta_ndcg(with_head, scorer, seen, positives, (0.0, 0.3, 1.0))
    kept = scorer.beta
    try:
        for beta, value in got.items():
            scorer.beta = beta
            expected = ndcg_at(
                lambda u: torch.from_numpy(score_rows(with_head, scorer, u.numpy())),
                seen,
                positives,
            )
            assert value == pytest.approx(expected, rel=1e-12)
    finally:
        scorer.beta = kept


def test_eval_sample_is_fixed_and_drawn_from_users_with_a_positive():
    positives = torch.zeros(50, 7)
    positives[torch.arange(0, 50, 2), 3] = 1.0  # even users only
    a, b = eval_sample(positives, 10, seed=0), eval_sample(positives, 10, seed=0)
    assert torch.equal(a, b) and len(a) == 10 and bool((a % 2 == 0).all())
    assert torch.equal(a, torch.sort(a).values)
    assert eval_sample(positives, 0, seed=0) is None  # 0: all users
    assert eval_sample(positives, 25, seed=0) is None  # not fewer than there are


def test_transfer_head_keeps_the_head_and_rebuilds_its_input(planted, with_head):
    # The retrained model gets the validation-chosen head: same weights, epoch and beta, its
    # who-rated-what input rebuilt from train + validation (a validation rating then changes
    # that user's list: the item is no longer scored as unrated).
    merged = planted.train.merge(planted.val)
    retrained = AutoRec(AutoRecConfig(**PLAIN)).fit(merged)
    transfer_head(with_head, retrained, merged)
    moved, source = retrained._head, with_head._head
    assert moved.head is source.head
    assert (moved.epoch, moved.beta, moved.val_ndcg) == (source.epoch, source.beta, source.val_ndcg)
    assert moved.x.nnz == len(np.unique(merged.item_idx * merged.n_users + merged.user_idx))
    assert retrained.config.ranking_head is True
    # Rating part: the retrained model's own predictions, untouched by the head.
    users = np.arange(planted.train.n_users)
    assert not np.array_equal(retrained._score_block(users), with_head._score_block(users))
    plain = AutoRec(AutoRecConfig(**PLAIN)).fit(merged)
    np.testing.assert_array_equal(retrained._rating_block(users), plain._rating_block(users))
    with pytest.raises(ValueError, match="no ranking head"):
        transfer_head(plain, retrained, merged)


def test_fold_in_of_a_new_user_ranks_on_the_head(planted, with_head):
    # A training user's own training ratings, folded in as a new user: the head's fitted output
    # vector must find the planted blocks (popularity cannot: module docstring of
    # planted_groups), and the list differs from the rating order.
    train, test = planted.train, planted.test
    metric = "ndcg@10"
    pop = evaluate_ranking(Popularity().fit(train), train, test, metrics=metric).metrics[metric]
    total = 0.0
    users = [u for u in range(40) if (test.user_idx == u).any()]
    for u in users:
        rated = train.item_idx[train.user_idx == u]
        ratings = {with_head.items.ids[i].item(): 5.0 for i in rated}
        scores = with_head.fold_in(ratings).scores.copy()
        relevant = set(test.item_idx[test.user_idx == u].tolist())
        scores[rated] = -np.inf
        top = np.argsort(-scores, kind="stable")[:10]
        gains = [1 / np.log2(r + 2) for r, i in enumerate(top) if i in relevant]
        ideal = sum(1 / np.log2(r + 2) for r in range(min(10, len(relevant))))
        total += sum(gains) / ideal
    assert total / len(users) > 2 * pop
    new_user = {with_head.items.ids[i].item(): 4.0 for i in range(5)}
    by_score = [i for i, _ in with_head.recommend_new_user(new_user, 10)]
    by_rating = [i for i, _ in with_head.recommend_new_user(new_user, 10, by="rating")]
    assert by_score != by_rating
    # Support shrinkage is for a rating order: refused with a head, accepted without.
    with pytest.raises(ConfigError, match="not a rating"):
        with_head.recommend_new_user(new_user, 10, support_shrinkage=5.0)
    plain = AutoRec(AutoRecConfig(**PLAIN)).fit(train)
    assert len(plain.recommend_new_user(new_user, 10, support_shrinkage=5.0)) == 10


@pytest.mark.parametrize("loss", ["softmax", "wmse"])
def test_fold_in_head_vector_minimises_the_training_objective(planted, loss):
    # The fitted (w, b) of a new user is the minimum of the head's objective restricted to them
    # (autorec_rank.fold_in_user): the gradient there is zero, so nudging w in any direction
    # cannot lower the objective.
    model = AutoRec(
        AutoRecConfig(**PLAIN).replace(**{**HEAD, "rank_loss": loss, "rank_epochs": 3})
    ).fit(planted.train, planted.val)
    rated = np.array([1, 5, 9, 30])
    user = fold_in_user(model, model._head, rated, None)
    codes = model._head._codes.double()
    target = torch.zeros(model.n_items, dtype=torch.float64)
    target[rated] = 1.0
    lam, neg = model.config.rank_lam, model.config.rank_negative_weight

    def objective(w: torch.Tensor, b: float) -> float:
        z = codes @ w + b
        if loss == "softmax":
            data = -(target * torch.log_softmax(z, dim=0)).sum()
        else:
            data = ((neg + (1 - neg) * target) * (target - z) ** 2).sum()
        return float(data + 0.5 * lam * w.pow(2).sum())

    best = objective(user.w, user.b)
    rng = np.random.default_rng(0)
    for _ in range(5):
        nudge = torch.from_numpy(rng.normal(size=user.w.shape)) * 1e-3
        assert objective(user.w + nudge, user.b) > best


def test_head_logits_are_the_decoder_rows_times_the_codes_plus_the_user_bias() -> None:
    # z_ui = w_u . code_i + b_u (module docstring), for the users asked, in their order; the
    # fused addmm must broadcast the bias over items (one per user), not over users.
    g = torch.Generator().manual_seed(0)
    head = RankingHead(n_users=7, k=4, generator=g)
    with torch.no_grad():
        head.decoder_bias.copy_(torch.arange(7.0) * 10)
    codes = torch.rand(5, 4, generator=g)  # 5 items
    users = torch.tensor([6, 0, 3])
    with torch.no_grad():
        z = head.logits(codes, users)
    assert z.shape == (3, 5)
    for row, u in enumerate(users.tolist()):
        for i in range(5):
            expected = float(head.decoder[u].detach() @ codes[i]) + 10.0 * u
            assert float(z[row, i]) == pytest.approx(expected, abs=1e-5)
