"""The `score_sde` discretisation against a transcription of score_sde_pytorch's samplers.

The classes below are written in this test from yang-song/score_sde_pytorch (sde_lib.py: VPSDE,
subVPSDE, VESDE, SDE.reverse / discretize; sampling.py: EulerMaruyamaPredictor,
ReverseDiffusionPredictor, AncestralSamplingPredictor, LangevinCorrector, get_pc_sampler), in
float64 and with the global RNG replaced by one torch.Generator, so that both sides consume the
same noise in the same order. The suite's sampler is driven from the same seed; the samples must
agree to float64 rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.diffusion.sde import SubVPSDE, VESDE, VPSDE
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.sampling.sde_solvers import euler_maruyama_sample, milstein_sample

F64 = torch.float64


# ----------------------------------------------------------------------------- transcription

class RefVPSDE:
    def __init__(self, beta_min=0.1, beta_max=20, N=1000):
        self.beta_0, self.beta_1, self.N, self.T = beta_min, beta_max, N, 1
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=F64)
        self.alphas = 1. - self.discrete_betas

    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        return -0.5 * beta_t[:, None, None, None] * x, torch.sqrt(beta_t)

    def discretize(self, x, t):
        timestep = (t * (self.N - 1) / self.T).long()
        beta = self.discrete_betas[timestep]
        alpha = self.alphas[timestep]
        f = torch.sqrt(alpha)[:, None, None, None] * x - x
        return f, torch.sqrt(beta)


class RefSubVPSDE:
    def __init__(self, beta_min=0.1, beta_max=20, N=1000):
        self.beta_0, self.beta_1, self.N, self.T = beta_min, beta_max, N, 1
        # not in the reference (its corrector would need it): the VP alphas of the same schedule
        self.alphas = 1. - torch.linspace(beta_min / N, beta_max / N, N, dtype=F64)

    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        drift = -0.5 * beta_t[:, None, None, None] * x
        discount = 1. - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
        return drift, torch.sqrt(beta_t * discount)

    def discretize(self, x, t):  # SDE.discretize (Euler-Maruyama)
        dt = 1 / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * torch.sqrt(torch.tensor(dt, dtype=F64))


class RefVESDE:
    def __init__(self, sigma_min=0.01, sigma_max=50, N=1000):
        self.sigma_min, self.sigma_max, self.N, self.T = sigma_min, sigma_max, N, 1
        self.discrete_sigmas = torch.exp(torch.linspace(np.log(sigma_min), np.log(sigma_max), N, dtype=F64))

    def sde(self, x, t):
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        diffusion = sigma * torch.sqrt(torch.tensor(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)),
                                                    dtype=F64))
        return torch.zeros_like(x), diffusion

    def discretize(self, x, t):
        timestep = (t * (self.N - 1) / self.T).long()
        sigma = self.discrete_sigmas[timestep]
        adjacent_sigma = torch.where(timestep == 0, torch.zeros_like(t), self.discrete_sigmas[timestep - 1])
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - adjacent_sigma ** 2)


def ref_reverse(sde, score_fn, probability_flow):
    """SDE.reverse: (sde, discretize) of the reverse-time SDE / probability-flow ODE."""
    c = 0.5 if probability_flow else 1.

    def rsde(x, t):
        drift, diffusion = sde.sde(x, t)
        drift = drift - diffusion[:, None, None, None] ** 2 * score_fn(x, t) * c
        return drift, (0. if probability_flow else diffusion)

    def rdiscretize(x, t):
        f, G = sde.discretize(x, t)
        rev_f = f - G[:, None, None, None] ** 2 * score_fn(x, t) * c
        return rev_f, (torch.zeros_like(G) if probability_flow else G)

    return rsde, rdiscretize


def ref_predictor(name, sde, score_fn, probability_flow, g):
    rsde, rdisc = ref_reverse(sde, score_fn, probability_flow)
    randn_like = lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype)  # noqa: E731

    def euler_maruyama(x, t):
        dt = -1. / sde.N
        z = randn_like(x)
        drift, diffusion = rsde(x, t)
        x_mean = x + drift * dt
        if not torch.is_tensor(diffusion):  # probability flow: diffusion is the float 0.
            return x_mean + diffusion * np.sqrt(-dt) * z, x_mean
        return x_mean + diffusion[:, None, None, None] * np.sqrt(-dt) * z, x_mean

    def reverse_diffusion(x, t):
        f, G = rdisc(x, t)
        z = randn_like(x)
        x_mean = x - f
        return x_mean + G[:, None, None, None] * z, x_mean

    def ancestral_sampling(x, t):
        timestep = (t * (sde.N - 1) / sde.T).long()
        if isinstance(sde, RefVESDE):
            sigma = sde.discrete_sigmas[timestep]
            adjacent_sigma = torch.where(timestep == 0, torch.zeros_like(t), sde.discrete_sigmas[timestep - 1])
            score = score_fn(x, t)
            x_mean = x + score * (sigma ** 2 - adjacent_sigma ** 2)[:, None, None, None]
            std = torch.sqrt((adjacent_sigma ** 2 * (sigma ** 2 - adjacent_sigma ** 2)) / (sigma ** 2))
            return x_mean + std[:, None, None, None] * randn_like(x), x_mean
        beta = sde.discrete_betas[timestep]
        score = score_fn(x, t)
        x_mean = (x + beta[:, None, None, None] * score) / torch.sqrt(1. - beta)[:, None, None, None]
        return x_mean + torch.sqrt(beta)[:, None, None, None] * randn_like(x), x_mean

    return {"euler_maruyama": euler_maruyama, "reverse_diffusion": reverse_diffusion,
            "ancestral_sampling": ancestral_sampling, "none": lambda x, t: (x, x)}[name]


def ref_langevin(sde, score_fn, snr, n_steps, g):
    def update_fn(x, t):
        if isinstance(sde, (RefVPSDE, RefSubVPSDE)):
            timestep = (t * (sde.N - 1) / sde.T).long()
            alpha = sde.alphas[timestep]
        else:
            alpha = torch.ones_like(t)
        for _ in range(n_steps):
            grad = score_fn(x, t)
            noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
            grad_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
            noise_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
            step_size = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
            x_mean = x + step_size[:, None, None, None] * grad
            x = x_mean + torch.sqrt(step_size * 2)[:, None, None, None] * noise
        return x, x_mean

    return update_fn


def ref_pc_sampler(sde, x, score_fn, predictor, corrector, snr, n_steps, probability_flow, denoise, eps, g):
    """get_pc_sampler's pc_sampler from a given prior draw x."""
    pred = ref_predictor(predictor, sde, score_fn, probability_flow, g)
    corr = ref_langevin(sde, score_fn, snr, n_steps, g) if corrector == "langevin" else (lambda x, t: (x, x))
    timesteps = torch.linspace(sde.T, eps, sde.N, dtype=F64)
    for i in range(sde.N):
        vec_t = torch.ones(x.shape[0], dtype=F64) * timesteps[i]
        x, x_mean = corr(x, vec_t)
        x, x_mean = pred(x, vec_t)
    return x_mean if denoise else x


