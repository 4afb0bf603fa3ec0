"""The 002 thesis's claims in the dg specs (fig11_exposure, fig12_1, fig12_3, fig12_4, table12_1) judged by
the one engine (repro.claims) on hand-built cell records that reproduce the situations the issue-26 audit
found, with the verdict the engine must give; plus the claims' quotes against the document."""
from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from repro.claims import judge
from repro.specs import load_spec, resolve_spec

SPECS = ("fig11_exposure", "fig12_1", "fig12_3", "fig12_4", "table12_1")
DOCUMENT = "002_3fb1e941b5731827.txt"


def claim_of(spec_id: str, claim_id: str):
    found = [c for c in load_spec(spec_id).claims if c.id == claim_id]
    assert len(found) == 1, (spec_id, claim_id)
    return found[0]


def rec(cell: dict, metric: str, mean: float, n: int = 96, noise: float = 0.02, seed: int = 0) -> dict:
    """A cell whose per-sample values are mean + a term shared by every cell (sample i = latent i:
    common random numbers) + a small term of its own; their mean is the cell's value."""
    shared = np.random.default_rng(12345).normal(0.0, 1.0, n)
    own = np.random.default_rng([seed, zlib.crc32(repr(sorted(cell.items())).encode())]).normal(0.0, noise, n)
    per = mean + shared + own
    per += mean - per.mean()
    return {"cell": cell, "values": {metric: float(per.mean())},
            "extra": {f"{metric}_per_sample": [float(x) for x in per], "resample_unit": "samples", "resample_n": n}}


# ---------------------------------------------------------------- quotes and places

def _document_lines() -> list[str]:
    from repro.specs.references import seeds_dir

    base = seeds_dir()
    if base is not None and (base / DOCUMENT).exists():
        return (base / DOCUMENT).read_text().split("\n")
    pytest.skip(f"{DOCUMENT} not found beside the repository")


@pytest.mark.parametrize("spec_id", SPECS)
def test_every_claim_quotes_its_cited_lines(spec_id):
    lines = _document_lines()
    norm = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    spec = load_spec(spec_id)
    assert spec.claims, f"{spec_id} has no claims"
    for c in spec.claims:
        first, last = c.place.lines
        assert c.place.document == DOCUMENT
        assert norm(c.quote) in norm(" ".join(lines[first - 1:last])), (spec_id, c.id)


def test_claim_count_and_kinds():
    claims = [c for s in SPECS for c in load_spec(s).claims]
    assert len(claims) >= 12
    assert {c.kind for c in claims} >= {"trend", "better", "rank", "ratio", "threshold", "gain_contrast"}
    # the resampling unit is the samples everywhere: per-sample exposure excesses, Frechet replicates
    assert {c.unit for c in claims} == {"samples"}


# ---------------------------------------------------------------- fig11_exposure

def exposure_cells(excess: dict) -> dict:
    return {"fig11_exposure": [rec({"solver": s, "method": m}, "eps_norm_excess_pct", v, n=128, noise=0.5)
                               for (s, m), v in excess.items()]}


def test_heun_gap_is_judged_on_the_discriminator_guided_model():
    """Audit: the Heun-vs-Euler gap was read off plain EDM, but the sentence (line 1263) is about
    eps^{s,DG}. Smoke-like numbers: plain EDM's gap is larger with Heun, EDM-G++'s smaller."""
    cells = exposure_cells({("euler", "edm"): 12.47, ("heun", "edm"): 14.78,
                            ("euler", "edm_gpp"): 18.54, ("heun", "edm_gpp"): 17.75})
    c = claim_of("fig11_exposure", "dg_gap_smaller_heun")
    assert c.a.where == {"solver": "heun", "method": "edm_gpp"} and c.b.where == {"solver": "euler", "method": "edm_gpp"}
    v = judge(c, cells, "fig11_exposure")
    assert v.verdict == "held" and v.effect == pytest.approx(17.75 - 18.54)
    # the general sentence (line 1340) covers both curves: plain EDM's larger Heun gap makes it fail
    v = judge(claim_of("fig11_exposure", "heun_reduces_exposure_bias"), cells, "fig11_exposure")
    assert dict((g, gv.verdict) for g, gv in v.groups) == {"method=edm": "did not hold", "method=edm_gpp": "held"}
    assert v.verdict == "did not hold"


