"""Predictor-corrector sampling discretised as score_sde_pytorch's `get_pc_sampler` does
(discretisation `score_sde`; the suite's own grid-based one is `grid`, in predictor_corrector.py).

What makes it score_sde's (sampling.py, sde_lib.py of yang-song/score_sde_pytorch):
- the chain has N = `steps` levels, as score_sde's SDE has N = config.model.num_scales and its
  sampler runs sde.N steps at t_i = linspace(T, eps, N)[i];
- the discrete tables of that N: VP/sub-VP betas linspace(beta_min / N, beta_max / N, N) and
  alphas 1 - betas, VE sigmas exp(linspace(log sigma_min, log sigma_max, N)), indexed by
  (t (N - 1) / T).long(); the level below index 0 is sigma = 0;
- Euler-Maruyama uses dt = -1 / N on every step (also the last);
- reverse diffusion: VE and VP use their discrete chains (SMLD, DDPM), sub-VP the default
  Euler discretisation f dt, g sqrt(dt) with dt = 1 / N;
- the Langevin corrector's alpha is alphas[index] for VP (and sub-VP) and 1 for VE, its step
  2 alpha (snr mean||z|| / mean||grad||)^2 with norms averaged over the batch;
- `denoise`: the last predictor step's noise-free mean x_mean is returned.
The reference's subVPSDE defines no `alphas`, so its Langevin corrector fails on sub-VP; here
sub-VP uses the VP alphas of the same beta schedule (what the corrector's code asks for).
Constants are made in x's dtype, where the reference makes them in torch's default dtype.
"""
from __future__ import annotations

import math

import torch

from repro.diffusion.sde import SDE, SubVPSDE, VESDE, VPSDE
from repro.errors import UserError
from repro.rng import Generators, randn_like
from repro.sampling.common import ScoreFn, StepRegistry, with_guidance
from repro.sampling.result import SampleResult

# score_sde's predictors and correctors (its register_predictor / register_corrector), by the
# suite's names; each predictor update maps (chain, score_fn, x, t, generator) to (x, x_mean).
PREDICTORS = StepRegistry("predictor")
CORRECTORS = StepRegistry("corrector")
register_predictor, register_corrector = PREDICTORS.register, CORRECTORS.register


def _col(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None, None] if v.ndim == 1 else v


class ScoreSdeChain:
    """score_sde's discrete tables of one SDE for an N-level chain, and its coefficient functions."""

    def __init__(self, sde: SDE, n: int, device, dtype):
        if not isinstance(sde, (VESDE, VPSDE, SubVPSDE)):
            raise UserError(f"the score_sde discretisation knows VE, VP and sub-VP SDEs, not {type(sde).__name__}")
        self.sde, self.N, self.T = sde, int(n), sde.T
        self.dtype, self.device = dtype, device
        if isinstance(sde, VESDE):  # sde_lib.VESDE.__init__
            self.discrete_sigmas = torch.exp(torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), n,
                                                            dtype=dtype, device=device))
        else:  # sde_lib.VPSDE.__init__ (sub-VP: the same schedule, see the module note)
            if sde.beta_max / n >= 1:
                raise UserError(f"the score_sde discretisation needs steps > beta_max = {sde.beta_max:g} "
                                f"(its discrete betas are beta_max / steps), got steps={n}")
            self.discrete_betas = torch.linspace(sde.beta_min / n, sde.beta_max / n, n, dtype=dtype, device=device)
            self.alphas = 1.0 - self.discrete_betas

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        return (t * (self.N - 1) / self.T).long()

    def sde_coefs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(drift, diffusion [B]) of the forward SDE, written as sde_lib writes them."""
        s = self.sde
        if isinstance(s, VESDE):
            sigma = s.sigma_min * (s.sigma_max / s.sigma_min) ** t
            c = torch.sqrt(torch.tensor(2 * (math.log(s.sigma_max) - math.log(s.sigma_min)), dtype=x.dtype,
                                        device=x.device))
            return torch.zeros_like(x), sigma * c
        beta_t = s.beta_min + t * (s.beta_max - s.beta_min)
        drift = -0.5 * _col(beta_t) * x
        if isinstance(s, VPSDE):
            return drift, torch.sqrt(beta_t)
        discount = 1.0 - torch.exp(-2 * s.beta_min * t - (s.beta_max - s.beta_min) * t ** 2)
        return drift, torch.sqrt(beta_t * discount)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward step (f, G [B]): SMLD for VE, DDPM for VP, Euler with dt = 1/N for sub-VP."""
        s = self.sde
        if isinstance(s, VESDE):
            ts = self.timestep(t)
            sigma = self.discrete_sigmas[ts]
            adjacent = torch.where(ts == 0, torch.zeros_like(t), self.discrete_sigmas[(ts - 1).clamp_min(0)])
            return torch.zeros_like(x), torch.sqrt(sigma ** 2 - adjacent ** 2)
        if isinstance(s, VPSDE):
            ts = self.timestep(t)
            beta, alpha = self.discrete_betas[ts], self.alphas[ts]
            return _col(torch.sqrt(alpha)) * x - x, torch.sqrt(beta)
        dt = 1 / self.N
        drift, diffusion = self.sde_coefs(x, t)
        return drift * dt, diffusion * torch.sqrt(torch.tensor(dt, dtype=x.dtype, device=x.device))

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(self.sde, VESDE):
            return torch.ones_like(t)
        return self.alphas[self.timestep(t)]


