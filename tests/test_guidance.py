"""Discriminator guidance (002 thesis Eq. 9.3) and epsilon scaling (Ch. 10.3, 11.2) in edm_sample."""
import math

import pytest
import torch

from repro.diffusion.edm import EDMPrecond, gaussian_denoiser
from repro.diffusion.losses import discriminator_bce_loss, sample_vp_time
from repro.diffusion.schedules import sigma_to_vp_time, vp_sigma
from repro.guidance.discriminator import DiscriminatorGuidance, discriminator_correction
from repro.guidance.epsilon_scaling import EpsilonScaling
from repro.nets.ddpmpp import DDPMpp, DDPMppConfig
from repro.nets.discriminator import small_discriminator
from repro.sampling.edm import edm_sample, edm_time_steps

MU, S2 = 0.3, 0.25


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class LinearDisc(torch.nn.Module):
    """d = sigmoid(a . x_vp + c): grad_x_vp log(d/(1-d)) = a. Counts forward and backward passes."""

    def __init__(self, a: torch.Tensor, c: float = 0.0, prob: bool = False):
        super().__init__()
        self.a, self.c, self.prob = a, c, prob
        self.forwards = self.backwards = 0
        self.taus = []

    def forward(self, x, tau):
        self.forwards += 1
        self.taus.append(tau.clone())
        logit = x.flatten(1) @ self.a.to(x) + self.c
        if logit.requires_grad:
            logit.register_hook(lambda g: setattr(self, "backwards", self.backwards + 1))
        return torch.sigmoid(logit) if self.prob else logit


def _a(n=4):
    return torch.linspace(-1.0, 1.0, n)


# ---------------------------------------------------------------- VP time
def test_vp_time_is_the_inverse_of_vp_sigma():
    tau = torch.linspace(1e-4, 1.0, 50, dtype=torch.float64)
    assert torch.allclose(sigma_to_vp_time(vp_sigma(tau)), tau, rtol=1e-10, atol=1e-12)
    sig = torch.tensor([0.002, 0.1, 1.0, 80.0], dtype=torch.float64)
    assert torch.allclose(vp_sigma(sigma_to_vp_time(sig)), sig, rtol=1e-10)
    # DG's window [0.01, 1]: sigma ~ 0.0447 at tau = 0.01; sigma_max 80 lies inside (tau < 1)
    assert 0.044 < vp_sigma(0.01).item() < 0.045 and sigma_to_vp_time(80.0).item() < 1.0


# ---------------------------------------------------------------- the correction term
@pytest.mark.parametrize("prob", [False, True])
def test_correction_is_minus_sigma2_grad_log_ratio(prob):
    a = _a()
    x = torch.randn(3, 1, 2, 2, generator=gen(), dtype=torch.float64)
    sigma = 2.0
    out = "prob" if prob else "logit"
    g = discriminator_correction(LinearDisc(a, 0.1, prob=prob), x, sigma, output=out)
    # chain rule through x_vp = x / sqrt(1 + sigma^2)
    expected = (-(sigma**2) / math.sqrt(1 + sigma**2) * a.double()).reshape(1, 1, 2, 2).expand_as(x)
    assert g.dtype == torch.float64 and torch.allclose(g, expected, rtol=1e-5)
    # d clipped to [1e-5, 1 - 1e-5]: a saturated discriminator gives no gradient
    sat = discriminator_correction(LinearDisc(a, 100.0, prob=prob), x, sigma, output=out)
    assert torch.equal(sat, torch.zeros_like(x))
    # outside the time window: zero, and the discriminator is not called
    d = LinearDisc(a)
    assert torch.equal(discriminator_correction(d, x, 0.01), torch.zeros_like(x)) and d.forwards == 0


def test_discriminator_sees_vp_scaled_input_and_vp_time():
    seen = {}

    def disc(x_vp, tau):
        seen["x"], seen["tau"] = x_vp.detach(), tau
        return x_vp.flatten(1).sum(1)
    x = torch.randn(2, 4, generator=gen())
    discriminator_correction(disc, x, 3.0)
    assert torch.allclose(seen["x"], x / math.sqrt(10.0))
    assert torch.allclose(seen["tau"].double(), sigma_to_vp_time(torch.full((2,), 3.0)), rtol=1e-6)