# ----------------------------------------------------------------------------- the comparison

def make_score_fn(kind):
    """A smooth, non-Gaussian stand-in for a network: the score of unit-variance data perturbed by
    the SDE (VE: variance 1 + sigma(t)^2, VP/sub-VP: about 1) plus a t-dependent ripple."""
    def score_fn(x, t):
        var = 1.0 + (0.01 * 5000.0 ** t) ** 2 if kind == "ve" else torch.ones_like(t)
        var = var[:, None, None, None]
        return -x / var + 0.3 * torch.sin(2.0 * x + t[:, None, None, None]) / var.sqrt()
    return score_fn


score_fn = make_score_fn("vp")


N = 41  # odd step count (indices (t (N-1)).long() round down off the levels); VP needs beta_max / N < 1


def _pair(kind: str):
    if kind == "ve":
        return VESDE(0.01, 50.0, N=1000), RefVESDE(0.01, 50., N=N), 1e-5
    if kind == "vp":
        return VPSDE(0.1, 20.0, N=1000), RefVPSDE(0.1, 20., N=N), 1e-3
    return SubVPSDE(0.1, 20.0, N=1000), RefSubVPSDE(0.1, 20., N=N), 1e-3


CASES = [(k, p, c) for k in ("ve", "vp", "subvp")
         for p in ("euler_maruyama", "reverse_diffusion", "ancestral", "probability_flow", "none")
         for c in ("langevin", "none")
         if not (p == "none" and c == "none") and not (k == "subvp" and p == "ancestral")]


