"""The shared training loop (models/training.py): the stopping rule, history, progress,
divergence, and checkpoint/resume to a bit-identical result."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from autorec.errors import ConfigError, ModelFitError, TrainingInterrupted
from autorec.models import MODEL_NAMES, get_model_class, make_model
from autorec.models.training import (
    CHECKPOINT_NAME,
    Checkpointer,
    EarlyStopping,
    EpochScores,
    IterativeConfig,
    TrainingSteps,
    is_iterative,
    run_epochs,
)

from .test_contract import FAST

ITERATIVE = [n for n in MODEL_NAMES if is_iterative(get_model_class(n).config_class)]


# Bit-identical resumption is promised with one thread (several may reorder MKL's sums).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _curve(stopper: EarlyStopping, values: list[float]) -> tuple[list[int], int]:
    """(epochs that became the best, epoch after which training stopped) for a val curve."""
    bests, stopped = [], 0
    for epoch, value in enumerate(values, start=1):
        is_best, stop = stopper.update(epoch, value)
        if is_best:
            bests.append(epoch)
        if stop:
            stopped = epoch
            break
    return bests, stopped


def test_early_stopping_rule_by_hand() -> None:
    # Curve 1.0, 0.9, 0.95, 0.96, 0.97: epoch 2 is the best; with patience 3 the three epochs
    # after it without improvement stop training at epoch 5.
    stopper = EarlyStopping(patience=3, min_epochs=0, min_delta=0.0, keep_small_gains=False)
    assert _curve(stopper, [1.0, 0.9, 0.95, 0.96, 0.97, 0.5]) == ([1, 2], 5)
    assert (stopper.best_epoch, stopper.best_val) == (2, 0.9)


def test_min_delta_ignores_small_gains_unless_kept() -> None:
    # Gains of 0.005 < min_delta 0.01: without keep_small_gains they are not improvements at
    # all (epoch 1 stays best, stop after 2 more); with it they become the best epoch but do not
    # restart the patience clock (BiasedMF's rule), so the stop comes at the same epoch.
    curve = [1.0, 0.995, 0.99, 0.5]
    plain = EarlyStopping(patience=2, min_epochs=0, min_delta=0.01, keep_small_gains=False)
    assert _curve(plain, curve) == ([1], 3)
    kept = EarlyStopping(patience=2, min_epochs=0, min_delta=0.01, keep_small_gains=True)
    assert _curve(kept, curve) == ([1, 2, 3], 3)
    assert kept.best_val == 0.99


def test_min_epochs_delays_the_stop() -> None:
    stopper = EarlyStopping(patience=1, min_epochs=4, min_delta=0.0, keep_small_gains=False)
    assert _curve(stopper, [1.0, 1.1, 1.2, 1.3, 1.4]) == ([1], 4)


def test_iterative_is_the_config_class_not_a_field_name() -> None:
    assert sorted(ITERATIVE) == [
        "biased-mf",
        "i-autorec",
        "i-kernelnet",
        "i-rbm",
        "llorma",
        "u-autorec",
        "u-rbm",
    ]
    for name in set(MODEL_NAMES) - set(ITERATIVE):
        assert not is_iterative(get_model_class(name).config_class)


@pytest.mark.parametrize("field", ["n_epochs", "patience", "min_epochs", "min_delta"])
def test_iterative_config_validated_once(field: str) -> None:
    bad = {"n_epochs": 0, "patience": 0, "min_epochs": -1, "min_delta": -0.1}[field]
    for name in ITERATIVE:
        with pytest.raises(ConfigError, match=field):
            make_model(name, **{field: bad})


def _fast(name: str, **overrides) -> object:
    return make_model(name, **{**FAST[name], **overrides})


@pytest.mark.parametrize("name", ITERATIVE)
def test_retrain_without_validation_records_no_val_column(name, low_rank_split) -> None:
    model = _fast(name, n_epochs=3).fit(low_rank_split.train)
    h = model.history
    assert h.n_epochs == 3 and h.best_epoch == 3 and len(h.train_rmse) == 3
    assert h.val_rmse == [] and h.best_val_rmse is None


def test_progress_hook_reports_epoch_total_and_best(low_rank_split) -> None:
    seen = []
    model = _fast("biased-mf", n_epochs=6, patience=10).fit(
        low_rank_split.train, low_rank_split.val, progress=seen.append
    )
    assert [p.epoch for p in seen] == list(range(1, model.history.n_epochs + 1))
    assert {p.n_epochs for p in seen} == {6}
    for i, p in enumerate(seen):
        assert p.best_val_rmse == min(model.history.val_rmse[: i + 1])
        assert p.elapsed_seconds >= 0
    assert seen[-1].stopping and not any(p.stopping for p in seen[:-1])


def test_non_finite_rmse_raises(low_rank_split) -> None:
    model = _fast("biased-mf")
    model.fit(low_rank_split.train)  # sets up vocabularies etc.
    model.history = type(model.history)()
    steps = TrainingSteps(lambda epoch: EpochScores(math.nan), lambda into: {}, lambda kept: None)
    with pytest.raises(ModelFitError, match="diverged: training RMSE became nan at epoch 1"):
        run_epochs(model, steps, low_rank_split.train, None)


def test_checkpoint_refused_for_a_model_trained_in_one_step(low_rank_split, tmp_path) -> None:
    with pytest.raises(ConfigError, match="nothing to checkpoint"):
        make_model("bias").fit(low_rank_split.train, checkpoint=Checkpointer(tmp_path))


def test_iterative_config_is_a_base_of_every_iterative_config() -> None:
    for name in ITERATIVE:
        assert issubclass(get_model_class(name).config_class, IterativeConfig)


# -- checkpoint and resume -------------------------------------------------------------------------
RESUME_CASES = [(name, {}) for name in ITERATIVE] + [
    ("i-autorec", {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "input_dropout": 0.2}),
    ("i-autorec", {"optimizer": "lbfgs"}),
]


class _Stop(Exception):
    pass


def _interrupt_at(epoch: int):
    def hook(progress) -> None:
        if progress.epoch == epoch:
            raise _Stop

    return hook


def _assert_same_fit(a, b, split) -> None:
    sa, sb = a._state(), b._state()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    assert a.history.train_rmse == b.history.train_rmse
    assert a.history.val_rmse == b.history.val_rmse
    assert a.history.best_epoch == b.history.best_epoch
    test = split.test
    np.testing.assert_array_equal(
        a.predict(test.user_idx, test.item_idx), b.predict(test.user_idx, test.item_idx)
    )


@pytest.mark.parametrize(("name", "extra"), RESUME_CASES)
def test_resume_after_a_crash_is_bit_identical(name, extra, low_rank_split, tmp_path) -> None:
    # Uninterrupted reference, then a run that dies in the progress hook at a random epoch
    # (after that epoch, before its checkpoint: the last one is the epoch before), then a
    # resumed run. Weights, histories and predictions must be equal bit for bit.
    settings = {**extra, "n_epochs": 8, "patience": 20}
    train, val = low_rank_split.train, low_rank_split.val
    reference = _fast(name, **settings).fit(train, val)
    crash_at = int(np.random.default_rng(len(name) + len(extra)).integers(2, 8))
    ckpt = Checkpointer(tmp_path, every_epochs=1)
    with pytest.raises(_Stop):
        _fast(name, **settings).fit(train, val, progress=_interrupt_at(crash_at), checkpoint=ckpt)
    assert ckpt.path.is_file()
    epochs = []
    resumed = _fast(name, **settings).fit(
        train, val, checkpoint=ckpt, resume=True, progress=lambda p: epochs.append(p.epoch)
    )
    assert epochs[0] == crash_at  # it resumed after the last checkpoint, not from scratch
    _assert_same_fit(reference, resumed, low_rank_split)
    assert not ckpt.path.exists()  # a finished fit removes its checkpoint


def test_sigint_writes_a_checkpoint_and_raises_training_interrupted(
    low_rank_split, tmp_path
) -> None:
    train, val = low_rank_split.train, low_rank_split.val
    settings = {"n_epochs": 10, "patience": 20}
    # The handler the fit must give back: Python's default, or SIG_IGN when the test run was
    # started in the background (``nohup ... &``).
    before = signal.getsignal(signal.SIGINT)
    reference = _fast("i-autorec", **settings).fit(train, val)

    def send_sigint(progress) -> None:
        if progress.epoch == 4:
            os.kill(os.getpid(), signal.SIGINT)

    # No periodic checkpoints: the one written is the interruption's, after epoch 4.
    ckpt = Checkpointer(tmp_path, every_epochs=None)
    with pytest.raises(TrainingInterrupted) as info:
        _fast("i-autorec", **settings).fit(train, val, progress=send_sigint, checkpoint=ckpt)
    assert info.value.checkpoint == ckpt.path and info.value.epoch == 4
    assert "SIGINT after epoch 4" in str(info.value)
    epochs = []
    resumed = _fast("i-autorec", **settings).fit(
        train, val, checkpoint=ckpt, resume=True, progress=lambda p: epochs.append(p.epoch)
    )
    assert epochs[0] == 5
    _assert_same_fit(reference, resumed, low_rank_split)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_resume_refuses_another_config(low_rank_split, tmp_path) -> None:
    train, val = low_rank_split.train, low_rank_split.val
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(_Stop):
        _fast("biased-mf").fit(train, val, progress=_interrupt_at(3), checkpoint=ckpt)
    with pytest.raises(ConfigError, match="another configuration"):
        _fast("biased-mf", reg=0.5).fit(train, val, checkpoint=ckpt, resume=True)
    with pytest.raises(ConfigError, match="other training data"):
        _fast("biased-mf").fit(val, train, checkpoint=ckpt, resume=True)


_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from conftest import low_rank_ratings
    from autorec.data import paper_split
    from autorec.models import make_model
    from autorec.models.training import Checkpointer
    split = paper_split(low_rank_ratings(), seed=0)
    def hook(progress):
        if progress.epoch == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
    make_model("i-autorec", **{settings!r}).fit(
        split.train, split.val, progress=hook, checkpoint=Checkpointer({folder!r}, every_epochs=2)
    )
    """
)


