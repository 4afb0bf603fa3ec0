"""SDEs (thesis Eq. 4.10-4.19, slides) and the DSM loss (thesis Eq. 4.14) against closed forms."""
import math

import pytest
import torch

from repro.diffusion.losses import dsm_loss
from repro.diffusion.schedules import ve_sigma
from repro.diffusion.sde import (SDE, SubVPSDE, VESDE, VPSDE, batch_t, bcast, gaussian_score_fn,
                                 net_score_fn)
from repro.sampling.sde_solvers import integrate_forward



def test_ve_sigma_and_diffusion_match_eq_4_18():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64).requires_grad_(True)
    sigma = sde.sigma(t)
    assert torch.allclose(sigma, ve_sigma(t, 0.01, 50.0))
    # g(t) = sqrt(d sigma^2 / dt) (thesis Eq. 4.18), checked with autograd
    (dsig2,) = torch.autograd.grad((sigma ** 2).sum(), t)
    _, g = sde.sde(torch.zeros(11, 3, dtype=torch.float64), t.detach())
    assert torch.allclose(g, dsig2.sqrt(), rtol=1e-10)
    assert torch.allclose(g, sigma.detach() * math.sqrt(2 * math.log(5000.0)))
    assert torch.allclose(sde.t_of_sigma(sigma.detach()), t.detach())


def test_ve_discrete_sigmas_are_ascending_geometric():
    s = VESDE(sigma_min=0.01, sigma_max=50.0, N=10).discrete_sigmas()
    assert s.shape == (10,)
    assert s[0].item() == pytest.approx(0.01) and s[-1].item() == pytest.approx(50.0)
    ratios = s[1:] / s[:-1]
    assert torch.all(ratios > 1) and torch.allclose(ratios, ratios[0].expand(9), rtol=1e-4)


def test_ve_discretize_is_smld_chain():
    sde = VESDE(N=100)
    x = torch.zeros(3, 2)
    t = torch.tensor([1.0, 0.5, 0.005])
    f, G = sde.discretize(x, t)
    expect = (sde.sigma(t) ** 2 - sde.sigma(t - 0.01) ** 2).clamp_min(0).sqrt()
    expect[2] = sde.sigma(t[2])  # below t = 0 the level is sigma_0 = 0 (thesis Eq. 4.15)
    assert torch.equal(f, torch.zeros_like(x))
    assert torch.allclose(G, expect, rtol=1e-5)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE()])
def test_vp_family_marginals(sde):
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    m, std = sde.marginal_coefs(t)
    integral = 0.1 * t + 0.5 * t ** 2 * (20.0 - 0.1)  # int_0^t beta
    assert torch.allclose(m, torch.exp(-0.5 * integral))
    vp_var = 1 - torch.exp(-integral)  # thesis Sec. 4.4.4
    if isinstance(sde, VPSDE):
        assert torch.allclose(std ** 2, vp_var)
        assert torch.allclose(m ** 2 + std ** 2, torch.ones_like(t))  # variance preserving
    else:
        assert torch.allclose(std, vp_var)  # sub-VP variance (1 - e^{-int beta})^2 <= VP
        assert torch.all(std ** 2 <= vp_var + 1e-12)


def test_vp_ddpm_discretisation_composes_to_exact_marginal():
    sde = VPSDE(N=50)
    grid = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
    mean_coef, var = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    x = torch.ones(1, 1, dtype=torch.float64)
    for i in range(50):
        f, G = sde.discretize(x, grid[i + 1 : i + 2], grid[i : i + 1])
        a = 1 + f[0, 0]  # x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z
        mean_coef, var = a * mean_coef, a * a * var + G ** 2
    m, std = sde.marginal_coefs(torch.ones(1, dtype=torch.float64))
    assert torch.allclose(mean_coef, m) and torch.allclose(var, std ** 2)


def test_marginal_prob_matches_monte_carlo_of_forward_sde():
    sde = VPSDE()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 2), 2.0)
    xt = integrate_forward(sde, x0, t_end=0.5, steps=200, generator=g)
    mean, std = sde.marginal_prob(x0, torch.full((20000,), 0.5))
    assert xt.mean().item() == pytest.approx(mean[0, 0].item(), abs=0.01)
    assert xt.std().item() == pytest.approx(std[0].item(), rel=0.015)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()])
def test_prior_sample_and_diffusion_dx(sde):
    g = torch.Generator().manual_seed(1)
    x = sde.prior_sample((5000, 4), g)
    assert x.shape == (5000, 4)
    assert x.std().item() == pytest.approx(sde.prior_std, rel=0.03)
    # g does not depend on x: d g / d x computed by autograd is exactly zero
    dgdx = sde.diffusion_dx(x[:8], torch.full((8,), 0.3))
    assert dgdx.shape == (8, 4) and torch.count_nonzero(dgdx) == 0


