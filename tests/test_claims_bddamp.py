"""The claims of the BDD specs (001 paper: bdd_metrics, bdd_table2, bdd_uncond) and of the mixed-precision
specs (000 thesis: table5_1, table5_2, fig5_6): the per-unit values their runners store, the engine's
verdicts on hand-built cells (the audited bdd_uncond reading among them), the published values traced to
the documents' lines, and report notes without verdicts."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from repro.claims import judge, measure
from repro.metrics.spread import RESAMPLES, resample_indices
from repro.specs import load_spec
from repro.specs.references import seeds_dir

SEEDS = seeds_dir()
SPECS = ("bdd_metrics", "bdd_table2", "bdd_uncond", "table5_1", "table5_2", "fig5_6")
VERDICT_WORDS = re.compile(r"\b(held|did not hold|inconclusive|blurrier here|not blurrier)\b")


def claim(spec_id: str, claim_id: str):
    return next(c for c in load_spec(spec_id).claims if c.id == claim_id)


def rec(cell: dict, values: dict, **extra) -> dict:
    return {"cell": cell, "values": values, "extra": extra}


def lines(document: str, first: int, last: int) -> str:
    text = (SEEDS / document).read_text(encoding="utf-8").splitlines()
    return " ".join(text[first - 1:last])


# ----------------------------------------------------------------------------- the specs

def test_every_spec_claims_and_the_set_is_large_enough():
    counts = {s: len(load_spec(s).claims) for s in SPECS}
    assert all(counts.values()), counts
    assert sum(counts.values()) >= 10, counts
    thesis = {c.place.document for s in ("table5_1", "table5_2", "fig5_6") for c in load_spec(s).claims}
    paper = {c.place.document for s in ("bdd_metrics", "bdd_table2", "bdd_uncond") for c in load_spec(s).claims}
    assert thesis == {"000_6e84dfabea47f45d.txt"} and paper == {"001_c5ab23c6a8dde0aa.txt"}


def test_uncond_claim_is_the_papers_comparison_with_the_baseline_model():
    spec = load_spec("bdd_uncond")
    c = claim("bdd_uncond", "unconditional_blurrier_than_baseline")
    assert c.kind == "better" and c.metric == "sharpness" and c.direction == "lower" and c.unit == "images"
    assert c.a.where == {"mode": "unconditional"} and c.b.where == {"mode": "baseline"}
    assert spec.models["baseline"] == "ddpm_uncond_bdd" and spec.models["ddpm"] == "mask_ddpm_bdd"
    assert {"unconditional", "baseline", "conditional"} <= set(spec.grid["mode"])
    assert "baseline" in c.quote and "separately trained unconditional baseline" in c.claim
    # no claim reads the guided cells as if they were the paper's comparison
    sides = [side.where.get("mode") for x in spec.claims for side in (x.a, x.b, x.c, x.d) if side is not None]
    assert "conditional" not in sides, sides


def test_ratio_claims_justify_their_factor():
    for spec_id in SPECS:
        for c in load_spec(spec_id).claims:
            if c.kind == "ratio":
                assert c.note and "within" in c.note, f"{spec_id}/{c.id}"


@pytest.mark.skipif(SEEDS is None, reason="the source documents (../shared/seeds) are not here")
def test_published_values_stand_at_their_lines():
    t52 = load_spec("table5_2")
    assert "2975" not in str(t52.paper.model_dump())          # the thesis states no train-set size
    for spec_id, (first, last), keys in (("table5_1", (828, 829), ("vram_off_mb", "vram_on_mb")),
                                         ("table5_2", (838, 839), ("epoch_off_s", "epoch_on_s"))):
        text = lines("000_6e84dfabea47f45d.txt", first, last)
        for cell in load_spec(spec_id).paper.cells:
            assert f"{cell['gpu']}\t" in "\n".join((SEEDS / "000_6e84dfabea47f45d.txt").read_text().splitlines()[first - 1:last])
            for k in keys:
                assert str(cell[k]) in text, (spec_id, cell["gpu"], k)
            assert f"{cell['batch']} for the {'RTX 2080 Ti' if cell['batch'] == 1 else 'A100'}" in lines(
                "000_6e84dfabea47f45d.txt", 833, 833)
    rows = lines("001_c5ab23c6a8dde0aa.txt", 414, 420)
    for cell in load_spec("bdd_table2").paper.cells:
        s = int(cell["seconds"])
        assert f"{s // 60:02d}:{s % 60:02d}" in rows, cell
        assert cell["images_per_second"] == pytest.approx(cell["batch_size"] / s, abs=5e-6)   # derived
    published = load_spec("bdd_metrics").paper.cells[0]
    for key, line in (("ssim", 461), ("fid", 494), ("kid", 529), ("pixel_acc", 547), ("miou", 547)):
        assert str(published[key]) in lines("001_c5ab23c6a8dde0aa.txt", line, line), key


# ----------------------------------------------------------------------------- the audited verdict

def _uncond_cells(ratio: float, noise: float, n: int = 64, seed: int = 0) -> list[dict]:
    """bdd_uncond cells with per-image sharpness (baseline mean 0.5418, as the guided cells of the audited
    smoke run), unconditional mean `ratio` times it, paired by prior noise with independent scatter."""
    g = np.random.default_rng(seed)
    base = 0.5418 + 0.05 * g.standard_normal(n)
    e = noise * g.standard_normal(n)
    uncond = ratio * base + (e - e.mean())                    # mean exactly ratio * mean(base)
    real = 0.3261
    return [rec({"mode": m}, {"sharpness_ratio": float(v.mean() / real)}, sharpness=float(v.mean()),
                sharpness_per_sample=v.tolist(), resample_unit="images", resample_n=n)
            for m, v in (("unconditional", uncond), ("baseline", base))]


def test_a_099_ratio_with_a_spread_covering_1_is_inconclusive():
    """The audited reading (a 0.99 ratio of two means read as "blurrier", no spread) on the paper's
    comparison: paired resampling of the images leaves it open."""
    c = claim("bdd_uncond", "unconditional_blurrier_than_baseline")
    cells = _uncond_cells(0.99, noise=0.05)
    u, g = (measure(r, "sharpness", "images") for r in cells)
    assert u.point / g.point == pytest.approx(0.99)
    ratios = u.reps / g.reps
    assert np.percentile(ratios, 5) < 1 < np.percentile(ratios, 95)        # the spread covers 1
    v = judge(c, {"bdd_uncond": cells}, "bdd_uncond")
    assert v.verdict == "inconclusive" and 0.1 < v.share < 0.9 and v.n_units == 64 and v.unit == "images"
    # the same comparison with a clear difference either way
    assert judge(c, {"bdd_uncond": _uncond_cells(0.8, 0.01)}, "bdd_uncond").verdict == "held"
    assert judge(c, {"bdd_uncond": _uncond_cells(1.2, 0.01)}, "bdd_uncond").verdict == "did not hold"


def test_uncond_without_per_image_values_is_inconclusive_not_a_verdict():
    c = claim("bdd_uncond", "unconditional_blurrier_than_baseline")
    cells = [rec({"mode": "unconditional"}, {"sharpness_ratio": 1.649}, sharpness=0.5379),
             rec({"mode": "baseline"}, {"sharpness_ratio": 1.661}, sharpness=0.5418)]   # no per-image values
    v = judge(c, {"bdd_uncond": cells}, "bdd_uncond")
    assert v.verdict == "inconclusive" and "no spread" in v.detail


def test_uncond_claim_without_a_baseline_cell_is_not_judged():
    c = claim("bdd_uncond", "unconditional_blurrier_than_baseline")
    cells = [r for r in _uncond_cells(0.9, 0.01) if r["cell"]["mode"] == "unconditional"]
    assert judge(c, {"bdd_uncond": cells}, "bdd_uncond").verdict == "not judged"


def test_unsharp_threshold_reads_the_ratio_replicates():
    from repro.experiments.bdd.unconditional_samples import sharpness_ratio_replicates

    c = claim("bdd_uncond", "unconditional_samples_unsharp")
    g = torch.Generator().manual_seed(0)
    real = 0.33 + 0.05 * torch.randn(64, generator=g, dtype=torch.float64)
    for scale, want in ((1.66, "did not hold"), (0.7, "held")):     # smoke: samples sharper than real images
        gen = scale * real + 0.01 * torch.randn(64, generator=g, dtype=torch.float64)
        boot = sharpness_ratio_replicates(gen, real)
        assert len(boot) == RESAMPLES
        cells = [rec({"mode": "unconditional"}, {"sharpness_ratio": float(gen.mean() / real.mean())},
                     sharpness_ratio_boot=boot, resample_n=64)]
        assert judge(c, {"bdd_uncond": cells}, "bdd_uncond").verdict == want


# ----------------------------------------------------------------------------- other claims on hand-built cells

def _timing_cells(seconds: dict[tuple[int, str], float], spread: float = 0.01) -> list[dict]:
    out = []
    for (b, mode), s in seconds.items():
        runs = [s * (1 + spread * k) for k in (-1, 0, 1)]
        out.append(rec({"batch_size": b, "mode": mode, "variant": "fp32"},
                       {"seconds": s, "images_per_second": b / s},
                       seconds_runs=runs, images_per_second_runs=[b / r for r in runs], resample_unit="repeats"))
    return out


def test_table2_claims_on_the_published_times_as_if_measured():
    pub = {(c["batch_size"], c["mode"]): float(c["seconds"]) for c in load_spec("bdd_table2").paper.cells}
    cells = {"bdd_table2": _timing_cells(pub)}
    verdicts = {c.id: judge(c, cells, "bdd_table2") for c in load_spec("bdd_table2").claims}
    assert verdicts["time_grows_with_batch"].verdict == "held"
    # images per second fall from batch 32 to 64 in the table (rank trend still rises)
    assert verdicts["per_image_time_falls_with_batch"].verdict == "held"
    assert verdicts["any_batch_beats_single_sample"].verdict == "held"
    # the 1 % run-to-run spread hides the 2-6 % gap in some rows: not a verdict the table's own rows carry
    assert verdicts["conditional_slower_than_unconditional"].verdict in ("held", "inconclusive")
    assert verdicts["conditional_unconditional_time_ratio"].verdict == "held"
    # guided sampling at twice the rows on a saturated device: the published ratio does not hold
    doubled = {k: (2 * s if k[1] == "conditional" else s) for k, s in pub.items()}
    assert judge(claim("bdd_table2", "conditional_unconditional_time_ratio"), {"bdd_table2": _timing_cells(doubled)},
                 "bdd_table2").verdict == "did not hold"


def test_memory_claims_are_decided_by_the_point_values():
    cells = {"table5_1": [rec({"precision": "fp32"}, {"nvml_device_used_mb": 39039.0}),
                          rec({"precision": "fp16"}, {"nvml_device_used_mb": 29481.0}),
                          rec({"precision": "bf16"}, {"nvml_device_used_mb": 41000.0})]}
    v = {c.id: judge(c, cells, "table5_1") for c in load_spec("table5_1").claims}
    assert v["fp16_amp_needs_less_vram"].verdict == "held" and v["fp16_amp_needs_less_vram"].unit == "none"
    assert v["fp16_amp_vram_ratio_as_on_a100"].verdict == "held"            # the thesis's own A100 numbers
    assert v["bf16_autocast_needs_less_vram"].verdict == "did not hold"
    rtx = {"table5_1": [rec({"precision": "fp32"}, {"nvml_device_used_mb": 7791.0}),
                        rec({"precision": "fp16"}, {"nvml_device_used_mb": 7367.0})]}
    # the RTX 2080 Ti's ratio (0.946) is nearer its own than the A100's: outside the factor
    assert judge(claim("table5_1", "fp16_amp_vram_ratio_as_on_a100"), rtx, "table5_1").verdict == "did not hold"


def test_epoch_time_claims_resample_the_timed_epochs():
    def cells(off: float, on: float) -> dict:
        g = np.random.default_rng(1)
        jitter = lambda s: (s * (1 + 0.005 * g.standard_normal(99))).tolist()   # noqa: E731 (99 timed epochs)
        return {"table5_2": [rec({"precision": "fp32"}, {"seconds_per_epoch": off}, seconds_per_epoch_runs=jitter(off)),
                             rec({"precision": "fp16"}, {"seconds_per_epoch": on}, seconds_per_epoch_runs=jitter(on))]}

    ratio, faster = claim("table5_2", "fp16_amp_epoch_time_ratio_as_on_a100"), claim("table5_2", "fp16_amp_shortens_epochs")
    a100, rtx = cells(965, 987), cells(1494, 1206)                        # thesis Tab. 5.2
    assert judge(ratio, a100, "table5_2").verdict == "held" and judge(faster, a100, "table5_2").verdict == "did not hold"
    assert judge(ratio, rtx, "table5_2").verdict == "did not hold" and judge(faster, rtx, "table5_2").verdict == "held"
    one_epoch = {"table5_2": [rec({"precision": p}, {"seconds_per_epoch": s}, seconds_per_epoch_runs=[s])
                              for p, s in (("fp32", 965.0), ("fp16", 987.0))]}
    assert judge(ratio, one_epoch, "table5_2").verdict == "inconclusive"   # one timed epoch: no spread


def test_loss_claims_judge_every_repeat():
    c = claim("fig5_6", "bf16_autocast_leaves_loss_unchanged")
    g = np.random.default_rng(2)

    def cells(shift: float) -> dict:
        out = []
        for repeat in (0, 1):
            base = 0.95 + 0.05 * g.standard_normal(200)
            for p, f in (("fp32", 1.0), ("bf16", 1.0 + (shift if repeat == 1 else 0.0))):
                v = (base * f + 1e-4 * g.standard_normal(200)).tolist()
                out.append(rec({"precision": p, "repeat": repeat}, {"loss_last_quarter": float(np.mean(v))},
                               loss_last_quarter_per_sample=v))
        return {"fig5_6": out}

    assert judge(c, cells(0.0), "fig5_6").verdict == "held"
    v = judge(c, cells(0.1), "fig5_6")                      # repeat 1 10 % higher: not "no notable effect"
    assert v.verdict == "did not hold" and dict(v.groups)["repeat=0"].verdict == "held"


# ----------------------------------------------------------------------------- what the runners store

def test_miou_replicates_are_image_miou_on_the_shared_index_sets():
    from repro.experiments.bdd.scoring import miou_replicates
    from repro.metrics.segmentation import image_miou

    g = np.random.default_rng(3)
    iou = [[None if g.random() < 0.3 else float(g.random()) for _ in range(5)] for _ in range(12)]
    reps = miou_replicates(iou)
    idx = resample_indices(12)
    assert len(reps) == RESAMPLES
    for j in (0, 1, 500, 999):
        assert reps[j] == pytest.approx(image_miou(iou, idx[j].tolist()))


def test_pixel_accuracy_per_image_averages_to_the_pixel_accuracy():
    from repro.experiments.bdd.scoring import original_vs_generated

    class Seg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.w(x)

    torch.manual_seed(0)
    real, fake = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8)
    out = original_vs_generated(Seg(), real, fake)
    assert len(out["pixel_acc_per_image"]) == 6
    assert float(np.mean(out["pixel_acc_per_image"])) == pytest.approx(out["pixel_acc"])


def test_frechet_boot_is_frechet_of_the_resampled_generated_set():
    from repro.experiments.bdd.scoring import FeatureModule, frechet_boot
    from repro.metrics.frechet import feature_statistics, frechet_distance

    torch.manual_seed(0)
    feats = FeatureModule(lambda im: im.flatten(1)[:, :3], 3)
    real, fake = torch.rand(20, 3, 2, 2), torch.rand(20, 3, 2, 2) * 0.8
    boot = frechet_boot(real, fake, feats, allow_rank_deficient=False)
    mu, sigma = feature_statistics(real.flatten(1)[:, :3].double().numpy())
    j = resample_indices(20)[7]
    m2, s2 = feature_statistics(fake.flatten(1)[:, :3].double().numpy()[j])
    assert len(boot) == RESAMPLES and boot[7] == pytest.approx(frechet_distance(mu, sigma, m2, s2), rel=1e-6, abs=1e-9)


def test_equal_bins_keep_the_mean_and_at_most_1000_units():
    from repro.experiments.amp.arm import MAX_UNITS, equal_bins, late_loss

    assert equal_bins([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    vals = [float(i % 7) for i in range(2503)]
    bins = equal_bins(vals)
    size = math.ceil(2503 / MAX_UNITS)
    assert len(bins) <= MAX_UNITS and sum(bins) / len(bins) == pytest.approx(np.mean(vals[2503 % size:]))
    steps = [{"loss": float(i)} for i in range(16)]
    value, units, size = late_loss(steps)
    assert value == pytest.approx(13.5) and units == [12.0, 13.0, 14.0, 15.0] and size == 1


def test_timing_summary_stores_the_timed_epochs_and_step_times():
    from repro.experiments.amp.arm import timing_summary

    steps = [{"t": 0.1 * i + (0.5 if i >= 4 else 0.0), "epoch": i // 4, "session": 1, "step": i + 1} for i in range(8)]
    history = [{"epoch": 0, "seconds": 1.0}, {"epoch": 1, "seconds": 0.9}, {"epoch": 2, "seconds": 0.8}]
    out = timing_summary(steps, history, batch_size=4, warmup_epochs=1, warmup_steps=1, steps_per_epoch=4)
    assert out["seconds_per_epoch_runs"] == [0.9, 0.8] and out["seconds_per_epoch"] == pytest.approx(0.85)
    assert len(out["seconds_per_step_runs"]) == 6 and out["seconds_per_step"] == pytest.approx(0.1)


# ----------------------------------------------------------------------------- reports describe, never judge

def test_uncond_report_notes_carry_no_verdict():
    from repro.experiments.bdd.report import _uncond_notes

    df = pd.DataFrame([{"mode": m, "sharpness": s, "sharpness_real": 0.3261, "sharpness_ratio": s / 0.3261,
                        "nfe_per_batch": 199, "network_rows_per_pass": r, "model": model, "model_p_uncond": p,
                        "model_drop_mode": "per_sample"}
                       for m, s, r, model, p in (("unconditional", 0.5379, 64, "mask_ddpm_bdd", 0.1),
                                                 ("baseline", 0.5418, 64, "ddpm_uncond_bdd", 1.0),
                                                 ("conditional", 0.5600, 128, "mask_ddpm_bdd", 0.1))])
    text = " ".join(_uncond_notes(load_spec("bdd_uncond"), df))
    assert not VERDICT_WORDS.search(text), text
    assert "separately trained unconditional baseline model: 0.993" in text           # 0.5379 / 0.5418
    assert "same model: 0.961" in text and "the paper does not make" in text        # 0.5379 / 0.5600
    assert "model ddpm_uncond_bdd, trained with mask drop p = 1.0" in text


def test_amp_loss_notes_carry_no_verdict():
    from repro.experiments.amp.report import _loss_notes

    df = pd.DataFrame([{"precision": p, "repeat": r, "loss_last_quarter": v}
                       for p, r, v in (("fp32", 0, 0.9477), ("fp32", 1, 0.9444), ("bf16", 0, 0.9478), ("bf16", 1, 0.9444))])
    text = " ".join(_loss_notes(df))
    assert not VERDICT_WORDS.search(text) and "within" not in text and "outside" not in text, text
    assert "no notable effect on training loss" in text
