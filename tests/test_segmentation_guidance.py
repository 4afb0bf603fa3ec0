"""Segmentation guidance (thesis Sec. 4.5, 5.2.5): the scale s(t) of Eq. 5.5, the guidance
gradient against finite differences, batch independence with per-sample corrector norms, and
guided sampling of a per-pixel two-class Gaussian mixture with the exact posterior as segmenter."""
from __future__ import annotations

import math

import pytest
import torch

from repro.diffusion.sde import VESDE
from repro.guidance.segmentation import (GuidanceSettings, ScaleSchedule, SegmentationGuidance, SegmenterNoise,
                                         eq5_5_scale, normalize_per_sample, segmentation_log_likelihood_grad)
from repro.sampling.predictor_corrector import predictor_corrector_sample

# ----------------------------------------------------------------------------- s(t), Eq. 5.5


def _eq5_5_by_hand(t: float, s0: float) -> float:
    # The thesis's cases, written out: 0 for t > 0.8; s0 for 0.45 < t <= 0.8; s0 / 0.45^2 t^2 below.
    if t > 0.8:
        return 0.0
    if t > 0.45:
        return s0
    return s0 / 0.45**2 * t**2


@pytest.mark.parametrize("t", [1.0, 0.9, 0.8 + 1e-9, 0.8, 0.8 - 1e-9, 0.6, 0.45 + 1e-9, 0.45, 0.45 - 1e-9,
                               0.3, 0.1, 1e-5, 0.0])
def test_scale_matches_eq5_5_at_and_around_its_breakpoints(t):
    s0 = 0.002
    got = float(eq5_5_scale(torch.tensor(t, dtype=torch.float64), s0))
    assert got == pytest.approx(_eq5_5_by_hand(t, s0), rel=1e-12, abs=1e-18)
    assert float(ScaleSchedule("eq5_5", s0=s0)(torch.tensor([t], dtype=torch.float64))[0]) == pytest.approx(got, rel=1e-12, abs=1e-18)


def test_scale_jumps_at_t_start_and_is_continuous_at_t_decay():
    s = ScaleSchedule("eq5_5", s0=1.0, t_start=0.7, t_decay=0.45)
    t = torch.tensor([0.7, 0.7 + 1e-7, 0.45 - 1e-9, 0.45, 0.45 + 1e-9], dtype=torch.float64)
    v = s(t)
    assert v[0] == 1.0 and v[1] == 0.0                     # jump from s0 to 0 just above t_start
    assert v[2] == pytest.approx(1.0, abs=1e-8) and v[3] == 1.0 and v[4] == 1.0   # continuous at t_decay


def test_on_off_windows_of_fig5_3_and_5_4():
    t = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0])
    off = ScaleSchedule("off_below", s0=2.0, t_stop=0.5)(t)     # on above t_stop only
    on = ScaleSchedule("on_below", s0=2.0, t_start=0.5)(t)      # on below t_start only
    assert off.tolist() == [0.0, 0.0, 0.0, 2.0, 2.0]
    assert on.tolist() == [2.0, 2.0, 0.0, 0.0, 0.0]
    assert ScaleSchedule("constant", s0=3.0)(t).tolist() == [3.0] * 5


@pytest.mark.parametrize("bad", [dict(kind="eq5_5", t_start=0.4, t_decay=0.5), dict(kind="nope"), dict(s0=-1.0),
                                 dict(s0=float("nan"))])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        ScaleSchedule(**bad)


# ----------------------------------------------------------------------------- the gradient

