"""EDM's sigma range clamped to the network's own (NVlabs/edm generate.py:
sigma_min = max(sigma_min, net.sigma_min), sigma_max = min(sigma_max, net.sigma_max))."""
from __future__ import annotations

import math

import pytest
import torch

from repro.sampling.edm import edm_sample, edm_time_steps, network_sigma_range


class GaussianDenoiser(torch.nn.Module):
    """The exact denoiser of N(0, I) data, D = x / (1 + sigma^2), with a declared sigma range."""

    def __init__(self, sigma_min=None, sigma_max=None):
        super().__init__()
        if sigma_min is not None:
            self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def forward(self, x, sigma):
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)


def test_range_is_clamped_like_generate_py():
    assert network_sigma_range(GaussianDenoiser(0.02, 100.0), 0.002, 80.0) == (0.02, 80.0)   # VEPrecond
    assert network_sigma_range(GaussianDenoiser(0.006, 70.0), 0.002, 80.0) == (0.006, 70.0)
    assert network_sigma_range(GaussianDenoiser(0.0, math.inf), 0.002, 80.0) == (0.002, 80.0)  # EDMPrecond
    assert network_sigma_range(GaussianDenoiser(), 0.002, 80.0) == (0.002, 80.0)              # no range
    with pytest.raises(ValueError):
        network_sigma_range(GaussianDenoiser(90.0, 100.0), 0.002, 80.0)


def test_sampler_uses_the_clamped_steps():
    latents = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    net = GaussianDenoiser(0.02, 100.0)
    out = edm_sample(net, latents, steps=6, solver="heun")
    expected = edm_time_steps(6, 0.02, 80.0)
    assert torch.equal(out.sigmas, expected)
    assert out.sigmas[5].item() == pytest.approx(0.02) and out.sigmas[0].item() == pytest.approx(80.0)
    same = edm_sample(net, latents, steps=6, solver="heun", sigma_min=0.02, clamp_to_net=False)
    assert torch.equal(out.samples, same.samples)
    unclamped = edm_sample(net, latents, steps=6, solver="heun", clamp_to_net=False)
    assert unclamped.sigmas[5].item() == pytest.approx(0.002)
    assert not torch.equal(out.samples, unclamped.samples)
