"""Loading the score SDE release's checkpoints (score_sde_pytorch utils.save_checkpoint):
`checkpoint_N.pth` = {'optimizer', 'model', 'ema', 'step'}, 'model' the DataParallel state dict
(keys 'module.'), 'ema' = {'decay', 'num_updates', 'shadow_params'} with one shadow tensor per
trainable parameter in `parameters()` order (models/ema.py). Sampling uses the EMA weights, as
the release's evaluation does (ema.copy_to). Read with torch.load(weights_only=True)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from repro.errors import UserError


def read_checkpoint(path) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"score SDE checkpoint not found: {p} (put the released checkpoint_N.pth there)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError, EOFError, ...)
        raise UserError(f"{p} is not a weights-only torch checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], dict):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{p} is not a score SDE checkpoint: expected keys model, ema, optimizer, step; found {found}")
    return ckpt


def load_score_sde_checkpoint(net: nn.Module, path, weights: str = "ema") -> dict:
    """Load checkpoint_N.pth into `net` (a ScoreSdeScoreNet: keys 'module.*'), strictly; with
    weights='ema' the EMA shadow parameters then replace the trainable parameters. Returns
    {'step', 'ema_decay', 'weights'}."""
    return apply_score_sde_checkpoint(net, read_checkpoint(path), weights, what=str(path))


def apply_score_sde_checkpoint(net: nn.Module, ckpt: dict, weights: str = "ema", what: str = "checkpoint") -> dict:
    """`load_score_sde_checkpoint` on a checkpoint dict already read."""
    path = what
    if weights not in ("ema", "model"):
        raise UserError(f"score SDE checkpoint weights must be ema or model, got {weights!r}")
    state = ckpt["model"]
    if state and not all(k.startswith("module.") for k in state):  # saved without DataParallel
        state = {f"module.{k}": v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise UserError(f"{path} does not match the configured score SDE network: "
                        f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    info = {"step": int(ckpt["step"]) if "step" in ckpt else None, "weights": weights, "ema_decay": None}
    if weights == "ema":
        ema = ckpt.get("ema")
        if not isinstance(ema, dict) or "shadow_params" not in ema:
            raise UserError(f"{path} has no EMA weights ('ema' with 'shadow_params'); use weights=model")
        params = [p for p in net.parameters() if p.requires_grad]
        shadow = list(ema["shadow_params"])
        if len(shadow) != len(params) or any(s.shape != p.shape for s, p in zip(shadow, params)):
            raise UserError(f"{path}: {len(shadow)} EMA tensors do not line up with the network's "
                            f"{len(params)} trainable parameters")
        with torch.no_grad():
            for s, p in zip(shadow, params):
                p.copy_(s)
        info["ema_decay"] = float(ema["decay"]) if "decay" in ema else None
    return info
