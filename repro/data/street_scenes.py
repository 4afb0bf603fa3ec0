"""`street_scenes`: the embedded, procedurally generated Cityscapes-like segmentation dataset.

Each image is determined by (seed, split, index) alone: its random stream is seeded with a
hash of the three, so train/val/test are disjoint streams and any image can be rendered on
its own. Rendered arrays are cached in memory per dataset object, in aligned chunks.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data.common import DatasetInfo, check_split
from repro.data.street_render import CLASS_NAMES, N_PARAMS, render

INFO = DatasetInfo(name="street_scenes", kind="segmentation", channels=3, num_classes=len(CLASS_NAMES),
                   class_names=CLASS_NAMES, ignore_index=None, default_resolution=(64, 128), embedded=True)

SPLITS = ("train", "val", "test")
DEFAULT_SIZE = {"train": 512, "val": 128, "test": 128}
CHUNK = 64


def image_seed(seed: int, split: str, index: int) -> int:
    """64-bit seed of one image, a hash of (seed, split, index)."""
    digest = hashlib.blake2b(f"street_scenes|{int(seed)}|{split}|{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def render_images(seed: int, split: str, indices, resolution: tuple[int, int]):
    """Render the given indices: uint8 images [N,3,H,W], uint8 labels [N,H,W], bool night [N]."""
    h, w = resolution
    indices = list(indices)
    uniforms = np.empty((len(indices), N_PARAMS))
    noise = np.empty((len(indices), h, w), np.float32)
    for row, index in enumerate(indices):
        rng = np.random.default_rng(image_seed(seed, split, index))
        uniforms[row] = rng.random(N_PARAMS)
        noise[row] = rng.standard_normal((h, w), dtype=np.float32)
    return render(uniforms, noise)


class StreetScenes(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 [H,W], "index": int}."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None,
                 n: int | None = None, seed: int = 0):
        self.split = check_split(INFO.name, split, SPLITS)
        self.resolution = tuple(resolution or INFO.default_resolution)
        self.n = DEFAULT_SIZE[self.split] if n is None else int(n)
        self.seed = int(seed)
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def _chunk(self, c: int):
        if c not in self._chunks:
            stop = min((c + 1) * CHUNK, self.n)
            self._chunks[c] = render_images(self.seed, self.split, range(c * CHUNK, stop), self.resolution)
        return self._chunks[c]

    def _check(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"street_scenes index {index} out of range for {self.n} images")
        return index

    def __getitem__(self, index: int) -> dict:
        index = self._check(index)
        images, labels, _ = self._chunk(index // CHUNK)
        r = index % CHUNK
        return {"image": torch.from_numpy(images[r]).float().div_(255.0),
                "label": torch.from_numpy(labels[r].astype(np.int64)), "index": index}

    def is_night(self, index: int) -> bool:
        index = self._check(index)
        return bool(self._chunk(index // CHUNK)[2][index % CHUNK])

    def arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first `limit` images and labels as uint8 arrays (rendered if not cached yet)."""
        count = self.n if limit is None else min(int(limit), self.n)
        chunks = [self._chunk(c) for c in range((count + CHUNK - 1) // CHUNK)]
        if not chunks:
            h, w = self.resolution
            return np.zeros((0, 3, h, w), np.uint8), np.zeros((0, h, w), np.uint8)
        images = np.concatenate([ch[0] for ch in chunks])[:count]
        labels = np.concatenate([ch[1] for ch in chunks])[:count]
        return images, labels

    def stack(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.arrays(limit)
        return torch.from_numpy(images).float().div_(255.0), torch.from_numpy(labels.astype(np.int64))


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> StreetScenes:
    return StreetScenes(split=split, resolution=resolution, n=n, seed=seed)
