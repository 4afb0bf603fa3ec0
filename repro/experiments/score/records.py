"""What the score family's cells record beyond their values, shared by its runners without pulling
in their sampling code: which reading of the thesis's sampler produced a cell, and the compact
per-unit lists the claims engine resamples (repro.claims; DESIGN.md, issue 26)."""
from __future__ import annotations

# Which reading of the thesis's sampler a predictor-corrector cell follows (snr_sweep,
# class_conditional). Thesis Alg. 3 (Sec. 4.4.5, lines 655-670 of 000) is one Langevin step then an
# Euler-Maruyama step, "the one we use for all experiments" (line 647); the authors' public code
# (score_sde, which the thesis ported, Sec. 5.1 line 713) pairs the Langevin corrector with the
# reverse-diffusion predictor for the VE SDE. Both are `fixed.predictor` values; every cell records which
# (`extra["predictor_reading"]`).
PREDICTOR_READINGS = {
    "euler_maruyama": "thesis Alg. 3 (Euler-Maruyama predictor)",
    "reverse_diffusion": "authors' code (reverse-diffusion predictor)",
}


def predictor_reading(predictor: str) -> str:
    """The reading of the thesis's PC sampler that `predictor` gives (PREDICTOR_READINGS); another
    predictor is neither reading and says so."""
    return PREDICTOR_READINGS.get(predictor, f"neither the thesis's Alg. 3 nor the authors' code ({predictor} predictor)")