class GeometricBrownianMotion(SDE):
    """dX = a X dt + b X dW: g depends on x, so d g / d x = b must come out of autograd."""

    def __init__(self, a=0.5, b=0.8):
        super().__init__(N=100)
        self.a, self.b = a, b

    def sde(self, x, t):
        return self.a * x, self.b * x


def test_diffusion_dx_is_computed_not_assumed():
    sde = GeometricBrownianMotion(b=0.8)
    x = torch.rand(6, 3) + 0.5
    assert torch.allclose(sde.diffusion_dx(x, torch.zeros(6)), torch.full((6, 3), 0.8))


def test_milstein_has_higher_strong_order_than_euler_maruyama_when_g_depends_on_x():
    # short report Eq. 6: the Milstein term 1/2 b b' (dW^2 - dt) matters only when b' != 0
    sde, steps, n = GeometricBrownianMotion(a=0.5, b=0.8), 32, 4000
    g = torch.Generator().manual_seed(2)
    x0 = torch.ones(n, 1, dtype=torch.float64)
    z = torch.randn(steps, n, 1, generator=g, dtype=torch.float64)
    w1 = z.sum(0) * math.sqrt(1.0 / steps)
    exact = x0 * torch.exp((sde.a - 0.5 * sde.b ** 2) + sde.b * w1)
    em = integrate_forward(sde, x0, t_end=1.0, steps=steps, noise=z)
    mil = integrate_forward(sde, x0, t_end=1.0, steps=steps, noise=z, method="milstein")
    err_em, err_mil = (em - exact).abs().mean().item(), (mil - exact).abs().mean().item()
    assert err_mil < 0.35 * err_em, (err_mil, err_em)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()])
def test_reverse_drift_and_probability_flow(sde):
    x = torch.randn(4, 3)
    t = torch.full((4,), 0.4)
    score = torch.randn(4, 3)
    f, g = sde.sde(x, t)
    g2 = bcast(g * g, x)
    assert torch.allclose(sde.reverse_drift(score, x, t), f - g2 * score)
    assert torch.allclose(sde.reverse_drift(score, x, t, probability_flow=True), f - 0.5 * g2 * score)
    rev = sde.reverse(lambda x_, t_: score, probability_flow=True)
    drift, diff = rev.sde(x, t)
    assert torch.allclose(drift, f - 0.5 * g2 * score) and torch.count_nonzero(diff) == 0


def test_batch_t_and_bcast():
    x = torch.zeros(3, 2, 5, 5)
    assert batch_t(0.5, x).shape == (3,)
    assert bcast(torch.ones(3), x).shape == (3, 1, 1, 1)


def _irreducible_dsm(sde, s, eps):
    """E_t[m^2 s^2 / (m^2 s^2 + std^2)]: the per-dimension DSM loss of the exact score."""
    t = torch.linspace(eps, 1.0, 200001, dtype=torch.float64)
    m, std = sde.marginal_coefs(t)
    r = m * m * s * s / (m * m * s * s + std * std)
    return torch.trapezoid(r, t).item() / (1.0 - eps)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()])
def test_dsm_loss_of_exact_score_is_the_irreducible_value(sde):
    mu, s, eps = torch.tensor([0.5, -1.0, 0.0, 2.0]), 0.7, sde.default_eps
    g = torch.Generator().manual_seed(3)
    x0 = mu + s * torch.randn(40000, 4, generator=g)
    exact = gaussian_score_fn(sde, mu, s)
    loss = dsm_loss(exact, sde, x0, g, eps=eps).item()
    assert loss == pytest.approx(_irreducible_dsm(sde, s, eps), abs=0.01)
    # any other score is worse (the DSM minimiser is the true score)
    g = torch.Generator().manual_seed(3)
    worse = dsm_loss(lambda x, t: 1.2 * exact(x, t), sde, x0, g, eps=eps).item()
    g = torch.Generator().manual_seed(3)
    shifted = dsm_loss(lambda x, t: exact(x, t) + 0.3 / sde.noise_level(t)[:, None], sde, x0, g,
                       eps=eps).item()
    assert worse > loss + 0.005 and shifted > loss + 0.05


def test_dsm_loss_reductions_and_likelihood_weighting_trains_a_net():
    sde = VESDE(sigma_max=5.0)
    x0 = torch.randn(8, 1, 4, 4)
    model = torch.nn.Conv2d(1, 1, 1)
    score = net_score_fn(lambda x, sigma: model(x) / sigma[:, None, None, None], sde)
    l_mean = dsm_loss(score, sde, x0, torch.Generator().manual_seed(0))
    l_sum = dsm_loss(score, sde, x0, torch.Generator().manual_seed(0), reduce_mean=False)
    assert l_sum.item() == pytest.approx(16 * l_mean.item(), rel=1e-5)
    l_lik = dsm_loss(score, sde, x0, torch.Generator().manual_seed(0), likelihood_weighting=True)
    l_lik.backward()
    assert torch.isfinite(l_lik) and model.weight.grad is not None
    assert model.weight.grad.abs().sum() > 0
