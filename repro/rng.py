"""The one owner of random streams: seeds derived from any values, generators seeded from them,
and draws that give the same numbers whichever device the result goes to."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hashlib

import torch

from repro.hashing import stable_hash


def seed_for(*parts: Any) -> int:
    """A 63-bit seed derived from any values: cells draw the same numbers in any order."""
    return int(stable_hash(list(parts), n=15), 16)


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (CUDA draws need a CUDA generator) seeded with a 63-bit integer."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & ((1 << 63) - 1))
    return g


def make_generator(device: torch.device, *seed_parts: Any) -> torch.Generator:
    """A generator on the sampling device (CUDA draws need a CUDA generator), seeded from the parts."""
    return seeded_generator(device, seed_for(*seed_parts))


def batch_generator(device: torch.device, seed: int, run: int, batch: int) -> torch.Generator:
    """The noise of sampling run `run`'s batch `batch`: its own stream, so that any process can draw
    any batch (sharded cells, repro.engine.ranks) and the images do not depend on how many do."""
    return make_generator(device, seed, "sampling-run", run, "batch", batch)


Generators = torch.Generator | Sequence[torch.Generator] | None


def _draw(fn, shape, generator, device, dtype) -> torch.Tensor:
    # Draw where the generator lives (a CPU generator cannot fill a CUDA tensor), then move:
    # the same seed gives the same numbers whichever device the result goes to.
    device = torch.device(device) if device is not None else None
    if isinstance(generator, (list, tuple)):
        # One generator per sample: sample i's numbers do not depend on which batch it is in,
        # so a batch of maps gives the same images as the maps one by one.
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} samples")
        return torch.stack([_draw(fn, tuple(shape[1:]), g, device, dtype) for g in generator])
    if generator is None or device is None or generator.device == device:
        return fn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return fn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)


def randn(shape, generator: Generators, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal draws of `shape` on `device` from `generator` (or one generator per
    sample along the first dimension), on any pair of devices."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, generator: Generators, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) draws of `shape` on `device` from `generator`, on any pair of devices."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    return randn(x.shape, generator, x.device, x.dtype)


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on (seed, *keys): the same in every process and run. The
    training loop's derivation (data order, augmentation, noise per step); `seed_for` is the cells'.
    Two derivations because trained weights and cell results must stay bit-identical to before."""
    digest = hashlib.sha256(repr((int(seed), *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
