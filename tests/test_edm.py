"""EDM core: parametrization, preconditioning, loss, time steps, Euler/Heun/churn against
closed forms on Gaussian data, the DDPM++ net, and the exposure-bias metric."""
import math

import pytest
import torch

from repro.diffusion import parametrization as P
from repro.diffusion.edm import EDMPrecond, edm_loss, gaussian_denoiser
from repro.metrics.exposure_bias import exposure_bias_curves, training_eps_norms
from repro.nets.ddpmpp import DDPMpp, DDPMppConfig, count_parameters, ddpmpp_cifar10_config
from repro.sampling.edm import edm_sample, edm_time_steps

MU, S2 = 0.3, 0.25   # data N(MU, S2 I)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- parametrization
def test_parametrization_round_trips_and_gaussian_exactness():
    x = torch.randn(5, 3, 4, 4, generator=gen(), dtype=torch.float64)
    D = torch.randn(5, 3, 4, 4, generator=gen(1), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    assert torch.allclose(P.denoiser_from_score(P.score_from_denoiser(D, x, sigma), x, sigma), D)
    assert torch.allclose(P.denoiser_from_eps(P.eps_from_denoiser(D, x, sigma), x, sigma), D)
    # eps of the exact Gaussian denoiser: sigma (x - mu) / (s2 + sigma^2); score: -(x-mu)/(s2+sigma^2)
    Dg = gaussian_denoiser(MU, S2)(x, sigma)
    col = sigma.reshape(-1, 1, 1, 1)
    assert torch.allclose(P.score_from_denoiser(Dg, x, sigma), -(x - MU) / (S2 + col**2))
    assert torch.allclose(P.eps_from_denoiser(Dg, x, sigma), col * (x - MU) / (S2 + col**2))
    a = torch.tensor([0.999, 0.5, 1e-3], dtype=torch.float64)
    assert torch.allclose(P.alpha_bar_from_sigma(P.sigma_from_alpha_bar(a)), a)
    assert torch.allclose(P.sigma_from_alpha_bar(torch.tensor(0.5)), torch.tensor(1.0))


def test_beta_schedules():
    lin = P.linear_beta_schedule(1000)
    assert lin.shape == (1000,) and lin[0] == 1e-4 and abs(lin[-1].item() - 0.02) < 1e-12
    cos = P.cosine_beta_schedule(1000)
    ab = P.ddpm_alpha_bars(cos)
    t = torch.tensor([100, 500, 900])
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    expected = torch.tensor([f(i + 1) / f(0) for i in t.tolist()], dtype=torch.float64)
    assert torch.allclose(ab[t], expected, rtol=1e-9)   # not clipped in the middle
    assert cos.max() <= 0.999 and cos.min() > 0 and ab[-1] < 1e-4
    assert torch.allclose(P.ddpm_alpha_bars(torch.tensor([0.1, 0.2])), torch.tensor([0.9, 0.72], dtype=torch.float64))


# ---------------------------------------------------------------- preconditioning and loss
class _Spy(torch.nn.Module):
    def __init__(self, label_dim=0):
        super().__init__()
        self.label_dim, self.calls = label_dim, []

    def forward(self, x, c_noise, *labels):
        self.calls.append((x.clone(), c_noise.clone(), labels))
        return torch.ones_like(x)


def test_edm_precond_coefficients():
    spy = _Spy()
    D = EDMPrecond(spy)
    x = torch.randn(2, 3, 4, 4, generator=gen())
    sigma = torch.tensor([0.5, 2.0])
    out = D(x, sigma, class_labels=torch.ones(2, 10))
    s = sigma.reshape(-1, 1, 1, 1)
    xin, c_noise, labels = spy.calls[0]
    assert torch.allclose(xin, x / (s**2 + 0.25).sqrt())
    assert torch.allclose(c_noise, sigma.log() / 4)
    assert labels == ()                              # net without label_dim: labels ignored
    assert torch.allclose(out, 0.25 / (s**2 + 0.25) * x + s * 0.5 / (s**2 + 0.25).sqrt())
    cond = _Spy(label_dim=10)
    EDMPrecond(cond)(x, 1.0, class_labels=torch.ones(2, 10))
    assert len(cond.calls[0][2]) == 1 and cond.calls[0][1].shape == (2,)


def test_edm_loss_of_exact_denoiser_is_one_when_sigma_data_matches():
    # weight * posterior variance = (s^2 + sd^2)/(s sd)^2 * sd^2 s^2/(sd^2 + s^2) = 1 for every sigma.
    x0 = MU + math.sqrt(S2) * torch.randn(4000, 8, generator=gen(), dtype=torch.float64)
    loss = edm_loss(gaussian_denoiser(MU, S2), x0, gen(1))
    assert abs(loss.item() - 1.0) < 0.03
    worse = edm_loss(gaussian_denoiser(MU + 0.2, S2), x0, gen(1))
    assert worse > loss + 0.05


# ---------------------------------------------------------------- time steps and single steps
def test_time_steps():
    t = edm_time_steps(18)
    assert t.dtype == torch.float64 and t.shape == (19,)
    assert t[0] == 80 and abs(t[17].item() - 0.002) < 1e-12 and t[18] == 0
    assert (t[1:] < t[:-1]).all()
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert abs(edm_time_steps(3)[1].item() - mid) < 1e-12


def test_euler_and_heun_steps_match_hand_computation_exactly():
    D = gaussian_denoiser(MU, S2)
    z = torch.randn(6, 3, generator=gen())
    t = edm_time_steps(3)
    f = lambda x, s: D(x.float(), s.float().expand(6)).double()   # float32 evaluation
    # Euler by hand: x <- x + (t' - t)(x - D(x; t))/t
    x = z.double() * t[0]
    for i in range(3):
        x = x + (t[i + 1] - t[i]) * ((x - f(x, t[i])) / t[i])
    assert torch.equal(edm_sample(D, z, steps=3, solver="euler").samples, x)
    # Heun by hand: average the two slopes except on the last step
    x = z.double() * t[0]
    for i in range(3):
        d = (x - f(x, t[i])) / t[i]
        xn = x + (t[i + 1] - t[i]) * d
        if i < 2:
            d2 = (xn - f(xn, t[i + 1])) / t[i + 1]
            xn = x + (t[i + 1] - t[i]) * (0.5 * d + 0.5 * d2)
        x = xn
    assert torch.equal(edm_sample(D, z, steps=3, solver="heun").samples, x)
    # one Euler step to sigma = 0 returns the denoiser output
    one = edm_sample(D, z, steps=1, solver="euler", net_dtype=None).samples
    assert torch.allclose(one, D(z.double() * 80, torch.tensor(80.0, dtype=torch.float64)), atol=1e-12)


def test_nfe_is_2n_minus_1_for_heun():
    D = gaussian_denoiser(MU, S2)
    z = torch.randn(2, 2, generator=gen())
    assert edm_sample(D, z, steps=18).nfe == 35
    assert edm_sample(D, z, steps=5).nfe == 9
    assert edm_sample(D, z, steps=21, solver="euler").nfe == 21


def _multiplier(solver, t):
    """Closed form of the sampler on Gaussian data: x_N - mu = prod_i m_i (x_0 - mu)."""
    f = lambda s: s / (S2 + s**2)              # d = f(sigma) (x - mu)
    m = 1.0
    for i in range(len(t) - 1):
        h = t[i + 1] - t[i]
        mi = 1 + h * f(t[i])
        if solver == "heun" and i < len(t) - 2:
            mi = 1 + h / 2 * (f(t[i]) + f(t[i + 1]) * (1 + h * f(t[i])))
        m *= mi
    return m


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_sampler_equals_closed_form_on_gaussian_data(solver):
    z = torch.randn(50, 4, generator=gen(), dtype=torch.float64)
    out = edm_sample(gaussian_denoiser(MU, S2), z, steps=13, solver=solver, net_dtype=None).samples
    m = _multiplier(solver, edm_time_steps(13).tolist())
    assert torch.allclose(out, MU + m * (80 * z - MU), rtol=1e-10, atol=1e-12)


def test_heun_is_second_order_and_euler_first_order():
    exact = math.sqrt(S2 / (S2 + 80**2))        # the ODE maps x_T - mu to this multiple
    err = lambda solver, n: abs(_multiplier(solver, edm_time_steps(n).tolist()) / exact - 1)
    assert err("heun", 35) < 0.02 and err("heun", 18) < 0.08
    assert 3.0 < err("heun", 40) / err("heun", 80) < 5.0    # ~4: second order
    assert 1.6 < err("euler", 200) / err("euler", 400) < 2.4  # ~2: first order
    # the sampler itself follows the multiplier in float32 evaluation too
    z = torch.ones(1, 1)
    out = edm_sample(gaussian_denoiser(0.0, S2), z, steps=35).samples.item()
    assert abs(out / (80 * _multiplier("heun", edm_time_steps(35).tolist())) - 1) < 1e-4


@pytest.mark.parametrize("solver,steps,tol", [("heun", 35, 0.05), ("heun", 18, 0.15), ("euler", 200, 0.05)])
def test_samples_have_the_data_distribution(solver, steps, tol):
    z = torch.randn(20000, 1, generator=gen(3))
    x = edm_sample(gaussian_denoiser(MU, S2), z, steps=steps, solver=solver).samples
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(S2 / 20000) + 0.01
    assert abs(x.var().item() / S2 - 1) < tol


def test_churn_keeps_the_distribution_and_matches_its_variance_recursion():
    z = torch.randn(20000, 1, generator=gen(4))
    kw = dict(steps=100, S_churn=40, S_min=0.01, S_max=50, S_noise=1.0)
    x = edm_sample(gaussian_denoiser(MU, S2), z, generator=gen(5), **kw).samples
    assert abs(x.var().item() / S2 - 1) < 0.06
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(S2 / 20000) + 0.01
    # exact second-moment recursion: churn adds t_hat^2 - t^2 of variance, then an Euler/Heun step
    t = edm_time_steps(100).tolist()
    var = 80.0**2
    for i in range(100):
        gamma = min(40 / 100, math.sqrt(2) - 1) if 0.01 <= t[i] <= 50 else 0.0
        th = t[i] * (1 + gamma)
        f0, f1, h = th / (S2 + th**2), t[i + 1] / (S2 + t[i + 1] ** 2), t[i + 1] - th
        m = 1 + h / 2 * (f0 + f1 * (1 + h * f0)) if i < 99 else 1 + h * f0
        var = (var + th**2 - t[i] ** 2) * m**2
    assert abs(x.var().item() / var - 1) < 0.04
    again = edm_sample(gaussian_denoiser(MU, S2), z, generator=gen(5), **kw).samples
    assert torch.equal(x, again)                       # same seed, same numbers
    with pytest.raises(ValueError):
        edm_sample(gaussian_denoiser(MU, S2), z, steps=3, S_churn=1.0)


def test_denoiser_sees_float32_and_per_sample_sigma():
    seen = []

    def D(x, sigma, labels=None):
        seen.append((x.dtype, sigma.dtype, tuple(sigma.shape), labels))
        return x * 0
    res = edm_sample(D, torch.randn(3, 2, generator=gen()), steps=2, class_labels=torch.zeros(3, 5))
    assert res.samples.dtype == torch.float64
    assert all(s[:3] == (torch.float32, torch.float32, (3,)) for s in seen)
    assert all(s[3] is not None for s in seen)


# ---------------------------------------------------------------- DDPM++ network
def test_ddpmpp_tiny_forward_backward_and_cifar_config_size():
    cfg = DDPMppConfig(img_resolution=16, model_channels=8, channel_mult=(1, 2), num_blocks=1,
                       attn_resolutions=(8,), dropout=0.0, label_dim=4)
    net = DDPMpp(cfg)
    D = EDMPrecond(net)
    x = torch.randn(2, 3, 16, 24, generator=gen())           # wide images work too
    out = D(x, torch.tensor([0.1, 10.0]), class_labels=torch.eye(4)[:2])
    assert out.shape == x.shape and torch.isfinite(out).all()
    edm_loss(D, x, gen(1), class_labels=torch.eye(4)[:2]).backward()
    assert net.map_layer0.weight.grad is not None and net.map_label.weight.grad.abs().sum() > 0
    with torch.device("meta"):
        big = DDPMpp(ddpmpp_cifar10_config())
    n = count_parameters(big)
    print(f"DDPM++ CIFAR-10 parameters: {n}")
    assert 55.0e6 < n < 56.5e6                                 # EDM's DDPM++: ~56M


# ---------------------------------------------------------------- exposure bias
def test_training_eps_norm_matches_closed_form():
    # eps = sigma (x - mu)/(s2 + sigma^2) ~ N(0, sigma^2/(s2+sigma^2) I_n): E||eps|| = chi_n mean
    n_dim = 16
    x0 = MU + math.sqrt(S2) * torch.randn(4000, n_dim, generator=gen(), dtype=torch.float64)
    sigmas = [0.01, 0.5, 10.0]
    got = training_eps_norms(gaussian_denoiser(MU, S2), x0, sigmas, gen(1), net_dtype=None)
    chi = math.sqrt(2) * math.exp(math.lgamma((n_dim + 1) / 2) - math.lgamma(n_dim / 2))
    for s, g in zip(sigmas, got):
        assert abs(g / (chi * s / math.sqrt(S2 + s**2)) - 1) < 0.01


def test_exposure_bias_curves_follow_the_sampler():
    x0 = MU + math.sqrt(S2) * torch.randn(500, 8, generator=gen(), dtype=torch.float64)
    z = torch.randn(500, 8, generator=gen(2))
    D = gaussian_denoiser(MU, S2)
    c = exposure_bias_curves(D, z, x0, steps=40, solver="heun", generator=gen(3))
    assert len(c.sampling) == len(c.training) == 79 and c.stages.count("heun") == 39
    assert c.sigmas[0] == 80.0 and c.steps[-1] == 39
    # exact denoiser and a fine Heun grid: the trajectory stays on-distribution, norms agree
    assert max(abs(s / t - 1) for s, t in zip(c.sampling, c.training)) < 0.06
    # a coarse Euler grid drifts off the training distribution (here it shrinks the samples)
    c = exposure_bias_curves(D, z, x0, steps=6, solver="euler", generator=gen(3))
    k = min(range(6), key=lambda j: abs(c.sigmas[j] - 0.085))
    assert c.sampling[k] < 0.8 * c.training[k]
