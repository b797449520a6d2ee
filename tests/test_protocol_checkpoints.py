"""The protocol's checkpoints: each fit checkpoints into its own folder, finished grid points are
recorded and not fitted again on resume, and a resumed run ends bit-identical to an
uninterrupted one (one torch thread)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autorec import protocol
from autorec.data import paper_split
from autorec.errors import ConfigError
from autorec.models import make_model
from autorec.protocol import CANDIDATES_NAME, ProtocolCheckpoints, run_protocol

# The checkpoints of the rating fits; the ranking head (fitted after the search) is off here.
FAST = {"hidden": (8,), "n_epochs": 12, "patience": 4, "ranking_head": False}
GRID = {"lam": (1.0, 100.0)}


# Resumed runs are bit-identical to uninterrupted ones with one thread (several may reorder
# MKL's sums).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Stop(KeyboardInterrupt):
    """Stands in for Ctrl-C at a chosen epoch of a chosen phase."""


def _stop_at(phase: str, epoch: int):
    def hook(name: str, progress) -> None:
        if name == phase and progress.epoch == epoch:
            raise Stop

    return hook


def _counting_fits(monkeypatch) -> list[dict]:
    made: list[dict] = []

    def counting(name, **kwargs):
        made.append(kwargs)
        return make_model(name, **kwargs)

    monkeypatch.setattr(protocol, "make_model", counting)
    return made


def _predictions(model, split) -> np.ndarray:
    return model.predict(split.test.user_idx, split.test.item_idx)


@pytest.mark.parametrize("retrain", [True, False], ids=["retrain", "no-retrain"])
def test_resume_skips_finished_points_and_matches_an_uninterrupted_run(
    low_rank, tmp_path, monkeypatch, retrain
) -> None:
    kwargs = dict(seed=0, overrides=FAST, grid=GRID, open_above=(), retrain=retrain)
    reference = run_protocol(low_rank, "i-autorec", **kwargs)
    ckpt = ProtocolCheckpoints(tmp_path / "ckpt", every_epochs=1, every_seconds=None)
    # Interrupted in the second grid point, after its epoch-3 checkpoint was written.
    with pytest.raises(Stop):
        run_protocol(
            low_rank, "i-autorec", progress=_stop_at("lam=100 (2/2)", 4), **kwargs, checkpoints=ckpt
        )
    saved = json.loads((ckpt.directory / CANDIDATES_NAME).read_text())
    assert [e["key"] for e in saved["entries"]] == ["lam=1.0"]
    assert (ckpt.directory / "lam=100.0" / "checkpoint.safetensors").is_file()

    made = _counting_fits(monkeypatch)
    resumed = run_protocol(
        low_rank,
        "i-autorec",
        checkpoints=ProtocolCheckpoints(ckpt.directory, 1, None, resume=True),
        **kwargs,
    )
    # lam=1 finished before the interruption: only lam=100 (resumed) and the retrain are made.
    assert [m.get("lam") for m in made] == [100.0] + (
        [reference.record["hyperparameters"]["lam"]] if retrain else []
    )
    assert resumed.record["test_rmse"] == reference.record["test_rmse"]
    assert resumed.record["candidates"] == reference.record["candidates"]
    assert resumed.record["learning_curve"] == reference.record["learning_curve"]
    assert np.array_equal(
        _predictions(resumed.model, resumed.split), _predictions(reference.model, reference.split)
    )


def test_an_interrupted_retrain_resumes_from_its_own_checkpoint(
    low_rank, tmp_path, monkeypatch
) -> None:
    kwargs = dict(seed=1, overrides=FAST, grid={}, open_above=())
    reference = run_protocol(low_rank, "i-autorec", **kwargs)
    ckpt = ProtocolCheckpoints(tmp_path / "ckpt", every_epochs=2, every_seconds=None)
    with pytest.raises(Stop):
        run_protocol(
            low_rank, "i-autorec", progress=_stop_at("retrain", 3), checkpoints=ckpt, **kwargs
        )
    assert (ckpt.directory / "retrain" / "checkpoint.safetensors").is_file()
    made = _counting_fits(monkeypatch)
    resumed = run_protocol(
        low_rank,
        "i-autorec",
        checkpoints=ProtocolCheckpoints(ckpt.directory, 2, None, resume=True),
        **kwargs,
    )
    assert len(made) == 1  # the retrain only: the fit on train finished
    assert resumed.record["test_rmse"] == reference.record["test_rmse"]
    assert resumed.model.history.n_epochs == reference.model.history.n_epochs


def test_resuming_another_run_is_refused(low_rank, tmp_path) -> None:
    kwargs = dict(seed=0, overrides=FAST, open_above=())
    ckpt = ProtocolCheckpoints(tmp_path / "ckpt", every_epochs=1, every_seconds=None)
    with pytest.raises(Stop):
        run_protocol(
            low_rank,
            "i-autorec",
            grid=GRID,
            progress=_stop_at("lam=100 (2/2)", 2),
            checkpoints=ckpt,
            **kwargs,
        )
    again = ProtocolCheckpoints(ckpt.directory, 1, None, resume=True)
    with pytest.raises(ConfigError, match="another run"):
        run_protocol(low_rank, "i-autorec", grid={"lam": (1.0, 300.0)}, checkpoints=again, **kwargs)
    other_split = paper_split(low_rank, seed=5)
    with pytest.raises(ConfigError, match="another run"):
        run_protocol(
            low_rank, "i-autorec", grid=GRID, split=other_split, checkpoints=again, **kwargs
        )


def test_without_resume_old_checkpoints_are_cleared(low_rank, tmp_path, monkeypatch) -> None:
    kwargs = dict(seed=0, overrides=FAST, grid=GRID, open_above=())
    ckpt = ProtocolCheckpoints(tmp_path / "ckpt", every_epochs=1, every_seconds=None)
    with pytest.raises(Stop):
        run_protocol(
            low_rank, "i-autorec", progress=_stop_at("lam=100 (2/2)", 2), checkpoints=ckpt, **kwargs
        )
    made = _counting_fits(monkeypatch)
    run_protocol(low_rank, "i-autorec", checkpoints=ckpt, **kwargs)
    assert len(made) == 3  # both points and the retrain, from scratch


def test_an_interrupted_warm_retrain_refits_its_start_and_matches(
    low_rank, tmp_path, monkeypatch
) -> None:
    # warm_retrain_epochs: the retrain starts from the chosen point's model, which a resume that
    # skipped the finished fit does not hold: it is fitted again, to the same weights.
    kwargs = dict(seed=1, overrides={**FAST, "warm_retrain_epochs": 4}, grid={}, open_above=())
    reference = run_protocol(low_rank, "i-autorec", **kwargs)
    ckpt = ProtocolCheckpoints(tmp_path / "ckpt", every_epochs=2, every_seconds=None)
    with pytest.raises(Stop):
        run_protocol(
            low_rank, "i-autorec", progress=_stop_at("retrain", 3), checkpoints=ckpt, **kwargs
        )
    made = _counting_fits(monkeypatch)
    resumed = run_protocol(
        low_rank,
        "i-autorec",
        checkpoints=ProtocolCheckpoints(ckpt.directory, 2, None, resume=True),
        **kwargs,
    )
    assert len(made) == 2  # the start, fitted again, and the retrain
    assert resumed.model.history.n_epochs == reference.model.history.n_epochs == 4
    assert resumed.record["test_rmse"] == reference.record["test_rmse"]
