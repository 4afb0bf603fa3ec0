"""Predictor-corrector sampling (thesis Alg. 3; score SDE paper): Langevin corrector set by snr,
then one predictor step, at each t of linspace(1, eps, N)."""
from __future__ import annotations

import torch

from repro.diffusion.sde import SDE, bcast
from repro.errors import UserError
from repro.rng import Generators, randn_like
from repro.sampling.ancestral import ancestral_step
from repro.sampling.common import ScoreFn, check_steps, resolve_eps, reverse_time_grid, with_guidance
from repro.sampling.result import SampleResult
from repro.sampling.score_sde_pc import score_sde_pc_sample

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral", "probability_flow", "none")
CORRECTORS = ("langevin", "none")
# How the Langevin step size reads ||z|| / ||grad||: "batch" averages the per-sample norms over
# the batch first (score_sde_pytorch's LangevinCorrector), so a sample's step depends on its
# batch-mates; "per_sample" uses each sample's own norms (thesis Alg. 3 line 4, one image).
CORRECTOR_NORMS = ("batch", "per_sample")
# How the reverse chain is discretised: "grid" (the suite's: coefficients from the SDE between
# neighbouring times of the sampling grid) or "score_sde" (score_sde_pytorch's get_pc_sampler:
# discrete tables of N = steps levels, dt = -1/N; repro.sampling.score_sde_pc).
DISCRETISATIONS = ("grid", "score_sde")


def langevin_corrector_step(sde: SDE, score: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                            snr: float, generator: Generators, norms: str = "batch"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Langevin step with step = 2 alpha (snr ||z|| / ||grad||)^2 (thesis Alg. 3 lines 3-5),
    the norms averaged over the batch or per sample (`norms`, see CORRECTOR_NORMS). Returns (x, x_mean)."""
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


def predictor_step(name: str, sde: SDE, score: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                   t_next: torch.Tensor, generator: Generators, add_noise: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One predictor step t -> t_next (< t). Returns (x, x_mean); no noise drawn if not add_noise."""
    if name == "euler_maruyama":  # thesis Eq. 4.20 on the reverse SDE
        drift, g = sde.sde(x, t)
        dt = t_next - t
        x_mean = x + (drift - bcast(g * g, x) * score) * bcast(dt, x)
        std = g * (-dt).sqrt()
    elif name == "reverse_diffusion":
        rev_f, std = sde.reverse_discretize(score, x, t, t_next)
        x_mean = x + rev_f
    elif name == "ancestral":
        x_mean, std = ancestral_step(sde, score, x, t, t_next)
    elif name == "probability_flow":
        rev_f, _ = sde.reverse_discretize(score, x, t, t_next, probability_flow=True)
        return x + rev_f, x + rev_f
    else:
        raise UserError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    if not add_noise:
        return x_mean, x_mean
    return x_mean + bcast(std, x) * randn_like(x, generator), x_mean


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
    if predictor not in PREDICTORS:
        raise UserError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
    if corrector not in CORRECTORS:
        raise UserError(f"unknown corrector {corrector!r}; choose one of {', '.join(CORRECTORS)}")
    if corrector_norms not in CORRECTOR_NORMS:
        raise UserError(f"unknown corrector norms {corrector_norms!r}; choose one of {', '.join(CORRECTOR_NORMS)}")
    n_corr = n_corrector_steps if corrector == "langevin" else 0
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
            x, x_mean = langevin_corrector_step(sde, score_fn(x, t), x, t, snr, generator, corrector_norms)
        if predictor != "none":
            x, x_mean = predictor_step(predictor, sde, score_fn(x, t), x, t, t_next, generator,
                                       add_noise=not (denoise and last))
        else:  # corrector-only: the Langevin chain's sample itself (its x_mean would shrink it)
            x_mean = x
        if traj is not None:
            traj.append(x)
    nfe = steps * (n_corr + (predictor != "none"))
    return SampleResult(x_mean if denoise else x, nfe, traj)
