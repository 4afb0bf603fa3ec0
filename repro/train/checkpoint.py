"""Atomic checkpoint files, loaded with torch.load(weights_only=True) (DESIGN.md, 'Errors and input').

A checkpoint holds only tensors and primitive containers (dict, list, tuple, str, int,
float, bool, None), so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path

import torch

from repro.atomic import atomic_write
from repro.errors import UserError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, then os.replace."""
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


def load_checkpoint(path: str | Path) -> dict | None:
    """The state saved at `path` (tensors on the CPU), or None when there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or unsafe file
        raise UserError(f"cannot load checkpoint {path}: {type(e).__name__}; delete it to start over") from e
