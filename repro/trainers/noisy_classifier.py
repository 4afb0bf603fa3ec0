"""Model kind `noisy_classifier`: a noise-conditional image classifier p_theta(y | x(t)) for
classifier guidance (000 thesis Sec. 5.1: a noise-conditional WideResNet on MNIST).

It is the image-level analogue of the thesis's segmenter (Sec. 5.2): training images are
perturbed with the perturbation kernel of the score model's own SDE, x(t) = m(t) x(0) + std(t) z
(for the VE SDE x(0) + sigma(t) z, thesis Eq. 5.1, 5.2), and the network, told the noise level
std(t), is trained with cross-entropy against the label of x(0) (as Eq. 5.4 per pixel).

The SDE is not configured here but read from the trained score model that `train.score_model`
names (trained first if needed): sigma_min and sigma_max (VE; sigma_max estimated from the data,
Sec. 5.4.3) and the data space (VE: [0, 1]) are then those of the score model the classifier
will guide, by construction; meta.json records them with the score model's hash.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.nets.wide_resnet import NoiseConditionalWideResNet
from repro.rng import rand, randn
from repro.specs import ResolvedModel
from repro.train import TrainConfig, train
from repro.trainers import parse_settings, upstream_model
from repro.trainers.ensure import ensure_model
from repro.trainers.score_model import make_sde, to_model_space


class NetConfig(BaseModel):
    """WRN-depth-widen_factor (repro.nets.wide_resnet); channels and classes come from the data."""

    model_config = ConfigDict(extra="forbid")
    depth: int = Field(28, ge=10, description="6 n + 4")
    widen_factor: int = Field(10, ge=1)
    base_channels: int = Field(16, ge=1)
    embedding_size: int = Field(128, ge=1, description="Fourier features of log sigma")
    fourier_scale: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("depth")
    @classmethod
    def _depth(cls, v: int) -> int:
        if (v - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 (10, 16, 22, 28, ...), got {v}")
        return v


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score_model: str = Field(..., description="the score_sde model whose SDE (and data space) perturbs the images")
    score_model_overrides: dict[str, Any] = Field(default_factory=dict,
                                                  description="that score model's settings as a run uses them (dotted keys, as --set)")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    t_max: float = Field(1.0, gt=0, le=1, description="t ~ U(eps, t_max)")
    ema_decay: float | None = Field(None, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    amp: bool = False
    ckpt_every: int = Field(0, ge=0)
    eval_images: int = Field(256, ge=1, description="held-out images scored after every epoch")
    eval_split: str = "val"
    eval_times: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1,
                                    description="times of the final held-out accuracy per t")

    @field_validator("eval_times")
    @classmethod
    def _times(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= t <= 1.0 for t in v):
            raise ValueError(f"eval_times must lie in [0, 1], got {v}")
        return v


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def score_model_config(resolved: ResolvedModel, ts: TrainSettings | None = None) -> ResolvedModel:
    """The score model's config at this profile, checked: a score_sde model on the same data."""
    ts = ts or parse(resolved)[1]
    return upstream_model(resolved, "score_model", ts.score_model, ts.score_model_overrides, "score_sde")


def validate(resolved: ResolvedModel) -> None:
    _, ts = parse(resolved)
    score_model_config(resolved, ts)


