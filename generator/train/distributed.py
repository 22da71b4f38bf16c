"""Training on several processes (``torchrun``): which rank this process is, and the few
collective steps the loop needs.

torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; with ``WORLD_SIZE`` above 1 the loop
wraps the network in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA). Only rank 0
touches the store and the checkpoints; every rank-0-only step is followed by ``agree``, so
a failure there stops every rank with one line instead of leaving them waiting. A single
process gets ``Ranks.single()``, whose steps do nothing, so its results stay bit-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from generator.errors import OtherRankFailedError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def single(cls) -> Ranks:
        return cls(rank=0, world=1, local_rank=0)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the store and the checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's share of ``indices`` without padding or duplicates: the shares of
        all ranks together are exactly ``indices`` (validation counts every image once)."""
        return indices[self.rank :: self.world]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over all ranks (float64 or int64 tensors on the CPU)."""
        if not self.distributed:
            return values
        on_device = values.to(_collective_device())
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        return on_device.cpu()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def main_only(self, step: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run ``step`` on rank 0 only, then let every rank learn whether it worked: rank 0
        re-raises its own error, the others raise ``OtherRankFailedError``."""
        if not self.distributed:
            return step(*args, **kwargs)
        try:
            result = step(*args, **kwargs) if self.is_main else None
        except BaseException:
            self.agree(ok=False)
            raise
        self.agree(ok=True)
        return result

    def agree(self, *, ok: bool) -> None:
        """Every rank says whether it can go on; if one cannot, all stop."""
        if not self.distributed:
            return
        failed = self.sum(torch.tensor([0 if ok else 1], dtype=torch.int64))
        if ok and int(failed.item()):
            raise OtherRankFailedError(
                f"rank {self.rank}: another rank stopped (its error is above); nothing "
                "committed is lost: fix that and run again (--resume continues the run)"
            )

    def share(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=_collective_device())
        return box[0]  # type: ignore[return-value]

    def copy_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) to every rank: each rank's last training
        batch moved its own, and evaluation and the checkpoint must see one network."""
        if not self.distributed:
            return
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def from_environment(device: torch.device) -> Ranks:
    """This process's ranks: one process unless torchrun started several, in which case
    the process group is joined (nccl on CUDA, gloo on the CPU) and CUDA is per local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks.single()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank=rank, world=world, local_rank=local_rank)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device this rank trains on: its own GPU under torchrun."""
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return device


def stop(ranks: Ranks) -> None:
    """Leave the process group (only a group this process joined)."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The network as the training step runs it: DistributedDataParallel under torchrun
    (it starts every rank from rank 0's weights), else the network itself."""
    if not ranks.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _collective_device() -> torch.device:
    """nccl reduces CUDA tensors only; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
