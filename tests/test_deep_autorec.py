"""experiments/deep_autorec.py on the synthetic low-rank ratings (no real data): its ``pretrain``
attempt is the model's own ``pretrain="layerwise"`` option, and its ``--retrain`` refits every
stage for the epochs validation chose (the stages themselves: tests/models/test_pretrain.py)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from autorec.data import paper_split
from autorec.models.autorec import AutoRec, AutoRecConfig
from tests.conftest import REPO_ROOT, low_rank_ratings

_SPEC = importlib.util.spec_from_file_location(
    "deep_autorec", REPO_ROOT / "experiments" / "deep_autorec.py"
)
assert _SPEC is not None and _SPEC.loader is not None
da = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(da)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A deep net small enough for the test data, pre-trained layer-wise (config is frozen: shared).
TINY_DEEP = AutoRecConfig(
    hidden=(6, 3, 6),
    lam=10.0,
    n_epochs=5,
    pretrain="layerwise",
    pretrain_lam=10.0,
    pretrain_middle_epochs=20,
    ranking_head=False,
)


def test_run_reports_the_models_validation_stopped_fit() -> None:
    split = paper_split(low_rank_ratings(), seed=0)
    cfg = TINY_DEEP
    record = da.run(cfg, split, retrain=False)
    model = AutoRec(cfg).fit(split.train, split.val)
    final = record["final"]
    assert final["best_epoch"] == model.history.best_epoch
    assert final["val_curve"] == model.history.val_rmse
    assert final["pretrained"]["stage1_best_epoch"] == model.pretrained["stage1_best_epoch"]
    test = split.test
    err = np.clip(model.predict(test.user_idx, test.item_idx), 1, 5) - test.rating
    assert final["test_rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))), abs=1e-6)
    assert "retrain" not in record


def test_retrain_refits_every_stage_for_the_epochs_validation_chose() -> None:
    split = paper_split(low_rank_ratings(), seed=0)
    cfg = TINY_DEEP
    record = da.run(cfg, split, retrain=True)
    final, again = record["final"], record["retrain"]
    assert again["config"]["n_epochs"] == final["best_epoch"] == again["epochs_run"]
    step1 = final["pretrained"]["stage1_best_epoch"]
    assert again["config"]["pretrain_epochs"] == step1
    assert again["pretrained"]["stage1_epochs_run"] == step1
    assert again["val_rmse"] is None  # no validation left in the retrain
