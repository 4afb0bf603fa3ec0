"""Image grids: the one writer of sample grids (PNG) and the labelled stack of sample strips."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from repro.plots import pyplot


def save_image_grid(images: torch.Tensor, path: Path, nrow: int | None = None, pad: int = 1,
                    scale: int = 1) -> Path:
    """Save images [N, C, H, W] in [0, 1] as one PNG grid (nrow per row; white padding)."""
    from PIL import Image

    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    canvas = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        img = images[i].permute(1, 2, 0).numpy()
        if c == 1:
            img = np.repeat(img, 3, axis=2)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y: y + h, x: x + w] = img[..., :3]
    out = Image.fromarray((canvas * 255).round().astype(np.uint8))
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def rows_figure(rows: list[tuple[str, Path]], out_path: Path, title: str) -> Path | None:
    """Stack sample strips (one PNG per row) into one figure, each row labelled."""
    from PIL import Image

    plt = pyplot(theme=False)

    rows = [(label, Path(p)) for label, p in rows if p is not None and Path(p).exists()]
    if not rows:
        return None
    imgs = [Image.open(p).convert("RGB") for _, p in rows]
    aspect = max(im.width / im.height for im in imgs)
    fig_w = min(14.0, 2.5 + 0.9 * aspect)
    fig, axes = plt.subplots(len(rows), 1, figsize=(fig_w, 0.95 * len(rows) + 0.6), squeeze=False)
    for ax, (label, _), im in zip(axes[:, 0], rows, imgs):
        ax.imshow(im, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
