"""The thesis's noise-conditional segmenter p_theta(y | x(t), noise level) (000 thesis Sec. 5.2, 5.4.3).

Training images are perturbed with the VE kernel x(t) = x(0) + sigma(t) z (Eq. 5.1, 5.2),
min-max normalised per sample to [0, 1] (Eq. 5.3) and given the noise level as a 4th
input channel (Sec. 5.2.2): log sigma(t) or t. t is drawn uniformly from [0, t_max]
(t_max = 0.8: the network is not trained where it only guesses). Loss: cross-entropy (Eq. 5.4).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.diffusion.schedules import estimate_sigma_max, ve_sigma
from repro.guidance.segmentation import normalize_per_sample  # thesis Eq. 5.3, shared with the guidance
from repro.metrics.segmentation import SegmentationScores
from repro.nets.unet import NoiseConditionalUNet
from repro.rng import rand, randn
from repro.specs import ResolvedModel
from repro.train import TrainConfig, train
from repro.trainers import parse_settings


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_channels: int = Field(64, ge=1)
    depth: int = Field(4, ge=1, le=7)
    norm: Literal["batch", "group", "none"] = "group"
    noise_encoding: Literal["log_sigma", "t"] = "log_sigma"


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(600, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    t_max: float = Field(0.8, gt=0, le=1)
    sigma_min: float = Field(0.01, gt=0)
    sigma_max: float | None = Field(None, gt=0, description="None: estimate from random pairs")
    sigma_max_pairs: int = Field(20_000_000, ge=1)
    amp: bool = False
    ema_decay: float | None = None
    grad_clip: float | None = None
    ckpt_every: int = Field(0, ge=0)
    eval_images: int = Field(64, ge=1, description="held-out images scored after every epoch")
    eval_split: str = "val"


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def noise_level(t: torch.Tensor, encoding: str, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The 4th-channel value: log sigma(t) or t itself (thesis Sec. 5.2.2)."""
    if encoding == "log_sigma":
        return torch.log(ve_sigma(t, sigma_min, sigma_max))
    return t


