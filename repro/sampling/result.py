"""What every sampler returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampleResult:
    """samples: the final batch; nfe: score-function evaluations (a score plus its guidance term
    at one point counts once); trajectory: the state after each step when asked for, else None."""

    samples: torch.Tensor
    nfe: int
    trajectory: list | None = None
