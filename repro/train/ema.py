"""Exponential moving average of a model's weights (003 report, Sec. 1: EMA of the score net)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel (and DataParallel) keep the real network in `.module`.
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class EMA:
    """An averaged copy of a model: after each optimizer step, e <- d * e + (1 - d) * p.

    After n updates from e_0 = p_0 this is e_n = d^n p_0 + (1 - d) sum_k d^(n-k) p_k.
    Buffers (e.g. BatchNorm running stats) are copied, not averaged. `.module` is the
    averaged network, kept in eval mode with gradients off.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.module = copy.deepcopy(_unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of `model` (DDP-wrapped or not) into the average."""
        src = _unwrap(model)
        for e, p in zip(self.module.parameters(), src.parameters(), strict=True):
            e.mul_(self.decay).add_(p.detach().to(e.dtype), alpha=1.0 - self.decay)
        for e, b in zip(self.module.buffers(), src.buffers(), strict=True):
            e.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])
