"""Colour palettes of the segmentation datasets: label maps <-> colour images.

Cityscapes: the official colours of its 19 evaluated classes (cityscapesScripts `labels.py`,
in train-id order) and black for the thesis's merged background class 19 (the colour of
Cityscapes' `unlabeled`). `street_scenes`: its own preview palette, Cityscapes' colours where
the class exists there. A drawn map is read by exact colour match; an unknown colour is an
error naming the pixel, its colour and the nearest palette entry.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.data.common import open_checked
from repro.data.registry import dataset_info
from repro.data.street_canvas import CLASS_COLORS
from repro.errors import UserError

CITYSCAPES_COLORS = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    (0, 0, 0)], dtype=np.uint8)


def palette(dataset: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(colours uint8 [K, 3], class names) of a segmentation dataset."""
    info = dataset_info(dataset)
    if info.kind != "segmentation":
        raise UserError(f"dataset {dataset} has no label maps (kind {info.kind}); semantic maps need a "
                        f"segmentation dataset")
    if dataset == "cityscapes":
        colors = CITYSCAPES_COLORS
    elif dataset == "street_scenes":
        colors = CLASS_COLORS
    else:
        raise UserError(f"no colour palette for dataset {dataset}")
    assert len(colors) == info.num_classes
    return colors, info.class_names


def colorize(labels, colors: np.ndarray) -> np.ndarray:
    """Labels [..., H, W] -> RGB uint8 [..., H, W, 3]."""
    return colors[np.asarray(labels, np.int64)]


def labels_from_colors(rgb: np.ndarray, colors: np.ndarray, names: tuple[str, ...], where: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> labels [H, W] by exact colour; an unknown colour is a UserError
    naming the first such pixel (x, y), its colour and the nearest palette entry."""
    flat = rgb.reshape(-1, 3).astype(np.int64)
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    pal = colors.astype(np.int64)
    pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_code)
    pos = np.searchsorted(pal_code[order], code).clip(0, len(pal_code) - 1)
    hit = pal_code[order][pos] == code
    if not hit.all():
        i = int(np.flatnonzero(~hit)[0])
        y, x = divmod(i, rgb.shape[1])
        c = flat[i]
        near = int(((pal - c) ** 2).sum(1).argmin())
        raise UserError(f"{where}: pixel (x={x}, y={y}) has colour {tuple(int(v) for v in c)}, which is no class "
                        f"of the palette; nearest: {names[near]} {tuple(int(v) for v in colors[near])}")
    return order[pos].reshape(rgb.shape[:2])


#: PIL modes of 8-bit colour maps; a map's aspect ratio may differ from the models' by this fraction.
MAP_MODES = ("RGB", "RGBA", "P", "PA", "L", "LA")
MAP_ASPECT_TOLERANCE = 0.02


def read_map(path: Path, dataset: str, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """A colour map file -> labels [H, W] at `size` (H, W); resized nearest-neighbour when its size
    differs. Returns (labels, a note about the resize or None)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--map {path}: no such file")
    try:
        with open_checked(path, f"--map {path}") as im:
            im.load()
            mode = im.mode
            rgba = im.convert("RGBA") if mode in MAP_MODES else None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"--map {path}: not a readable image ({type(e).__name__})") from None
    if rgba is None:   # 16-bit, float, CMYK, 1-bit: no colours of the palette to read
        raise UserError(f"--map {path}: image mode {mode} is not a colour map; save it as 8-bit RGB or "
                        f"palette PNG ({', '.join(MAP_MODES)})")
    alpha = np.asarray(rgba, np.uint8)[..., 3]
    if (alpha < 255).any():   # a class under a transparent pixel is a guess: refuse it
        y, x = np.argwhere(alpha < 255)[0]
        raise UserError(f"--map {path}: {int((alpha < 255).sum())} transparent pixel(s), e.g. at (x={x}, y={y}); "
                        f"draw every pixel in an opaque class colour")
    img = rgba.convert("RGB")
    if abs((img.width / img.height) / (size[1] / size[0]) - 1) > MAP_ASPECT_TOLERANCE:
        raise UserError(f"--map {path}: {img.width}x{img.height} (WxH) has another aspect ratio than the models' "
                        f"{size[1]}x{size[0]}; draw it at {size[1]}:{size[0]} (it is then resized nearest-neighbour)")
    colors, names = palette(dataset)
    labels = labels_from_colors(np.asarray(img, np.uint8), colors, names, f"--map {path}")
    h, w = size
    note = None
    if labels.shape != (h, w):
        note = (f"map {path.name} is {labels.shape[1]}x{labels.shape[0]} (WxH); resized to {w}x{h} with "
                f"nearest-neighbour, the models' resolution")
        labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((w, h), Image.NEAREST), np.int64)
    return labels, note
