"""Samples of the mask-guided DDPM queried without a mask, and of the unconditional baseline (001 paper
Sec. 5.2.5, Fig. 24).

Classifier-free training dropped the mask for part of the batches, so the same network samples
unconditionally: one pass of size B per step with no mask. The paper shows a grid and says these samples
are "somewhat more blurr[y]" than those of its separately trained unconditional baseline (Ch. 4); it
gives no number. Each cell draws `n_samples` images: mode `unconditional` from the mask-guided model
(role `ddpm`) without a mask, mode `baseline` from the baseline model (role `baseline`, the same network
and training with every mask dropped), mode `conditional` from the mask-guided model guided by test
masks (a comparison within the same model, not the paper's); it measures their sharpness against real
test images (mean absolute Laplacian, generated / real) and their KID to the real images.

Image i starts from the same prior noise in every mode (batch j's generator is seeded alike, and both
models share the sample shape), and is paired with real test image i: per-image sharpness and the
ratio's replicates over the shared resamples of the images are stored for the claims engine
(repro.claims).
"""
from __future__ import annotations

import torch
from pydantic import Field

from repro.errors import UserError
from repro.experiments.bdd.model import describe  # noqa: F401  (repro show prints the parameter count)
from repro.experiments.bdd.model import guidance_for, prepare_sampling_state
from repro.experiments.bdd.sampling import generate
from repro.experiments.bdd.scoring import fid_kid, mean_abs_laplacian
from repro.experiments.bdd.settings import SamplingFixed
from repro.metrics.spread import compact
from repro.images import save_image_grid
from repro.metrics.spread import resample_indices
from repro.results import relative_to_results
from repro.rng import seed_for
from repro.specs import cell_key
from repro.trainers.mask_ddpm import mask_ddpm_for

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("kid", "kid_evalnet", "sharpness_ratio")
GRID_KEYS = ("mode",)
ROLES = {"ddpm": ("mask_ddpm",)}   # model roles every spec of this kind names, and the model kinds each takes
MODES = ("unconditional", "conditional", "baseline")


class Fixed(SamplingFixed):
    n_samples: int = Field(64, ge=2, description="images per cell")
    kid_subset_size: int = Field(100, ge=2, description="as Sec. 5.1.3 (capped at the sample count)")
    kid_degree: int = Field(3, ge=1)
    fid_weights: str | None = None
    grid_columns: int = Field(8, ge=1, description="columns of the sample grid")


def prepare(ctx):
    fixed = ctx.fixed
    st = prepare_sampling_state(ctx, fixed.n_samples, fixed.fid_weights, need_evaluator=False)
    st.real_sharpness_per_image = mean_abs_laplacian(st.real).double()
    st.real_sharpness = float(st.real_sharpness_per_image.mean())
    modes = [str(m) for m in ctx.spec.grid.get("mode", ["unconditional"])]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise UserError(f"spec {ctx.spec.id}: grid.mode {unknown[0]!r} is not a mode; use {', '.join(MODES)}")
    st.baseline = None
    if "baseline" in modes:
        if "baseline" not in ctx.spec.models:
            raise UserError(f"spec {ctx.spec.id}: grid.mode baseline needs a model for role `baseline` "
                            f"(models: {{baseline: ddpm_uncond_bdd}})")
        st.baseline = mask_ddpm_for(ctx.model("baseline"))
        if tuple(st.baseline.shape) != tuple(st.model.shape):   # image i must start from the same prior noise
            raise UserError(f"spec {ctx.spec.id}: the baseline samples {tuple(st.baseline.shape)}, the mask-guided "
                            f"DDPM {tuple(st.model.shape)}; train both at the same resolution")
    return st


def sharpness_ratio_replicates(generated: torch.Tensor, real: torch.Tensor) -> list[float]:
    """mean sharpness(generated[idx]) / mean sharpness(real[idx]) over the shared resample index sets:
    generated image i and real test image i are drawn together, so the real set's spread is in it."""
    idx = torch.from_numpy(resample_indices(int(generated.shape[0])))
    return (generated.double()[idx].mean(1) / real.double()[idx].mean(1)).tolist()


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    mode = cell.get("mode", "unconditional")
    guidance = guidance_for(f, cell) if mode == "conditional" else None
    labels = state.masks if mode == "conditional" else None
    model = state.baseline if mode == "baseline" else state.model
    gen = generate(model, labels, guidance, f.loop, n=f.n_samples, batch_size=f.batch_size,
                   seed=seed_for(ctx.spec.seed, "bdd_uncond"), device=ctx.device)
    per_image = mean_abs_laplacian(gen.images).double()
    sharp = float(per_image.mean())
    fk = fid_kid(state.real, gen.images, state.features, f.kid_subset_size, f.kid_degree, seed=ctx.spec.seed)
    kid_name = state.feature_names[1]
    values = {"sharpness_ratio": sharp / state.real_sharpness, kid_name: fk["kid"]}
    d = ctx.artifacts_dir(cell_key(cell))
    grid = save_image_grid(gen.images, d / "samples.png", nrow=f.grid_columns, scale=2)
    extra = {"sharpness": sharp, "sharpness_real": state.real_sharpness, f"{kid_name}_std": fk["kid_std"],
             "kid_subset_size": fk["kid_subset_size"], "n_samples": int(gen.images.shape[0]), "loop": f.loop,
             "nfe_per_batch": gen.nfe, "network_rows_per_pass": gen.batch_size_network,
             "seconds_sampling": gen.seconds, "samples_png": relative_to_results(grid), "mode": mode,
             **(guidance.record() if guidance else {"guidance_convention": None}),
             "model": ctx.spec.models["baseline" if mode == "baseline" else "ddpm"],
             "model_p_uncond": model.meta.get("p_uncond"), "model_drop_mode": model.meta.get("drop_mode"),
             "model_train_seconds": model.meta.get("train_seconds"),
             "sharpness_per_sample": compact(per_image.tolist()),
             "sharpness_ratio_boot": compact(sharpness_ratio_replicates(per_image, state.real_sharpness_per_image)),
             "resample_unit": "images", "resample_n": int(per_image.shape[0])}
    return {"values": values, "extra": extra, "artifacts": [grid]}
