"""Samplers: pure functions (score_fn, sde or schedule, x_init, *, steps, generator, options)
-> SampleResult(samples, nfe, trajectory), one module per sampler family."""
from __future__ import annotations

from repro.sampling.result import SampleResult

__all__ = ["SampleResult"]
