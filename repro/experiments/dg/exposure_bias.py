"""Exposure bias as the L2 norm of the predicted epsilon per sampling step (002 thesis Sec. 11.1).

Fig. 11.1 (Euler, 21 steps) and Fig. 11.2 (Heun, 35 NFE): ||eps_theta|| along the sampler's own
trajectory (EDM, and EDM-G++ with discriminator guidance) vs on real images noised to the same
sigma ("training"). Grid keys: solver, method. The thesis reads exposure bias off the sampling
norm exceeding the training norm, and finds that DG does not remove it.

Per sample i (latent i, the same in every cell: common random numbers) the runner stores its excess
mean_k 100 (||eps_i(sigma_k)|| / training_k - 1), whose mean over samples is the cell's
eps_norm_excess_pct (the training curve is a fixed reference per schedule): the claims engine
(repro.claims) resamples the samples.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.dg import evaluation as E
from repro.experiments.dg.settings import cell_settings
from repro.metrics.exposure_bias import training_eps_norms
from repro.metrics.spread import compact
from repro.sampling.edm import edm_sample
from repro.trainers.edm import to_model_range

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("eps_norm_excess_last_third_pct", "eps_norm_excess_pct", "nfe")
GRID_KEYS = ("solver", "method")
ROLES = {"edm": ("edm",)}   # model roles every spec of this kind names, and the model kinds each takes


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: dict[str, int] = Field(default_factory=lambda: {"euler": 21, "heun": 18},
                                  description="EDM steps per solver (Heun 18 = 35 NFE)")  # 002 lines 1259, 1267
    solver: Literal["euler", "heun"] = "heun"
    w_dg: float = Field(2.0, ge=0, description="w_DG_1st of EDM-G++ / SEDM-G++")
    w_dg_2nd: float = Field(0.0, ge=0)
    eps_scale: float = Field(1.0004, gt=0, description="b of SEDM-G++ (if in the grid)")  # 002 line 1315
    eps_k: float = 0.0
    placement: Literal["sedm", "ning"] = "sedm"
    methods: dict[str, dict] = Field(default_factory=dict)
    time_min: float = 0.01
    time_max: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    n_samples: int = Field(50_000, ge=1, description="generated trajectories (thesis: 50k)")  # 002 lines 1259, 1267
    n_real: int = Field(50_000, ge=1, description="real images for the training-side norm")
    batch_size: int = Field(500, ge=1)
    discriminator_epoch: int | None = Field(None, ge=1)


def prepare(ctx) -> dict:
    fixed = ctx.fixed
    settings = [cell_settings(fixed, c) for c in ctx.resolved.cells()]
    edm, shape = E.load_edm(ctx)
    disc, disc_epoch = (None, None)
    if any(s.guided for s in settings):
        disc, disc_epoch = E.load_discriminator(ctx, fixed.discriminator_epoch)
    real = to_model_range(E.reference_images(ctx, fixed.n_real))
    return {"edm": edm, "shape": shape, "disc": disc, "disc_epoch": disc_epoch, "real": real, "training": {}}


def _training_curve(ctx, state, sigmas: list[float], key, batch_size: int) -> list[float]:
    """||eps|| on real images noised to each sigma; shared by every method with this schedule."""
    if key not in state["training"]:
        state["training"][key] = training_eps_norms(state["edm"].net, state["real"].to(ctx.device), sigmas,
                                                    ctx.generator("training-noise", *key), batch_size=batch_size)
    return state["training"][key]


def run_cell(ctx, state, cell, run) -> dict:
    fixed = ctx.fixed
    s = cell_settings(fixed, cell)
    disc = state["disc"]
    guidance, eps = E.sampler_objects(s, disc.net if disc else None, fixed.time_min, fixed.time_max)
    parts, sigmas, steps, stages = [], [], [], []
    for j, start in enumerate(range(0, fixed.n_samples, fixed.batch_size)):
        b = min(fixed.batch_size, fixed.n_samples - start)
        latents = torch.randn((b, *state["shape"]), generator=ctx.generator("latents", j)).to(ctx.device)
        res = edm_sample(state["edm"].net, latents, steps=s.steps, solver=s.solver, guidance=guidance,
                         eps_scale=eps, sigma_min=fixed.sigma_min, sigma_max=fixed.sigma_max, rho=fixed.rho,
                         record=True)
        recs = res.records
        sigmas, steps, stages = [r.sigma for r in recs], [r.step for r in recs], [r.stage for r in recs]
        parts.append(torch.stack([r.eps_norm.detach().to("cpu", torch.float64) for r in recs], dim=1))
    norms = torch.cat(parts)                                   # [n_samples, evaluations]
    sampling = norms.mean(0).tolist()
    training = _training_curve(ctx, state, sigmas, (s.solver, s.steps), fixed.batch_size)
    ratio = norms / torch.tensor(training, dtype=torch.float64)   # per sample and evaluation
    excess = [100 * (a / t - 1) for a, t in zip(sampling, training)]
    third = max(1, len(excess) // 3)
    per_sample = 100 * (ratio - 1)                             # mean over samples = excess per evaluation
    whole, last = per_sample.mean(1), per_sample[:, -third:].mean(1)
    return {"values": {"eps_norm_excess_pct": sum(excess) / len(excess),
                       "eps_norm_excess_last_third_pct": sum(excess[-third:]) / third,
                       "nfe": float(len(sampling))},
            "extra": {**s.to_dict(), "sigmas": sigmas, "steps_of_eval": steps, "stages": stages,
                      "sampling_norm": sampling, "training_norm": training, "excess_pct": excess,
                      "eps_norm_excess_pct_per_sample": compact(whole.tolist()),
                      "eps_norm_excess_last_third_pct_per_sample": compact(last.tolist()),
                      "resample_unit": "samples", "resample_n": int(norms.shape[0]),
                      "n_samples": fixed.n_samples, "n_real": int(state["real"].shape[0]),
                      "edm_model": state["edm"].name, "edm_hash": state["edm"].hash,
                      "discriminator_epoch": state["disc_epoch"] if s.guided else None}}
