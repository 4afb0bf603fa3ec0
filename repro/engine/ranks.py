"""Sharded cells under torchrun: each rank computes its share of a cell's work units; rank 0 gathers.

`torchrun --nproc_per_node N -m repro.cli run SPEC` starts N copies of the run. They join one
process group (gloo on the CPU, NCCL on CUDA, through repro.train.distributed), agree on rank 0's
list of unfinished cells, and go through the cells together. Inside a cell a runner that shards
(its module sets SHARDS_CELLS = True) asks `shard_indices(n)` for this rank's units, computes
them, and hands `gather_units` a {unit index: payload} dict; rank 0 gets every unit's payload in
unit order and computes the metrics, the other ranks get None. Only rank 0 writes cell files
and MLflow runs.

The unit is fixed by the spec, not by the number of ranks (e.g. the sampling batch j, whose
latents come from ctx.generator("latents", j) whatever rank draws them): the images and the
bits of every batch are the same for any world size, so a cell's values are too. (NVlabs/edm's
generate.py shards seeds and re-batches them per rank, so its batches depend on the world size.)

Objects travel through a gloo group even when the main backend is NCCL: payloads are CPU
tensors, and gather of Python objects needs no CUDA memory that way.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch

from repro.specs import cell_key
from repro.tracking.runs import NullRun
from repro.train.distributed import cleanup_distributed, init_distributed, is_distributed, launched_by_torchrun, rank, world_size

# A non-sharding runner's cell runs on rank 0 alone while the others wait at the next collective:
# the wait is bounded by the process group's timeout, so the run's group allows long cells.
RUN_TIMEOUT = timedelta(hours=24)

_object_group: Any = None


def join(device: torch.device) -> torch.device:
    """Join torchrun's process group (if launched by it) and return this rank's device:
    a CUDA device without an index becomes cuda:LOCAL_RANK."""
    if not launched_by_torchrun():
        return device
    return init_distributed(device, timeout=RUN_TIMEOUT).device


def leave() -> None:
    """The end of a command run under torchrun: leave the process group (and forget the object group)."""
    global _object_group
    _object_group = None
    cleanup_distributed()


def _dist():
    """torch.distributed when this process has joined a group, else None."""
    import torch.distributed as dist

    return dist if is_distributed() else None


def _group():
    """A gloo group for Python objects (the default group when it is gloo already)."""
    global _object_group
    dist = _dist()
    if dist.get_backend() == "gloo":
        return None
    if _object_group is None:
        _object_group = dist.new_group(backend="gloo", timeout=RUN_TIMEOUT)
    return _object_group


def shard_indices(n: int, rank_: int | None = None, world: int | None = None) -> list[int]:
    """This rank's units of 0..n-1: every world-th one from its rank (round robin keeps the shares
    within one unit of each other, and of equal cost when units are)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return list(range(r, n, w))


def gather_units(local: dict[int, Any], n: int | None = None) -> list[Any] | None:
    """Every rank's {unit: payload} -> on rank 0 the payloads of all units in unit order (None on
    the other ranks). With `n`, rank 0 checks that units 0..n-1 each arrived exactly once."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        merged = dict(local)
        parts = [local]
    else:
        parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(local, parts, dst=0, group=_group())
        if dist.get_rank() != 0:
            return None
        merged = {}
        for part in parts:
            for k, v in part.items():
                if k in merged:
                    raise RuntimeError(f"unit {k} computed by two ranks")
                merged[k] = v
    order = sorted(merged)
    if n is not None and order != list(range(n)):
        missing = sorted(set(range(n)) - set(order))
        raise RuntimeError(f"units missing after the gather: {missing[:10]}")
    return [merged[k] for k in order]


def agree(obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank (e.g. the list of unfinished cells)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return obj
    box = [obj if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


def barrier() -> None:
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier(group=_group())


def shards_cells(module: Any) -> bool:
    """Whether a runner module splits a cell over ranks (SHARDS_CELLS = True)."""
    return bool(getattr(module, "SHARDS_CELLS", False))


def follow_cell(ctx: Any, module: Any, state: Any, cell: dict[str, Any]) -> dict[str, Any]:
    """A rank other than 0 in one cell: its share of a sharding runner's work (the results travel to
    rank 0 through the runner's gather); nothing for a runner that does not shard (rank 0 runs the
    cell alone). It writes no file and no MLflow run."""
    if shards_cells(module):
        module.run_cell(ctx, state, cell, NullRun())
    return {"key": cell_key(cell), "rank": rank()}


def parallel_tags() -> dict[str, Any]:
    """What a run records about its parallelism: ranks of the process group and torch threads."""
    return {"repro.world_size": world_size(), "repro.threads": torch.get_num_threads()}


def train_models_on_every_rank(ctx: Any) -> None:
    """Under torchrun, every model the spec names is trained (DDP, all ranks) or loaded before the
    first cell: a runner that asks for a model inside a cell it computes on rank 0 alone would
    otherwise start DDP training with one rank and wait for the others forever."""
    if world_size() > 1:
        for role in ctx.spec.models:
            ctx.model(role)
