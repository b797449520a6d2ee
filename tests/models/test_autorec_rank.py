"""The ranking head of I-AutoRec (autorec.models.autorec_rank)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autorec.data import IdIndex, Ratings, paper_split
from autorec.errors import ConfigError
from autorec.models.autorec import AutoRec, AutoRecConfig
from autorec.models.autorec_rank import BETA_GRID, combine, ndcg_at
from autorec.models.popularity import Popularity
from autorec.ranking import evaluate_ranking, rank_scores, score_block

RATING = dict(hidden=(8,), lam=1.0, n_epochs=8, patience=5)
HEAD = dict(ranking_head=True, rank_hidden=16, rank_epochs=40, rank_lr=0.02, rank_lam=1.0)


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
    plain = AutoRec(AutoRecConfig(**RATING)).fit(planted.train, planted.val)
    users = np.repeat(np.arange(planted.train.n_users), planted.train.n_items)
    items = np.tile(np.arange(planted.train.n_items), planted.train.n_users)
    np.testing.assert_array_equal(plain.predict(users, items), with_head.predict(users, items))
    assert plain.history.val_rmse == with_head.history.val_rmse
    for key, value in plain.net.state_dict().items():
        assert torch.equal(value, with_head.net.state_dict()[key]), key


def test_head_off_config_loads_from_an_old_dict():
    # A config saved before the head existed has no rank_* fields: it loads with the head off.
    old = {k: v for k, v in AutoRecConfig().to_dict().items() if not k.startswith("rank")}
    cfg = AutoRecConfig.from_dict(old)
    assert cfg == AutoRecConfig() and not cfg.ranking_head


def test_head_off_ranks_by_the_unclipped_predicted_rating(planted):
    plain = AutoRec(AutoRecConfig(**RATING)).fit(planted.train)
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
    plain = AutoRecConfig().memory_estimate(3706, 6040, 800_000)
    with_head = AutoRecConfig(ranking_head=True).memory_estimate(3706, 6040, 800_000)
    assert "ranking head" not in plain
    # The dense 3,706 x 6,040 float32 target alone is 89.5 MB.
    assert with_head["ranking head"] >= 4 * 3706 * 6040
    assert {k: v for k, v in with_head.items() if k != "ranking head"} == plain