def test_closer_to_edm_is_a_factor_two_reading_and_euler_coincidence_is_not_judged():
    """Audit: 'nearly coincide: held' used a 50 % tolerance of its own. The only numeric reading the text
    supports is Heun's 'closer to eps^s (than to eps^t)': DG's excess above half of EDM's."""
    c = claim_of("fig11_exposure", "dg_norm_closer_to_edm_heun")
    assert (c.kind, c.published, c.within) == ("ratio", 1.0, 2.0)
    near = exposure_cells({("heun", "edm"): 14.78, ("heun", "edm_gpp"): 17.11})     # ratio 1.16
    assert judge(c, near, "fig11_exposure").verdict == "held"
    far = exposure_cells({("heun", "edm"): 14.78, ("heun", "edm_gpp"): 5.0})        # closer to training
    assert judge(c, far, "fig11_exposure").verdict == "did not hold"
    # no equal / ratio claim on Euler's "nearly coincides": the text gives no number
    assert not [x for x in load_spec("fig11_exposure").claims
                if x.kind in ("equal", "ratio") and x.a.where.get("solver") == "euler"]


def test_dg_bias_claims_on_smoke_like_numbers():
    cells = exposure_cells({("euler", "edm"): 12.47, ("heun", "edm"): 14.78,
                            ("euler", "edm_gpp"): 17.70, ("heun", "edm_gpp"): 17.11})
    for cid in ("dg_norm_above_training_euler", "dg_norm_above_training_heun", "edm_norm_above_training",
                "dg_does_not_alleviate_bias"):
        assert judge(claim_of("fig11_exposure", cid), cells, "fig11_exposure").verdict == "held", cid
    # DG clearly lowering the excess contradicts "does not alleviate"
    lower = exposure_cells({("euler", "edm"): 12.47, ("heun", "edm"): 14.78,
                            ("euler", "edm_gpp"): 6.0, ("heun", "edm_gpp"): 17.11})
    v = judge(claim_of("fig11_exposure", "dg_does_not_alleviate_bias"), lower, "fig11_exposure")
    assert v.verdict == "did not hold"


# ---------------------------------------------------------------- fig12_1 (Euler)

# fd_evalnet of the smoke fig12_1 run at f4981ea (reports/fig12_1.md): (steps, method, w_dg) -> value
FIG12_1_SMOKE = {
    (5, "edm_gpp", 0.0): 7.024, (5, "edm_gpp", 1.0): 7.103, (5, "edm_gpp", 2.0): 7.094, (5, "edm_gpp", 4.0): 6.663,
    (5, "sedm_gpp", 0.0): 5.804, (5, "sedm_gpp", 1.0): 5.358, (5, "sedm_gpp", 2.0): 5.233, (5, "sedm_gpp", 4.0): 5.768,
    (7, "edm_gpp", 0.0): 4.626, (7, "edm_gpp", 1.0): 4.516, (7, "edm_gpp", 2.0): 4.504, (7, "edm_gpp", 4.0): 4.532,
    (7, "sedm_gpp", 0.0): 5.111, (7, "sedm_gpp", 1.0): 4.535, (7, "sedm_gpp", 2.0): 4.364, (7, "sedm_gpp", 4.0): 4.699,
    (9, "edm_gpp", 0.0): 4.221, (9, "edm_gpp", 1.0): 3.959, (9, "edm_gpp", 2.0): 3.938, (9, "edm_gpp", 4.0): 3.86,
    (9, "sedm_gpp", 0.0): 4.431, (9, "sedm_gpp", 1.0): 4.006, (9, "sedm_gpp", 2.0): 3.883, (9, "sedm_gpp", 4.0): 3.87,
}


def fig12_1_cells(values: dict, noise: float = 0.02) -> list[dict]:
    return [rec({"steps": s, "method": m, "w_dg": w}, "fd_evalnet", v, noise=noise) for (s, m, w), v in values.items()]


def test_epsilon_scaling_is_judged_per_steps_and_w_group():
    """Audit: 'epsilon scaling improves on b = 1 across step counts and w_DG' was carried by the 5-step
    groups of a pooled sum; judged per (steps, w_DG) group it did not hold at 7 and 9 steps."""
    c = claim_of("fig12_1", "es_improves_euler")
    assert c.kind == "better" and c.across == ["steps", "w_dg"] and c.a.pick == "min"
    v = judge(c, {"fig12_1": fig12_1_cells(FIG12_1_SMOKE)}, "fig12_1")
    words = dict((g, gv.verdict) for g, gv in v.groups)
    assert len(words) == 12
    assert all(words[f"steps=5, w_dg={w}"] == "held" for w in (0.0, 1.0, 2.0, 4.0))
    worse = [g for g, w in words.items() if not g.startswith("steps=5") and w == "did not hold"]
    assert len(worse) >= 5
    assert v.verdict == "did not hold"
    # the group effects are the paired differences (b > 1 minus b = 1); the overall effect their median
    effects = [gv.effect for _, gv in v.groups]
    assert v.effect == pytest.approx(float(np.median(effects)))


