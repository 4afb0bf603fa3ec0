"""Deterministic, resumable batch order: a permutation per (seed, epoch), split across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from repro.rng import derive_seed


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of `n` items in `epoch`, a function of (seed, epoch) alone."""
    g = torch.Generator().manual_seed(derive_seed(seed, "data", epoch))
    return torch.randperm(n, generator=g)


class DeterministicBatchSampler(Sampler[list[int]]):
    """Yields this rank's index batches of one epoch, starting at batch `start`.

    The global batch k of an epoch is items perm[k*G:(k+1)*G] of the epoch permutation,
    G = batch_size * world_size; rank r takes its r-th slice of `batch_size`. So the
    union of the ranks' batches is the single-process batch of size G (a
    DistributedSampler whose order does not depend on the world size). With one rank
    the last batch may be short; with several, the permutation wraps around so that
    every rank gets a full last batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise ValueError("dataset is empty")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        return math.ceil(self.n / self.global_batch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first `start` batches (those already consumed)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        n_batches = self.batches_per_epoch()
        if self.world_size > 1:
            total = n_batches * self.global_batch
            perm = perm.repeat(math.ceil(total / self.n))[:total]
        for k in range(self.start, n_batches):
            lo = k * self.global_batch + self.rank * self.batch_size
            batch = perm[lo : lo + self.batch_size]
            yield batch.tolist()
