"""Distributed training over ``torch.distributed``.

Launch any ``train`` or ``evaluate`` command under torchrun::

    torchrun --nproc_per_node=2 -m autorec train --dataset ml-1m --model i-autorec
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 \\
        --nproc_per_node=8 -m autorec train --dataset netflix --model i-autorec --device cuda

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; the CLI then
joins the process group (gloo on CPU, NCCL on GPUs, one GPU per local rank). Every rank loads the
data and holds a full replica of the weights; the rows of the training matrix (items for
I-AutoRec, users for U-AutoRec) are sharded round-robin across ranks, each rank computes the loss
and gradients of its rows, and the gradients are summed with one all-reduce per parameter before
every optimiser step. That is the data-parallel scheme of DistributedDataParallel, done by hand
because AutoRec's expensive products are sparse kernels outside a module's ``forward`` and the
paper's optimisers are full-batch (one all-reduce per epoch). All ranks therefore apply identical
updates and stay bit-identical; only rank 0 logs, evaluates and saves.

Without those variables everything runs as a single process and this module does nothing.
See ``docs/distributed.md`` for how the weights would be sharded once they outgrow one device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environ(cls) -> DistEnv:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistEnv:
    """Join the process group described by the environment (no-op for a single process).

    The backend is NCCL when the run uses CUDA and gloo otherwise.
    """
    env = DistEnv.from_environ()
    if not env.is_distributed or not dist.is_available() or dist.is_initialized():
        return env
    use_cuda = (device or "cpu").startswith("cuda") or (
        device == "auto" and torch.cuda.is_available()
    )
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return env


def teardown() -> None:
    """Leave the process group once every rank is done: a rank that destroys its group while
    another still talks to it makes gloo abort that other rank."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_device(name: str) -> str:
    """``cuda`` means this rank's own GPU (``cuda:LOCAL_RANK``) in a distributed run."""
    env = DistEnv.from_environ()
    if env.is_distributed and name in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{env.local_rank}"
    return name
