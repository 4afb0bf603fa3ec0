"""When must the segmentation guidance act? (000 thesis Sec. 5.2.5, Fig. 5.3 and 5.4)

Two experiments on the same map(s) and noise: the guidance switched *off* below t_stop (scale s0
for t > t_stop, Fig. 5.3) and switched *on* only below t_start (s0 for t < t_start, Fig. 5.4),
for t over [0, 1]. The thesis concludes (qualitatively, from one map) that guidance "has to be
started at t > 0.65 and can be stopped/decreased at t < 0.45", the basis of Eq. 5.5. Each cell
measures the map compliance (mIoU, pixel accuracy by the evaluator segmenter) of its samples.
"""
from __future__ import annotations

from pydantic import Field

from repro.experiments.semantic.prepare import evaluate_images, prepare_semantic
from repro.experiments.semantic.scoring import triptych_sheet
from repro.experiments.semantic.settings import SynthesisFixed, synthesis_setting, window_schedule
from repro.experiments.semantic.synthesis import synthesize
from repro.images import save_image_grid
from repro.results import relative_to_results
from repro.specs import cell_key

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("miou", "pixel_acc")
GRID_KEYS = ("window", "t")
# model roles every spec of this kind names, and the model kinds each takes
ROLES = {"score": ("score_sde",), "guide": ("noisy_segmenter",), "evaluator": ("evaluator", "pretrained_segmenter")}


class Fixed(SynthesisFixed):
    n_maps: int = Field(1, ge=1, description="maps (the thesis shows one)")
    repeats: int = Field(4, ge=1, description="samples per map, each with its own noise (the same in every cell)")


def prepare(ctx):
    f = ctx.fixed
    for cell in ctx.resolved.cells():   # a bad window name fails before any model trains
        window_schedule(cell, f.s0 * f.s0_scale)
    state = prepare_semantic(ctx, f.n_maps)
    # each map `repeats` times: sample r of map m has its own seed, the same in every cell
    state.maps = state.maps.repeat_interleave(f.repeats, dim=0)
    state.real = state.real.repeat_interleave(f.repeats, dim=0)
    state.indices = list(range(state.maps.shape[0]))
    return state


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    setting = synthesis_setting(f, {}, schedule=window_schedule(cell, f.s0 * f.s0_scale))
    out = synthesize(state.score_model, state.guide, state.maps, setting, state.indices,
                     (ctx.spec.seed, "semantic-window"), f.batch_size, ctx.device)
    values, extra = evaluate_images(state, out.images, unit="samples")   # a map with one noise draw
    d = ctx.artifacts_dir(cell_key(cell))
    first = save_image_grid(out.images[:1], d / "first.png", nrow=1)
    strip = save_image_grid(out.images, d / "strip.png", nrow=out.images.shape[0], scale=2)
    sheet = triptych_sheet(state.real[:1], state.maps[:1], [out.images[:1]], state.colors, d / "sheet.png")
    extra.update(setting.record())
    extra.update({"first_png": relative_to_results(first), "strip_png": relative_to_results(strip),
                  "sheet_png": relative_to_results(sheet), "seconds_sampling": out.seconds,
                  "nfe_per_sample": out.nfe, "guide_passes_per_batch": out.guide_calls, "repeats": f.repeats,
                  "s0_scale": f.s0_scale})
    return {"values": values, "extra": extra, "artifacts": [first, strip, sheet]}
