"""`cityscapes`: the real dataset, read from its official layout.

    root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png

Label ids map to the thesis's 20 training classes: the 19 standard Cityscapes train ids
(0..18) plus one background class 19 that merges every other label (000 Sec. 5.4.1:
"We combine 11 of these classes to one common background class, so we work with 20
training classes in total").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data.common import (DatasetInfo, check_split, pil_to_image_tensor, pil_to_label_array, read_image,
                               resolve_root)
from repro.errors import UserError

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
               "bicycle", "background")
BACKGROUND = 19

INFO = DatasetInfo(name="cityscapes", kind="segmentation", channels=3, num_classes=20, class_names=CLASS_NAMES,
                   ignore_index=None, default_resolution=(256, 512), embedded=False)

SPLITS = ("train", "val", "test")

# Cityscapes labelId -> trainId for the 19 evaluated classes (cityscapesScripts labels.py).
_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
              26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def label_lut() -> np.ndarray:
    """Lookup table over all 8-bit label ids; every id not in the 19 classes -> background 19."""
    lut = np.full(256, BACKGROUND, np.int64)
    for label_id, train_id in _TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


_LUT = label_lut()


def find_pairs(root: Path, split: str, n: int | None = None) -> list[tuple[Path, Path]]:
    """(image, labelIds) paths of a split in sorted order; missing pieces -> UserError."""
    if not (root / "leftImg8bit").is_dir() or not (root / "gtFine").is_dir():
        raise UserError(f"cityscapes not found at {root}: put leftImg8bit/ and gtFine/ there "
                        "(from cityscapes-dataset.com) or set dataset.root")
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise UserError(f"cityscapes split {split!r} has no images under {root / 'leftImg8bit' / split}: "
                        "unpack leftImg8bit_trainvaltest.zip there or pick another split")
    images = images[:n]
    pairs = []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise UserError(f"cityscapes label file missing: {label} (for {image.name}): "
                            "unpack gtFine_trainvaltest.zip into the dataset root")
        pairs.append((image, label))
    return pairs


class Cityscapes(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 [H,W] in 0..19, "index": int}."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None,
                 root: str | None = None, n: int | None = None):
        self.split = check_split(INFO.name, split, SPLITS)
        self.resolution = tuple(resolution or INFO.default_resolution)
        self.root = resolve_root(INFO.name, root)
        self.pairs = find_pairs(self.root, self.split, n)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        image_path, label_path = self.pairs[index]
        image = pil_to_image_tensor(read_image(image_path, "RGB"), self.resolution)
        label_ids = pil_to_label_array(read_image(label_path, None), self.resolution, label_path)
        labels = _LUT[np.clip(label_ids, 0, 255)]
        labels[label_ids > 255] = BACKGROUND
        return {"image": image, "label": torch.from_numpy(labels), "index": index}


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> Cityscapes:
    return Cityscapes(split=split, resolution=resolution, root=root, n=n)
