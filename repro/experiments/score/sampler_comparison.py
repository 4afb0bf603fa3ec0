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

import torch

from repro.experiments.score.evaluation import evaluate_setting, model_extra
from repro.experiments.quality import prepare_scoring
from repro.experiments.score import sampler_settings
from repro.experiments.score.sampler_settings import corrector_only_elsewhere, setting_for
from repro.experiments.score.sampling import draw_batch
from repro.rng import batch_generator
from repro.specs import cell_key
from repro.trainers.score_model import score_model_for

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("class_entropy", "fd_evalnet", "fd_evalnet_std", "fid", "fid_std", "max_abs_diff_vs_em",
           "nfe", "seconds")
GRID_KEYS = ("sde", "predictor", "sampler", "solver")
Fixed = sampler_settings.Fixed   # the kind's `fixed` schema (Runner.Fixed), shared with the family's cost estimator
SHARDS_CELLS = True   # under torchrun each rank samples its share of every run's batches (repro.engine.ranks)


def prepare(ctx):
    f = ctx.fixed
    scoring = prepare_scoring(ctx, n_reference=f.n_reference, n_samples=f.n_samples,   # first: a missing metric
                              allow_rank_deficient=f.allow_rank_deficient,              # (fid weights) fails
                              floor_split=f.floor_split, fid_inputs=f.fid_inputs)       # before training
    roles = sorted({str(v) for v in ctx.spec.grid.get("sde", [])}) or ["score"]
    trained = {role: ctx.model(role) for role in roles}
    return {"trained": trained, "models": {r: score_model_for(t) for r, t in trained.items()}, "scoring": scoring}


def run_cell(ctx, state, cell, run):
    if corrector_only_elsewhere(cell):
        return {"values": {}, "extra": {"not_applicable": "corrector-only sampling uses no predictor; like the "
                                                          "slides it is run once, in the reverse-diffusion row"}}
    role = str(cell.get("sde", "score"))
    model, f = state["models"][role], ctx.fixed
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