def build_net(resolved: ResolvedModel, meta: dict[str, Any] | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    if info.kind != "classification":
        raise UserError(f"model {resolved.id}: a classifier needs image labels; dataset "
                        f"{resolved.config.dataset.name} is a {info.kind} dataset")
    return NoiseConditionalWideResNet(in_channels=info.channels, num_classes=info.num_classes,
                                      depth=net_cfg.depth, widen_factor=net_cfg.widen_factor,
                                      base_channels=net_cfg.base_channels, embedding_size=net_cfg.embedding_size,
                                      fourier_scale=net_cfg.fourier_scale, dropout=net_cfg.dropout)


def perturb(sde, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x(t) = m(t) x(0) + std(t) z, std(t)): the SDE's perturbation kernel (VE: thesis Eq. 5.1, 5.2)."""
    mean, std = sde.marginal_prob(x0, t)
    z = randn(x0.shape, generator, x0.device, x0.dtype)
    return mean + std.view(-1, *([1] * (x0.dim() - 1))) * z, std


@torch.no_grad()
def accuracy_at(net, sde, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor | float,
                generator: torch.Generator, batch_size: int = 256) -> float:
    """Held-out accuracy on x0 (model space) perturbed to time(s) t, one noise draw per image."""
    device = next(net.parameters()).device
    t = torch.as_tensor(t, dtype=torch.float32)
    t = t.expand(x0.shape[0]) if t.ndim == 0 else t
    correct = 0
    for i in range(0, x0.shape[0], batch_size):
        xb, tb = x0[i: i + batch_size].to(device), t[i: i + batch_size].to(device)
        x, std = perturb(sde, xb, tb, generator)
        correct += int((net(x, std).argmax(1).cpu() == labels[i: i + batch_size]).sum())
    return correct / max(1, x0.shape[0])


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    """Train the classifier on the score model's SDE; returns (net, meta). Resumes from out_dir."""
    net_cfg, ts = parse(resolved)
    score_model_config(resolved, ts)
    cfg, ds = resolved.config, resolved.config.dataset
    score = ensure_model(ts.score_model, resolved.profile, overrides=ts.score_model_overrides or None,
                         device=device, progress=progress)
    sde_params, centered = dict(score.meta["sde"]), bool(score.meta["centered"])
    sde = make_sde(sde_params)
    eps = sde.default_eps
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=ds.n_train,
                             seed=ds.seed)
    eval_images, eval_labels = stack(load_dataset(ds.name, split=ts.eval_split, resolution=ds.resolution,
                                                  root=ds.root, n=ts.eval_images, seed=ds.seed), limit=ts.eval_images)
    eval_x0 = to_model_space(eval_images, centered)
    t_max = ts.t_max

    def loss_fn(model, batch, generator):
        x0 = to_model_space(batch["image"], centered)
        t = eps + rand((x0.shape[0],), generator, x0.device) * (t_max - eps)
        x, std = perturb(sde, x0, t, generator)
        return F.cross_entropy(model(x, std).float(), batch["label"])

    # After every epoch: held-out images at times spread evenly over [eps, t_max], the same noise each epoch.
    spread = torch.linspace(eps, t_max, eval_x0.shape[0])

    def on_epoch_end(epoch: int, model) -> dict[str, float]:
        was = model.training
        model.eval()
        acc = accuracy_at(model, sde, eval_x0, eval_labels, spread, torch.Generator(device=device).manual_seed(cfg.seed + 1))
        model.train(was)
        return {"val_accuracy": acc}

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)

    with torch.random.fork_rng(devices=[]):  # initial weights and Fourier features follow the seed
        torch.manual_seed(cfg.seed)
        net = build_net(resolved).to(device)
    tcfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr, weight_decay=ts.weight_decay,
                       amp=ts.amp, ema_decay=ts.ema_decay, grad_clip=ts.grad_clip, ckpt_every=ts.ckpt_every,
                       warmup_steps=ts.warmup_steps, seed=cfg.seed, device=str(device))
    result = train(net, loss_fn, train_set, tcfg, out_dir, on_epoch_end=on_epoch_end, log_metrics=log_metrics,
                   progress=progress)
    final = (result.ema if result.ema is not None else result.model).eval()
    by_t = {f"{t:g}": accuracy_at(final, sde, eval_x0, eval_labels, max(float(t), eps),
                                  torch.Generator(device=device).manual_seed(cfg.seed + 2))
            for t in ts.eval_times}
    meta = {
        "sde": sde_params, "centered": centered, "eps": eps, "t_max": t_max,
        "score_model": {"name": ts.score_model, "hash": score.hash, "sha256": score.meta.get("sha256")},
        "arch": f"WRN-{net_cfg.depth}-{net_cfg.widen_factor}", "noise_conditioning": "fourier(log sigma)",
        "num_classes": int(final.head.out_features), "n_train": len(train_set), "n_eval": int(eval_x0.shape[0]),
        "val_accuracy": result.history[-1]["val_accuracy"] if result.history else None,
        "val_accuracy_by_t": by_t, "history": result.history, "steps": result.steps,
        "train_seconds": result.seconds, "parameters": sum(p.numel() for p in final.parameters()),
        "probes": result.probes,
    }
    if run is not None:
        run.log_metrics({f"val_accuracy_t{t}": v for t, v in by_t.items()} | {"train_seconds": result.seconds})
    return final, meta