@pytest.mark.parametrize("kind,predictor,corrector", CASES)
@pytest.mark.parametrize("denoise", [True, False])
def test_pc_matches_score_sde_transcription(kind, predictor, corrector, denoise):
    sde, ref, eps = _pair(kind)
    score_fn = make_score_fn(kind)
    x0 = torch.randn((3, 2, 4, 4), generator=torch.Generator().manual_seed(0), dtype=F64) * sde.prior_std
    ref_name = {"ancestral": "ancestral_sampling", "probability_flow": "reverse_diffusion"}.get(predictor, predictor)
    expected = ref_pc_sampler(ref, x0.clone(), score_fn, ref_name, corrector, 0.16, 2,
                              predictor == "probability_flow", denoise, eps, torch.Generator().manual_seed(7))
    out = predictor_corrector_sample(score_fn, sde, x0.clone(), steps=N, generator=torch.Generator().manual_seed(7),
                                     eps=eps, predictor=predictor, corrector=corrector, snr=0.16,
                                     n_corrector_steps=2, denoise=denoise, discretisation="score_sde")
    assert out.samples.dtype == F64
    assert torch.isfinite(expected).all()
    diff = (out.samples - expected).abs().max().item()
    assert diff < 1e-12, diff
    # the grid discretisation is a different chain: not the same numbers (the option matters)
    if predictor != "none":
        grid = predictor_corrector_sample(score_fn, sde, x0.clone(), steps=N, eps=eps, predictor=predictor,
                                          generator=torch.Generator().manual_seed(7), corrector=corrector,
                                          snr=0.16, n_corrector_steps=2, denoise=denoise)
        assert (grid.samples - expected).abs().max().item() > 1e-6


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
def test_euler_maruyama_sampler_is_the_em_predictor(kind):
    sde, ref, eps = _pair(kind)
    score_fn = make_score_fn(kind)
    x0 = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=F64) * sde.prior_std
    expected = ref_pc_sampler(ref, x0.clone(), score_fn, "euler_maruyama", "none", 0.16, 1, False, True, eps,
                              torch.Generator().manual_seed(3))
    for fn in (euler_maruyama_sample, milstein_sample):  # g does not depend on x: Milstein is EM
        out = fn(score_fn, sde, x0.clone(), steps=N, generator=torch.Generator().manual_seed(3), eps=eps,
                 discretisation="score_sde")
        assert (out.samples - expected).abs().max().item() < 1e-12


def test_grid_discretisation_unchanged_by_default():
    sde = VPSDE(0.1, 20.0, N=1000)
    x0 = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(2), dtype=F64)
    a = predictor_corrector_sample(score_fn, sde, x0, steps=5, generator=torch.Generator().manual_seed(4))
    b = predictor_corrector_sample(score_fn, sde, x0, steps=5, generator=torch.Generator().manual_seed(4),
                                   discretisation="grid")
    assert torch.equal(a.samples, b.samples)


def test_too_few_steps_for_the_discrete_betas_is_a_user_error():
    from repro.errors import UserError

    with pytest.raises(UserError, match="beta_max"):  # beta_max / N >= 1: sqrt(1 - beta) undefined
        predictor_corrector_sample(score_fn, VPSDE(0.1, 20.0), torch.zeros(1, 1, 2, 2), steps=20,
                                   discretisation="score_sde")


def test_unknown_discretisation_is_a_user_error():
    from repro.errors import UserError

    with pytest.raises(UserError, match="discretisation"):
        predictor_corrector_sample(score_fn, VESDE(), torch.zeros(1, 1, 2, 2), steps=2, discretisation="bogus")


@pytest.mark.parametrize("spec_id", ["sampler_table", "snr_study", "milstein_study"])
def test_score_sde_specs_use_its_discretisation_at_paper_and_grid_at_smoke(spec_id):
    from repro.experiments.score.sampling import SamplerSetting
    from repro.experiments import resolve_spec

    assert resolve_spec(spec_id, "paper").spec.fixed["discretisation"] == "score_sde"
    assert resolve_spec(spec_id, "smoke").spec.fixed["discretisation"] == "grid"
    assert "score_sde" in SamplerSetting("pc", 5, discretisation="score_sde").label()


def test_sampler_table_cells_carry_the_discretisation_to_the_sampler():
    from repro.experiments.score.sampler_comparison import setting_for
    from repro.experiments import resolve_spec

    fixed = resolve_spec("sampler_table", "paper").spec.fixed
    s = setting_for({"sde": "vp", "predictor": "ancestral", "sampler": "PC1000"}, fixed)
    assert (s.discretisation, s.steps, s.predictor, s.corrector) == ("score_sde", 1000, "ancestral", "langevin")


def test_reports_state_discretisation_and_fid_inputs():
    import pandas as pd

    from repro.experiments.score.report_protocol import protocol_notes

    df = pd.DataFrame([{"discretisation": "score_sde", "fid_inputs": "uint8", "metric": "fid"},
                       {"discretisation": None, "fid_inputs": "uint8", "metric": "fid"}])
    notes = protocol_notes(df)
    assert notes[0].startswith("Discretisation: score_sde = score_sde_pytorch's get_pc_sampler")
    assert notes[1].startswith("Images into fid: uint8 = 8-bit")


def test_dg_report_states_the_frechet_inputs():
    import pandas as pd

    from repro.experiments.dg.report import feature_notes as _feature_notes
    from repro.metrics.inception import FID_INPUTS

    proto = "pytorch-fid InceptionV3 pool3 (2048) on " + FID_INPUTS["uint8"]
    df = pd.DataFrame([{"feature_extractors": {"fid": proto}}, {"feature_extractors": None}])
    assert _feature_notes(df) == [f"Features of fid: {proto}."]
    assert "8-bit" in _feature_notes(df)[0]
