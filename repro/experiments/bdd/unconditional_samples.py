"""Samples of the mask-guided DDPM queried without a mask (001 paper Sec. 5.2.5, Fig. 24).

Classifier-free training dropped the mask for part of the batches, so the same network samples
unconditionally: one pass of size B per step with no mask. The paper shows a grid and says the samples
are "somewhat more blurr[y]" than those of its separate unconditional baseline; it gives no number. Each
cell here draws `n_samples` images (mode `unconditional`, or `conditional` on test masks for a
comparison within the same model) and measures their sharpness against real test images (mean absolute
Laplacian, generated / real) and their KID to the real images.
"""
from __future__ import annotations

from pydantic import Field

from repro.experiments.bdd.model import describe  # noqa: F401  (repro show prints the parameter count)
from repro.experiments.bdd.model import guidance_for, prepare_sampling_state
from repro.experiments.bdd.sampling import generate
from repro.experiments.bdd.scoring import fid_kid, mean_abs_laplacian
from repro.experiments.bdd.settings import SamplingFixed
from repro.images import save_image_grid
from repro.results import relative_to_results
from repro.rng import seed_for
from repro.specs import cell_key

GRID_KEYS = ("mode",)


class Fixed(SamplingFixed):
    n_samples: int = Field(64, ge=2, description="images per cell")
    kid_subset_size: int = Field(100, ge=2, description="as Sec. 5.1.3 (capped at the sample count)")
    kid_degree: int = Field(3, ge=1)
    fid_weights: str | None = None
    grid_columns: int = Field(8, ge=1, description="columns of the sample grid")


def prepare(ctx):
    fixed = ctx.fixed
    st = prepare_sampling_state(ctx, fixed.n_samples, fixed.fid_weights, need_evaluator=False)
    st.real_sharpness = float(mean_abs_laplacian(st.real).mean())
    return st


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    mode = cell.get("mode", "unconditional")
    guidance = guidance_for(f, cell) if mode == "conditional" else None
    labels = state.masks if mode == "conditional" else None
    gen = generate(state.model, labels, guidance, f.loop, n=f.n_samples, batch_size=f.batch_size,
                   seed=seed_for(ctx.spec.seed, "bdd_uncond"), device=ctx.device)
    sharp = float(mean_abs_laplacian(gen.images).mean())
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
             "model_p_uncond": state.model.meta.get("p_uncond"), "model_drop_mode": state.model.meta.get("drop_mode")}
    return {"values": values, "extra": extra, "artifacts": [grid]}
