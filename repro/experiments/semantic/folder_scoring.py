"""Scoring generated images against their label maps, from tensors or from folders (thesis
Sec. 5.4.5: every method judged by the same segmenter and FID); used by `baseline_comparison`
and by `repro evaluate` (repro.commands.evaluate).

`judge` is the one definition every row of table5_4_5 and every evaluated folder goes through:
the evaluator segmenter's labels of the images against the maps (pixel accuracy, mIoU; Eq. 5.8,
5.9) and a Frechet distance to a reference set (`fid` / `fd_evalnet`). Images are judged as
8-bit files hold them (`quantize`), so a folder written by a run scores as the run did.

A folder pair: images/<name>.<ext> and maps/<name>.png matched by file name; a map is a
single-channel PNG of the dataset's class ids (Cityscapes `*_gtFine_labelIds.png` are mapped to
the suite's 20 train ids; the `_leftImg8bit` / `_gtFine_labelIds` / `_gtFine_trainIds` suffixes
are ignored when matching, so released Cityscapes outputs pair with their ground truth).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.data.cityscapes import label_lut
from repro.data.common import pil_to_image_tensor, pil_to_label_array, read_image
from repro.errors import UserError
from repro.experiments.semantic.scoring import compliance, map_counts, segment, unit_extras
from repro.metrics.spread import compact

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_SUFFIXES = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_trainIds")


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as an 8-bit PNG stores and the loaders read them back: round(255 x) / 255,
    in contiguous NCHW memory as the loaders stack them (another layout takes other conv kernels:
    features differ in the last bits, and a rank-deficient Frechet distance amplifies that)."""
    return torch.round(images.detach().float().clamp(0, 1) * 255).to(torch.uint8).float().div_(255.0).contiguous()


def judge(evaluator: torch.nn.Module, scorer, images: torch.Tensor, maps: torch.Tensor, num_classes: int,
          ignore_index: int | None, metrics: list[str], unit: str | None = None
          ) -> tuple[dict[str, float], dict[str, Any]]:
    """Metric values and extras of images [N, C, H, W] in [0, 1] for their maps [N, H, W]. With
    `unit` (what one image is: "maps"), also the per-unit values and replicates the claims engine
    resamples (per-map pixel accuracy, mIoU and Frechet replicates on the shared index sets)."""
    images = images.contiguous()
    values: dict[str, float] = {}
    extra: dict[str, Any] = {"n_images": int(images.shape[0])}
    if "miou" in metrics or "pixel_acc" in metrics:
        pred = segment(evaluator, images)
        judged = compliance(pred, maps, num_classes, ignore_index)
        values.update({m: judged[m] for m in ("miou", "pixel_acc") if m in metrics})
        extra.update(miou_dataset=judged["miou_dataset"], per_class_iou=judged["per_class_iou"])
        if unit is not None:
            extra.update(unit_extras(map_counts(pred, maps, num_classes, ignore_index), unit))
    if scorer is not None:
        if unit is not None:
            values[scorer.name], boot = scorer.with_replicates(images)
            extra[f"{scorer.name}_boot"] = compact(boot)
            extra.update(resample_unit=unit, resample_n=int(images.shape[0]))
        else:
            values[scorer.name] = scorer(images)
        extra["metric"] = scorer.name
        extra["n_reference"] = scorer.n_real
    return values, extra


@dataclass
class FolderPairs:
    images: torch.Tensor     # [N, 3, H, W] in [0, 1]
    maps: torch.Tensor       # [N, H, W] int64
    names: list[str]         # the matching keys, sorted


def _key(path: Path) -> str:
    stem = path.stem
    for s in _SUFFIXES:
        if stem.endswith(s):
            return stem[: -len(s)]
    return stem


