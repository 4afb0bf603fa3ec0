"""Checkpoint + exact resume of the training loop: what a checkpoint holds (the run's state, the
weights, the optimizer, the scaler and every random stream) and how a run picks up from one."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from repro.errors import UserError
from repro.train.config import TrainConfig
from repro.train.distributed import DistInfo, all_gather_tensor
from repro.train.ema import EMA
from repro.rng import derive_seed

CHECKPOINT_FORMAT = 1


@dataclass
class RunState:
    """Where the run stands; everything here goes into the checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


def rng_states(noise_gen: torch.Generator, device: torch.device) -> dict:
    # Gathered from every rank so that rank 0's single file can restore all of them.
    states = {
        "noise": all_gather_tensor(noise_gen.get_state()),
        "torch_cpu": all_gather_tensor(torch.get_rng_state()),
        "torch_cuda": None,
    }
    if device.type == "cuda":
        states["torch_cuda"] = all_gather_tensor(torch.cuda.get_rng_state(device))
    return states


def checkpoint_payload(cfg: TrainConfig, info: DistInfo, n_items: int, model: nn.Module, ema: EMA | None,
                       optimizer, scaler: torch.amp.GradScaler, state: RunState, rng: dict) -> dict:
    """Everything a checkpoint holds; `rng` from rng_states (gathered from every rank)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": {"seed": cfg.seed, "batch_size": cfg.batch_size, "world_size": info.world_size,
                   "dataset_size": n_items},
        "device_type": info.device.type,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
        "epoch_loss_sum": state.epoch_loss_sum, "epoch_loss_count": state.epoch_loss_count,
        "epoch_seconds": state.epoch_seconds,
        "history": state.history,
        "rng": rng,
    }


def restore_run(ckpt: dict, cfg: TrainConfig, info: DistInfo, n_items: int, model: nn.Module, ema: EMA | None,
                optimizer, scaler: torch.amp.GradScaler, noise_gen: torch.Generator, path: Path) -> RunState:
    """Load a checkpoint into the run's objects and random streams; returns where the run stands."""
    saved = ckpt.get("config", {})
    now = {"seed": cfg.seed, "batch_size": cfg.batch_size, "world_size": info.world_size, "dataset_size": n_items}
    for key, value in now.items():
        if saved.get(key) != value:
            raise UserError(f"checkpoint {path} was written with {key}={saved.get(key)}, this run has {key}={value}; "
                            "use the same setting or another output folder")
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        if ckpt.get("ema") is None:
            raise UserError(f"checkpoint {path} has no EMA weights but ema_decay is set; use ema_decay=None or another output folder")
        ema.load_state_dict(ckpt["ema"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"]
    if ckpt.get("device_type") == info.device.type:
        noise_gen.set_state(rng["noise"][info.rank])
        torch.set_rng_state(rng["torch_cpu"][info.rank])
        if info.device.type == "cuda" and rng.get("torch_cuda") is not None:
            torch.cuda.set_rng_state(rng["torch_cuda"][info.rank], info.device)
    else:
        warnings.warn(f"resuming a {ckpt.get('device_type')} checkpoint on {info.device.type}: random streams are "
                      "re-seeded, so the run will not match an uninterrupted one bit for bit", stacklevel=3)
        noise_gen.manual_seed(derive_seed(cfg.seed, "noise", info.rank, ckpt["step"]))
        torch.manual_seed(derive_seed(cfg.seed, "torch", info.rank, ckpt["step"]))
    return RunState(step=int(ckpt["step"]), epoch=int(ckpt["epoch"]), batch_in_epoch=int(ckpt["batch_in_epoch"]),
                    epoch_loss_sum=float(ckpt["epoch_loss_sum"]), epoch_loss_count=int(ckpt["epoch_loss_count"]),
                    epoch_seconds=float(ckpt["epoch_seconds"]), history=[dict(h) for h in ckpt["history"]])