def test_sigkill_at_a_random_epoch_then_resume(tmp_path) -> None:
    # A separate process is killed outright (no handler runs) at a random epoch; the checkpoint
    # it left (every 2 epochs, written atomically) resumes here to the uninterrupted result.
    from autorec.data import paper_split

    from ..conftest import low_rank_ratings

    split = paper_split(low_rank_ratings(), seed=0)
    settings = {**FAST["i-autorec"], "n_epochs": 12, "patience": 30}
    kill_at = int(np.random.default_rng().integers(3, 12))
    code = _KILLED_CHILD.format(
        tests=str(Path(__file__).resolve().parents[1]),
        kill_at=kill_at,
        settings=settings,
        folder=str(tmp_path),
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    meta_epoch = _checkpoint_epoch(tmp_path / CHECKPOINT_NAME)
    assert meta_epoch == 2 * ((kill_at - 1) // 2)  # the last even epoch before the kill
    reference = make_model("i-autorec", **settings).fit(split.train, split.val)
    epochs = []
    resumed = make_model("i-autorec", **settings).fit(
        split.train,
        split.val,
        checkpoint=Checkpointer(tmp_path),
        resume=True,
        progress=lambda p: epochs.append(p.epoch),
    )
    assert epochs[0] == meta_epoch + 1
    _assert_same_fit(reference, resumed, split)


def _checkpoint_epoch(path: Path) -> int:
    from autorec.models.training import read_checkpoint

    meta, _ = read_checkpoint(path)
    return int(meta["epoch"])


def test_damaged_checkpoint_is_one_line(tmp_path, low_rank_split) -> None:
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="not a readable autorec checkpoint"):
        _fast("biased-mf").fit(
            low_rank_split.train, low_rank_split.val, checkpoint=Checkpointer(tmp_path), resume=True
        )


def _flat_weights(model) -> np.ndarray:
    """The kept weights, then every epoch's training and validation RMSE (the kept weights are
    the best epoch's, which may come before the interruption; the curves cover every epoch)."""
    weights = torch.cat([p.detach().reshape(-1) for p in model.net.parameters()]).double()
    curves = torch.tensor(model.history.train_rmse + model.history.val_rmse, dtype=torch.float64)
    return torch.cat([weights, curves]).numpy()


def _distributed_worker(rank: int, world: int, out: str) -> None:
    import torch.distributed as dist

    from autorec.data import paper_split
    from autorec.distributed import teardown

    from ..conftest import low_rank_ratings

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world
    )
    try:
        split = paper_split(low_rank_ratings(), seed=0)
        # Adam with input dropout: each rank's generator draws for its own rows, so the ranks'
        # generator states differ and each must get its own back.
        settings = {**FAST["i-autorec"], "optimizer": "adam", "lr": 0.01, "batch_size": 16}
        settings.update(input_dropout=0.2, n_epochs=8, patience=20)
        straight = make_model("i-autorec", **settings).fit(split.train, split.val)
        ckpt = Checkpointer(Path(out) / "ckpt", every_epochs=1)
        try:
            make_model("i-autorec", **settings).fit(
                split.train, split.val, progress=_interrupt_at(5), checkpoint=ckpt
            )
        except _Stop:
            pass
        epochs: list[int] = []
        resumed = make_model("i-autorec", **settings).fit(
            split.train,
            split.val,
            checkpoint=ckpt,
            resume=True,
            progress=lambda p: epochs.append(p.epoch),
        )
        assert epochs[0] == 5, epochs  # resumed after the checkpoint of epoch 4
        np.save(f"{out}/straight{rank}.npy", _flat_weights(straight))
        np.save(f"{out}/resumed{rank}.npy", _flat_weights(resumed))
    finally:
        teardown()


def test_distributed_rank0_writes_every_rank_resumes(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.start_processes(
        _distributed_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    for rank in (0, 1):
        np.testing.assert_array_equal(
            np.load(tmp_path / f"resumed{rank}.npy"), np.load(tmp_path / f"straight{rank}.npy")
        )
    assert not (tmp_path / "ckpt" / CHECKPOINT_NAME).exists()
