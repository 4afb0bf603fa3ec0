"""Forward SDEs of score-based models: VE, VP and sub-VP (thesis Sec. 4.4.4, slides "VE/VP/sub-VP SDE").

Every SDE is dx = f(x, t) dt + g(x, t) dw on t in [0, T = 1] (thesis Eq. 4.10). Time
arguments are tensors of shape [B] (one time per sample) or scalars; per-sample
coefficients come back with shape [B] and are broadcast against x by the caller through
`bcast`. The reverse-time SDE (thesis Eq. 4.11) and the probability-flow ODE (thesis
Eq. 4.21) are built from a score, given either as a tensor or as `score_fn(x, t)`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from repro.diffusion.schedules import ve_sigma
from repro.rng import randn

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a per-sample coefficient c ([B], [] or x-shaped) so that it broadcasts against x."""
    if c.ndim == 0 or c.ndim == x.ndim:
        return c
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def batch_t(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Times as a [B] tensor on x's device and dtype (a scalar is repeated for every sample)."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


class SDE:
    """Base class: subclasses define `sde`, `marginal_coefs`, `prior_std` and may refine `discretize`."""

    T = 1.0
    default_eps = 1e-5

    def __init__(self, N: int = 1000):
        if N < 1:
            raise ValueError(f"SDE needs N >= 1 discretisation steps, got {N}")
        self.N = int(N)

    # -- forward process -------------------------------------------------------------------
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(drift f(x, t), diffusion g(x, t)) of thesis Eq. 4.10; g is [B] for these SDEs."""
        raise NotImplementedError

    def marginal_coefs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m(t), std(t)) with p_0t(x(t) | x(0)) = N(m(t) x(0), std(t)^2 I)."""
        raise NotImplementedError

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the perturbation kernel p_0t(x(t) | x(0)); std is [B]."""
        m, std = self.marginal_coefs(batch_t(t, x0))
        return bcast(m, x0) * x0, std

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """The std(t) a noise-conditional network is conditioned on (sigma(t) for VE)."""
        return self.marginal_coefs(t)[1]

    @property
    def prior_std(self) -> float:
        raise NotImplementedError

    def prior_sample(self, shape, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Sample the prior pi = N(0, prior_std^2 I) at t = T."""
        if device is None and generator is not None:
            device = (generator[0] if isinstance(generator, (list, tuple)) else generator).device
        z = randn(shape, generator, device, dtype)
        return z * self.prior_std

    def diffusion_dx(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """d g / d x (diagonal noise: d g_i / d x_i), computed by autograd on g as a function of x.

        Milstein (short report Eq. 6) needs it. When g does not depend on x at all, as for
        VE/VP/sub-VP, autograd finds no path from x to g and the derivative is exactly zero.
        """
        t = batch_t(t, x)
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            g = self.sde(xr, t)[1]
            if not g.requires_grad:  # no dependency on x anywhere in the graph
                return torch.zeros_like(x)
            (dg,) = torch.autograd.grad(bcast(g, xr).expand_as(xr).sum(), xr, allow_unused=True)
        return torch.zeros_like(x) if dg is None else dg.detach()

    def discretize(self, x: torch.Tensor, t: torch.Tensor,
                   t_next: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward step from t_next up to t: x(t) = x(t_next) + f + G z. Default: Euler-Maruyama.

        t_next defaults to t - T/N. Returns (f with x's shape, G of shape [B]).
        """
        t = batch_t(t, x)
        t_next = (t - self.T / self.N).clamp_min(0.0) if t_next is None else batch_t(t_next, x)
        dt = t - t_next
        drift, g = self.sde(x, t)
        return drift * bcast(dt, x), g * dt.sqrt()

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha of the Langevin corrector step 2 alpha (snr ||z|| / ||grad||)^2 (1 for VE)."""
        return torch.ones_like(t)

    # -- reverse process -------------------------------------------------------------------
    def _score(self, score, x, t):
        return score(x, t) if callable(score) else score

    def reverse_drift(self, score: torch.Tensor | ScoreFn, x: torch.Tensor, t: torch.Tensor,
                      probability_flow: bool = False) -> torch.Tensor:
        """Drift of the reverse SDE f - g^2 score (thesis Eq. 4.11) or of the probability-flow
        ODE f - g^2 score / 2 (thesis Eq. 4.21). Integrate it with a negative dt."""
        t = batch_t(t, x)
        drift, g = self.sde(x, t)
        g2 = bcast(g * g, x)
        coef = 0.5 if probability_flow else 1.0
        return drift - coef * g2 * self._score(score, x, t)

    def reverse_discretize(self, score: torch.Tensor | ScoreFn, x: torch.Tensor, t: torch.Tensor,
                           t_next: torch.Tensor | None = None,
                           probability_flow: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse-diffusion step t -> t_next: x <- x - f + G^2 score + G z (score SDE paper,
        'reverse diffusion'); the probability-flow variant halves G^2 and has no noise."""
        t = batch_t(t, x)
        f, G = self.discretize(x, t, t_next)
        G2 = bcast(G * G, x)
        s = self._score(score, x, t)
        if probability_flow:
            return -f + 0.5 * G2 * s, torch.zeros_like(G)
        return -f + G2 * s, G

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """The reverse-time SDE / probability-flow ODE of `forward` with a fixed score function."""

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, probability_flow

    def sde(self, x, t):
        t = batch_t(t, x)
        g = self.forward.sde(x, t)[1]
        drift = self.forward.reverse_drift(self.score_fn, x, t, self.probability_flow)
        return drift, (torch.zeros_like(g) if self.probability_flow else g)

    def discretize(self, x, t, t_next=None):
        return self.forward.reverse_discretize(self.score_fn, x, t, t_next, self.probability_flow)


class VESDE(SDE):
    """Variance exploding SDE dx = sqrt(d sigma^2 / dt) dw (thesis Eq. 4.18), SMLD's limit.

    sigma(t) = sigma_min (sigma_max / sigma_min)^t, so g(t) = sigma(t) sqrt(2 ln(sigma_max /
    sigma_min)). As in the score SDE paper the kernel std is sigma(t) (the data are taken as
    already perturbed by sigma_min), not sqrt(sigma(t)^2 - sigma_min^2).
    """

    default_eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VESDE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return ve_sigma(t, self.sigma_min, self.sigma_max)

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of sigma(t)."""
        return torch.log(sigma / self.sigma_min) / self._log_ratio

    def discrete_sigmas(self, n: int | None = None) -> torch.Tensor:
        """SMLD's noise scales: n values ascending geometrically from sigma_min to sigma_max."""
        n = self.N if n is None else n
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), n))

    def sde(self, x, t):
        t = batch_t(t, x)
        g = self.sigma(t) * math.sqrt(2 * self._log_ratio)  # thesis Eq. 4.18
        return torch.zeros_like(x), g

    def marginal_coefs(self, t):
        return torch.ones_like(t), self.sigma(t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def discretize(self, x, t, t_next=None):
        """SMLD chain x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z (thesis Eq. 4.15); the
        level below t = 0 is sigma_0 = 0 (thesis), so the last reverse step fully denoises."""
        t = batch_t(t, x)
        t_next = (t - self.T / self.N) if t_next is None else batch_t(t_next, x)
        sig = self.sigma(t)
        sig_next = torch.where(t_next > 0, self.sigma(t_next.clamp_min(0.0)), torch.zeros_like(sig))
        return torch.zeros_like(x), (sig * sig - sig_next * sig_next).clamp_min(0.0).sqrt()


class _LinearBetaSDE(SDE):
    """Shared by VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min), prior N(0, I)."""

    default_eps = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"{type(self).__name__} needs 0 <= beta_min < beta_max, "
                             f"got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """log m(t) = -1/2 int_0^t beta(s) ds."""
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    @property
    def prior_std(self) -> float:
        return 1.0

    def langevin_alpha(self, t):
        # alpha_i = 1 - beta_i with DDPM's discrete beta_i ~ beta(t) / N (score SDE paper, Alg. 5)
        return 1.0 - self.beta(t) * (self.T / self.N)


class VPSDE(_LinearBetaSDE):
    """Variance preserving SDE dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw (thesis Eq. 4.19), DDPM's
    limit, with beta(t) linear from beta_min to beta_max."""

    def sde(self, x, t):
        t = batch_t(t, x)
        beta = self.beta(t)
        return -0.5 * bcast(beta, x) * x, beta.sqrt()

    def marginal_coefs(self, t):
        lmc = self.log_mean_coeff(t)
        # std^2 = 1 - exp(-int beta) (thesis Sec. 4.4.4)
        return lmc.exp(), (-torch.expm1(2.0 * lmc)).sqrt()

    def ddpm_beta(self, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """DDPM step variance beta_i = 1 - alpha_bar(t) / alpha_bar(t_next) for the step t_next -> t."""
        return -torch.expm1(2.0 * (self.log_mean_coeff(t) - self.log_mean_coeff(t_next)))

    def discretize(self, x, t, t_next=None):
        """DDPM chain x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z (thesis Sec. 4.4.2)."""
        t = batch_t(t, x)
        t_next = (t - self.T / self.N).clamp_min(0.0) if t_next is None else batch_t(t_next, x)
        beta = self.ddpm_beta(t, t_next)
        return bcast((1.0 - beta).sqrt() - 1.0, x) * x, beta.sqrt()


class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE dx = -beta x / 2 dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw (slides);
    its kernel variance (1 - exp(-int beta))^2 is bounded by the VP one. Uses Euler-Maruyama
    discretisation."""

    def sde(self, x, t):
        t = batch_t(t, x)
        beta = self.beta(t)
        discount = -torch.expm1(4.0 * self.log_mean_coeff(t))  # 1 - exp(-2 int beta)
        return -0.5 * bcast(beta, x) * x, (beta * discount).sqrt()

    def marginal_coefs(self, t):
        lmc = self.log_mean_coeff(t)
        return lmc.exp(), -torch.expm1(2.0 * lmc)


def gaussian_score_fn(sde: SDE, mu: torch.Tensor | float, s: float) -> ScoreFn:
    """Exact score of p_t when the data are N(mu, s^2 I): p_t = N(m mu, (m^2 s^2 + std^2) I)."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, std = sde.marginal_coefs(batch_t(t, x))
        var = m * m * s * s + std * std
        return -(x - bcast(m, x) * mu) / bcast(var, x)

    return score


def net_score_fn(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: SDE) -> ScoreFn:
    """Adapt a noise-conditional network model(x, std) (e.g. NCSNpp(x, sigma)) to score_fn(x, t)."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x, sde.noise_level(batch_t(t, x)))

    return score
