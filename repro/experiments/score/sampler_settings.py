"""What a `sampler_comparison` cell samples with: the kind's `fixed` settings and each grid cell's
sampler setting (score-SDE slides' sampler table; the Milstein report's solver rows). Shared by the
runner and the score family's cost estimator."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.score.sampling import budget_setting, solver_setting

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


def corrector_only_elsewhere(cell: dict) -> bool:
    """Corrector-only sampling (C2000) uses no predictor: the slides list it once, in the
    reverse-diffusion row; in any other predictor's row the cell has nothing to compute."""
    return str(cell.get("sampler", "")).startswith("C") and cell.get("predictor", SHARED_PREDICTOR) != SHARED_PREDICTOR
