"""The spread behind a claim's verdict (repro.claims): shared paired resamples of the units a cell
stores (maps, images, samples or sampling runs).

Replicate j of every cell resamples the SAME units (index set j): the cells of a spec share their
maps / latents / seeds by index (common random numbers), so differences are paired. Runners that
store replicates of a metric that is not a plain mean (a Frechet distance, a dataset mIoU) draw
their index sets here too, so their replicates line up with the engine's.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from repro.rng import make_generator

RESAMPLES = 1000      # paired resamples behind one verdict
RESAMPLE_SEED = "paired-resample"   # one stream for everyone: replicate j is the same index set anywhere


def resample_indices(n: int, count: int = RESAMPLES) -> np.ndarray:
    """[count, n] indices drawn with replacement from range(n); row j is the same for every caller
    with the same n (the pairing of replicates across cells, runners and the claims engine)."""
    if n < 1:
        raise ValueError(f"cannot resample {n} units")
    return _drawn(n, count).copy()


@lru_cache(maxsize=64)
def _drawn(n: int, count: int) -> np.ndarray:
    # drawn once per (n, count) and process: every claim of a report resamples the same sets
    g = make_generator(torch.device("cpu"), RESAMPLE_SEED, n, count)
    return torch.randint(0, n, (count, n), generator=g).numpy()


def bootstrap_means(values: Sequence[float], count: int = RESAMPLES) -> np.ndarray:
    """[count] means of `values` over the shared index sets (resample_indices)."""
    v = np.asarray(values, dtype=np.float64)
    return v[resample_indices(len(v), count)].mean(axis=1)


def bootstrap_statistic(n: int, statistic, count: int = RESAMPLES) -> list[float]:
    """[count] values of `statistic(index array [n])` over the shared index sets: what a runner
    stores as `<metric>_boot` for a metric that is not a mean of per-unit values."""
    return [float(statistic(idx)) for idx in resample_indices(n, count)]


def compact(values: Sequence[float], digits: int = 6) -> list[float]:
    """Per-unit values as a cell stores them: rounded to `digits` significant digits (the spread of a
    claim does not need more; the cell files stay small)."""
    return [float(f"{float(v):.{digits}g}") for v in values]
