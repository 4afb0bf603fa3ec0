"""The one rank helper, and DDP: torchrun's environment, the process group, wrap/unwrap,
reductions, rank-0 gating. repro.engine.ranks (cells over ranks) builds on it.

`torchrun --nproc_per_node N ...` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; `init_distributed` reads them (backend nccl on CUDA, gloo on the CPU). A
plain `python ...` run has no WORLD_SIZE and stays single-process: every helper here
then degrades to the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from repro.train.ema import _unwrap


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_rank() -> int:
    """This process's RANK as torchrun set it (0 outside torchrun), whether or not it joined the
    process group yet: e.g. "rank 0 alone writes" before and after a training's group."""
    return int(os.environ.get("RANK", "0"))


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    """Whether torchrun started several copies of this process (they are to join one group)."""
    return launched_world_size() > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 when it has joined none)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The process group's size (1 when this process has joined none)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (the one that writes checkpoints and logs) and in single-process runs."""
    return rank() == 0


def init_distributed(device: str | torch.device = "cpu", timeout: timedelta = timedelta(minutes=60)) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    "cuda" without an index becomes cuda:LOCAL_RANK under torchrun. A group that the
    caller initialized already is used as it is. `timeout` bounds how long ranks wait
    in a collective, e.g. while rank 0 alone runs the epoch-end evaluation.
    """
    env_world = launched_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    multi = env_world > 1 or is_distributed()
    if dev.type == "cuda" and dev.index is None and multi:
        dev = torch.device("cuda", local_rank)
    if env_world > 1 and not is_distributed():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://",
                                timeout=timeout)
    return DistInfo(rank=rank(), world_size=world_size(), local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group (every group this process joined), on every rank, before the
    process exits: a gloo group left to the interpreter's shutdown can abort the process
    ("terminate called without an active exception") while its threads are torn down."""
    if is_distributed():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` in a multi-process run, else `model` itself."""
    if not is_distributed() or world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (or the model itself)."""
    return _unwrap(model)


def _collective_device(t: torch.Tensor) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over all ranks (for logging a loss); `t` itself in a single process."""
    if not is_distributed():
        return t
    dev = _collective_device(t)
    buf = t.detach().to(dev, torch.float64 if t.is_floating_point() else t.dtype).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return (buf / world_size()).to(t.device, t.dtype)


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of an equal-shaped tensor (e.g. RNG states), in rank order, on t's device."""
    if not is_distributed():
        return [t]
    dev = _collective_device(t)
    src = t.detach().to(dev).contiguous()
    out = [torch.empty_like(src) for _ in range(world_size())]
    dist.all_gather(out, src)
    return [o.to(t.device) for o in out]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
