"""Pieces every dataset module shares: the DatasetInfo record, roots, split checks, image I/O."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from repro.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, independent of where it lives on disk."""

    name: str
    kind: str  # "segmentation" | "classification" | "images"
    channels: int  # 3 for RGB, 1 for digits
    num_classes: int  # segmentation classes or class labels (0 for "images")
    class_names: tuple[str, ...]
    ignore_index: int | None  # label value losses/metrics skip, or None
    default_resolution: tuple[int, int] | None  # (H, W); None: native size
    embedded: bool  # True if it needs no files on disk


def default_root(name: str) -> Path:
    """`$REPRO_DATA/<name>` if REPRO_DATA is set, else `data/<name>` under the working directory."""
    base = os.environ.get("REPRO_DATA")
    return Path(base) / name if base else Path("data") / name


def resolve_root(name: str, root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else default_root(name)


def check_split(name: str, split: str, allowed: tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    """Return the canonical split name, or raise a UserError listing the valid ones."""
    split = (aliases or {}).get(split, split)
    if split not in allowed:
        raise UserError(f"unknown split {split!r} for dataset {name}: use one of {', '.join(allowed)}")
    return split


def check_resolution(resolution) -> tuple[int, int] | None:
    if resolution is None:
        return None
    try:
        h, w = (int(r) for r in resolution)
    except (TypeError, ValueError):
        raise UserError(f"dataset resolution {resolution!r} is not [H, W]: give two positive integers") from None
    if h < 1 or w < 1:
        raise UserError(f"dataset resolution {resolution!r} must be positive: give [H, W] with H, W >= 1")
    return h, w


def check_count(n: int | None) -> int | None:
    if n is not None and int(n) < 1:
        raise UserError(f"dataset size n={n} must be at least 1: give a positive n or leave it unset")
    return None if n is None else int(n)


MAX_PIXELS = 64_000_000   # a user's map or mask above this is refused before it is decoded (Cityscapes: 2 MP)


def check_pixels(img: Image.Image, what: str) -> None:
    """One line, before decoding, for an image whose size the machine should not be asked to hold."""
    if img.width * img.height > MAX_PIXELS:
        raise UserError(f"{what}: {img.width}x{img.height} (WxH) is {img.width * img.height / 1e6:.0f} megapixels, "
                        f"over the {MAX_PIXELS / 1e6:.0f} MP limit; draw it at the models' resolution")


def open_checked(path: Path, what: str) -> Image.Image:
    """Image.open (the header only) with the size checked first; PIL's own decompression-bomb refusal
    becomes the same one line."""
    try:
        with warnings.catch_warnings():   # the size is judged below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise UserError(f"{what}: over {Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} megapixels; draw it at the models' "
                        f"resolution") from None
    try:
        check_pixels(img, what)
    except UserError:
        img.close()
        raise
    return img


def read_image(path: Path, mode: str | None) -> Image.Image:
    """Open an image fully, converted to `mode` ("RGB"), or as stored (None: label maps); unreadable -> UserError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode) if mode is not None and img.mode != mode else img.copy()
    except FileNotFoundError:
        raise UserError(f"image file missing: {path}: restore it or remove it from the dataset") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image {path} ({type(err).__name__}): replace or delete the file") from None


def pil_to_image_tensor(img: Image.Image, resolution: tuple[int, int] | None) -> torch.Tensor:
    """RGB PIL image -> float32 [3,H,W] in [0,1]; resized bilinearly (antialiased when shrinking)."""
    if resolution is not None and img.size != (resolution[1], resolution[0]):
        img = img.resize((resolution[1], resolution[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def pil_to_label_array(img: Image.Image, resolution: tuple[int, int] | None, path: Path) -> np.ndarray:
    """Single-channel label PIL image (L, P or I) -> int64 array [H,W]; resized nearest, so no new labels appear."""
    if img.mode not in ("L", "P", "I", "I;16", "1"):
        raise UserError(f"label map {path} has mode {img.mode}, not single-channel ids: use the *_labelIds.png files")
    if resolution is not None and img.size != (resolution[1], resolution[0]):
        img = img.resize((resolution[1], resolution[0]), Image.Resampling.NEAREST)
    return np.asarray(img).astype(np.int64)


def resize_images(images: torch.Tensor, resolution: tuple[int, int] | None) -> torch.Tensor:
    """Bilinear resize of [N,C,H,W] floats, antialiased when shrinking; values stay in [0,1]."""
    if resolution is None or tuple(images.shape[-2:]) == tuple(resolution):
        return images
    shrink = resolution[0] < images.shape[-2] or resolution[1] < images.shape[-1]
    out = F.interpolate(images, size=resolution, mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)