def segmenter_input(x0: torch.Tensor, t: torch.Tensor, sigma_min: float, sigma_max: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Perturb with the VE kernel (Eq. 5.1, 5.2) and normalise (Eq. 5.3)."""
    z = randn(x0.shape, generator, x0.device, torch.float32).to(x0.dtype)
    sigma = ve_sigma(t, sigma_min, sigma_max).to(x0.dtype).view(-1, 1, 1, 1)
    return normalize_per_sample(x0 + sigma * z)


def build_net(resolved: ResolvedModel, meta: dict[str, Any] | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    return NoiseConditionalUNet(in_channels=info.channels, num_classes=info.num_classes,
                                base_channels=net_cfg.base_channels, depth=net_cfg.depth,
                                norm=net_cfg.norm, noise_channel=True)


@torch.no_grad()
def predict(net: torch.nn.Module, images: torch.Tensor, t: float, *, encoding: str, sigma_min: float,
            sigma_max: float, generator: torch.Generator, batch_size: int = 64) -> torch.Tensor:
    """Argmax labels for images noised to time t (one noise draw per image from `generator`)."""
    device = next(net.parameters()).device
    preds = []
    for i in range(0, images.shape[0], batch_size):
        x0 = images[i: i + batch_size].to(device)
        tt = torch.full((x0.shape[0],), float(t), device=device)
        x = segmenter_input(x0, tt, sigma_min, sigma_max, generator)
        logits = net(x, noise_level(tt, encoding, sigma_min, sigma_max))
        preds.append(logits.argmax(dim=1).cpu())
    return torch.cat(preds)


def score_at(net, images, labels, t, *, encoding, sigma_min, sigma_max, generator, num_classes,
             ignore_index) -> dict[str, float]:
    pred = predict(net, images, t, encoding=encoding, sigma_min=sigma_min, sigma_max=sigma_max,
                   generator=generator)
    scores = SegmentationScores(num_classes, ignore_index)
    scores.update(pred, labels)
    return scores.compute()


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    """Train the segmenter; returns (net, meta). Resumes from out_dir/checkpoint.pt if present."""
    net_cfg, ts = parse(resolved)
    cfg = resolved.config
    ds_cfg = cfg.dataset
    info = dataset_info(ds_cfg.name)
    train_set = load_dataset(ds_cfg.name, split=ds_cfg.split, resolution=ds_cfg.resolution, root=ds_cfg.root,
                             n=ds_cfg.n_train, seed=ds_cfg.seed)
    eval_set = load_dataset(ds_cfg.name, split=ts.eval_split, resolution=ds_cfg.resolution, root=ds_cfg.root,
                            n=ts.eval_images, seed=ds_cfg.seed)
    eval_images, eval_labels = stack(eval_set, limit=ts.eval_images)

    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    if ts.sigma_max is None:
        train_images, _ = stack(train_set)
        sigma_max = estimate_sigma_max(train_images, ts.sigma_max_pairs, g)
        del train_images
    else:
        sigma_max = ts.sigma_max
    sigma_seconds = time.perf_counter() - t0
    sigma_min, t_max, enc = ts.sigma_min, ts.t_max, net_cfg.noise_encoding
    if run is not None:
        run.log_metrics({"sigma_max": sigma_max})

    def loss_fn(model, batch, generator):
        x0, y = batch["image"], batch["label"]
        t = rand((x0.shape[0],), generator, x0.device) * t_max  # t ~ U[0, t_max]
        x = segmenter_input(x0, t, sigma_min, sigma_max, generator)
        logits = model(x, noise_level(t, enc, sigma_min, sigma_max))
        ignore = info.ignore_index if info.ignore_index is not None else -100
        return F.cross_entropy(logits.float(), y, ignore_index=ignore)  # thesis Eq. 5.4

    # Validation after every epoch: held-out images at t spread evenly over [0, t_max],
    # the same noise each epoch, so the curve of mIoU over epochs is comparable (Sec. 5.2.2's "peak IoU").
    eval_t = torch.linspace(0.0, t_max, eval_images.shape[0])

    def on_epoch_end(epoch: int, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        ge = torch.Generator().manual_seed(cfg.seed + 1)
        scores = SegmentationScores(info.num_classes, info.ignore_index)
        with torch.no_grad():
            dev = next(model.parameters()).device
            for i in range(0, eval_images.shape[0], 64):
                x0 = eval_images[i: i + 64].to(dev)
                tt = eval_t[i: i + 64].to(dev)
                x = segmenter_input(x0, tt, sigma_min, sigma_max, ge)
                pred = model(x, noise_level(tt, enc, sigma_min, sigma_max)).argmax(1).cpu()
                scores.update(pred, eval_labels[i: i + 64])
        model.train(was_training)
        s = scores.compute()
        return {"val_miou": s["miou"], "val_miou_dataset": s["miou_dataset"], "val_pixel_acc": s["pixel_acc"]}

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)

    net = build_net(resolved).to(device)
    tcfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr, amp=ts.amp,
                       ema_decay=ts.ema_decay, grad_clip=ts.grad_clip, ckpt_every=ts.ckpt_every,
                       seed=cfg.seed, device=str(device))
    result = train(net, loss_fn, train_set, tcfg, out_dir, on_epoch_end=on_epoch_end,
                   log_metrics=log_metrics, progress=progress)
    final = result.ema if result.ema is not None else result.model
    history = result.history
    peak = max((h.get("val_miou", float("nan")) for h in history), default=float("nan"))
    meta = {
        "sigma_min": sigma_min, "sigma_max": sigma_max, "sigma_max_pairs": ts.sigma_max_pairs,
        "sigma_max_seconds": sigma_seconds, "t_max": t_max, "noise_encoding": enc,
        "num_classes": info.num_classes, "ignore_index": info.ignore_index,
        "n_train": len(train_set), "history": history, "steps": result.steps,
        "train_seconds": result.seconds, "probes": result.probes, "peak_val_miou": peak,
        "parameters": sum(p.numel() for p in final.parameters()),
    }
    if run is not None:
        run.log_metrics({"peak_val_miou": peak if not math.isnan(peak) else -1.0,
                         "train_seconds": result.seconds})
    return final, meta


def validate(resolved: ResolvedModel) -> None:
    parse(resolved)
