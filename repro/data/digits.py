"""`digits`: scikit-learn's 1797 real 8x8 handwritten digits (shipped with the package, no download)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data.common import DatasetInfo, check_split, resize_images

INFO = DatasetInfo(name="digits", kind="classification", channels=1, num_classes=10,
                   class_names=tuple(str(d) for d in range(10)), ignore_index=None,
                   default_resolution=(8, 8), embedded=True)

SPLITS = ("train", "val")
ALIASES = {"test": "val"}  # the digits have no separate test set
VAL_FRACTION = 0.2


@lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # values 0..16 -> [0, 1]
    return images, bunch.target.astype(np.int64)


def split_indices(split: str, seed: int) -> np.ndarray:
    """Stratified, seeded 80/20 split: the same seed always gives the same partition."""
    _, labels = _all_digits()
    rng = np.random.default_rng(seed)
    train, val = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(len(members) * VAL_FRACTION))
        val.append(members[:n_val])
        train.append(members[n_val:])
    chosen = np.concatenate(train if split == "train" else val)
    return rng.permutation(chosen)


class Digits(Dataset):
    """Items: {"image": float32 [1,H,W] in [0,1], "label": int64 scalar, "index": int}."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None,
                 n: int | None = None, seed: int = 0):
        self.split = check_split(INFO.name, split, SPLITS, ALIASES)
        self.resolution = tuple(resolution or INFO.default_resolution)
        images, labels = _all_digits()
        idx = split_indices(self.split, seed)[:n]
        self.images = resize_images(torch.from_numpy(images[idx]), self.resolution)
        self.labels = torch.from_numpy(labels[idx])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        return {"image": self.images[index].clone(), "label": self.labels[index].clone(), "index": index}

    def stack(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[:limit].clone(), self.labels[:limit].clone()


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> Digits:
    return Digits(split=split, resolution=resolution, n=n, seed=seed)