def test_dg_with_euler_claims_on_the_smoke_numbers():
    cells = {"fig12_1": fig12_1_cells(FIG12_1_SMOKE)}
    # guided EDM-G++ was not worse than plain EDM here (it was better at 9 steps)
    assert judge(claim_of("fig12_1", "dg_worse_than_edm_euler"), cells, "fig12_1").verdict == "did not hold"
    assert judge(claim_of("fig12_1", "dg_worse_as_w_grows_euler"), cells, "fig12_1").verdict == "did not hold"
    # the thesis's picture: every guided cell worse than EDM, rising with w
    thesis = {k: (10 + k[0] * 0 + 2 * k[2] if k[1] == "edm_gpp" else 9 + 2 * k[2]) for k in FIG12_1_SMOKE}
    cells = {"fig12_1": fig12_1_cells(thesis)}
    for cid in ("dg_worse_than_edm_euler", "dg_worse_as_w_grows_euler", "es_improves_euler"):
        assert judge(claim_of("fig12_1", cid), cells, "fig12_1").verdict == "held", cid


def test_sedm_gpp_scales_epsilon_down_at_every_profile():
    """Audit: SEDM-G++ was judged with b = 0.99 (eps scaled up, the opposite of the method, lines 1240,
    1315). Its rows in fig12_1 and table12_1 have b > 1 at every profile."""
    for profile in ("test", "smoke", "paper"):
        t = resolve_spec("table12_1", profile).spec.fixed["methods"]["sedm_gpp"]["eps_scale"]
        assert t > 1, profile
        scales = resolve_spec("fig12_1", profile).spec.fixed["methods"]["sedm_gpp"]["eps_scale"]
        assert all(float(b) > 1 for b in scales.values()), profile


# ---------------------------------------------------------------- fig12_4 / table12_1 (Heun)

# fd_evalnet of the smoke fig12_4 run at f4981ea (w_dg, b) -> value; b = 1.005 added by issue 26 (value made up:
# the smoke fig12_3 grid's b = 1.005 is worse than b = 1 at both weights)
FIG12_4_SMOKE = {(4.0, 0.99): 3.511, (4.0, 0.995): 3.704, (4.0, 1.0): 3.928, (4.0, 1.005): 4.10,
                 (8.0, 0.99): 3.252, (8.0, 0.995): 3.408, (8.0, 1.0): 3.606, (8.0, 1.005): 3.75}


def fig12_4_cells(values: dict) -> list[dict]:
    return [rec({"w_dg": w, "eps_scale": b}, "fd_evalnet", v) for (w, b), v in values.items()]


def test_sedm_below_edm_gpp_only_on_b_above_one():
    c = claim_of("fig12_4", "sedm_below_gpp_heun")
    assert all(b > 1 for b in c.a.where["eps_scale"])
    # b < 1 is best on this model, but it is not the method: SEDM-G++ (b = 1.005) is worse than EDM-G++
    v = judge(c, {"fig12_4": fig12_4_cells(FIG12_4_SMOKE)}, "fig12_4")
    assert v.verdict == "did not hold" and v.effect == pytest.approx(3.75 - 3.606)
    # the old smoke grid had no b > 1: the claim is then not judged (it was 'held' on b = 0.99 before)
    old = {k: v for k, v in FIG12_4_SMOKE.items() if k[1] <= 1.0}
    assert judge(c, {"fig12_4": fig12_4_cells(old)}, "fig12_4").verdict == "not judged"
    # b > 1 better than b = 1: held
    good = {**FIG12_4_SMOKE, (8.0, 1.005): 3.30}
    assert judge(c, {"fig12_4": fig12_4_cells(good)}, "fig12_4").verdict == "held"


def table_cells(edm: float, gpp: float, sedm: float) -> list[dict]:
    return [rec({"method": m}, "fd_evalnet", v, n=128) for m, v in (("edm", edm), ("edm_gpp", gpp), ("sedm_gpp", sedm))]


def test_table12_1_ordering():
    cells = {"table12_1": table_cells(4.862, 3.606, 3.75)}   # SEDM-G++ at b = 1.005 worse than EDM-G++
    assert judge(claim_of("table12_1", "dg_lowers_fid_heun"), cells, "table12_1").verdict == "held"
    assert judge(claim_of("table12_1", "sedm_below_gpp"), cells, "table12_1").verdict == "did not hold"
    assert judge(claim_of("table12_1", "sedm_best_row"), cells, "table12_1").verdict == "did not hold"
    cells = {"table12_1": table_cells(1.97, 1.77, 1.73)}     # the published order (lines 1330-1332)
    for cid in ("dg_lowers_fid_heun", "sedm_below_gpp", "sedm_best_row"):
        assert judge(claim_of("table12_1", cid), cells, "table12_1").verdict == "held", cid