def test_guidance_callable_weights_and_window():
    a = _a()
    x = torch.randn(2, 4, generator=gen(), dtype=torch.float64)
    s = torch.tensor(2.0, dtype=torch.float64)
    g = discriminator_correction(LinearDisc(a), x, s)
    dg = DiscriminatorGuidance(LinearDisc(a), w_1st=2.0, w_2nd=0.5)
    assert torch.allclose(dg(x, s, None, stage="euler", step=0), 2.0 * g / 2.0)
    assert torch.allclose(dg(x, s, None, stage="heun", step=0), 0.5 * g / 2.0)
    quiet = LinearDisc(a)
    assert DiscriminatorGuidance(quiet, w_1st=1.0)(x, s, None, stage="heun", step=0) is None  # w_2nd = 0
    assert DiscriminatorGuidance(quiet, w_1st=1.0)(x, torch.tensor(0.01), None, stage="euler") is None
    assert DiscriminatorGuidance(quiet, w_1st=1.0, time_max=0.5)(x, torch.tensor(80.0), None) is None
    assert quiet.forwards == 0


# ---------------------------------------------------------------- DG inside edm_sample
def test_sampler_adds_exactly_w_g_over_sigma_inside_the_window_and_nothing_outside():
    D = gaussian_denoiser(MU, S2)
    a, w, steps = _a(), 1.7, 12
    z = torch.randn(5, 4, generator=gen())
    disc = LinearDisc(a)
    dg = DiscriminatorGuidance(disc, w_1st=w, time_min=0.01, time_max=0.5)
    res = edm_sample(D, z, steps=steps, solver="euler", guidance=dg, net_dtype=None)
    t = edm_time_steps(steps)
    inside = [0.01 <= sigma_to_vp_time(t[i]).item() <= 0.5 for i in range(steps)]
    assert 0 < sum(inside) < steps                         # the window cuts both ends here
    x = z.double() * t[0]
    for i in range(steps):
        d = (x - D(x, t[i])) / t[i]
        if inside[i]:
            d = d + w * discriminator_correction(LinearDisc(a), x, t[i], 0.01, 0.5) / t[i]
        x = x + (t[i + 1] - t[i]) * d
    assert torch.equal(res.samples, x)
    # cost: one discriminator forward + backward per guided evaluation, none outside the window
    assert disc.forwards == disc.backwards == res.guided_evals == sum(inside)


def test_heun_second_order_weight_and_call_count():
    D = gaussian_denoiser(MU, S2)
    z = torch.randn(5, 4, generator=gen())
    for w2 in (0.0, 1.0):
        disc = LinearDisc(_a())
        res = edm_sample(D, z, steps=10, guidance=DiscriminatorGuidance(disc, w_1st=1.0, w_2nd=w2))
        t = edm_time_steps(10)
        euler_in = sum(sigma_to_vp_time(t[i]).item() >= 0.01 for i in range(10))
        heun_in = sum(sigma_to_vp_time(t[i + 1]).item() >= 0.01 for i in range(9))
        assert res.guided_evals == disc.forwards == disc.backwards == euler_in + (heun_in if w2 else 0)
        assert res.nfe == 19


def test_guidance_moves_samples_toward_higher_discriminator_output():
    D = gaussian_denoiser(MU, S2)
    a = _a()
    z = torch.randn(400, 4, generator=gen())
    plain = edm_sample(D, z, steps=18).samples
    guided = edm_sample(D, z, steps=18, guidance=DiscriminatorGuidance(LinearDisc(a), w_1st=1.0)).samples
    assert (guided @ a.double()).mean() > (plain @ a.double()).mean() + 0.1


# ---------------------------------------------------------------- epsilon scaling
def _tiny_denoiser():
    torch.manual_seed(0)
    net = DDPMpp(DDPMppConfig(img_resolution=8, model_channels=8, channel_mult=(1, 2), num_blocks=1,
                              attn_resolutions=(4,), dropout=0.0))
    with torch.no_grad():   # undo the near-zero output init so the net's output matters
        net.out_conv.weight.normal_(0, 0.1)
    return EDMPrecond(net).eval()


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("placement", ["ning", "sedm"])
def test_b1_and_w0_reproduce_plain_edm_exactly(solver, placement):
    D = _tiny_denoiser()
    z = torch.randn(2, 3, 8, 8, generator=gen())
    kw = dict(steps=3, solver=solver, S_churn=5.0, S_min=0.05, S_max=50.0)
    plain = edm_sample(D, z, generator=gen(1), **kw).samples
    disc = LinearDisc(torch.randn(192, generator=gen(2)))
    same = edm_sample(D, z, generator=gen(1), guidance=DiscriminatorGuidance(disc, w_1st=0.0),
                      eps_scale=EpsilonScaling(1.0, 0.0, placement), **kw).samples
    assert torch.equal(plain, same) and disc.forwards == 0
    # b = 1 with guidance on: SEDM-G++ / ning placement both equal EDM-G++
    dg = DiscriminatorGuidance(disc, w_1st=1.5)
    g_plain = edm_sample(D, z, generator=gen(1), guidance=dg, **kw).samples
    g_scaled = edm_sample(D, z, generator=gen(1), guidance=dg, eps_scale=EpsilonScaling(1.0, 0.0, placement), **kw).samples
    assert torch.equal(g_plain, g_scaled) and not torch.equal(g_plain, plain)


