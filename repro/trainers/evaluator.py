"""The suite's own evaluator networks for the embedded datasets.

Their penultimate features define the offline Frechet distance `fd_evalnet` (DESIGN.md: never
shown as the paper's Inception FID), and the scene network doubles as the segmenter that
scores generated street scenes (the thesis used DRN-D-105 on Cityscapes). Classification
datasets (digits, CIFAR-10) train a classifier; segmentation datasets train a per-pixel head.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.nets.evaluator import DigitsClassifier, SceneFeatureNet
from repro.specs import ResolvedModel
from repro.train import TrainConfig, train
from repro.trainers import parse_settings


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["digits_classifier", "scene_featurenet"] = "scene_featurenet"
    feature_dim: int = Field(64, ge=2)
    width: int = Field(16, ge=1)


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    eval_images: int = Field(256, ge=1)
    eval_split: str = "val"


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def validate(resolved: ResolvedModel) -> None:
    parse(resolved)


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    cls = DigitsClassifier if net_cfg.arch == "digits_classifier" else SceneFeatureNet
    return cls(in_channels=info.channels, num_classes=info.num_classes, feature_dim=net_cfg.feature_dim,
               width=net_cfg.width)


def _logits(net, x, segmentation: bool):
    """Per-pixel logits for segmentation; image logits otherwise (SceneFeatureNet's classify head)."""
    if segmentation or not isinstance(net, SceneFeatureNet):
        return net(x)
    return net.classify(x)


@torch.no_grad()
def accuracy(net, images: torch.Tensor, labels: torch.Tensor, segmentation: bool, ignore_index=None) -> float:
    """Held-out accuracy: per pixel for segmentation, per image for classification."""
    device = next(net.parameters()).device
    correct = total = 0
    for i in range(0, images.shape[0], 128):
        pred = _logits(net, images[i: i + 128].to(device), segmentation).argmax(1).cpu()
        y = labels[i: i + 128]
        valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        correct += int(((pred == y) & valid).sum())
        total += int(valid.sum())
    return correct / max(total, 1)


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    net_cfg, ts = parse(resolved)
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    if info.kind not in ("segmentation", "classification"):
        raise UserError(f"model {resolved.id}: an evaluator needs labels; dataset {ds.name} has none")
    segmentation = info.kind == "segmentation"
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=ds.n_train,
                             seed=ds.seed)
    val_images, val_labels = stack(load_dataset(ds.name, split=ts.eval_split, resolution=ds.resolution,
                                                root=ds.root, n=ts.eval_images, seed=ds.seed), limit=ts.eval_images)
    ignore = info.ignore_index if info.ignore_index is not None else -100

    def loss_fn(model, batch, generator):
        return F.cross_entropy(_logits(model, batch["image"], segmentation), batch["label"], ignore_index=ignore)

    def on_epoch_end(epoch, model):
        was = model.training
        model.eval()
        acc = accuracy(model, val_images, val_labels, segmentation, info.ignore_index)
        model.train(was)
        return {"val_accuracy": acc}

    def log_metrics(metrics, step):
        if run is not None:
            run.log_metrics(metrics, step=step)

    net = build_net(resolved).to(device)
    cfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr, ema_decay=None, grad_clip=None,
                      seed=resolved.config.seed, device=str(device))
    result = train(net, loss_fn, train_set, cfg, out_dir, on_epoch_end=on_epoch_end, log_metrics=log_metrics,
                   progress=progress)
    meta = {"arch": net_cfg.arch, "feature_dim": net_cfg.feature_dim, "task": info.kind,
            # .get: under torchrun only rank 0 evaluates (and writes the meta); the other ranks' history has none
            "val_accuracy": result.history[-1].get("val_accuracy"), "history": result.history,
            "train_seconds": result.seconds, "n_train": len(train_set)}
    return result.model, meta
