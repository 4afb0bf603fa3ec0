"""Predictor-corrector sampling (thesis Alg. 3; score SDE paper): Langevin corrector set by snr,
then one predictor step, at each t of linspace(1, eps, N)."""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE, bcast
from repro.errors import UserError
from repro.rng import Generators, randn_like
from repro.sampling.ancestral import ancestral_step
from repro.sampling.common import (ScoreFn, StepRegistry, check_steps, resolve_eps, reverse_time_grid,
                                   with_guidance)
from repro.sampling.result import SampleResult
from repro.sampling.score_sde_pc import score_sde_pc_sample

# Predictors and correctors of the grid chain, registered by name next to their definitions.
PREDICTORS = StepRegistry("predictor")
CORRECTORS = StepRegistry("corrector")
register_predictor, register_corrector = PREDICTORS.register, CORRECTORS.register
# How the Langevin step size reads ||z|| / ||grad||: "batch" averages the per-sample norms over
# the batch first (score_sde_pytorch's LangevinCorrector), so a sample's step depends on its
# batch-mates; "per_sample" uses each sample's own norms (thesis Alg. 3 line 4, one image).
CORRECTOR_NORMS = ("batch", "per_sample")
# How the reverse chain is discretised: "grid" (the suite's: coefficients from the SDE between
# neighbouring times of the sampling grid) or "score_sde" (score_sde_pytorch's get_pc_sampler:
# discrete tables of N = steps levels, dt = -1/N; repro.sampling.score_sde_pc).
DISCRETISATIONS = ("grid", "score_sde")

# A predictor maps (sde, score_fn, x, t, t_next) to (mean of x at t_next, noise std [B]); a std of
# None is a deterministic step, which draws no noise. A corrector maps (sde, score_fn, x, t, snr,
# generator, norms) to (x, x_mean) after one step at t.


