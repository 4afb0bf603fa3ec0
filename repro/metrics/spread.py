"""Verdicts that survive sampling noise: a difference between two settings is judged against the
spread of repeated sampling runs, not read off one run.

Runs r = 1..R of two cells share their latents (common random numbers), so the difference is
taken run by run (paired): d_r = a_r - b_r, its mean and its standard error s_d / sqrt(R).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from repro.rng import make_generator

Z = 2.0   # about a 95 % two-sided band for a mean of a few runs' differences


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None]:
    """(mean of a_r - b_r, its standard error); the error is None with fewer than two runs."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired runs must have the same non-zero length, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    if len(d) < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


def direction(mean: float, se: float | None, z: float = Z) -> int:
    """-1 (clearly below 0), +1 (clearly above) or 0 (within z standard errors; or no spread measured
    and exactly 0). Without a spread (one run) the sign alone decides."""
    if se is None:
        return (mean > 0) - (mean < 0)
    if mean < -z * se:
        return -1
    return 1 if mean > z * se else 0


def pooled(diffs: Sequence[tuple[float, float | None]], z: float = Z) -> int:
    """The direction of the sum of several independent groups' mean differences (their errors added
    in quadrature); without spreads, the sign of the sum."""
    total = sum(m for m, _ in diffs)
    if any(se is None for _, se in diffs):
        return (total > 0) - (total < 0)
    return direction(total, math.sqrt(sum(se**2 for _, se in diffs)), z)


def verdict(sign: int, claimed: int, measured: bool) -> str:
    """'held' / 'did not hold' / 'inconclusive' for a claim that the difference has sign `claimed`;
    without a measured spread, held / did not hold by the sign, marked as such."""
    word = "held" if sign == claimed else "inconclusive" if sign == 0 else "did not hold"
    return word if measured else f"{word} (one sampling run: no spread measured)"


# ---- Resampling: the spread behind a claim's verdict (repro.claims) -------------------------------
# Replicate j of every cell resamples the SAME units (index set j): the cells of a spec share their
# maps / latents / seeds by index (common random numbers), so differences are paired. Runners that
# store replicates of a metric that is not a plain mean (a Frechet distance, a dataset mIoU) draw
# their index sets here too, so their replicates line up with the engine's.

RESAMPLES = 1000      # paired resamples behind one verdict
RESAMPLE_SEED = "paired-resample"   # one stream for everyone: replicate j is the same index set anywhere


def resample_indices(n: int, count: int = RESAMPLES) -> np.ndarray:
    """[count, n] indices drawn with replacement from range(n); row j is the same for every caller
    with the same n (the pairing of replicates across cells, runners and the claims engine)."""
    if n < 1:
        raise ValueError(f"cannot resample {n} units")
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
