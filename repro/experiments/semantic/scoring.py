"""How well generated images comply with their maps, judged by a *separate* segmenter (thesis
Sec. 5.4.5: a pretrained DRN, "to prevent bias by using another network than U-Net"), and the
label maps with their real images that a run conditions on."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.data.palette import colorize
from repro.metrics.segmentation import SegmentationScores


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