@register_predictor("reverse_diffusion")
def reverse_diffusion_predictor(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                                t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rev_f, std = sde.reverse_discretize(score_fn(x, t), x, t, t_next)
    return x + rev_f, std


@register_predictor("euler_maruyama")
def euler_maruyama_predictor(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                             t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """thesis Eq. 4.20 on the reverse SDE."""
    score = score_fn(x, t)
    drift, g = sde.sde(x, t)
    dt = t_next - t
    return x + (drift - bcast(g * g, x) * score) * bcast(dt, x), g * (-dt).sqrt()


@register_predictor("ancestral")
def ancestral_predictor(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                        t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ancestral_step(sde, score_fn(x, t), x, t, t_next)


@register_predictor("probability_flow")
def probability_flow_predictor(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                               t_next: torch.Tensor) -> tuple[torch.Tensor, None]:
    rev_f, _ = sde.reverse_discretize(score_fn(x, t), x, t, t_next, probability_flow=True)
    return x + rev_f, None


@register_predictor("none")
def no_predictor(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                 t_next: torch.Tensor) -> tuple[torch.Tensor, None]:
    """Corrector-only sampling: the Langevin chain's sample itself (its x_mean would shrink it)."""
    return x, None


def predictor_step(name: str, sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                   t_next: torch.Tensor, generator: Generators, add_noise: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step t -> t_next (< t) of the predictor `name`. Returns (x, x_mean); no noise drawn if
    not add_noise."""
    x_mean, std = PREDICTORS.get(name)(sde, score_fn, x, t, t_next)
    if std is None or not add_noise:
        return x_mean, x_mean
    return x_mean + bcast(std, x) * randn_like(x, generator), x_mean


@register_corrector("langevin")
def langevin_corrector_step(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                            snr: float, generator: Generators, norms: str = "batch"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Langevin step with step = 2 alpha (snr ||z|| / ||grad||)^2 (thesis Alg. 3 lines 3-5),
    the norms averaged over the batch or per sample (`norms`, see CORRECTOR_NORMS). Returns (x, x_mean)."""
    score = score_fn(x, t)
    z = randn_like(x, generator)
    b = x.shape[0]
    grad_norm = score.reshape(b, -1).norm(dim=-1)
    noise_norm = z.reshape(b, -1).norm(dim=-1)
    if norms == "batch":
        grad_norm, noise_norm = grad_norm.mean(), noise_norm.mean()
    elif norms != "per_sample":
        raise UserError(f"unknown corrector norms {norms!r}; choose one of {', '.join(CORRECTOR_NORMS)}")
    ratio = snr * noise_norm / grad_norm.clamp_min(torch.finfo(x.dtype).tiny)
    step = 2.0 * sde.langevin_alpha(t) * ratio * ratio  # [B]
    x_mean = x + bcast(step, x) * score
    return x_mean + bcast((2.0 * step).sqrt(), x) * z, x_mean


@register_corrector("none")
def no_corrector(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, snr: float,
                 generator: Generators, norms: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """Predictor-only sampling: the sampler takes no corrector steps."""
    return x, x


@torch.no_grad()
def predictor_corrector_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int,
                               generator: Generators = None, eps: float | None = None,
                               predictor: str = "reverse_diffusion", corrector: str = "langevin",
                               snr: float = 0.16, n_corrector_steps: int = 1, corrector_norms: str = "batch",
                               guidance: ScoreFn | None = None, denoise: bool = True,
                               keep_trajectory: bool = False, discretisation: str = "grid") -> SampleResult:
    """PC sampler: at each t of linspace(1, eps, steps) run `n_corrector_steps` Langevin steps,
    then one predictor step to the next time (the last goes to t = 0). `predictor="none"` gives
    corrector-only (C) sampling (it returns the last Langevin sample at t = eps),
    `corrector="none"` predictor-only (P). With `denoise` the last predictor step returns its
    noise-free mean. `guidance(x, t)` is added to the score at every evaluation, corrector and
    predictor alike (thesis Eq. 5.6). `generator` may be one generator per sample; with
    `corrector_norms="per_sample"` as well, every sample is independent of its batch-mates.
    `discretisation` (DISCRETISATIONS) picks the suite's grid chain or score_sde_pytorch's.
    """
    steps, eps = check_steps(steps), resolve_eps(sde, eps)
    PREDICTORS.get(predictor)   # an unknown name fails here, before any work
    correct = CORRECTORS.get(corrector)
    if corrector_norms not in CORRECTOR_NORMS:
        raise UserError(f"unknown corrector norms {corrector_norms!r}; choose one of {', '.join(CORRECTOR_NORMS)}")
    n_corr = n_corrector_steps if corrector != "none" else 0
    if n_corr < 0 or (n_corr == 0 and predictor == "none"):
        raise UserError("predictor_corrector_sample needs a predictor or at least one corrector step")
    if discretisation not in DISCRETISATIONS:
        raise UserError(f"unknown discretisation {discretisation!r}; choose one of {', '.join(DISCRETISATIONS)}")
    if discretisation == "score_sde":
        return score_sde_pc_sample(score_fn, sde, x_init, steps=steps, eps=eps, generator=generator,
                                   predictor=predictor, corrector=corrector, snr=snr, n_corrector_steps=n_corr,
                                   corrector_norms=corrector_norms, guidance=guidance, denoise=denoise,
                                   keep_trajectory=keep_trajectory)
    score_fn = with_guidance(score_fn, guidance)
    grid = reverse_time_grid(steps, eps, x_init, sde.T)
    b = x_init.shape[0]
    x, x_mean, traj = x_init, x_init, ([] if keep_trajectory else None)
    for i in range(steps):
        t, t_next = grid[i].expand(b), grid[i + 1].expand(b)
        last = i == steps - 1
        for _ in range(n_corr):
            x, x_mean = correct(sde, score_fn, x, t, snr, generator, corrector_norms)
        x, x_mean = predictor_step(predictor, sde, score_fn, x, t, t_next, generator,
                                   add_noise=not (denoise and last))
        if traj is not None:
            traj.append(x)
    nfe = steps * (n_corr + (predictor != "none"))
    return SampleResult(x_mean if denoise else x, nfe, traj)


# Which reading of the semantic-synthesis thesis's sampler a predictor is (000, Sec. 4.4.5, Alg. 3,
# lines 655-670: one Langevin step then an Euler-Maruyama step, "the one we use for all experiments",
# line 647); the authors' public code (score_sde's PC sampler, which the thesis ported) pairs the
# Langevin corrector with the reverse-diffusion predictor. Both are `fixed.predictor` values of the
# thesis's specs; every cell records which one produced it (`extra["predictor_reading"]`).
PREDICTOR_READINGS = {
    "euler_maruyama": "thesis Alg. 3 (Euler-Maruyama predictor)",
    "reverse_diffusion": "authors' code (reverse-diffusion predictor)",
}


def predictor_reading(predictor: str) -> str:
    """The reading of the thesis's PC sampler that `predictor` gives; another predictor is neither."""
    return PREDICTOR_READINGS.get(predictor, f"neither the thesis's Alg. 3 nor the authors' code ({predictor} predictor)")
