"""Two CPU processes (gloo) train I-AutoRec on ML-100k: their weights must agree bit for bit and
their RMSE must match a single-process run within noise (the sums are reduced in another order)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autorec.data import paper_split
from autorec.models.autorec import AutoRec, AutoRecConfig

CONFIG = dict(hidden=(64,), lam=300.0, n_epochs=25, patience=25, seed=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_ml100k(data_dir: str):
    from autorec.data.loaders import load_dataset

    return load_dataset("ml-100k", data_dir=data_dir).ratings


def _worker(rank: int, world: int, data_dir: str, out: str) -> None:
    # A file rendezvous (no port to race for) and gloo on the loopback interface only.
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world
    )
    try:
        split = paper_split(_load_ml100k(data_dir), seed=0)
        model = AutoRec(AutoRecConfig(**CONFIG)).fit(split.train, split.val)
        flat = torch.cat([p.detach().reshape(-1) for p in model.net.parameters()]).numpy()
        np.save(f"{out}/rank{rank}.npy", flat)
        np.save(f"{out}/val{rank}.npy", np.array(model.history.val_rmse))
    finally:
        from autorec.distributed import teardown

        teardown()


@pytest.mark.realdata
def test_two_ranks_agree_and_match_single_process(shared_data_dir, tmp_path) -> None:
    mp.start_processes(
        _worker,
        args=(2, str(shared_data_dir), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    rank0, rank1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(rank0, rank1)  # identical updates on every rank
    val0, val1 = np.load(tmp_path / "val0.npy"), np.load(tmp_path / "val1.npy")
    np.testing.assert_array_equal(val0, val1)  # the validation RMSE is reduced across ranks

    split = paper_split(_load_ml100k(str(shared_data_dir)), seed=0)
    single = AutoRec(AutoRecConfig(**CONFIG)).fit(split.train, split.val)
    # Same objective, same data: the curves differ only by the order of float additions.
    np.testing.assert_allclose(val0, single.history.val_rmse, atol=5e-3)
    assert min(val0) == pytest.approx(min(single.history.val_rmse), abs=2e-3)


@pytest.mark.realdata
def test_torchrun_cli_trains_and_only_rank0_writes(shared_data_dir, tmp_path) -> None:
    env = {
        **os.environ,
        "AUTOREC_DATA_DIR": str(shared_data_dir),
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "autorec",
        "train",
        "--dataset",
        "ml-100k",
        "--model",
        "i-autorec",
        "--hidden",
        "32",
        "--epochs",
        "5",
        "--output",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("test RMSE") == 1  # rank 0 alone reports
    assert (out / "model.json").is_file()
