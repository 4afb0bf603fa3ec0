"""Signal-to-noise ratio of the Langevin corrector vs sample quality (000 thesis Sec. 5.4.4, Fig. 5.11).

Unconditional predictor-corrector samples (one Langevin step of size 2 (snr ||z|| / ||grad||)^2,
then one predictor step) for each snr of the grid, from the same prior draws and seeds in every
cell; a Frechet distance per snr (`fid` where the Inception weights exist, else `fd_evalnet`) with
its spread over repeated runs and its replicates over the samples, and the samples side by side.
The predictor is `fixed.predictor`: `euler_maruyama` is the thesis's Alg. 3 as written,
`reverse_diffusion` the authors' public code (score_sde); each cell records which reading
(`predictor_reading`, repro.sampling.predictor_corrector.PREDICTOR_READINGS).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.score.evaluation import evaluate_setting, model_extra
from repro.experiments.quality import prepare_scoring
from repro.sampling.predictor_corrector import predictor_reading
from repro.experiments.score.sampling import SamplerSetting
from repro.specs import cell_key
from repro.trainers.score_model import score_model_for

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("class_entropy", "confidence", "fd_evalnet", "fd_evalnet_std", "fid", "fid_std")
GRID_KEYS = ("snr",)
ROLES = {"score": ("score_sde",)}   # model roles every spec of this kind names, and the model kinds each takes


class Grid(BaseModel):
    """One grid value's type and range (repro.experiments.validate_spec_for_kind)."""
    snr: float = Field(gt=0, description="Langevin corrector signal-to-noise ratio")
SHARDS_CELLS = True   # under torchrun each rank samples its share of every run's batches (repro.engine.ranks)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictor: Literal["reverse_diffusion", "euler_maruyama", "ancestral", "probability_flow"] = Field(
        "reverse_diffusion", description="PC predictor: euler_maruyama = thesis Alg. 3, reverse_diffusion = the "
                                         "authors' code (score_sde)")
    steps: int = Field(2000, ge=1, description="predictor steps N (one Langevin step before each)")
    n_corrector_steps: int = Field(1, ge=1)
    eps: float | None = Field(None, gt=0, lt=1)
    discretisation: Literal["grid", "score_sde"] = Field(
        "grid", description="reverse chain: the suite's grid or score_sde_pytorch's (repro.sampling.score_sde_pc)")
    fid_inputs: Literal["uint8", "uint8_trunc", "float"] = Field(
        "uint8", description="images into `fid`: 8-bit as PNG files (pytorch-fid), score_sde's truncation, or float")
    n_samples: int = Field(500, ge=2, description="generated images per run")
    n_reference: int = Field(500, ge=2, description="real images of the spec's dataset/split")
    batch_size: int = Field(8, ge=1)
    n_runs: int = Field(1, ge=1, description="repeated sampling runs (different seeds) per snr")
    grid_samples: int = Field(16, ge=1)
    grid_nrow: int = Field(8, ge=1)
    allow_rank_deficient: bool = Field(False, description="allow fewer samples than feature dimensions "
                                                          "(the value is biased; say so)")
    floor_split: str | None = Field(None, description="split whose real images give the metric's floor")


def prepare(ctx):
    f = ctx.fixed
    scoring = prepare_scoring(ctx, n_reference=f.n_reference, n_samples=f.n_samples,   # first: a missing metric
                              allow_rank_deficient=f.allow_rank_deficient,              # (fid weights) fails
                              floor_split=f.floor_split, fid_inputs=f.fid_inputs)       # before training
    trained = ctx.model("score")
    return {"trained": trained, "model": score_model_for(trained), "scoring": scoring}


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    setting = SamplerSetting("pc", f.steps, predictor=f.predictor, corrector="langevin", snr=float(cell["snr"]),
                             n_corrector_steps=f.n_corrector_steps, eps=f.eps, discretisation=f.discretisation)
    evaluated = evaluate_setting(ctx, state["scoring"], state["model"], setting, cell_key(cell), f)
    if evaluated is None:   # a rank other than 0 under torchrun: its batches went to rank 0
        return {}
    values, extra, artifacts, _ = evaluated
    extra.update(model_extra(state["trained"]))
    extra["predictor_reading"] = predictor_reading(f.predictor)
    return {"values": values, "extra": extra, "artifacts": artifacts}
