"""`image_folder`: any folder of PNG/JPEG images (searched recursively), label 0.

If the folder has a subfolder named like the split (`root/train`, `root/val`), that
subfolder is used; otherwise every split reads the whole folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from repro.data.common import DatasetInfo, check_split, pil_to_image_tensor, read_image, resolve_root
from repro.errors import UserError

INFO = DatasetInfo(name="image_folder", kind="images", channels=3, num_classes=0, class_names=(),
                   ignore_index=None, default_resolution=None, embedded=False)

SPLITS = ("train", "val", "test", "all")
EXTENSIONS = {".png", ".jpg", ".jpeg"}


def find_images(root: Path, split: str) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"image_folder not found at {root}: put PNG/JPEG images there or set dataset.root")
    folder = root / split if (root / split).is_dir() else root
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"image_folder {folder} holds no .png/.jpg/.jpeg images: add some or set dataset.root")
    return files


class ImageFolder(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 0, "index": int}.

    Without a resolution each image keeps its own size (then `stack` needs equal sizes).
    """

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None,
                 root: str | None = None, n: int | None = None):
        self.split = check_split(INFO.name, split, SPLITS)
        self.resolution = tuple(resolution) if resolution else None
        self.root = resolve_root(INFO.name, root)
        self.files = find_images(self.root, self.split)[:n]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        image = pil_to_image_tensor(read_image(self.files[index], "RGB"), self.resolution)
        return {"image": image, "label": torch.tensor(0, dtype=torch.int64), "index": index}


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> ImageFolder:
    return ImageFolder(split=split, resolution=resolution, root=root, n=n)
