"""The pre-training parts of experiments/deep_autorec.py on the synthetic low-rank ratings (no
real data): the codes it stacks on, the second layer's fit, and the stacked start."""

from __future__ import annotations

import argparse
import importlib.util

import torch

from autorec.data import paper_split
from autorec.models.autorec import AutoRec, AutoRecConfig
from tests.conftest import REPO_ROOT, low_rank_ratings

_SPEC = importlib.util.spec_from_file_location(
    "deep_autorec", REPO_ROOT / "experiments" / "deep_autorec.py"
)
assert _SPEC is not None and _SPEC.loader is not None
da = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(da)


def test_item_codes_are_the_models_own_codes_of_its_training_items() -> None:
    # A transposed or shifted densification (users for items) would give other codes.
    train = paper_split(low_rank_ratings(), seed=0).train
    model = AutoRec(AutoRecConfig(hidden=(6,), n_epochs=3, ranking_head=False)).fit(train)
    torch.testing.assert_close(da.item_codes(model, train), model._all_codes(), atol=1e-5, rtol=0)


def test_pretrain_middle_fits_the_codes() -> None:
    # Codes of rank 2 through a width-3 bottleneck: the fitted layer must reconstruct them far
    # better than its random start (whose error the first epoch's starts from), and the weights
    # come back in AutoRecNet's (out, in) layout.
    gen = torch.Generator().manual_seed(0)
    codes = torch.sigmoid(torch.randn(60, 2, generator=gen) @ torch.randn(2, 8, generator=gen))
    w2, b2, w3, b3 = da.pretrain_middle(codes, 3, "sigmoid", 0.0, 1, seed=0)
    first = (torch.sigmoid(torch.sigmoid(codes @ w2.t() + b2) @ w3.t() + b3) - codes).pow(2).mean()
    w2, b2, w3, b3 = da.pretrain_middle(codes, 3, "sigmoid", 0.0, 300, seed=0)
    assert (w2.shape, b2.shape, w3.shape, b3.shape) == ((3, 8), (3,), (8, 3), (8,))
    fitted = (torch.sigmoid(torch.sigmoid(codes @ w2.t() + b2) @ w3.t() + b3) - codes).pow(2).mean()
    assert float(fitted) < 0.1 * float(first)


def test_stacked_start_carries_each_stages_weights(tmp_path) -> None:
    split = paper_split(low_rank_ratings(), seed=0)
    args = argparse.Namespace(pre_lam=10.0, pre_lam2=0.0, pre_epochs=20, seed=0, cache=tmp_path)
    cfg = AutoRecConfig(hidden=(6, 3, 6), n_epochs=5, ranking_head=False)
    record: dict = {}
    start = da.stacked_start(cfg, split, args, record)
    # Step 1 is reproducible from the seed: refit it and compare its outer layers.
    one_cfg = cfg.replace(hidden=(6,), lam=10.0, n_epochs=500)
    one = AutoRec(one_cfg).fit(split.train, split.val)
    assert record["stage1"]["best_epoch"] == one.history.best_epoch
    for name in ("encoder", "encoder_bias", "decoder", "decoder_bias"):
        torch.testing.assert_close(getattr(start.net, name), getattr(one.net, name))
    w2, b2, w3, b3 = da.pretrain_middle(da.item_codes(one, split.train), 3, "sigmoid", 0.0, 20, 0)
    for got, want in zip(
        (*start.net.middle_weights, *start.net.middle_biases), (w2, w3, b2, b3), strict=True
    ):
        torch.testing.assert_close(got.detach(), want)
    # The cache gives back the same net.
    again = da.stacked_start(cfg, split, args, {})
    for name, value in start.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[name], value)
