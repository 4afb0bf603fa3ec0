"""Mixed precision for the training loop: which autocast dtype on which device."""

from __future__ import annotations

import contextlib

import torch

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_dtype_for(device: torch.device, name: str | None = None) -> torch.dtype:
    """The autocast dtype: `name` if given, else fp16 on CUDA and bf16 on the CPU."""
    if name is not None:
        return AMP_DTYPES[name]
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype | None = None):
    """fp16 autocast on CUDA, bf16 on the CPU (or `dtype`); a no-op context when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype or amp_dtype_for(device))