class TinySegmenter(torch.nn.Module):
    """conv -> tanh -> conv over [image, noise plane]: smooth, so finite differences are exact enough."""

    def __init__(self, channels=3, classes=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = torch.nn.Conv2d(channels + 1, 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, classes, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x, level):
        plane = torch.as_tensor(level, dtype=x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.c2(torch.tanh(self.c1(torch.cat([x, plane], 1))))


def _objective(seg, x, target, level, objective, chain_rule):
    inp = normalize_per_sample(x)
    logp = torch.log_softmax(seg(inp, level), 1).gather(1, target[:, None]).squeeze(1)
    return (logp if objective == "log_prob" else logp.exp()).sum()


@pytest.mark.parametrize("objective", ["log_prob", "prob"])
@pytest.mark.parametrize("chain_rule", [True, False])
def test_guidance_gradient_equals_finite_differences(objective, chain_rule):
    seg = TinySegmenter().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    level = torch.tensor([0.3, -1.0], dtype=torch.float64)
    settings = GuidanceSettings(objective=objective, chain_rule=chain_rule)
    grad = segmentation_log_likelihood_grad(lambda a, b: seg(a.double(), b), x, target, level, settings)
    h = 1e-4
    torch.set_grad_enabled(False)   # the differences need no graph (the guidance enables its own)
    for _ in range(6):   # random coordinates, central differences
        i = tuple(int(torch.randint(0, n, (1,), generator=g)) for n in x.shape)
        e = torch.zeros_like(x)
        e[i] = h
        if chain_rule:   # d/dx of the objective through the normalisation
            fd = (_objective(seg, x + e, target, level, objective, True)
                  - _objective(seg, x - e, target, level, objective, True)) / (2 * h)
        else:            # the authors' code: d/d(normalised image), the normalised image perturbed
            u = normalize_per_sample(x)
            f = lambda v: ((torch.log_softmax(seg(v, level), 1).gather(1, target[:, None]).squeeze(1))  # noqa: E731
                           .exp() if objective == "prob" else
                           torch.log_softmax(seg(v, level), 1).gather(1, target[:, None]).squeeze(1)).sum()
            fd = (f(u + e) - f(u - e)) / (2 * h)
        # float64 throughout (the guidance keeps float64): central differences agree to ~h^2
        assert float(grad[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8 * float(grad.abs().max()))
    torch.set_grad_enabled(True)


def test_guidance_term_is_scale_times_gradient_and_skips_the_segmenter_where_s_is_zero():
    seg = TinySegmenter()
    calls = []

    def counting(x, level):
        calls.append(1)
        return seg(x, level)

    sde = VESDE(0.01, 20.0)
    target = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(2))
    noise = SegmenterNoise("log_sigma", 0.01, 20.0)
    guide = SegmentationGuidance(counting, target, ScaleSchedule("eq5_5", s0=0.5), sde.sigma, noise)
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(guide(x, torch.full((2,), 0.9)), torch.zeros_like(x)) and not calls   # s(0.9) = 0
    t = torch.full((2,), 0.6)
    got = guide(x, t)
    want = 0.5 * segmentation_log_likelihood_grad(seg, x, target, torch.log(sde.sigma(t)), GuidanceSettings())
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert len(calls) == 1 and guide.calls == 1


def test_t_encoding_reads_the_noise_actually_in_the_sample():
    # A segmenter trained with another sigma_max gets its own time of the score SDE's sigma (Eq. 5.2 inverted).
    noise = SegmenterNoise("t", 0.01, 50.0)
    sigma = torch.tensor([0.01, 50.0, math.sqrt(0.01 * 50.0)])
    torch.testing.assert_close(noise.channel(sigma), torch.tensor([0.0, 1.0, 0.5]))


# ----------------------------------------------------------------------------- batch independence

def _gaussian_score(sde: VESDE, mu: float = 0.3, s: float = 0.2):
    def score(x, t):
        var = s * s + sde.sigma(t).reshape(-1, 1, 1, 1) ** 2
        return (mu - x) / var
    return score


def test_batched_guided_sampling_equals_map_by_map_bit_for_bit():
    """With one generator per map and per-sample corrector norms, a batch of maps gives the same
    images as the maps one by one (thesis Alg. 3 works on one image). In float64: CPU float32
    convolutions themselves differ batched vs one by one (~2e-6), float64 ones do not."""
    torch.manual_seed(0)
    seg = TinySegmenter(channels=1, classes=3).eval().double()
    sde = VESDE(0.01, 5.0)
    maps = torch.randint(0, 3, (3, 6, 7), generator=torch.Generator().manual_seed(4))
    noise = SegmenterNoise("log_sigma", 0.01, 5.0)
    schedule = ScaleSchedule("eq5_5", s0=0.05)

    def sample(idx):
        gens = [torch.Generator().manual_seed(100 + i) for i in idx]
        x = sde.prior_sample((len(idx), 1, 6, 7), generator=gens, dtype=torch.float64)
        guide = SegmentationGuidance(seg, maps[idx], schedule, sde.sigma, noise)
        return predictor_corrector_sample(_gaussian_score(sde), sde, x, steps=12, generator=gens, snr=0.1,
                                          corrector_norms="per_sample", guidance=guide).samples

    batched = sample([0, 1, 2])
    one_by_one = torch.cat([sample([i]) for i in range(3)])
    assert torch.equal(batched, one_by_one)
    # score_sde's batch-mean norms couple the maps: the same draws give other images
    gens = [torch.Generator().manual_seed(100 + i) for i in range(3)]
    x = sde.prior_sample((3, 1, 6, 7), generator=gens, dtype=torch.float64)
    coupled = predictor_corrector_sample(_gaussian_score(sde), sde, x, steps=12, generator=gens, snr=0.1,
                                         corrector_norms="batch",
                                         guidance=SegmentationGuidance(seg, maps, schedule, sde.sigma, noise)).samples
    assert not torch.equal(coupled, batched)


# ----------------------------------------------------------------------------- a closed-form toy

MU = torch.tensor([-1.0, 1.0])   # class means of each pixel's value
S = 0.25                          # within-class std


def _mixture_posterior_logits(x, sigma):
    """log pi_c + log N(x; mu_c, S^2 + sigma^2) per pixel: the exact p_t(y_ij | x_ij) (up to a constant)."""
    var = S * S + sigma.reshape(-1, 1, 1, 1) ** 2
    return torch.stack([-(x[:, 0] - m) ** 2 / (2 * var[:, 0]) for m in MU], dim=1)


def _mixture_score(sde):
    def score(x, t):
        sigma = sde.sigma(t)
        var = S * S + sigma.reshape(-1, 1, 1, 1) ** 2
        w = torch.softmax(_mixture_posterior_logits(x, sigma), dim=1)          # [B, 2, H, W]
        mean = (w * MU.reshape(1, 2, 1, 1)).sum(1, keepdim=True)
        return (mean - x) / var                                                # exact score of p_t
    return score


def test_guided_sampling_of_a_two_class_mixture_lands_in_the_chosen_classes():
    """Each pixel is drawn from 0.5 N(-1, S^2) + 0.5 N(1, S^2). The exact score plus the exact posterior's
    grad log p_t(y | x) (scale 1) is the score of p_t(x | y): samples must land in the classes of the map."""
    sde = VESDE(0.01, 4.0)
    segmenter = lambda x, level: _mixture_posterior_logits(x, torch.exp(level))   # noqa: E731  raw x, log sigma
    maps = torch.zeros(4, 8, 8, dtype=torch.long)
    maps[:, :, 4:] = 1
    maps[1] = 1 - maps[1]
    noise = SegmenterNoise("log_sigma", 0.01, 4.0)
    settings = GuidanceSettings(objective="log_prob", normalize=False)
    gens = [torch.Generator().manual_seed(7 + i) for i in range(4)]
    x = sde.prior_sample((4, 1, 8, 8), generator=gens)
    guide = SegmentationGuidance(segmenter, maps, ScaleSchedule("constant", s0=1.0), sde.sigma, noise, settings)
    out = predictor_corrector_sample(_mixture_score(sde), sde, x, steps=200, generator=gens, snr=0.16,
                                     corrector_norms="per_sample", guidance=guide).samples[:, 0]
    landed = torch.where(out > 0, 1, 0)
    assert (landed == maps).float().mean() > 0.98
    # and each class's pixels have the class's mean and spread
    for c in (0, 1):
        v = out[maps == c]
        assert abs(float(v.mean()) - float(MU[c])) < 0.1 and abs(float(v.std()) - S) < 0.1
    # unguided, the same draws split between the classes regardless of the map
    free = predictor_corrector_sample(_mixture_score(sde), sde, x, steps=200, generator=gens, snr=0.16,
                                      corrector_norms="per_sample").samples[:, 0]
    agree = (torch.where(free > 0, 1, 0) == maps).float().mean()
    assert 0.3 < agree < 0.7
