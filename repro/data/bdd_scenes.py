"""`bdd_scenes`: the embedded street scenes prepared the way the 001 paper prepared BDD100K (Sec. 4.1):
a centred square crop of each wide frame (H x 2H rendered, the centre H x H kept; BDD: 720 of 1280
columns), labels in BDD100K's 19 classes (the street scenes' classes are a Cityscapes subset; the
ground that is neither road nor sidewalk, yards and verges, is terrain). 10 of the 19 classes occur.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data import bdd100k
from repro.data.common import DatasetInfo, check_split
from repro.data.street_canvas import CLASS_NAMES as STREET_NAMES
from repro.data.street_scenes import StreetScenes
from repro.errors import UserError

INFO = DatasetInfo(name="bdd_scenes", kind="segmentation", channels=3, num_classes=bdd100k.INFO.num_classes,
                   class_names=bdd100k.CLASS_NAMES, ignore_index=bdd100k.IGNORE,
                   default_resolution=(32, 32), embedded=True)
SPLITS = ("train", "val", "test")
# street_scenes class -> BDD100K train id
_TO_BDD = {"road": "road", "sidewalk": "sidewalk", "building": "building", "vegetation": "vegetation", "sky": "sky",
           "car": "car", "person": "person", "pole": "pole", "traffic_sign": "traffic sign", "background": "terrain"}
LUT = np.array([bdd100k.CLASS_NAMES.index(_TO_BDD[n]) for n in STREET_NAMES], np.int64)


class BDDScenes(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 [H,W] (BDD ids), "index": int}; H == W."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None, n: int | None = None,
                 seed: int = 0):
        self.split = check_split(INFO.name, split, SPLITS)
        h, w = tuple(resolution or INFO.default_resolution)
        if h != w:
            raise UserError(f"bdd_scenes are square centre crops: resolution must be [S, S], got [{h}, {w}]")
        self.size = h
        self.scenes = StreetScenes(split=split, resolution=(h, 2 * h), n=n, seed=seed)
        self.left = h // 2

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        item = self.scenes[index]
        sl = slice(self.left, self.left + self.size)
        return {"image": item["image"][:, :, sl].contiguous(),
                "label": torch.from_numpy(LUT[item["label"][:, sl].numpy()]), "index": item["index"]}

    def stack(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.scenes.arrays(limit)
        sl = slice(self.left, self.left + self.size)
        return (torch.from_numpy(np.ascontiguousarray(images[..., sl])).float().div_(255.0),
                torch.from_numpy(LUT[labels[..., sl].astype(np.int64)]))


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> BDDScenes:
    return BDDScenes(split=split, resolution=resolution, n=n, seed=seed)
