"""DDPM of the 001 paper: schedules, forward marginal, L_simple, ancestral sampling, CFG, the U-Net."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repro.diffusion.ddpm import DDPMSchedule, l_simple, make_betas, q_sample
from repro.errors import UserError
from repro.guidance.classifier_free import (Guidance, drop_masks, guided_eps_fn, guided_eps_ho_salimans,
                                            guided_eps_lerp)
from repro.nets.bdd_unet import MaskGuidedUNet, count_parameters, paper_parameter_count, sinusoidal_embedding
from repro.sampling.ddpm import ddpm_sample, ddpm_timesteps


def appendix_cosine_noise_schedule(noise_steps, beta_start, beta_end):
    # transcription of the 001 appendix listing `cosine_noise_schedule` (float32 as torch.linspace gives)
    t = torch.linspace(0, 1, noise_steps)
    return reversed(beta_start + (beta_end - beta_start) * (1 + torch.cos(torch.tensor(np.pi) * t)) / 2)


# ----------------------------------------------------------------------------- schedules

def test_paper_schedule_equals_the_appendix_code():
    betas = make_betas("paper_cosine_beta", 1000)
    ref = appendix_cosine_noise_schedule(1000, 1e-4, 0.02).double()
    assert torch.allclose(betas, ref, rtol=1e-5, atol=1e-9)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)      # ends: beta_start ...
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)     # ... and beta_end
    odd = make_betas("paper_cosine_beta", 1001)                  # an odd T has a middle index: the mean
    assert odd[500].item() == pytest.approx((1e-4 + 0.02) / 2, rel=1e-12)
    assert torch.allclose(odd, appendix_cosine_noise_schedule(1001, 1e-4, 0.02).double(), rtol=1e-5, atol=1e-9)
    # a ramp in beta, increasing, symmetric about the middle: beta_i + beta_{T-1-i} = start + end
    assert (betas.diff() > 0).all()
    assert torch.allclose(betas + betas.flip(0), torch.full_like(betas, 1e-4 + 0.02), atol=1e-12)


def test_paper_schedule_is_not_nichols_cosine():
    paper, nichol = DDPMSchedule.make("paper_cosine_beta"), DDPMSchedule.make("nichol_cosine")
    s = 0.008  # Nichol & Dhariwal Eq. 17: alpha_bar(t) = f(t)/f(0), f = cos^2(((t/T + s)/(1 + s)) pi/2)
    t = torch.arange(1, 1001, dtype=torch.float64)
    f = lambda u: torch.cos((u / 1000 + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expect = f(t) / f(torch.tensor(0.0, dtype=torch.float64))
    ok = nichol.betas < 0.999   # the clip only bites at the very end
    assert torch.allclose(nichol.alpha_bars[ok], expect[ok], rtol=1e-9)
    assert abs(float(paper.alpha_bars[499]) - float(nichol.alpha_bars[499])) > 0.1


def test_linear_schedule_is_hos():
    assert torch.allclose(make_betas("linear", 1000), torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    with pytest.raises(UserError, match="unknown DDPM schedule"):
        make_betas("quadratic", 10)


# ----------------------------------------------------------------------------- forward process

def test_forward_marginal_matches_the_closed_form():
    sched = DDPMSchedule.make("paper_cosine_beta", 200)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.7])
    n = 40_000
    x = x0.expand(n, 2).clone()
    # the Markov chain x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (001 Sec. 2.3.1), step by step
    var = torch.zeros((), dtype=torch.float64)
    for i in range(120):
        b = float(sched.betas[i])
        x = math.sqrt(1 - b) * x + math.sqrt(b) * torch.randn(x.shape, generator=g)
        var = (1 - b) * var + b
    ab = float(sched.alpha_bars[119])
    assert float(var) == pytest.approx(1 - ab, rel=1e-12)        # the variance recursion, exactly
    assert torch.allclose(x.mean(0), math.sqrt(ab) * x0, atol=0.02)
    assert torch.allclose(x.var(0), torch.full((2,), 1 - ab), rtol=0.03)
    # and Eq. 2.1 in one step gives the same distribution
    t = torch.full((n,), 119)
    xt = q_sample(sched, x0.expand(n, 2), t, torch.randn((n, 2), generator=g))
    assert torch.allclose(xt.mean(0), math.sqrt(ab) * x0, atol=0.02)
    assert torch.allclose(xt.var(0), torch.full((2,), 1 - ab), rtol=0.03)


def test_l_simple_is_zero_for_the_true_noise_and_the_mse_otherwise():
    sched = DDPMSchedule.make("linear", 50)
    x0 = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ab = sched.alpha_bars.float()

    def oracle(x_t, t):   # the noise that produced x_t, recovered from Eq. 2.1
        a = ab[t].reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    assert float(l_simple(oracle, sched, x0, torch.Generator().manual_seed(2))) < 1e-10
    # eps_theta = 0: the loss is the mean square of the drawn noise, drawn after t from the same generator
    g = torch.Generator().manual_seed(3)
    loss = l_simple(lambda x, t: torch.zeros_like(x), sched, x0, g)
    g2 = torch.Generator().manual_seed(3)
    torch.randint(0, 50, (6,), generator=g2)
    assert float(loss) == pytest.approx(float((torch.randn(x0.shape, generator=g2) ** 2).mean()), rel=1e-6)


# ----------------------------------------------------------------------------- sampling

def test_loops_call_the_network_999_or_1000_times():
    assert ddpm_timesteps(1000, "algorithm2") == list(range(999, -1, -1))
    assert ddpm_timesteps(1000, "appendix") == list(range(999, 0, -1))   # reversed(range(1, steps))
    sched = DDPMSchedule.make("paper_cosine_beta", 1000)
    seen = []
    out = ddpm_sample(lambda x, t: seen.append(int(t[0])) or torch.zeros_like(x), sched, torch.zeros(1, 1),
                      generator=torch.Generator().manual_seed(0), loop="appendix")
    assert out.nfe == 999 and seen[0] == 999 and seen[-1] == 1
    out = ddpm_sample(lambda x, t: torch.zeros_like(x), sched, torch.zeros(1, 1),
                      generator=torch.Generator().manual_seed(0), loop="algorithm2")
    assert out.nfe == 1000


def test_three_step_chain_by_hand():
    betas = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    sched = DDPMSchedule("hand", betas)
    alphas = [0.9, 0.8, 0.7]
    abar = [0.9, 0.72, 0.504]
    x_T = torch.tensor([[1.0, -2.0]])
    g = torch.Generator().manual_seed(5)
    out = ddpm_sample(lambda x, t: 0.5 * x, sched, x_T, generator=g, loop="algorithm2")
    g = torch.Generator().manual_seed(5)
    x = x_T.clone()
    for i in (2, 1, 0):   # Alg. 2 line 4 with eps = x / 2; no noise at the last step
        mean = (x - (1 - alphas[i]) / math.sqrt(1 - abar[i]) * 0.5 * x) / math.sqrt(alphas[i])
        x = mean + (math.sqrt(float(betas[i])) * torch.randn(x.shape, generator=g) if i > 0 else 0)
    assert torch.allclose(out.samples, x, atol=1e-6)
    # the appendix loop stops after index 1, noise-free there
    g = torch.Generator().manual_seed(5)
    out = ddpm_sample(lambda x, t: 0.5 * x, sched, x_T, generator=g, loop="appendix")
    x = x_T.clone()
    g = torch.Generator().manual_seed(5)
    for i in (2, 1):
        mean = (x - (1 - alphas[i]) / math.sqrt(1 - abar[i]) * 0.5 * x) / math.sqrt(alphas[i])
        x = mean + (math.sqrt(float(betas[i])) * torch.randn(x.shape, generator=g) if i > 1 else 0)
    assert torch.allclose(out.samples, x, atol=1e-6)


def test_sampling_with_the_exact_eps_of_a_gaussian_recovers_its_variance():
    # data x0 ~ N(0, s^2): x_t ~ N(0, abar s^2 + 1 - abar) and E[eps | x_t] = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar)
    sched = DDPMSchedule.make("linear", 1000)
    ab = sched.alpha_bars.float()
    s2 = 0.25

    def eps_fn(x, t):
        a = ab[t][:, None]
        return (1 - a).sqrt() * x / (a * s2 + 1 - a)

    g = torch.Generator().manual_seed(0)
    out = ddpm_sample(eps_fn, sched, torch.randn(20_000, 1, generator=g), generator=g)
    assert float(out.samples.var()) == pytest.approx(s2, rel=0.05)
    assert abs(float(out.samples.mean())) < 0.02


# ----------------------------------------------------------------------------- classifier-free guidance

def test_both_conventions_at_their_defining_weights():
    g = torch.Generator().manual_seed(0)
    eps_c, eps_u = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    assert torch.equal(guided_eps_ho_salimans(eps_c, eps_u, 0.0), eps_c)     # w = 0: conditional
    assert torch.allclose(guided_eps_ho_salimans(eps_c, eps_u, -1.0), eps_u)  # w = -1: unconditional
    assert torch.equal(guided_eps_lerp(eps_c, eps_u, 1.0), eps_c)            # s = 1: conditional
    assert torch.equal(guided_eps_lerp(eps_c, eps_u, 0.0), eps_u)            # s = 0: unconditional
    # s = 1 + w is the same prediction: the authors' s = 3 is Ho & Salimans' w = 2
    assert torch.allclose(guided_eps_lerp(eps_c, eps_u, 3.0), 3 * eps_c - 2 * eps_u, atol=1e-6)
    assert torch.allclose(Guidance(2.0, "ho_salimans").combine(eps_c, eps_u), Guidance(3.0, "lerp").combine(eps_c, eps_u),
                          atol=1e-6)
    assert Guidance(3.0, "lerp").w == 2.0 and Guidance(2.0).s == 3.0
    with pytest.raises(UserError, match="convention"):
        Guidance(1.0, "cfg++")


def test_guided_prediction_is_one_batched_pass_of_2b():
    calls = []

    def net(x, t, mask):
        calls.append((x.shape[0], None if mask is None else mask.shape[0]))
        return x * (2.0 if mask is None else 1.0) if mask is None else torch.cat(
            [x[: mask.shape[0]] + 1.0, 2.0 * x[mask.shape[0]:]])

    x, t, mask = torch.ones(3, 1, 2, 2), torch.zeros(3, dtype=torch.long), torch.ones(3, 19, 2, 2)
    out = guided_eps_fn(net, mask, Guidance(2.0))(x, t)
    assert calls == [(6, 3)]
    assert torch.allclose(out, 3 * (x + 1.0) - 2 * (2.0 * x))
    calls.clear()
    guided_eps_fn(net, None, Guidance(2.0))(x, t)
    guided_eps_fn(net, mask, Guidance(0.0))(x, t)
    assert calls == [(3, None), (3, 3)]


def test_mask_drop_per_sample_and_per_batch():
    g = torch.Generator().manual_seed(0)
    rows = torch.stack([drop_masks(8, 0.1, "per_sample", g, "cpu") for _ in range(2000)])
    assert float(rows.float().mean()) == pytest.approx(0.1, abs=0.01)
    batches = torch.stack([drop_masks(8, 0.1, "per_batch", g, "cpu") for _ in range(2000)])
    assert (batches.all(1) | ~batches.any(1)).all()          # all rows together
    assert float(batches[:, 0].float().mean()) == pytest.approx(0.1, abs=0.02)


# ----------------------------------------------------------------------------- the network

def _hand_count(base=128, emb=256, k=19, c=3):
    def dc(i, o, m=None):   # two bias-free 3x3 convs + two GroupNorm affines
        m = m or o
        return 9 * i * m + 2 * m + 9 * m * o + 2 * o

    def down(i, o):
        return dc(i, i) + dc(i, o) + emb * o + o

    def up(i, o):
        return dc(i, i) + dc(i, o, i // 2) + emb * o + o

    b1, b2, b3, b4 = base, 2 * base, 4 * base, 8 * base
    return (dc(c, b1) + dc(k, b1) + down(b1, b2) + down(b2, b3) + down(b3, b3) + dc(b3, b4) + dc(b4, b4)
            + dc(b4, b3) + up(2 * b3, b2) + up(2 * b2, b1) + up(2 * b1, b1) + b1 * c + c)


def test_parameter_count_is_the_papers():
    assert paper_parameter_count() == 88_842_371          # 001 Sec. 4.2
    assert _hand_count() == 88_842_371
    assert count_parameters(MaskGuidedUNet(base=8, emb_dim=16)) == _hand_count(8, 16)


def test_sinusoidal_embedding_sin_then_cos():
    e = sinusoidal_embedding(torch.tensor([0, 7]), 8)
    assert torch.equal(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    k = torch.arange(4, dtype=torch.float32)
    f = 10000.0 ** (-2 * k / 8)
    assert torch.allclose(e[1], torch.cat([torch.sin(7 * f), torch.cos(7 * f)]), atol=1e-6)


def test_mask_rows_drop_and_the_unconditional_pass():
    torch.manual_seed(0)
    net = MaskGuidedUNet(base=8, emb_dim=16).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    t = torch.tensor([3, 900])
    labels = torch.randint(0, 19, (2, 16, 16), generator=g)
    mask = torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        cond, uncond = net(x, t, mask), net(x, t, None)
        both = net(torch.cat([x, x]), torch.cat([t, t]), mask)     # mask for the first 2 rows only
        dropped = net(x, t, mask, drop=torch.tensor([True, False]))
    assert cond.shape == x.shape and not torch.allclose(cond, uncond)
    assert torch.allclose(both[:2], cond, atol=1e-5) and torch.allclose(both[2:], uncond, atol=1e-5)
    assert torch.allclose(dropped[0], uncond[0], atol=1e-5) and torch.allclose(dropped[1], cond[1], atol=1e-5)
