"""Loaders for user-supplied official checkpoints (nothing is downloaded here).

- NVlabs/edm network snapshots (e.g. `edm-cifar10-32x32-uncond-vp.pkl`): a pickle holding a
  dict whose 'ema' entry is the preconditioned network, callable as `net(x, sigma,
  class_labels)`, i.e. already a denoiser D for `edm_sample`. Unpickling imports the authors'
  `torch_utils` and `dnnlib` packages, so a checkout of NVlabs/edm must be on PYTHONPATH.
  A pickle runs code from its file: load only snapshots you trust.
- Discriminator-guidance checkpoints (alsdudrla10/DG: `discriminator_N.pt`, the head, and ADM's
  pretrained `32x32_classifier.pt`): torch state dicts of ADM's encoder U-Net
  (repro.nets.adm), loaded with torch.load(weights_only=True) and strict key matching.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from repro.errors import UserError


def _existing(path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what} not found: {p} (put the file there or pass its path)")
    return p


def load_edm_network(path, key: str = "ema", device: str | torch.device = "cpu") -> nn.Module:
    """The network stored under `key` in an NVlabs/edm snapshot pickle, in eval mode, frozen."""
    p = _existing(path, "EDM network pickle")
    try:
        with open(p, "rb") as f:
            data = pickle.load(f)
    except ModuleNotFoundError as e:
        raise UserError(
            f"cannot unpickle {p}: module {e.name!r} is missing; the EDM pickles need the authors' "
            f"torch_utils and dnnlib packages: put a checkout of the NVlabs/edm repository on "
            f"PYTHONPATH") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise UserError(f"{p} is not a readable EDM network pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or key not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{p} has no {key!r} entry (found {found}); expected an NVlabs/edm snapshot")
    net = data[key]
    if not isinstance(net, nn.Module):
        raise UserError(f"{p}[{key!r}] is a {type(net).__name__}, not a torch network")
    return net.eval().requires_grad_(False).to(device)


def load_state_dict_file(path, device: str | torch.device = "cpu",
                         what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A torch state dict read with weights_only=True; a DDP 'module.' prefix is stripped."""
    p = _existing(path, what)
    try:
        state = torch.load(p, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, ...)
        raise UserError(f"{p} is not a weights-only torch state dict ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{p} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_discriminator_checkpoint(module: nn.Module, path, device: str | torch.device = "cpu",
                                  strict: bool = True) -> nn.Module:
    """Load a DG discriminator (or ADM classifier) state dict into `module`; returns it."""
    state = load_state_dict_file(path, device, what="discriminator checkpoint")
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UserError(f"{path} does not match the {type(module).__name__} architecture: {first}") from None
    return module.to(device)
