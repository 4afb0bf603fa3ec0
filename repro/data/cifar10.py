"""`cifar10`: the official python-pickle batches (cifar-10-python.tar.gz, unpacked).

Reads `root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` or the same
files directly in `root`. The pickles are opened with an unpickler that only admits the
numpy array constructors, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from repro.data.common import DatasetInfo, check_split, resize_images, resolve_root
from repro.errors import UserError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
INFO = DatasetInfo(name="cifar10", kind="classification", channels=3, num_classes=10, class_names=CLASS_NAMES,
                   ignore_index=None, default_resolution=(32, 32), embedded=False)

SPLITS = ("train", "test")
ALIASES = {"val": "test"}
FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def read_batch(path: Path) -> dict:
    """One pickled batch as a dict with str keys; unreadable -> UserError naming the file."""
    try:
        with open(path, "rb") as fh:
            raw = _ArrayUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise UserError(f"cifar10 batch missing: {path}: unpack cifar-10-python.tar.gz there") from None
    except Exception as err:  # any corruption of the pickle is the user's file, not our bug
        raise UserError(f"cannot read cifar10 batch {path} ({type(err).__name__}): "
                        "replace it with the file from cifar-10-python.tar.gz") from None
    if not isinstance(raw, dict):
        raise UserError(f"cifar10 batch {path} does not hold a dict: replace it with the official file")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def batch_dir(root: Path) -> Path:
    for candidate in (root / "cifar-10-batches-py", root):
        if (candidate / "test_batch").is_file() or (candidate / "data_batch_1").is_file():
            return candidate
    raise UserError(f"cifar10 not found at {root}: unpack cifar-10-python.tar.gz (from "
                    "cs.toronto.edu/~kriz/cifar.html) there so that cifar-10-batches-py/ exists, or set dataset.root")


def class_names(folder: Path) -> tuple[str, ...]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return CLASS_NAMES
    names = read_batch(meta).get("label_names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else CLASS_NAMES


class Cifar10(Dataset):
    """Items: {"image": float32 [3,H,W] in [0,1], "label": int64 scalar, "index": int}."""

    info = INFO

    def __init__(self, split: str = "train", resolution: tuple[int, int] | None = None,
                 root: str | None = None, n: int | None = None):
        self.split = check_split(INFO.name, split, SPLITS, ALIASES)
        self.resolution = tuple(resolution or INFO.default_resolution)
        self.root = resolve_root(INFO.name, root)
        folder = batch_dir(self.root)
        self.class_names = class_names(folder)
        data, labels = [], []
        for name in FILES[self.split]:
            batch = read_batch(folder / name)
            try:
                data.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch["labels"], np.int64))
            except (KeyError, ValueError) as err:
                raise UserError(f"cifar10 batch {folder / name} is malformed ({err}): "
                                "replace it with the official file") from None
            if n is not None and sum(len(x) for x in labels) >= n:
                break
        images = torch.from_numpy(np.concatenate(data)[:n])
        self.labels = torch.from_numpy(np.concatenate(labels)[:n])
        self.images = images  # uint8, converted per item to keep 50k images at 150 MB

    def __len__(self) -> int:
        return len(self.labels)

    def _convert(self, images: torch.Tensor) -> torch.Tensor:
        return resize_images(images.float().div_(255.0), self.resolution)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        return {"image": self._convert(self.images[index:index + 1])[0], "label": self.labels[index],
                "index": index}

    def stack(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._convert(self.images[:limit]), self.labels[:limit].clone()


def load(split: str = "train", resolution=None, root=None, n=None, seed: int = 0) -> Cifar10:
    return Cifar10(split=split, resolution=resolution, root=root, n=n)