# ---------------------------------------------------------------- the Euler-vs-Heun gain (two specs)

def test_epsilon_scaling_gain_larger_with_euler_across_specs():
    """Lines 636 / 1338: the gain is larger with Euler. Appendix A: Euler 35 steps 5.39 -> 3.76 (-30 %),
    Heun 35 NFE 1.77 -> 1.73 (-2 %). The claim sits in fig12_1 and takes c / d from table12_1."""
    c = claim_of("fig12_1", "es_gain_larger_euler")
    assert c.kind == "gain_contrast" and c.c.spec == c.d.spec == "table12_1"
    euler = {(steps, m, w): v for steps in (5, 9) for m, v in (("edm_gpp", 5.39), ("sedm_gpp", 3.76))
             for w in (0.0, 1.0)}
    euler[(9, "edm_gpp", 0.0)] = 2.0     # plain EDM (w = 0) is not a side of the claim
    cells = {"fig12_1": fig12_1_cells(euler), "table12_1": table_cells(1.97, 1.77, 1.73)}
    v = judge(c, cells, "fig12_1")
    assert v.verdict == "held" and v.effect == pytest.approx((3.76 - 5.39) / 5.39 - (1.73 - 1.77) / 1.77)
    # the gain reversed (Heun's larger): did not hold
    cells["table12_1"] = table_cells(1.97, 1.77, 1.0)
    assert judge(c, cells, "fig12_1").verdict == "did not hold"


def test_dg_lowers_fid_heun_in_the_grid():
    c = claim_of("fig12_3", "dg_lowers_fid_heun")
    grid = {(0.0, 1.0): 4.793, (4.0, 1.0): 3.815, (8.0, 1.0): 3.351, (0.0, 0.99): 4.389, (8.0, 0.99): 3.156}
    cells = {"fig12_3": [rec({"w_dg": w, "eps_scale": b}, "fd_evalnet", v) for (w, b), v in grid.items()]}
    v = judge(c, cells, "fig12_3")
    assert v.verdict == "held" and v.effect == pytest.approx(3.351 - 4.793)
    # per w, the best b > 1 against b = 1 at the same w (smoke fig12_3 values): worse at every w
    es = claim_of("fig12_3", "es_improves_heun")
    grid.update({(4.0, 1.005): 4.004, (8.0, 1.005): 3.5, (0.0, 1.005): 5.039, (4.0, 0.99): 3.513})
    cells = {"fig12_3": [rec({"w_dg": w, "eps_scale": b}, "fd_evalnet", v) for (w, b), v in grid.items()]}
    v = judge(es, cells, "fig12_3")
    assert [g for g, _ in v.groups] == ["w_dg=0.0", "w_dg=4.0", "w_dg=8.0"] and v.verdict == "did not hold"
    assert [gv.effect for _, gv in v.groups] == pytest.approx([5.039 - 4.793, 4.004 - 3.815, 3.5 - 3.351])


# ---------------------------------------------------------------- reports describe, the engine judges

def test_dg_report_notes_carry_no_verdicts():
    import pandas as pd

    from repro.experiments.dg.report import report_notes

    spec = resolve_spec("fig12_1", "smoke").spec
    rows = [{"steps": s, "method": m, "w_dg": w, "fd_evalnet": v, "solver": "euler",
             "eps_scale": 1.02 if m == "sedm_gpp" else 1.0, "n_runs": 2, "n_samples": 96}
            for (s, m, w), v in FIG12_1_SMOKE.items()]
    text = " ".join(report_notes(spec, pd.DataFrame(rows)))
    assert "Appendix A" in text and "Best b > 1 vs b = 1" in text
    assert not re.search(r"\bheld\b|did not hold|inconclusive", text)
    spec = resolve_spec("fig11_exposure", "smoke").spec
    rows = [{"solver": s, "method": m, "eps_norm_excess_pct": v, "eps_norm_excess_last_third_pct": v,
             "excess_pct": [v, -1.0], "sigmas": [1.0, 0.1], "resample_n": 128, "n_real": 256}
            for (s, m), v in {("euler", "edm"): 12.0, ("euler", "edm_gpp"): 17.0,
                              ("heun", "edm"): 14.0, ("heun", "edm_gpp"): 16.0}.items()]
    text = " ".join(report_notes(spec, pd.DataFrame(rows)))
    assert "EDM-G++ / EDM excess" in text and not re.search(r"\bheld\b|did not hold|inconclusive", text)
