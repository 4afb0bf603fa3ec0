"""Model kind `mask_ddpm`: the 001 paper's mask-guided DDPM with classifier-free guidance (Sec. 2.3, 2.4, 4).

L_simple (Eq. 2.2, Alg. 1) on images scaled to [-1, 1] (the appendix's sampler maps (x + 1) / 2 back)
with the one-hot mask (19 classes, Sec. 4.2) dropped with probability p (Sec. 2.4; p = 0.1 in the
authors' code, which drops the whole batch's masks; per sample is Ho & Salimans' choice: both are
settings, recorded in the model's meta; p = 1 trains the paper's unconditional baseline, Ch. 4, which
never sees a mask). AdamW, lr 3e-4, batch 64, EMA (Sec. 4.3.2); trained with
the suite's training loop (repro.train.loop: checkpoint + exact resume). The stored weights are the
EMA ones ("proved to be more stable then the basic model").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.data.colorbook import one_hot
from repro.diffusion.ddpm import DDPMSchedule, l_simple
from repro.errors import UserError
from repro.guidance.classifier_free import drop_masks
from repro.nets.bdd_unet import MaskGuidedUNet, count_parameters
from repro.specs import ResolvedModel
from repro.train import TrainConfig, train
from repro.trainers import parse_settings


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: int = Field(128, ge=1, description="first width (Sec. 4.2: 128); the layout counts 88,842,371 at 128")
    emb_dim: int = Field(256, ge=2, description="sinusoidal step embedding size")
    schedule: Literal["paper_cosine_beta", "linear", "nichol_cosine"] = "paper_cosine_beta"
    T: int = Field(1000, ge=2, description="diffusion steps (Sec. 2.3.1: 1000)")
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1300, ge=0, description="Sec. 4.3.2: 1300 epochs")
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1, description="Sec. 4.3.2: 64")
    lr: float = Field(3e-4, gt=0, description="Sec. 4.3.2: AdamW, 0.0003")
    ema_decay: float | None = Field(0.995, ge=0, le=1, description="EMA (Sec. 4.3.2; the decay is not stated)")
    grad_clip: float | None = Field(None, gt=0, description="none in the appendix's training listing")
    p_uncond: float = Field(0.1, ge=0, le=1, description="mask drop probability (Sec. 2.4); 1: an unconditional "
                            "model that never sees a mask (the baseline of Ch. 4)")
    drop_mode: Literal["per_sample", "per_batch"] = "per_sample"
    amp: bool = False
    ckpt_every: int = Field(0, ge=0)
    eval_images: int = Field(64, ge=1, description="held-out images for the L_simple after every epoch")
    eval_split: str = "test"


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def _size(resolved: ResolvedModel) -> tuple[int, int]:
    ds = resolved.config.dataset
    res = tuple(ds.resolution) if ds.resolution is not None else dataset_info(ds.name).default_resolution
    if res is None:
        raise UserError(f"model {resolved.id}: set dataset.resolution")
    return int(res[0]), int(res[1])


def validate(resolved: ResolvedModel) -> None:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    if info.kind != "segmentation":
        raise UserError(f"model {resolved.id}: a mask-guided DDPM needs label maps; dataset {info.name} has none")
    h, w = _size(resolved)
    if h % 8 or w % 8:
        raise UserError(f"model {resolved.id}: resolution {h}x{w} must be divisible by 8 (three 2x downscales)")
    if net_cfg.beta_end <= net_cfg.beta_start:
        raise UserError(f"model {resolved.id}: net.beta_end must exceed net.beta_start")


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    return MaskGuidedUNet(info.channels, info.num_classes, net_cfg.base, net_cfg.emb_dim)


def make_schedule(params: dict[str, Any]):
    return DDPMSchedule.make(params["schedule"], int(params["T"]), float(params["beta_start"]),
                             float(params["beta_end"]))


@dataclass
class MaskDDPM:
    """A trained mask-guided DDPM as the samplers see it."""

    net: torch.nn.Module
    schedule: Any
    num_classes: int
    shape: tuple[int, int, int]
    meta: dict

    @staticmethod
    def to_images(x: torch.Tensor) -> torch.Tensor:
        """Model space [-1, 1] -> images [0, 1] (the appendix: (x.clamp(-1, 1) + 1) / 2)."""
        return (x.clamp(-1, 1) + 1) / 2

    @staticmethod
    def from_images(images: torch.Tensor) -> torch.Tensor:
        return images * 2 - 1


def mask_ddpm_for(trained) -> MaskDDPM:
    meta = trained.meta
    return MaskDDPM(trained.net.eval(), make_schedule(meta["diffusion"]), int(meta["num_classes"]),
                    tuple(meta["sample_shape"]), meta)


def mask_loss(model, schedule, batch: dict, generator: torch.Generator, num_classes: int, p: float,
              mode: str) -> torch.Tensor:
    """L_simple with classifier-free mask dropping (001 Eq. 2.2, Sec. 2.4)."""
    x0 = MaskDDPM.from_images(batch["image"])
    mask = one_hot(batch["label"], num_classes)
    # A dropped mask is multiplied by zero rather than left out: the same output as no mask (x + 0 = x),
    # and the mask branch stays in the graph, so DDP sees every parameter used on every rank.
    drop = drop_masks(x0.shape[0], p, mode, generator, x0.device)
    return l_simple(lambda x, t: model(x, t, mask, drop), schedule, x0, generator)


def never_conditional(p_uncond: float) -> bool:
    """A model trained with every mask dropped: an unconditional DDPM whose mask branch never learned."""
    return p_uncond >= 1.0


@torch.no_grad()
def eval_loss(net, schedule, images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int,
              batch_size: int = 64, conditional: bool = True) -> float:
    """Held-out L_simple with seeded t and noise (comparable across epochs): conditional, or without the
    mask for a model trained without one."""
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for i in range(0, images.shape[0], batch_size):
        batch = {"image": images[i: i + batch_size].to(device), "label": labels[i: i + batch_size].to(device)}
        p = 0.0 if conditional else 1.0
        total += float(mask_loss(net, schedule, batch, g, num_classes, p, "per_sample")) * batch["image"].shape[0]
    net.train(was)
    return total / max(images.shape[0], 1)


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    net_cfg, ts = parse(resolved)
    cfg, ds = resolved.config, resolved.config.dataset
    info = dataset_info(ds.name)
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=ds.n_train,
                             seed=ds.seed)
    ev_images, ev_labels = stack(load_dataset(ds.name, split=ts.eval_split, resolution=ds.resolution, root=ds.root,
                                              n=ts.eval_images, seed=ds.seed), limit=ts.eval_images)
    diffusion = {"schedule": net_cfg.schedule, "T": net_cfg.T, "beta_start": net_cfg.beta_start,
                 "beta_end": net_cfg.beta_end}
    schedule = make_schedule(diffusion)
    k = info.num_classes
    conditional = not never_conditional(ts.p_uncond)

    def loss_fn(model, batch, generator):
        return mask_loss(model, schedule, batch, generator, k, ts.p_uncond, ts.drop_mode)

    def on_epoch_end(epoch, model):
        return {"val_l_simple": eval_loss(model, schedule, ev_images, ev_labels, k, cfg.seed + 1,
                                          conditional=conditional)}

    def log_metrics(metrics, step):
        if run is not None:
            run.log_metrics(metrics, step=step)

    net = build_net(resolved).to(device)
    untrained = eval_loss(net, schedule, ev_images, ev_labels, k, cfg.seed + 1, conditional=conditional)
    tcfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr,
                       weight_decay=0.01,   # torch.optim.AdamW's default (Sec. 4.3.2 names AdamW, no decay)
                       amp=ts.amp,
                       ema_decay=ts.ema_decay, grad_clip=ts.grad_clip, ckpt_every=ts.ckpt_every,
                       max_steps=ts.max_steps, seed=cfg.seed, device=str(device))
    result = train(net, loss_fn, train_set, tcfg, out_dir, on_epoch_end=on_epoch_end, log_metrics=log_metrics,
                   progress=progress)
    final = (result.ema if result.ema is not None else result.model).eval()
    h, w = _size(resolved)
    meta = {"diffusion": {**diffusion, **schedule.record()}, "num_classes": k, "sample_shape": [info.channels, h, w],
            "dataset": ds.name, "n_train": len(train_set), "parameters": count_parameters(final),
            "p_uncond": ts.p_uncond, "drop_mode": ts.drop_mode, "ema_decay": ts.ema_decay,
            "weights": "ema" if result.ema is not None else "raw", "optimizer": "AdamW", "lr": ts.lr,
            "batch_size": ts.batch_size, "val_l_simple_untrained": untrained,
            "val_l_simple": eval_loss(final, schedule, ev_images, ev_labels, k, cfg.seed + 1, conditional=conditional),
            "unconditional_only": not conditional,   # its val_l_simple: without the mask
            "history": result.history, "steps": result.steps, "train_seconds": result.seconds,
            "probes": result.probes}
    if run is not None:
        run.log_metrics({"val_l_simple": meta["val_l_simple"], "train_seconds": result.seconds,
                         "parameters": meta["parameters"]})
    return final, meta