def _reverse_diffusion(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                       generator: Generators, probability_flow: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """ReverseDiffusionPredictor (its probability_flow flag)."""
    f, G = chain.discretize(x, t)
    rev_f = f - _col(G) ** 2 * score_fn(x, t) * (0.5 if probability_flow else 1.0)
    rev_G = torch.zeros_like(G) if probability_flow else G
    z = randn_like(x, generator)
    x_mean = x - rev_f
    return x_mean + _col(rev_G) * z, x_mean


@register_predictor("reverse_diffusion")
def reverse_diffusion_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                             generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    return _reverse_diffusion(chain, score_fn, x, t, generator, probability_flow=False)


@register_predictor("euler_maruyama")
def euler_maruyama_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                          generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    """EulerMaruyamaPredictor: dt = -1/N on every step."""
    dt = -1.0 / chain.N
    z = randn_like(x, generator)
    drift, diffusion = chain.sde_coefs(x, t)
    drift = drift - _col(diffusion) ** 2 * score_fn(x, t)
    x_mean = x + drift * dt
    return x_mean + _col(diffusion) * math.sqrt(-dt) * z, x_mean


@register_predictor("ancestral")
def ancestral_sampling_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                              generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    """AncestralSamplingPredictor."""
    s = chain.sde
    ts = chain.timestep(t)
    if isinstance(s, VESDE):
        sigma = chain.discrete_sigmas[ts]
        adjacent = torch.where(ts == 0, torch.zeros_like(t), chain.discrete_sigmas[(ts - 1).clamp_min(0)])
        score = score_fn(x, t)
        x_mean = x + score * _col(sigma ** 2 - adjacent ** 2)
        std = torch.sqrt((adjacent ** 2 * (sigma ** 2 - adjacent ** 2)) / (sigma ** 2))
        return x_mean + _col(std) * randn_like(x, generator), x_mean
    if isinstance(s, VPSDE):
        beta = chain.discrete_betas[ts]
        score = score_fn(x, t)
        x_mean = (x + _col(beta) * score) / _col(torch.sqrt(1.0 - beta))
        return x_mean + _col(torch.sqrt(beta)) * randn_like(x, generator), x_mean
    raise UserError(f"ancestral sampling is defined for the VE and VP SDEs, not {type(s).__name__}")


@register_predictor("probability_flow")
def probability_flow_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                            generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    return _reverse_diffusion(chain, score_fn, x, t, generator, probability_flow=True)


@register_predictor("none")
def no_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
              generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    """NonePredictor."""
    return x, x


@register_predictor("milstein")
def milstein_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor,
                    generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    """Not a predictor of score_sde: the suite's Milstein solver on score_sde's Euler-Maruyama grid.
    Euler-Maruyama as score_sde writes it (dt = -1/N) plus the Milstein term 1/2 g g' (dW^2 - |dt|)
    (short report Eq. 6), g' = dg/dx by autograd; the same draws as euler_maruyama."""
    dt = -1.0 / chain.N
    z = randn_like(x, generator)
    drift, diffusion = chain.sde_coefs(x, t)
    drift = drift - _col(diffusion) ** 2 * score_fn(x, t)
    x_mean = x + drift * dt
    x_new = x_mean + _col(diffusion) * math.sqrt(-dt) * z
    g_dx = chain.sde.diffusion_dx(x, t)
    if bool((g_dx != 0).any()):
        dw = math.sqrt(-dt) * z
        x_new = x_new + 0.5 * _col(diffusion) * g_dx * (dw * dw - (-dt))
    return x_new, x_mean


@register_corrector("langevin")
def langevin_update(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, snr: float,
                    n_steps: int, generator: Generators, norms: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """score_sde's LangevinCorrector: n_steps steps of 2 alpha (snr ||z|| / ||grad||)^2 (thesis Alg. 3)."""
    alpha = chain.langevin_alpha(t)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        noise = randn_like(x, generator)
        grad_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1)
        noise_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1)
        if norms == "batch":
            grad_norm, noise_norm = grad_norm.mean(), noise_norm.mean()
        step_size = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
        x_mean = x + _col(step_size) * grad
        x = x_mean + _col(torch.sqrt(step_size * 2)) * noise
    return x, x_mean


