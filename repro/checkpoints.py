"""Every weights file a run names, opened and checked before any work starts (preflight).

A state dict is read with torch.load(weights_only=True) and compared, key by key and shape by
shape, with the network it will be loaded into, built on the meta device (no memory, no
compute). An NVlabs/edm pickle is unpickled (which runs code from the file, so only when the
user says they trust it: REPRO_TRUST_PICKLE=1) and checked for a preconditioned network of the
model's resolution and channels. An empty, truncated, foreign or wrong-architecture file is one
UserError line naming the setting, the file and the first difference, before hours of training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from repro.errors import UserError
from repro.metrics.inception import fid_inception_network
from repro.nets.official import load_edm_network

TRUST_PICKLE_ENV = "REPRO_TRUST_PICKLE"


@dataclass(frozen=True)
class WeightsFile:
    """One file a model config names: the setting that names it, the path, and how to check it."""

    setting: str                     # e.g. "net.adm_classifier"
    path: Path
    check: Callable[[Path], None]    # raises UserError (the message without the setting)
    pickle: bool = False             # loading it runs code: needs REPRO_TRUST_PICKLE=1


# ----------------------------------------------------------------------------- state dicts

def expected_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """The network `build` makes, with its tensors on the meta device (shapes only)."""
    with torch.device("meta"):
        return build()


def compare_state_dict(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                       arch: str) -> None:
    """UserError naming the first missing key, unexpected key or shape difference, with counts.
    BatchNorm's num_batches_tracked may be missing (files written before PyTorch 0.4.1 lack it)."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {k!r}: file {tuple(state[k].shape)}, "
                     f"network {expected[k]}")
    raise UserError(f"does not match {arch}: {'; '.join(parts)}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights-only state dict (a 'state_dict' wrapper and DDP's 'module.' prefix accepted)."""
    if path.stat().st_size == 0:
        raise UserError("is empty (0 bytes); an interrupted copy? fetch the file again")
    try:
        state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError of a truncated zip, EOFError ...)
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise UserError(f"is not a readable weights-only torch file ({type(e).__name__}: {first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"does not hold a state dict of tensors (found {type(state).__name__})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def state_dict_check(build: Callable[[], nn.Module], arch: str) -> Callable[[Path], None]:
    """A check: the file is a state dict with exactly the keys and shapes of `build()`'s network."""
    def check(path: Path) -> None:
        compare_state_dict(read_state_dict(path), expected_shapes(on_meta(build)), arch)
    return check


# ----------------------------------------------------------------------------- pickles

def pickle_trusted() -> bool:
    return os.environ.get(TRUST_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def require_pickle_trust(path: Path, setting: str) -> None:
    if not pickle_trusted():
        raise UserError(f"{setting} {path} is a pickle, and loading a pickle runs code from the file: "
                        f"set {TRUST_PICKLE_ENV}=1 if you trust it (e.g. NVlabs' own snapshot)")


def edm_pickle_check(key: str, resolution: int, channels: int) -> Callable[[Path], None]:
    """A check: an NVlabs/edm snapshot whose `key` entry is a *Precond network of this geometry."""
    def check(path: Path) -> None:
        if path.stat().st_size == 0:
            raise UserError("is empty (0 bytes); an interrupted copy? fetch the file again")
        try:
            net = load_edm_network(path, key=key)
        except UserError as e:
            raise UserError(str(e).replace(str(path), "").strip(" :")) from None
        name = type(net).__name__
        if not name.endswith("Precond"):
            raise UserError(f"holds a {name}, not one of NVlabs/edm's preconditioned networks "
                            f"(EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond)")
        got = (getattr(net, "img_resolution", None), getattr(net, "img_channels", None))
        if got != (resolution, channels):
            raise UserError(f"is a {name} for {got[0]}x{got[0]} images with {got[1]} channels; the model's "
                            f"dataset has {resolution}x{resolution} with {channels}")
    return check


# ----------------------------------------------------------------------------- checking a file

_passed: set[tuple] = set()   # (file, its mtime and size, what it was checked against)


def check_file(wf: WeightsFile, owner: str, key: tuple = ()) -> None:
    """Run one check (once per file version and expectation in this process)."""
    if not wf.path.is_file():
        raise UserError(f"{owner}: {wf.setting} {wf.path} not found; put the file there or name it with "
                        f"--set models.<role>.{wf.setting}=PATH")
    st = wf.path.stat()
    cache_key = (str(wf.path.resolve()), st.st_mtime_ns, st.st_size, (owner, wf.setting, *key))
    if wf.pickle:
        require_pickle_trust(wf.path, f"{owner}: {wf.setting}")
    if cache_key in _passed:   # preflight runs more than once per command
        return
    try:
        wf.check(wf.path)
    except UserError as e:
        raise UserError(f"{owner}: {wf.setting} {wf.path} {e}") from None
    _passed.add(cache_key)


def validate_inception_weights(path: Path) -> None:
    """pytorch-fid's FID Inception weights: the keys and shapes of its FID InceptionV3."""
    wf = WeightsFile("fid weights", Path(path), state_dict_check(
        fid_inception_network, "pytorch-fid's FID Inception (pt_inception-2015-12-05-6726825d.pth)"))
    check_file(wf, "fid")
