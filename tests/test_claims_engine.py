"""The verdict engine (repro.claims) against hand-computed answers, one comparison kind at a time."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from repro.claims import HELD_SHARE, _spearman, judge, word
from repro.metrics.spread import RESAMPLES
from repro.specs import Claim

PLACE = {"document": "000_6e84dfabea47f45d.txt", "section": "5.4.4", "lines": [1, 2]}


def claim(**kw) -> Claim:
    base = {"id": "c", "quote": "some quoted words", "place": PLACE, "claim": "what is compared",
            "metric": "m", "unit": "maps"}
    return Claim(**{**base, **kw})


def rec(cell: dict, per_sample=None, runs=None, value=None, **extra) -> dict:
    ex = dict(extra)
    if per_sample is not None:
        ex["m_per_sample"] = list(per_sample)
    if runs is not None:
        ex["m_runs"] = list(runs)
    vals = {} if value is None else {"m": value}
    if value is None and per_sample is not None:
        vals["m"] = float(np.mean(per_sample))
    return {"cell": cell, "values": vals, "extra": ex}


def test_word_thresholds():
    assert word(HELD_SHARE) == "held" and word(1.0) == "held"
    assert word(1 - HELD_SHARE) == "did not hold" and word(0.0) == "did not hold"
    assert word(0.5) == "inconclusive"


def test_better_paired_difference_constant_in_every_resample():
    # unit i is the same map in both cells: a_i - b_i = -1 for every i, so every paired resample says "lower"
    cells = {"s": [rec({"x": "a"}, [1, 2, 3, 4]), rec({"x": "b"}, [2, 3, 4, 5])]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), cells, "s")
    assert v.verdict == "held" and v.share == 1.0 and v.effect == pytest.approx(-1.0)
    assert v.interval == pytest.approx((-1.0, -1.0)) and v.n_units == 4 and v.n_resamples == RESAMPLES
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="higher"), cells, "s")
    assert v.verdict == "did not hold" and v.share == 0.0


def test_better_inconclusive_when_the_units_disagree():
    # paired differences (-1, +1): a resample's mean difference is < 0 only when it draws unit 0 twice,
    # probability 1/4 (hand-computed), so about a quarter of the resamples agree: inconclusive
    cells = {"s": [rec({"x": "a"}, [0, 2]), rec({"x": "b"}, [1, 1])]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), cells, "s")
    assert v.verdict == "inconclusive" and 0.2 < v.share < 0.3 and v.effect == 0.0


def test_no_spread_is_inconclusive_never_a_verdict():
    cells = {"s": [rec({"x": "a"}, value=1.0), rec({"x": "b"}, value=5.0)]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), cells, "s")
    assert v.verdict == "inconclusive" and v.share is None and "no spread" in v.detail and v.effect == -4.0


def test_unit_none_point_value_decides():
    cells = {"s": [rec({"x": "a"}, value=1.0), rec({"x": "b"}, value=5.0)]}
    v = judge(claim(kind="better", unit="none", a={"where": {"x": "a"}}, b={"where": {"x": "b"}},
                    direction="lower"), cells, "s")
    assert v.verdict == "held" and v.share == 1.0 and v.n_resamples == 0


def test_trend_spearman_hand_computed():
    # constant per-map values 3, 1, 2 at s0 = 1, 2, 3: ranks (3, 1, 2) against (1, 2, 3): rho = -0.5
    cells = {"s": [rec({"s0": 1}, [3, 3]), rec({"s0": 2}, [1, 1]), rec({"s0": 3}, [2, 2])]}
    v = judge(claim(kind="trend", over="s0", direction="decreasing"), cells, "s")
    assert v.effect == pytest.approx(-0.5) and v.share == 1.0 and v.verdict == "held"
    v = judge(claim(kind="trend", over="s0", direction="increasing"), cells, "s")
    assert v.verdict == "did not hold"


def test_spearman_equals_scipy():
    g = np.random.default_rng(0)
    x, ys = g.normal(size=6), g.normal(size=(20, 6))
    ys[3, 1] = ys[3, 2]   # a tie
    ref = [spearmanr(x, y).statistic for y in ys]
    assert np.allclose(_spearman(x, ys), ref)


def test_rank_by_paired_resamples():
    # lower is better; rows 1.0, 2.0, 3.0 in every resample: row "b" is second
    cells = {"s": [rec({"method": "a"}, [1, 1, 1]), rec({"method": "b"}, [2, 2, 2]), rec({"method": "c"}, [3, 3, 3])]}
    v = judge(claim(kind="rank", among="method", a={"where": {"method": "b"}}, rank=2, direction="lower"), cells, "s")
    assert v.verdict == "held" and v.effect == 2 and v.share == 1.0
    v = judge(claim(kind="rank", among="method", a={"where": {"method": "b"}}, rank=1, direction="higher"), cells, "s")
    assert v.verdict == "did not hold" and v.effect == 2


def test_rank_that_flips_with_the_draw_is_inconclusive():
    # b and c differ only by which map is drawn: b = (1, 3), c = (3, 1), paired; rank of b is 2 or 3 (ties: 2)
    cells = {"s": [rec({"method": "a"}, [0, 0]), rec({"method": "b"}, [1, 3]), rec({"method": "c"}, [3, 1])]}
    v = judge(claim(kind="rank", among="method", a={"where": {"method": "b"}}, rank=2, direction="lower"), cells, "s")
    # rank 2 unless b's resampled mean exceeds c's: only when unit 1 is drawn twice (1/4)
    assert v.verdict == "inconclusive" and 0.7 < v.share < 0.8


def test_ratio_threshold_equal():
    cells = {"s": [rec({"amp": True}, value=2.0), rec({"amp": False}, value=1.0)]}
    c = claim(kind="ratio", unit="none", a={"where": {"amp": True}}, b={"where": {"amp": False}}, published=1.8,
              within=1.2)
    assert judge(c, cells, "s").verdict == "held"        # |log(2 / 1.8)| = 0.105 <= log 1.2 = 0.182
    c = claim(kind="ratio", unit="none", a={"where": {"amp": True}}, b={"where": {"amp": False}}, published=1.5,
              within=1.2)
    assert judge(c, cells, "s").verdict == "did not hold"   # |log(2 / 1.5)| = 0.288 > 0.182
    runs = {"s": [rec({"k": 1}, runs=[0.5, 0.6, 0.7])]}
    c = claim(kind="threshold", unit="seeds", a={"where": {"k": 1}}, value=0.4, direction="higher")
    v = judge(c, runs, "s")
    assert v.verdict == "held" and v.effect == pytest.approx(0.6) and v.n_units == 3
    eq = {"s": [rec({"e": "log"}, [0.212, 0.212]), rec({"e": "t"}, [0.213, 0.213])]}
    c = claim(kind="equal", a={"where": {"e": "log"}}, b={"where": {"e": "t"}}, within=0.005)
    assert judge(c, eq, "s").verdict == "held"
    c = claim(kind="equal", a={"where": {"e": "log"}}, b={"where": {"e": "t"}}, within=0.0005)
    assert judge(c, eq, "s").verdict == "did not hold"


def test_gain_contrast_across_two_specs():
    # Euler: 10 -> 7 (-30 %); Heun: 2.0 -> 1.96 (-2 %): the first gain is lower (larger), as the thesis says
    cells = {"euler": [rec({"b": 1.0}, runs=[10, 10]), rec({"b": 1.005}, runs=[7, 7])],
             "heun": [rec({"b": 1.0}, runs=[2.0, 2.0]), rec({"b": 1.005}, runs=[1.96, 1.96])]}
    c = claim(kind="gain_contrast", unit="seeds", direction="lower", a={"where": {"b": 1.005}}, b={"where": {"b": 1.0}},
              c={"spec": "heun", "where": {"b": 1.005}}, d={"spec": "heun", "where": {"b": 1.0}})
    v = judge(c, cells, "euler")
    assert v.verdict == "held" and v.effect == pytest.approx(-0.30 + 0.02)


def test_pick_min_is_rechosen_per_resample_and_groups_combine():
    # per group (steps): the best b > 1 against b = 1; steps 5 clearly better, steps 7 clearly worse
    cells = {"s": [rec({"steps": 5, "b": 1.0}, [5, 5]), rec({"steps": 5, "b": 1.1}, [4, 4]),
                   rec({"steps": 5, "b": 1.2}, [4.5, 4.5]),
                   rec({"steps": 7, "b": 1.0}, [3, 3]), rec({"steps": 7, "b": 1.1}, [3.5, 3.5]),
                   rec({"steps": 7, "b": 1.2}, [3.2, 3.2])]}
    c = claim(kind="better", direction="lower", across=["steps"], a={"where": {"b": [1.1, 1.2]}, "pick": "min"},
              b={"where": {"b": 1.0}})
    v = judge(c, cells, "s")
    words = {g: gv.verdict for g, gv in v.groups}
    assert words == {"steps=5": "held", "steps=7": "did not hold"}
    assert v.verdict == "did not hold" and v.share == 0.0
    assert [gv.effect for _, gv in v.groups] == pytest.approx([-1.0, 0.2])
    assert v.effect == pytest.approx(-0.4)   # the true median of the group effects (mean of the middle two)


def test_groups_one_inconclusive_makes_the_claim_inconclusive():
    cells = {"s": [rec({"g": 1, "x": "a"}, [1, 1]), rec({"g": 1, "x": "b"}, [2, 2]),
                   rec({"g": 2, "x": "a"}, [0, 2]), rec({"g": 2, "x": "b"}, [1, 1])]}
    c = claim(kind="better", direction="lower", across=["g"], a={"where": {"x": "a"}}, b={"where": {"x": "b"}})
    v = judge(c, cells, "s")
    assert [gv.verdict for _, gv in v.groups] == ["held", "inconclusive"] and v.verdict == "inconclusive"


def test_missing_cells_are_not_judged():
    cells = {"s": [rec({"x": "a"}, [1, 2])]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "zzz"}}, direction="lower"), cells, "s")
    assert v.verdict == "not judged" and "x=zzz" in v.detail
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"spec": "other", "where": {}}, direction="lower"),
              cells, "s")
    assert v.verdict == "not judged" and "other" in v.detail
    several = {"s": [rec({"x": "a", "y": 1}, [1]), rec({"x": "a", "y": 2}, [1]), rec({"x": "b", "y": 1}, [1])]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), several, "s")
    assert v.verdict == "not judged" and "pick" in v.detail


def test_frechet_replicates_used_when_stored():
    boot_a, boot_b = [10.0] * RESAMPLES, [12.0] * RESAMPLES
    cells = {"s": [{"cell": {"x": "a"}, "values": {"m": 9.0}, "extra": {"m_boot": boot_a, "resample_n": 30}},
                   {"cell": {"x": "b"}, "values": {"m": 11.5}, "extra": {"m_boot": boot_b, "resample_n": 30}}]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), cells, "s")
    assert v.verdict == "held" and v.effect == pytest.approx(-2.5) and v.interval == pytest.approx((-2.5, -2.5))
    assert v.n_units == 30


@pytest.mark.parametrize("noise_seed", range(5))
def test_a_clear_effect_keeps_its_verdict_whatever_the_noise(noise_seed):
    # a 1.0 gap against per-map noise of 0.3 on 40 paired maps: every noise draw must give "held"
    g = np.random.default_rng(noise_seed)
    base = g.normal(size=40)
    a = base + g.normal(scale=0.3, size=40)
    b = base + 1.0 + g.normal(scale=0.3, size=40)
    cells = {"s": [rec({"x": "a"}, a), rec({"x": "b"}, b)]}
    v = judge(claim(kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction="lower"), cells, "s")
    assert v.verdict == "held" and v.share == 1.0
    lo, hi = v.interval
    assert lo < v.effect < hi < 0


def test_claim_schema_refuses_incomplete_claims():
    with pytest.raises(ValueError, match="needs a, b"):
        claim(kind="better", direction="lower")
    with pytest.raises(ValueError, match="increasing or decreasing"):
        claim(kind="trend", over="s0", direction="lower")


def test_metric_alternatives_take_the_first_measured():
    cells = {"s": [rec({"x": "a"}, value=1.0), rec({"x": "b"}, value=2.0)]}
    for c in cells["s"]:
        c["values"] = {"fd_evalnet": c["values"]["m"]}
    c = claim(kind="better", unit="none", metric="fid|fd_evalnet", a={"where": {"x": "a"}}, b={"where": {"x": "b"}},
              direction="lower")
    v = judge(c, cells, "s")
    assert v.metric == "fd_evalnet" and v.verdict == "held" and v.effect == -1.0


def test_frechet_replicates_are_centred_on_the_value():
    # replicates of a Frechet distance sit above it (repeated samples); centred, their spread is kept
    boot = list(np.linspace(11.0, 13.0, RESAMPLES))   # mean 12, value 10
    cells = {"s": [{"cell": {"x": "a"}, "values": {"m": 10.0}, "extra": {"m_boot": boot}}]}
    v = judge(claim(kind="threshold", a={"where": {"x": "a"}}, value=10.5, direction="lower"), cells, "s")
    lo, hi = v.interval
    assert v.effect == 10.0 and lo == pytest.approx(9.1, abs=0.01) and hi == pytest.approx(10.9, abs=0.01)
    assert v.share == pytest.approx(0.75, abs=0.01) and v.verdict == "inconclusive"


def test_a_ratio_of_the_other_sign_never_agrees():
    cells = {"s": [rec({"x": "a"}, value=-2.0), rec({"x": "b"}, value=-1.0)]}
    c = claim(kind="ratio", unit="none", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, published=2.0, within=1.1)
    assert judge(c, cells, "s").verdict == "held"          # -2 / -1 = 2
    cells["s"][1]["values"]["m"] = 1.0
    assert judge(c, cells, "s").verdict == "did not hold"  # -2 / 1 = -2: not within a factor of +2
