"""`bdd100k`: BDD100K semantic segmentation, read from its released layout (001 paper Sec. 4.1, Tab. 1).

    root/images/10k/{train,val}/<name>.jpg                       1280x720 frames
    root/labels/sem_seg/masks/{train,val}/<name>.png             train ids 0..18, 255 unlabeled
    root/labels/sem_seg/polygons/sem_seg_{train,val}.json        Scalabel polygons (what the paper used)

Labels come from the mask PNGs when that folder exists, else from the polygon JSON, rasterised at
the frame's size in file order (later labels paint over earlier ones; 'C' vertices are cubic Bezier
control points). Every frame is centre-cropped to a square (720x720 of 1280x720) and resized to the
resolution (001: 128x128; images bilinear, labels nearest).

Splits: the paper's 8000 annotated frames became 7000 train / 1000 test (Tab. 1); `train` / `test`
reproduce that from the dataset seed (a seeded permutation of all annotated frames, 1/8 to test).
BDD100K's own split has the same sizes (7000 train, 1000 val): `official_train` / `official_val`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from repro.data.colorbook import IGNORE, ColorBook
from repro.data.common import DatasetInfo, check_split, pil_to_image_tensor, read_image, resolve_root
from repro.errors import UserError

_BOOK = ColorBook.load()
CLASS_NAMES = _BOOK.names
INFO = DatasetInfo(name="bdd100k", kind="segmentation", channels=3, num_classes=len(CLASS_NAMES),
                   class_names=CLASS_NAMES, ignore_index=IGNORE, default_resolution=(128, 128), embedded=False)
SPLITS = ("train", "test", "official_train", "official_val")
TEST_FRACTION = 1000 / 8000   # 001 Tab. 1
_CATEGORY_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """PIL box (left, top, right, bottom) of the centred square of a (W, H) frame: 1280x720 -> 720x720."""
    w, h = size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def _bezier(p0, p1, p2, p3, n: int = 8) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n + 1)[1:, None]
    pts = ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
    return [tuple(p) for p in pts]


def polygon_points(vertices, types: str | None) -> list[tuple[float, float]]:
    """Scalabel poly2d vertices -> a point list, cubic Bezier segments (L C C L) flattened."""
    v = np.asarray(vertices, np.float64)
    n = len(v)
    types = types or "L" * n
    out, i = [tuple(v[0])], 0
    while i < n - 1:
        if i + 3 <= n and types[i + 1] == "C" and types[i + 2] == "C":   # i + 3 == n: the curve closes on v0
            out += _bezier(v[i], v[i + 1], v[i + 2], v[(i + 3) % n])
            i += 3
        else:
            out.append(tuple(v[i + 1]))
            i += 1
    return out


def rasterize(labels: list[dict], size: tuple[int, int]) -> np.ndarray:
    """Scalabel frame labels -> train ids [H, W] (uint8, 255 where nothing is drawn)."""
    canvas = Image.new("L", size, IGNORE)
    draw = ImageDraw.Draw(canvas)
    for lab in labels:
        cid = _CATEGORY_IDS.get(str(lab.get("category", "")).replace("_", " "))
        if cid is None:
            continue
        for poly in lab.get("poly2d") or []:
            pts = polygon_points(poly["vertices"], poly.get("types"))
            if len(pts) >= 3:
                draw.polygon(pts, fill=cid)
    return np.asarray(canvas, np.uint8)


def _read_polygons(path: Path) -> dict[str, list[dict]]:
    try:
        frames = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"bdd100k polygons {path}: unreadable ({type(e).__name__}); re-extract "
                        f"bdd100k_sem_seg_labels_trainval.zip") from None
    if isinstance(frames, dict):   # Scalabel dataset format: {"frames": [...]}
        frames = frames.get("frames", [])
    return {f["name"]: f.get("labels") or [] for f in frames}


def find_frames(root: Path) -> tuple[list[tuple[str, Path, object]], str]:
    """Every annotated frame as (official split, image path, label source), sorted; and the label kind."""
    if not (root / "images" / "10k").is_dir():
        raise UserError(f"bdd100k not found at {root}: put images/10k/ and labels/sem_seg/ there (from "
                        "bdd-data.berkeley.edu: 10K images + semantic segmentation labels) or set dataset.root")
    masks, polys = root / "labels" / "sem_seg" / "masks", root / "labels" / "sem_seg" / "polygons"
    kind = "masks" if masks.is_dir() else "polygons" if polys.is_dir() else None
    if kind is None:
        raise UserError(f"bdd100k labels missing under {root / 'labels' / 'sem_seg'}: unpack the semantic "
                        "segmentation labels (masks/ or polygons/) there")
    frames = []
    for split in ("train", "val"):
        images = root / "images" / "10k" / split
        if kind == "masks":
            for label in sorted((masks / split).glob("*.png")):
                image = images / f"{label.stem}.jpg"
                if not image.is_file():
                    raise UserError(f"bdd100k image missing: {image} (for {label.name}); unpack the 10K images")
                frames.append((split, image, label))
        else:
            path = polys / f"sem_seg_{split}.json"
            if not path.is_file():
                continue
            for name, labels in sorted(_read_polygons(path).items()):
                image = images / name
                if not image.is_file():
                    raise UserError(f"bdd100k image missing: {image} (named in {path.name}); unpack the 10K images")
                frames.append((split, image, labels))
    if not frames:
        raise UserError(f"bdd100k at {root}: no annotated frames found")
    return frames, kind


def split_indices(n: int, seed: int) -> dict[str, list[int]]:
    """Tab. 1's 7000/1000 split of n annotated frames from a seed: a permutation, the first n/8 to test."""
    perm = np.random.default_rng(int(seed)).permutation(n)
    n_test = max(1, int(round(n * TEST_FRACTION)))
    return {"test": sorted(perm[:n_test].tolist()), "train": sorted(perm[n_test:].tolist())}


class BDD100K(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 [H,W] (0..18, 255 unlabeled), "index": int}."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None, root: str | None = None,
                 n: int | None = None, seed: int = 0):
        self.split = check_split(INFO.name, split, SPLITS, aliases={"val": "test"})
        self.resolution = tuple(resolution or INFO.default_resolution)
        self.root = resolve_root(INFO.name, root)
        frames, self.label_kind = find_frames(self.root)
        if self.split.startswith("official_"):
            want = self.split[len("official_"):]
            chosen = [f for f in frames if f[0] == want]
        else:
            chosen = [frames[i] for i in split_indices(len(frames), seed)[self.split]]
        if not chosen:
            raise UserError(f"bdd100k split {self.split!r} is empty at {self.root}")
        self.frames = chosen[:n]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        _, image_path, source = self.frames[index]
        img = read_image(image_path, "RGB")
        box = centre_square(img.size)
        if self.label_kind == "masks":
            lab_img = read_image(source, None)
            if lab_img.size != img.size:
                raise UserError(f"bdd100k mask {source} is {lab_img.size}, its image {img.size}: re-extract the labels")
            labels = np.asarray(lab_img.convert("L"), np.uint8)
        else:
            labels = rasterize(source, img.size)
        h, w = self.resolution
        lab = Image.fromarray(labels).crop(box).resize((w, h), Image.Resampling.NEAREST)
        lab = np.asarray(lab, np.int64).copy()
        lab[(lab >= INFO.num_classes) & (lab != IGNORE)] = IGNORE
        image = pil_to_image_tensor(img.crop(box), self.resolution)
        return {"image": image, "label": torch.from_numpy(lab), "index": index}


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> BDD100K:
    return BDD100K(split=split, resolution=resolution, root=root, n=n, seed=seed)