@register_corrector("none")
def no_correction(chain: ScoreSdeChain, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, snr: float,
                  n_steps: int, generator: Generators, norms: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """NoneCorrector."""
    return x, x


@torch.no_grad()
def score_sde_pc_sample(score_fn: ScoreFn, sde: SDE, x_init: torch.Tensor, *, steps: int, eps: float,
                        generator: Generators = None, predictor: str = "reverse_diffusion",
                        corrector: str = "langevin", snr: float = 0.16, n_corrector_steps: int = 1,
                        corrector_norms: str = "batch", guidance: ScoreFn | None = None,
                        denoise: bool = True, keep_trajectory: bool = False) -> SampleResult:
    """score_sde's pc_sampler with N = steps: at each t of linspace(T, eps, N) the corrector, then
    the predictor; returns the last x_mean with `denoise`, else x. Arguments as in
    `predictor_corrector_sample` (which calls this for discretisation="score_sde")."""
    predict, correct = PREDICTORS.get(predictor), CORRECTORS.get(corrector)
    n_corr = n_corrector_steps if corrector != "none" else 0
    score_fn = with_guidance(score_fn, guidance)
    chain = ScoreSdeChain(sde, steps, x_init.device, x_init.dtype)
    timesteps = torch.linspace(sde.T, eps, steps, device=x_init.device, dtype=x_init.dtype)
    b = x_init.shape[0]
    x, x_mean, traj = x_init, x_init, ([] if keep_trajectory else None)
    for i in range(steps):
        vec_t = torch.ones(b, device=x.device, dtype=x.dtype) * timesteps[i]
        if n_corr:
            x, x_mean = correct(chain, score_fn, x, vec_t, snr, n_corr, generator, corrector_norms)
        x, x_mean = predict(chain, score_fn, x, vec_t, generator)
        if traj is not None:
            traj.append(x)
    nfe = steps * (n_corr + (predictor != "none"))
    return SampleResult(x_mean if denoise else x, nfe, traj)
