"""Classifier-free guidance (001 paper Sec. 2.4; Ho & Salimans 2022, Eq. 6).

Two conventions for the same line through (eps_u, eps_c), kept apart because the number a user
types means different things in each:
- `ho_salimans`: eps = (1 + w) eps_c - w eps_u; w = 0 is purely conditional, w = -1 unconditional;
- `lerp`: the authors' code, torch.lerp(eps_u, eps_c, s) = eps_u + s (eps_c - eps_u); s = 1 is
  conditional, s = 0 unconditional; s = 1 + w gives the same prediction (they sampled with s = 3,
  i.e. w = 2).
The guided prediction is one network pass over the batch [x; x] of size 2B: the first B rows see
the mask, the other B rows none (the net's unconditional branch), so a guided step costs one
forward of size 2B, not two forwards of size B.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from repro.errors import UserError

CONVENTIONS = ("ho_salimans", "lerp")


def guided_eps_ho_salimans(eps_c: torch.Tensor, eps_u: torch.Tensor, w: float) -> torch.Tensor:
    """(1 + w) eps_c - w eps_u (Ho & Salimans Eq. 6)."""
    return (1.0 + w) * eps_c - w * eps_u


def guided_eps_lerp(eps_c: torch.Tensor, eps_u: torch.Tensor, s: float) -> torch.Tensor:
    """torch.lerp(eps_u, eps_c, s) (the authors' sampling code)."""
    return torch.lerp(eps_u, eps_c, float(s))


@dataclass(frozen=True)
class Guidance:
    """A guidance weight in a named convention."""

    weight: float
    convention: str = "ho_salimans"

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise UserError(f"unknown guidance convention {self.convention!r}: use one of {', '.join(CONVENTIONS)}")

    @property
    def w(self) -> float:
        """The weight in Ho & Salimans' units."""
        return self.weight if self.convention == "ho_salimans" else self.weight - 1.0

    @property
    def s(self) -> float:
        """The weight in the lerp units of the authors' code."""
        return self.weight if self.convention == "lerp" else self.weight + 1.0

    def combine(self, eps_c: torch.Tensor, eps_u: torch.Tensor) -> torch.Tensor:
        if self.convention == "ho_salimans":
            return guided_eps_ho_salimans(eps_c, eps_u, self.weight)
        return guided_eps_lerp(eps_c, eps_u, self.weight)

    @property
    def purely_conditional(self) -> bool:
        return self.w == 0.0

    def record(self) -> dict:
        return {"guidance_convention": self.convention, "guidance_weight": self.weight,
                "guidance_w_ho_salimans": self.w, "guidance_s_lerp": self.s}


# net(x, t, mask) -> eps; mask [B', K, H, W] one-hot for the first B' rows of x (the rest: no mask) or None
MaskNet = Callable[..., torch.Tensor]


def guided_eps_fn(net: MaskNet, mask: torch.Tensor | None, guidance: Guidance | None) -> Callable:
    """eps_fn(x, t) for the DDPM sampler:
    - mask None: unconditional, one pass of size B with no mask;
    - guidance None or purely conditional (w = 0): one conditional pass of size B;
    - otherwise: one batched pass of size 2B (conditional rows first), combined per `guidance`."""
    if mask is None:
        return lambda x, t: net(x, t, None)
    if guidance is None or guidance.purely_conditional:
        return lambda x, t: net(x, t, mask)

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = net(torch.cat([x, x]), torch.cat([t, t]), mask)
        return guidance.combine(out[:b], out[b:])

    return eps_fn


def drop_masks(batch: int, p: float, mode: str, generator: torch.Generator, device) -> torch.Tensor:
    """Which rows train without their mask (001 Sec. 2.4: "randomly assigning c to the unconditional
    class identifier"): bool [batch]. mode `per_sample`: each row with probability p (Ho & Salimans);
    `per_batch`: the whole batch together with probability p (the authors' code)."""
    if not 0.0 <= p <= 1.0:
        raise UserError(f"mask drop probability must lie in [0, 1], got {p}")
    gdev = generator.device if generator is not None else device
    if mode == "per_sample":
        u = torch.rand((batch,), generator=generator, device=gdev)
    elif mode == "per_batch":
        u = torch.rand((1,), generator=generator, device=gdev).expand(batch)
    else:
        raise UserError(f"unknown mask drop mode {mode!r}: use per_sample or per_batch")
    return (u < p).to(device)
