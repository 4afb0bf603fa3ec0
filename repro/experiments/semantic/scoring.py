"""How well generated images comply with their maps, judged by a *separate* segmenter (thesis
Sec. 5.4.5: a pretrained DRN, "to prevent bias by using another network than U-Net"), and the
label maps with their real images that a run conditions on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.data.palette import colorize
from repro.metrics.segmentation import SegmentationScores
from repro.metrics.spread import bootstrap_statistic, compact


@torch.no_grad()
def segment(evaluator: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Argmax labels [N, H, W] of an evaluator segmenter whose forward gives per-pixel logits."""
    device = next(evaluator.parameters()).device
    was = evaluator.training
    evaluator.eval()
    out = [evaluator(images[i: i + batch_size].to(device).float()).argmax(1).cpu()
           for i in range(0, images.shape[0], batch_size)]
    evaluator.train(was)
    return torch.cat(out)


def compliance(pred: torch.Tensor, maps: torch.Tensor, num_classes: int, ignore_index: int | None) -> dict[str, Any]:
    """Pixel accuracy, mIoU (thesis Eq. 5.8, 5.9) of predicted labels against the input maps."""
    scores = SegmentationScores(num_classes, ignore_index)
    scores.update(pred, maps)
    return scores.compute()


@dataclass
class MapCounts:
    """Per-map counts behind pixel accuracy and both mIoUs (thesis Eq. 5.8, 5.9): from these, the
    metrics of any multiset of maps (a bootstrap resample) follow without segmenting again."""
    correct: np.ndarray        # [N] correctly labelled valid pixels
    valid: np.ndarray          # [N] valid (not ignored) pixels
    intersection: np.ndarray   # [N, C] |A_c n B_c| per map and class
    union: np.ndarray          # [N, C] |A_c u B_c| per map and class
    counted: np.ndarray        # [C] classes that may enter a mean (all but an in-range ignore label)


def map_counts(pred: torch.Tensor, maps: torch.Tensor, num_classes: int, ignore_index: int | None) -> MapCounts:
    """MapCounts of predicted labels [N, H, W] against their maps [N, H, W]."""
    n, c = maps.shape[0], num_classes
    p = pred.long().cpu().reshape(n, -1)
    y = maps.long().cpu().reshape(n, -1)
    valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
    image = torch.arange(n).unsqueeze(1).expand_as(y)
    conf = torch.bincount((image * c * c + y.clamp(0, c - 1) * c + p.clamp(0, c - 1))[valid],
                          minlength=n * c * c).reshape(n, c, c)
    inter = conf.diagonal(dim1=1, dim2=2)
    union = conf.sum(1) + conf.sum(2) - inter
    counted = np.ones(c, dtype=bool)
    if ignore_index is not None and 0 <= ignore_index < c:
        counted[ignore_index] = False
    return MapCounts(inter.sum(1).numpy(), valid.sum(1).numpy(), inter.numpy(), union.numpy(), counted)


def thesis_miou(counts: MapCounts, rows: np.ndarray | None = None) -> float:
    """`miou` of SegmentationScores (the thesis code's): per image the IoU of each class present in
    its prediction or map, averaged over those images per class, then over classes; `rows` picks
    (and may repeat) maps."""
    inter = counts.intersection if rows is None else counts.intersection[rows]
    union = counts.union if rows is None else counts.union[rows]
    present = union > 0
    iou_sum = np.where(present, inter / np.maximum(union, 1), 0.0).sum(0)
    n = present.sum(0)
    seen = (n > 0) & counts.counted
    return float((iou_sum[seen] / n[seen]).mean()) if seen.any() else float("nan")


def dataset_miou(counts: MapCounts, rows: np.ndarray | None = None) -> float:
    """`miou_dataset`: the IoU of each class over all pixels of the maps, averaged over the classes
    that occur (in prediction or maps)."""
    inter = (counts.intersection if rows is None else counts.intersection[rows]).sum(0)
    union = (counts.union if rows is None else counts.union[rows]).sum(0)
    occurred = (union > 0) & counts.counted
    return float((inter[occurred] / union[occurred]).mean()) if occurred.any() else float("nan")


def unit_extras(counts: MapCounts, unit: str) -> dict[str, Any]:
    """What the claims engine resamples (repro.claims, repro.metrics.spread): per-map pixel accuracy
    (`pixel_acc_per_sample`, whose mean is the pooled pixel accuracy when every map has the same
    number of valid pixels; otherwise `pixel_acc_boot`, the pooled accuracy of each shared index
    set), and the replicates of both mIoUs on the shared index sets (`miou_boot`, `miou_dataset_boot`).
    Map i is the same map (and noise) in every cell of a spec: the resamples are paired."""
    n = int(counts.valid.shape[0])
    out: dict[str, Any] = {"resample_unit": unit, "resample_n": n}
    if n and (counts.valid == counts.valid[0]).all():
        out["pixel_acc_per_sample"] = compact(counts.correct / np.maximum(counts.valid, 1))
    else:
        out["pixel_acc_boot"] = compact(bootstrap_statistic(
            n, lambda idx: counts.correct[idx].sum() / max(int(counts.valid[idx].sum()), 1)))
    out["miou_boot"] = compact(bootstrap_statistic(n, lambda idx: thesis_miou(counts, idx)))
    out["miou_dataset_boot"] = compact(bootstrap_statistic(n, lambda idx: dataset_miou(counts, idx)))
    return out


def triptych_sheet(real: torch.Tensor | None, maps: torch.Tensor, generated: list[torch.Tensor],
                   colors: np.ndarray, path: Path, gap: int = 2, scale: int = 2) -> Path:
    """One PNG: a row per map: [real image] | coloured map | generated image(s)."""
    from PIL import Image

    n, h, w = maps.shape
    cols = (1 if real is not None else 0) + 1 + len(generated)
    sheet = np.full((n * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    to_u8 = lambda im: (im.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    for i in range(n):
        tiles = ([to_u8(real[i])] if real is not None else []) + [colorize(maps[i].numpy(), colors)]
        tiles += [to_u8(g[i]) for g in generated]
        for j, tile in enumerate(tiles):
            if tile.shape[-1] == 1:
                tile = np.repeat(tile, 3, axis=-1)
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            sheet[y: y + h, x: x + w] = tile
    img = Image.fromarray(sheet)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
