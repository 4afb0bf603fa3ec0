"""Model kind `pretrained_segmenter`: a published segmentation network the suite does not train.

The thesis (000 Sec. 5.4.5) measures pixel accuracy and mIoU of generated Cityscapes images
with a pretrained DRN, as SPADE's evaluation did with fyu/drn's DRN-D-105
(`drn-d-105_ms_cityscapes.pth`). `train_model` reads that file (torch.load, weights_only=True;
a bare state dict, DataParallel's `module.` prefix or segment.py's {'state_dict': ...} all
load) into `repro.nets.drn.DRNSegmenter`, which has the interface of the suite's scene
evaluator: images in [0, 1] -> per-pixel logits over the dataset's classes at the input size.

The suite's Cityscapes has 20 classes (19 train ids + background 19, repro.data.cityscapes);
DRN knows only the 19, so background is never predicted. SegmentationScores averages IoU over
the classes present in prediction or target, so every image whose map has background pixels
adds a background IoU of 0 to its mean (with k classes present: (k-1)/k times the mean over
the other k-1), and those pixels always count as wrong in pixel accuracy. The thesis does
not say how it scored its background class against DRN's 19 outputs; an "oracle" run (DRN on
the real images; Tab. 5.4: mIoU 0.6181, pixel accuracy 81.00%) shows what this gives on real data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.checkpoints import WeightsFile, state_dict_check
from repro.data import dataset_info
from repro.errors import UserError
from repro.models import sha256_file
from repro.nets.drn import (
    ARCHS as DRN_ARCHS,
    CITYSCAPES_MEAN,
    CITYSCAPES_STD,
    DRNSegmenter,
    load_segmenter_state,
)
from repro.nets.official import load_state_dict_file
from repro.specs import ResolvedModel
from repro.trainers import parse_settings

#: Where fyu/drn's README points for its Cityscapes models.
DOWNLOAD_PAGE = "http://go.yf.io/drn-cityscapes-models"


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Literal[tuple(DRN_ARCHS)] = Field("drn_d_105", description="fyu/drn segment.py --arch")
    checkpoint: str = Field(description="fyu/drn DRNSeg state dict, e.g. drn-d-105_ms_cityscapes.pth")
    num_classes_checkpoint: int = Field(19, ge=1, description="classes the checkpoint's seg conv predicts")


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")   # nothing to train


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def checkpoint_path(net_cfg: NetConfig) -> Path:
    return Path(net_cfg.checkpoint).expanduser()


def validate(resolved: ResolvedModel) -> None:
    """Settings, the dataset's classes and the checkpoint file, before anything runs."""
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    if info.kind != "segmentation" or info.num_classes < net_cfg.num_classes_checkpoint:
        raise UserError(f"model {resolved.id}: dataset {info.name} has {info.num_classes} {info.kind} classes; "
                        f"a segmenter of {net_cfg.num_classes_checkpoint} classes needs a segmentation dataset "
                        f"with at least as many")
    path = checkpoint_path(net_cfg)
    if not path.is_file():
        raise UserError(f"model {resolved.id}: net.checkpoint {path} not found; put fyu/drn's Cityscapes "
                        f"{net_cfg.arch} weights (drn-d-105_ms_cityscapes.pth for drn_d_105, from {DOWNLOAD_PAGE}) "
                        f"there or name the file with --set models.evaluator.net.checkpoint=PATH")


def weights_files(resolved: ResolvedModel) -> list[WeightsFile]:
    """`net.checkpoint`: fyu/drn's state dict of this architecture and number of classes."""
    net_cfg, _ = parse(resolved)
    return [WeightsFile("net.checkpoint", checkpoint_path(net_cfg), state_dict_check(
        lambda: build_net(resolved).drn, f"fyu/drn's DRNSeg({net_cfg.arch}, "
                                         f"{net_cfg.num_classes_checkpoint} classes)"))]


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    info = dataset_info(resolved.config.dataset.name)
    return DRNSegmenter(net_cfg.arch, net_cfg.num_classes_checkpoint, info.num_classes)


def load_checkpoint(resolved: ResolvedModel, net) -> None:
    """Strictly load net.checkpoint into net.drn; an unreadable or foreign file is one UserError line."""
    validate(resolved)
    net_cfg, _ = parse(resolved)
    path = checkpoint_path(net_cfg)
    what = f"fyu/drn's DRNSeg({net_cfg.arch}, {net_cfg.num_classes_checkpoint} classes)"
    try:
        state = load_state_dict_file(path, what="DRN checkpoint")
    except UserError as e:
        raise UserError(f"model {resolved.id}: net.checkpoint: {e}; expected the weights of {what}") from None
    try:
        load_segmenter_state(net.drn, state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else ""
        raise UserError(f"model {resolved.id}: net.checkpoint {path} is not a state dict of {what}: "
                        f"{detail[:300]}") from None


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    """Nothing to train: the published weights, loaded strictly, and where they came from."""
    validate(resolved)
    net_cfg, _ = parse(resolved)
    net = build_net(resolved)
    load_checkpoint(resolved, net)
    path = checkpoint_path(net_cfg)
    meta = {"arch": net_cfg.arch, "task": "segmentation", "segmenter": f"DRNSeg({net_cfg.arch}) of fyu/drn",
            "checkpoint": str(path), "checkpoint_sha256": sha256_file(path),
            "num_classes_checkpoint": net_cfg.num_classes_checkpoint, "num_classes": net.num_classes,
            "never_predicted": list(range(net_cfg.num_classes_checkpoint, net.num_classes)),
            "normalisation": {"mean": list(CITYSCAPES_MEAN), "std": list(CITYSCAPES_STD)},
            "parameters": sum(p.numel() for p in net.parameters())}
    return net.to(device).eval(), meta
