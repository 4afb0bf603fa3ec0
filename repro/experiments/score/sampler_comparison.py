"""Reverse-time samplers compared on trained score models: quality (mean ± std over repeated runs),
NFE and wall time per sampler, sample grids.

Two kinds of grid use it:
- the slides' table (004, "Comparing different reverse-time SDE solvers on CIFAR-10"): grid
  `sde` (ve / vp: the model roles) x `predictor` (ancestral, reverse_diffusion, probability_flow)
  x `sampler` (P1000, P2000, C2000, PC1000; step counts times `fixed.step_scale`). C2000 uses
  no predictor, so like the slides it is run once, in the reverse-diffusion row;
- the short report's solvers (003): grid `solver` (euler_maruyama, milstein, pc,
  probability_flow_ode) on one model (role `score`). A Milstein cell also re-runs Euler-Maruyama
  with the same noise and records max |x_milstein - x_em| (report Eq. 6: for SDEs whose
  diffusion does not depend on x the Milstein term vanishes).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.score.evaluation import evaluate_setting, model_extra, prepare_scoring
from repro.experiments.score.sampling import budget_setting, draw_batch, solver_setting
from repro.rng import batch_generator
from repro.specs import cell_key
from repro.trainers.score_model import score_model_for

GRID_KEYS = ("sde", "predictor", "sampler", "solver")
SHARDS_CELLS = True   # under torchrun each rank samples its share of every run's batches (repro.engine.ranks)
SHARED_PREDICTOR = "reverse_diffusion"  # the row where the slides list corrector-only C2000


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_scale: float = Field(1.0, gt=0, description="multiplies the step counts in P1000 / C2000 / PC1000 labels")
    steps: int = Field(1000, ge=1, description="steps of the `solver` cells (ODE: fixed-step methods only)")
    snr: float = Field(0.16, gt=0, description="Langevin corrector snr (score SDE default for CIFAR-10)")
    n_corrector_steps: int = Field(1, ge=1)
    ode_method: Literal["rk45", "euler", "heun"] = "rk45"
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    eps: float | None = Field(None, gt=0, lt=1)
    discretisation: Literal["grid", "score_sde"] = Field(
        "grid", description="reverse chain: the suite's grid or score_sde_pytorch's (repro.sampling.score_sde_pc)")
    fid_inputs: Literal["uint8", "uint8_trunc", "float"] = Field(
        "uint8", description="images into `fid`: 8-bit as PNG files (pytorch-fid), score_sde's truncation, or float")
    n_samples: int = Field(50000, ge=2, description="generated images per run")
    n_reference: int = Field(50000, ge=2)
    batch_size: int = Field(1000, ge=1)
    n_runs: int = Field(5, ge=1, description="repeated sampling runs; mean and std reported")
    grid_samples: int = Field(16, ge=1)
    grid_nrow: int = Field(8, ge=1)
    allow_rank_deficient: bool = False
    floor_split: str | None = None


def prepare(ctx):
    f = Fixed.model_validate(ctx.spec.fixed)
    scoring = prepare_scoring(ctx, n_reference=f.n_reference, n_samples=f.n_samples,   # first: a missing metric
                              allow_rank_deficient=f.allow_rank_deficient,              # (fid weights) fails
                              floor_split=f.floor_split, fid_inputs=f.fid_inputs)       # before training
    roles = sorted({str(v) for v in ctx.spec.grid.get("sde", [])}) or ["score"]
    trained = {role: ctx.model(role) for role in roles}
    return {"trained": trained, "models": {r: score_model_for(t) for r, t in trained.items()}, "scoring": scoring}


def setting_for(cell: dict, fixed: Fixed | dict):
    """The cell's sampler setting; `fixed` typed, or as the spec holds it (the cost estimator's)."""
    fixed = Fixed.model_validate(fixed)   # a Fixed instance passes through unchanged
    common = dict(n_corrector_steps=fixed.n_corrector_steps, eps=fixed.eps, discretisation=fixed.discretisation)
    if "sampler" in cell:
        return budget_setting(cell["sampler"], cell.get("predictor", SHARED_PREDICTOR), fixed.step_scale,
                              fixed.snr, **common)
    ode = dict(ode_method=fixed.ode_method, rtol=fixed.rtol, atol=fixed.atol)
    solver = cell["solver"]
    return solver_setting(solver, fixed.steps, snr=fixed.snr, **common,
                          **(ode if solver == "probability_flow_ode" else {}))


def _corrector_only_elsewhere(cell: dict) -> bool:
    return str(cell.get("sampler", "")).startswith("C") and cell.get("predictor", SHARED_PREDICTOR) != SHARED_PREDICTOR


def run_cell(ctx, state, cell, run):
    if _corrector_only_elsewhere(cell):
        return {"values": {}, "extra": {"not_applicable": "corrector-only sampling uses no predictor; like the "
                                                          "slides it is run once, in the reverse-diffusion row"}}
    role = str(cell.get("sde", "score"))
    model, f = state["models"][role], Fixed.model_validate(ctx.spec.fixed)
    setting = setting_for(cell, f)
    key = cell_key(cell)
    evaluated = evaluate_setting(ctx, state["scoring"], model, setting, key, f)
    if evaluated is None:   # a rank other than 0 under torchrun: its batches went to rank 0
        return {}
    values, extra, artifacts, first = evaluated
    extra.update(model_extra(state["trained"][role]))
    extra.update({"corrector_steps": setting.steps * setting.n_corrector_steps
                  if setting.method == "pc" and setting.corrector != "none" else 0,
                  "step_scale": f.step_scale if "sampler" in cell else None})
    if cell.get("solver") == "milstein":
        values["max_abs_diff_vs_em"] = milstein_vs_em(ctx, model, setting, first.raw)
    return {"values": values, "extra": extra, "artifacts": artifacts}


def milstein_vs_em(ctx, model, milstein_setting, milstein_raw: torch.Tensor) -> float:
    """max |x_milstein - x_em| over the first batch of run 0, Euler-Maruyama drawn with the same noise."""
    g = batch_generator(ctx.device, ctx.spec.seed, 0, 0)   # run 0's batch 0, as in evaluate_setting
    with torch.no_grad():
        em_raw, _, _ = draw_batch(model, replace(milstein_setting, method="euler_maruyama"), milstein_raw.shape[0],
                                  g, ctx.device)
    return float((em_raw - milstein_raw).abs().max())
