"""Samplers: pure functions (score_fn, sde or schedule, x_init, *, steps, generator, options)
-> SampleResult(samples, nfe, trajectory). Sampler functions are imported lazily so that
`import repro.sampling` stays cheap."""
from __future__ import annotations

import importlib

from repro.sampling.result import SampleResult

_LAZY = {
    "predictor_corrector_sample": "repro.sampling.predictor_corrector",
    "euler_maruyama_sample": "repro.sampling.sde_solvers",
    "milstein_sample": "repro.sampling.sde_solvers",
    "probability_flow_ode_sample": "repro.sampling.ode",
    "annealed_langevin_sample": "repro.sampling.langevin",
    "ancestral_sample": "repro.sampling.ancestral",
    "edm_sample": "repro.sampling.edm",
}

__all__ = ["SampleResult", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repro.sampling' has no attribute {name!r}")
