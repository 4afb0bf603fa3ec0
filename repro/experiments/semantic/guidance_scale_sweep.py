"""The maximum guidance scale s0 vs image quality and map compliance (000 thesis Sec. 5.4.4, Tab. 5.3).

Images are sampled for the same label maps in every cell (the same prior draws and noise per
map: common random numbers) by PC sampling with the score plus s(t) grad log p_t(y | x)
(Eq. 5.5, 5.6) at every score evaluation. Each cell measures a Frechet distance to real images
(`fid` on pytorch-fid's Inception at `paper`, `fd_evalnet` on the embedded data) and the pixel
accuracy and mIoU of the generated images against their maps, judged by a separate evaluator
segmenter (never the guide). s0 = 0 is the unguided reference.
"""
from __future__ import annotations

from pydantic import Field

from repro.experiments.semantic.prepare import evaluate_images, prepare_semantic, score_guidance_norms
from repro.experiments.semantic.scoring import triptych_sheet
from repro.experiments.semantic.settings import SynthesisFixed, synthesis_setting
from repro.experiments.semantic.synthesis import synthesize
from repro.images import save_image_grid
from repro.results import relative_to_results
from repro.specs import cell_key

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("fd_evalnet", "fid", "miou", "pixel_acc")
GRID_KEYS = ("s0", "snr", "t_start", "t_decay")
# model roles every spec of this kind names, and the model kinds each takes
ROLES = {"score": ("score_sde",), "guide": ("noisy_segmenter",), "evaluator": ("evaluator", "pretrained_segmenter")}


class Fixed(SynthesisFixed):
    n_maps: int = Field(100, ge=1, description="label maps, the same for every s0 (Tab. 5.3: 100)")
    n_reference: int = Field(500, ge=2, description="real images of the spec's split for the Frechet distance")
    allow_rank_deficient: bool = Field(False, description="fewer samples than feature dims (Tab. 5.3's FID)")
    sheet_maps: int = Field(4, ge=1, description="maps shown in the report's sample figure")
    floor_split: str | None = Field(None, description="split whose n_maps real images give the Frechet "
                                                      "distance's real-vs-real floor")


def prepare(ctx):
    f = ctx.fixed
    state = prepare_semantic(ctx, f.n_maps, {"n_reference": f.n_reference, "floor_split": f.floor_split,
                                             "allow_rank_deficient": f.allow_rank_deficient})
    k = min(f.sheet_maps, f.n_maps)
    d = ctx.artifacts_dir("maps")
    triptych_sheet(state.real[:k], state.maps[:k], [], state.colors, d / "maps.png")
    save_image_grid(state.real[:k], d / "real_strip.png", nrow=k, scale=2)
    state.norm_ratio = score_guidance_norms(state)
    return state


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    setting = synthesis_setting(f, cell)
    n = state.maps.shape[0]
    out = synthesize(state.score_model, state.guide, state.maps, setting, list(range(n)),
                     (ctx.spec.seed, "semantic"), f.batch_size, ctx.device)
    values, extra = evaluate_images(state, out.images)
    key = cell_key(cell)
    d = ctx.artifacts_dir(key)
    k = min(f.sheet_maps, n)
    sheet = triptych_sheet(state.real[:k], state.maps[:k], [out.images[:k]], state.colors, d / "sheet.png")
    strip = save_image_grid(out.images[:k], d / "strip.png", nrow=k, scale=2)
    extra.update(setting.record())
    extra.update({"nfe_per_sample": out.nfe, "guide_passes_per_batch": out.guide_calls,
                  "seconds_sampling": out.seconds, "ms_per_image": 1000 * out.seconds / n,
                  "sheet_png": relative_to_results(sheet), "strip_png": relative_to_results(strip),
                  "maps_png": relative_to_results(ctx.artifacts_dir("maps") / "maps.png"),
                  "n_reference": f.n_reference, "rank_deficient": f.allow_rank_deficient,
                  "s0_scale": f.s0_scale, "score_to_guidance_norm_ratio": state.norm_ratio})
    return {"values": values, "extra": extra, "artifacts": [sheet, strip]}
