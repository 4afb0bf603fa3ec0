"""Cells over several trained copies of their models (repro.experiments.model_seeds) and the claims
engine's two-stage resample of them (copies, then units), against hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import repro.claims
from repro.claims import copy_scale, judge
from repro.experiments.model_seeds import pool, seed_overrides
from repro.metrics.spread import bootstrap_means
from repro.specs import Claim

PLACE = {"document": "000_6e84dfabea47f45d.txt", "section": "5.4.5", "lines": [1, 2]}


def better(direction: str = "higher") -> Claim:
    return Claim(id="c", quote="some quoted words", place=PLACE, claim="a beats b", metric="m", unit="maps",
                 kind="better", a={"where": {"x": "a"}}, b={"where": {"x": "b"}}, direction=direction)


def copies_cell(x: str, per_copy: list[list[float]], seeds=None) -> dict:
    """A cell pooled over copies whose per-map values are given (what pool() stores)."""
    seeds = seeds or list(range(len(per_copy)))
    results = [({"m": float(np.mean(v))}, {"m_per_sample": list(v), "resample_n": len(v)}) for v in per_copy]
    values, extra = pool(results, seeds)
    return {"cell": {"x": x}, "values": values, "extra": extra}


def test_seed_overrides_move_the_config_seed():
    assert seed_overrides(7, 0) is None and seed_overrides(7, 2) == {"seed": 9}


def test_pool_means_values_keeps_each_copy_and_one_copy_is_unchanged():
    one = ({"m": 1.0}, {"m_per_sample": [1.0, 1.0], "model_hash": "h0"})
    assert pool([one], [0]) == one
    a = ({"m": 1.0, "q": 4.0}, {"m_per_sample": [0.5, 1.5], "m_boot": [1.0] * 3, "resample_n": 2, "model_hash": "h0",
                                 "per_class_iou": [0.2, None, 0.6], "steps": 10, "seconds": 1.0})
    b = ({"m": 3.0, "q": 6.0}, {"m_per_sample": [2.5, 3.5], "m_boot": [3.0] * 3, "resample_n": 2, "model_hash": "h1",
                                 "per_class_iou": [0.4, None, 0.2], "steps": 10, "seconds": 3.0})
    values, extra = pool([a, b], [5, 6])
    assert values == {"m": 2.0, "q": 5.0}
    assert extra["model_seeds"] == [5, 6] and extra["steps"] == 10 and extra["seconds"] == 2.0
    assert extra["model_hash"] == ["h0", "h1"]                              # differing names: copy by copy
    assert extra["per_class_iou"] == pytest.approx([0.3, None, 0.4])       # class by class; absent stays absent
    assert "m_per_sample" not in extra and "m_boot" not in extra           # the spread lives per copy now
    assert extra["m_by_model_seed"] == [
        {"seed": 5, "value": 1.0, "per_sample": [0.5, 1.5], "boot": [1.0] * 3, "n": 2},
        {"seed": 6, "value": 3.0, "per_sample": [2.5, 3.5], "boot": [3.0] * 3, "n": 2}]
    assert extra["values_by_model_seed"] == [{"seed": 5, "m": 1.0, "q": 4.0}, {"seed": 6, "m": 3.0, "q": 6.0}]
    with pytest.raises(ValueError):
        pool([a, b], [5])


def test_identical_copies_give_the_spread_of_one_copy():
    per = [0.1, 0.9, 0.4, 0.7, 0.2]
    cells = {"s": [copies_cell("a", [per, per, per]), copies_cell("b", [[0.45] * 5] * 3)]}
    v = judge(better(), cells, "s")
    diff = bootstrap_means(per) - 0.45    # one copy's paired resamples against a constant
    assert v.share == pytest.approx(float(np.mean(diff > 0)))
    assert v.effect == pytest.approx(np.mean(per) - 0.45)
    assert "3 trained copies" in v.detail


def test_training_noise_makes_a_single_copy_verdict_inconclusive():
    # a's copies score 0, 0 and 3 on every map (no map noise), b scores 0.5: a resample of a is
    # 1 + 1.80 (m - 1) with m the mean of the copies drawn (copy_scale(3) = 1.80), above 0.5 iff it draws
    # copy 2 at least once, probability 1 - (2/3)^3 = 19/27 (hand-computed): inconclusive, although
    # a's mean (1.0) is above b and copy 2 alone would say held, copies 0 or 1 alone did not hold
    cells = {"s": [copies_cell("a", [[0.0] * 4, [0.0] * 4, [3.0] * 4]), copies_cell("b", [[0.5] * 4] * 3)]}
    v = judge(better(), cells, "s")
    assert v.effect == pytest.approx(0.5) and v.verdict == "inconclusive"
    assert v.share == pytest.approx(19 / 27, abs=0.05)
    cells = {"s": [copies_cell("a", [[1.0] * 4, [1.1] * 4, [1.2] * 4]), copies_cell("b", [[0.5] * 4] * 3)]}
    assert judge(better(), cells, "s").verdict == "held"


def test_copies_are_paired_across_cells():
    # copy k of a is copy k of b plus 1 (the same seed index): every resample draws the same copies in
    # both cells, so the difference is 1 in each of them
    cells = {"s": [copies_cell("a", [[1.0] * 3, [5.0] * 3, [9.0] * 3]), copies_cell("b", [[0.0] * 3, [4.0] * 3, [8.0] * 3])]}
    v = judge(better(), cells, "s")
    assert v.share == 1.0 and v.interval == pytest.approx((1.0, 1.0)) and v.effect == pytest.approx(1.0)


def test_every_spec_asks_no_more_copies_than_its_models_train():
    # the pipeline's train stage (`repro train`, the config's replicas) makes every copy a spec samples
    # with; a copy it did not make would be trained inside the spec's stage, outside DVC's outputs
    from repro.experiments import resolve_spec, runner_module
    from repro.specs import list_spec_ids

    asked = 0
    for spec_id in list_spec_ids():
        for profile in ("test", "smoke", "paper"):
            resolved = resolve_spec(spec_id, profile)
            k = resolved.spec.fixed.get("model_seeds", 1)
            roles = getattr(runner_module(resolved.spec.kind), "SEEDED_ROLES", ())
            for role in (r for r in roles if r in resolved.spec.models):
                assert resolved.model(role).config.replicas >= k, (spec_id, profile, role)
                asked += k > 1
    assert asked >= 4   # table5_4_5 at smoke: SPADE, pix2pixHD, the score model and its guide


def test_copy_scale_is_the_student_t_correction():
    # sqrt(K/(K-1)) * t_{K-1}(0.9) / z(0.9): 3 copies, sqrt(1.5) * 1.8856 / 1.2816 (tables: t_2(0.9) =
    # 1.886, z(0.9) = 1.2816); one copy has no copy spread to widen
    assert copy_scale(1) == 1.0
    assert copy_scale(3) == pytest.approx(np.sqrt(1.5) * 1.8856 / 1.2816, rel=1e-3)
    assert copy_scale(5) == pytest.approx(np.sqrt(1.25) * 1.5332 / 1.2816, rel=1e-3)
    assert copy_scale(3) > copy_scale(5) > copy_scale(10) > 1.0


def held_rate(trials: int, k: int, rng: np.random.Generator) -> tuple[float, float]:
    """(held, did not hold) rates of `a beats b` over simulated runs in which a and b are the same
    model: each copy's training offset is N(0, 1), the 12 maps carry a shared N(0, 0.3) effect and a
    copy's own N(0, 0.1) noise."""
    words = []
    for _ in range(trials):
        maps = rng.normal(0, 0.3, 12)
        cell = lambda x: copies_cell(x, [list(rng.normal(0, 1) + maps + rng.normal(0, 0.1, 12))  # noqa: E731
                                         for _ in range(k)])
        words.append(judge(better(), {"s": [cell("a"), cell("b")]}, "s").verdict)
    return words.count("held") / trials, words.count("did not hold") / trials


def test_equal_cells_over_three_copies_hold_one_time_in_ten(monkeypatch):
    # a one-sided test at the held threshold (share >= 0.9) calls equal cells held 10 % of the time;
    # the plain bootstrap of 3 copies calls them held about 20 % of the time (P(T_2 > 1.047) = 0.20:
    # its spread is sqrt(2/3) of the standard error, judged by z(0.9) = 1.28 instead of t_2(0.9) = 1.89)
    trials = 400
    held, dnh = held_rate(trials, 3, np.random.default_rng(11))
    se = np.sqrt(0.1 * 0.9 / trials)
    assert abs(held - 0.1) < 3 * se and abs(dnh - 0.1) < 3 * se, (held, dnh)
    plain = 2 * (1 - stats.t.cdf(np.sqrt(2 / 3) * stats.norm.ppf(0.9), 2))  # both tails
    monkeypatch.setattr(repro.claims, "copy_scale", lambda k: 1.0)
    held_plain, dnh_plain = held_rate(trials, 3, np.random.default_rng(11))
    assert held_plain + dnh_plain > 0.3 and abs(held_plain + dnh_plain - plain) < 6 * se, (held_plain, dnh_plain)