def _files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.exists():
        raise UserError(f"{what} {folder}: no such folder")
    if not folder.is_dir():
        raise UserError(f"{what} {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise UserError(f"{what} {folder}: no image files ({', '.join(IMAGE_EXTS)}) in it")
    out: dict[str, Path] = {}
    for p in files:
        k = _key(p)
        if k in out:
            raise UserError(f"{what} {folder}: {out[k].name} and {p.name} both match the name {k!r}; keep one")
        out[k] = p
    return out


def _read_map(path: Path, dataset: str, num_classes: int) -> np.ndarray:
    labels = pil_to_label_array(read_image(path, None), None, path)
    if dataset == "cityscapes" and path.stem.endswith("_labelIds"):
        labels = label_lut()[labels.clip(0, 255)]
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise UserError(f"map {path}: pixel (x={x}, y={y}) holds class {int(labels[y, x])}, outside the "
                        f"{num_classes} classes of {dataset}")
    return labels


def read_folder_pairs(images_dir: Path, maps_dir: Path, dataset: str, num_classes: int,
                      size: tuple[int, int] | None = None) -> FolderPairs:
    """Every (image, map) pair of two folders, matched by name; any mismatch is a UserError naming
    the file: a missing partner, an unreadable file, image and map of different sizes, or a size
    other than `size` (H, W), the size the evaluator and reference images have."""
    imgs, maps = _files(Path(images_dir), "--images"), _files(Path(maps_dir), "--maps")
    for k, p in imgs.items():
        if k not in maps:
            raise UserError(f"image {p}: no map named {k}.png in {maps_dir}")
    for k, p in maps.items():
        if k not in imgs:
            raise UserError(f"map {p}: no image named {k} in {images_dir}")
    images, labels = [], []
    for k in sorted(imgs):
        img = read_image(imgs[k], "RGB")
        lab = _read_map(maps[k], dataset, num_classes)
        if (img.height, img.width) != lab.shape:
            raise UserError(f"image {imgs[k]} is {img.height}x{img.width} but its map {maps[k].name} is "
                            f"{lab.shape[0]}x{lab.shape[1]} (HxW); write them at one size")
        if size is not None and (img.height, img.width) != tuple(size):
            raise UserError(f"image {imgs[k]} is {img.height}x{img.width}; the evaluator of this profile judges "
                            f"{size[0]}x{size[1]} (HxW) images: resize the folder or pick the profile of that size")
        images.append(pil_to_image_tensor(img, None))
        labels.append(torch.from_numpy(lab))
    return FolderPairs(torch.stack(images), torch.stack(labels).long(), sorted(imgs))


def read_image_folder(folder: Path, size: tuple[int, int] | None, what: str = "--reference") -> torch.Tensor:
    out = []
    for p in _files(Path(folder), what).values():
        img = read_image(p, "RGB")
        if size is not None and (img.height, img.width) != tuple(size):
            raise UserError(f"{what} image {p} is {img.height}x{img.width}; expected {size[0]}x{size[1]} (HxW)")
        out.append(pil_to_image_tensor(img, None))
    return torch.stack(out)


def write_pairs(images: torch.Tensor, maps: torch.Tensor, out_dir: Path, stems: list[str] | None = None
                ) -> tuple[Path, Path]:
    """images/<stem>.png (8-bit RGB) and maps/<stem>.png (class ids, 8-bit grey): a folder pair."""
    from PIL import Image

    img_dir, map_dir = Path(out_dir) / "images", Path(out_dir) / "maps"
    img_dir.mkdir(parents=True, exist_ok=True)
    map_dir.mkdir(parents=True, exist_ok=True)
    stems = stems or [f"map_{i:04d}" for i in range(images.shape[0])]
    q = torch.round(images.detach().float().clamp(0, 1) * 255).to(torch.uint8)
    for i, stem in enumerate(stems):
        Image.fromarray(q[i].permute(1, 2, 0).numpy()).save(img_dir / f"{stem}.png")
        Image.fromarray(maps[i].numpy().astype(np.uint8), mode="L").save(map_dir / f"{stem}.png")
    return img_dir, map_dir