def test_scale_b_divides_the_direction_norm_exactly():
    D = gaussian_denoiser(MU, S2)
    z = torch.randn(4, 6, generator=gen())
    for es in [EpsilonScaling(1.25), EpsilonScaling(1.0004, k=0.01)]:
        res = edm_sample(D, z, steps=6, eps_scale=es, record=True)
        assert len(res.records) == 11
        for r in res.records:
            assert torch.allclose(r.direction_norm * es.factor(r.step), r.eps_norm, rtol=1e-12)
    assert EpsilonScaling(1.0, k=0.5).factor(3) == 2.5


def test_placements_with_guidance_differ_as_documented():
    D = gaussian_denoiser(MU, S2)
    a, w, b = _a(), 2.0, 1.5
    z = torch.randn(3, 4, generator=gen())
    t = edm_time_steps(2)
    x = z.double() * t[0]
    eps = (x - D(x, t[0])) / t[0]
    g = w * discriminator_correction(LinearDisc(a), x, t[0]) / t[0]
    for placement, d in [("ning", (eps + g) / b), ("sedm", eps / b + g)]:
        res = edm_sample(D, z, steps=2, solver="euler", net_dtype=None, record=True,
                         guidance=DiscriminatorGuidance(LinearDisc(a), w_1st=w),
                         eps_scale=EpsilonScaling(b, placement=placement))
        assert torch.allclose(res.records[0].direction_norm, d.flatten(1).norm(dim=1), rtol=1e-12)


def test_wrapped_denoiser_has_scaled_eps():
    D = gaussian_denoiser(MU, S2)
    x = torch.randn(3, 4, generator=gen(), dtype=torch.float64)
    sigma = torch.full((3,), 2.0, dtype=torch.float64)
    es = EpsilonScaling(1.1, k=0.05)
    Dp = es.wrap(D, step=2)(x, sigma)
    assert torch.allclose((x - Dp) / 2.0, (x - D(x, sigma)) / 2.0 / 1.2, rtol=1e-12)
    assert torch.equal(EpsilonScaling().wrap(D, 0)(x, sigma), D(x, sigma))
    with pytest.raises(ValueError):
        EpsilonScaling(placement="elsewhere")


# ---------------------------------------------------------------- the discriminator network
def test_vp_time_importance_sampling_is_log_uniform_in_sigma():
    tau = sample_vp_time(20000, gen())
    ls = vp_sigma(tau).log()
    lo, hi = vp_sigma(1e-5).log().item(), vp_sigma(1.0).log().item()
    assert ls.min() >= lo - 1e-9 and ls.max() <= hi + 1e-9
    assert abs(ls.mean().item() - (lo + hi) / 2) < 0.05 * (hi - lo)
    assert abs((ls < (lo + hi) / 2).double().mean().item() - 0.5) < 0.02
    uni = sample_vp_time(20000, gen(), importance_sampling=False)
    assert abs(uni.mean().item() - 0.5) < 0.01


def test_discriminator_trains_head_only_and_guides():
    torch.manual_seed(0)
    disc = small_discriminator(in_channels=1, channels=8)
    enc_before = [p.clone() for p in disc.encoder.parameters()]
    opt = torch.optim.Adam([p for p in disc.parameters() if p.requires_grad], lr=3e-4 * 10)
    real = 0.5 + 0.1 * torch.randn(16, 1, 8, 8, generator=gen(1))
    fake = -0.5 + 0.1 * torch.randn(16, 1, 8, 8, generator=gen(2))
    g = gen(3)
    losses = []
    for _ in range(25):
        loss = discriminator_bce_loss(disc.train(), real, fake, g, t_min=1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert not disc.encoder.training and all(not p.requires_grad for p in disc.encoder.parameters())
    assert all(torch.equal(p, q) for p, q in zip(enc_before, disc.encoder.parameters()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    # the gradient reaches the input through the frozen encoder
    gcorr = discriminator_correction(disc.eval(), torch.randn(2, 1, 8, 8, generator=gen(4)), 0.5)
    assert gcorr.abs().sum() > 0
    with pytest.raises(ValueError):
        discriminator_bce_loss(disc, real, fake[:8], g)


def test_random_draws_come_from_the_generator_whatever_the_target_device():
    from repro.rng import rand, randn

    g = torch.Generator().manual_seed(11)
    want = torch.randn(3, 4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    assert torch.equal(randn((3, 4), g, "cpu", torch.float64), want)
    u = rand((5,), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(u, torch.rand(5, generator=torch.Generator().manual_seed(1)))
    assert randn((2,), None, None).shape == (2,)
