"""Shared paired resamples (repro.metrics.spread): the same index sets for every caller."""
from __future__ import annotations

import numpy as np
import pytest

from repro.metrics.spread import RESAMPLES, bootstrap_means, bootstrap_statistic, compact, resample_indices


def test_index_sets_are_shared_and_draw_with_replacement():
    a = resample_indices(5)
    assert a.shape == (RESAMPLES, 5) and (a == resample_indices(5)).all()
    assert a.min() == 0 and a.max() == 4
    assert any(len(set(row)) < 5 for row in a)     # with replacement: some units repeat
    assert not (resample_indices(6)[:, :5] == a).all()   # another n, other draws


def test_bootstrap_means_and_statistics_use_the_same_rows():
    v = np.arange(8.0)
    idx = resample_indices(8)
    assert np.allclose(bootstrap_means(v), v[idx].mean(axis=1))
    assert bootstrap_statistic(8, lambda i: v[i].max()) == pytest.approx(v[idx].max(axis=1).tolist())
    # over many resamples the mean of the bootstrap means is the mean (3.5), within its spread
    assert abs(bootstrap_means(v).mean() - 3.5) < 0.1


def test_compact_keeps_six_significant_digits():
    assert compact([1.23456789, 1234567.8, 0.000123456789]) == [1.23457, 1234570.0, 0.000123457]
    with pytest.raises(ValueError):
        resample_indices(0)
