"""Data-parallel training: who this process is, where it computes, and the collectives the loop
needs (agreeing on non-finite values, averaging logged numbers, barriers).

Launch with ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``): :meth:`Distribution.from_env`
initialises the process group (NCCL on CUDA, Gloo on the CPU) unless the caller already did.
A single process is a :class:`Distribution` of world size 1 whose collectives do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowsr.train.errors import ConfigError

__all__ = ["Distribution", "ModelCalls", "resolve_device"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of ``train.device`` (``auto``: ``cuda:LOCAL_RANK`` when CUDA is there, else the CPU)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config: train.device is 'cuda' but no CUDA device is available")
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config: train.device {name!r} is not a device") from None


@dataclass
class Distribution:
    """This process in a data-parallel run (``rank`` of ``world``; 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device_name: str = "auto") -> Distribution:
        """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``),
        or the one the caller initialised; a single process otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            cuda = device_name != "cpu" and torch.cuda.is_available()
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        return cls()

    @property
    def enabled(self) -> bool:
        """Whether there are other processes."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes logs and checkpoints and validates."""
        return self.rank == 0

    def slots(self, batch: int) -> range:
        """The positions of this process's samples in a global batch of ``batch``."""
        b = batch // self.world
        return range(self.rank * b, (self.rank + 1) * b)

    def agree(self, ok: bool, device: torch.device | str = "cpu") -> bool:
        """``True`` only if ``ok`` holds on every process."""
        if not self.enabled:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() == 1.0)

    def all_finite(self, value: Tensor) -> bool:
        """Whether ``value`` is finite on every process (so all of them skip a step together)."""
        return self.agree(bool(torch.isfinite(value.detach()).all()), value.device)

    def mean(self, record: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
        """Each number of ``record`` averaged over the processes (the same keys on each)."""
        if not self.enabled or not record:
            return record
        keys = sorted(record)
        t = torch.tensor([record[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def wrap(self, module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in ``DistributedDataParallel`` (itself without other processes)."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(module, device_ids=ids, find_unused_parameters=find_unused_parameters)


class ModelCalls(nn.Module):
    """Routes every gradient-carrying model call through ``forward`` (what DDP needs to see).

    ``calls("training_losses", hr, lr, noise, weights)`` is ``model.training_losses(...)``; wrapped
    in DDP, the gradients of whatever the call computes are averaged across processes.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.model, method)(*args, **kwargs)
