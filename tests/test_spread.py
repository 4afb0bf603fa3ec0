"""Verdicts against the spread of repeated sampling runs (repro.metrics.spread), on hand-made runs."""
import math

import pytest

from repro.metrics.spread import direction, paired_difference, pooled, verdict


def test_paired_difference_mean_and_standard_error_by_hand():
    # d = (-1, -2, -3): mean -2, sample sd 1, se 1 / sqrt(3)
    mean, se = paired_difference([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert mean == -2.0 and math.isclose(se, 1 / math.sqrt(3))
    assert paired_difference([5.0], [3.0]) == (2.0, None)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_common_random_numbers_make_a_shared_run_effect_cancel():
    # run effects +-10 shared by both cells: the difference is exactly -1 every run (se 0): clearly below
    a, b = [10.0 - 1, -10.0 - 1, 0.0 - 1], [10.0, -10.0, 0.0]
    mean, se = paired_difference(a, b)
    assert (mean, se) == (-1.0, 0.0) and direction(mean, se) == -1


def test_direction_and_verdict_words():
    assert direction(-0.5, 0.1) == -1 and direction(0.5, 0.1) == 1 and direction(0.15, 0.1) == 0
    assert direction(-0.2, None) == -1 and direction(0.0, None) == 0
    assert verdict(-1, -1, True) == "held" and verdict(1, -1, True) == "did not hold"
    assert verdict(0, -1, True) == "inconclusive"
    assert verdict(-1, -1, False) == "held (one sampling run: no spread measured)"


def test_pooled_groups_add_errors_in_quadrature():
    # two groups each -0.15 +- 0.1 (inconclusive alone): together -0.3 +- 0.1414: beyond 2 se
    assert direction(-0.15, 0.1) == 0 and pooled([(-0.15, 0.1), (-0.15, 0.1)]) == -1
    assert pooled([(-0.1, 0.1), (0.1, 0.1)]) == 0
    assert pooled([(-0.1, None), (0.3, 0.1)]) == 1   # without every spread: the sign of the sum
