"""The dataset registry: names -> DatasetInfo and loaders, and `stack` for whole-tensor access."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from repro.data import bdd100k, bdd_scenes, cifar10, cityscapes, digits, image_folder, street_scenes
from repro.data.common import DatasetInfo, check_count, check_resolution, default_root
from repro.errors import UserError

# bdd100k and bdd_scenes: the 001 paper's BDD100K and its embedded profile
_MODULES = {m.INFO.name: m for m in (street_scenes, digits, cityscapes, cifar10, image_folder, bdd100k, bdd_scenes)}

__all__ = ["DatasetInfo", "dataset_info", "default_root", "list_datasets", "load_dataset", "stack"]


def list_datasets() -> list[str]:
    """Names of every registered dataset, sorted."""
    return sorted(_MODULES)


def _module(name: str):
    if name not in _MODULES:
        raise UserError(f"unknown dataset {name!r}: use one of {', '.join(list_datasets())}")
    return _MODULES[name]


def dataset_info(name: str) -> DatasetInfo:
    """What the named dataset is (kind, channels, classes, ignore label, default resolution)."""
    return _module(name).INFO


def load_dataset(name: str, split: str = "train", resolution: tuple[int, int] | None = None,
                 root: str | None = None, n: int | None = None, seed: int = 0) -> Dataset:
    """The named dataset's split as a torch Dataset of {"image", "label", "index"} dicts.

    resolution (H, W) defaults to the dataset's own; root defaults to $REPRO_DATA/<name> or
    data/<name>; n caps the number of items (for street_scenes it is the number rendered).
    """
    module = _module(name)
    if root is not None and module.INFO.embedded:   # a root the user set would be silently ignored
        raise UserError(f"dataset {name} is rendered by the suite and reads no files: dataset.root {str(root)!r} "
                        f"has no effect; leave it out")
    return module.load(split=split, resolution=check_resolution(resolution), root=root, n=check_count(n),
                       seed=int(seed))


def stack(dataset: Dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All (or the first `limit`) images [N,C,H,W] and labels ([N,H,W] or [N]) as tensors."""
    if hasattr(dataset, "stack"):
        return dataset.stack(limit)
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    items = [dataset[i] for i in range(count)]
    if not items:
        raise UserError("cannot stack an empty dataset: check the dataset root and n")
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) > 1:
        raise UserError(f"images of {getattr(dataset, 'root', 'the dataset')} differ in size {sorted(shapes)[:3]}: "
                        "set dataset.resolution to resize them")
    images = torch.stack([item["image"] for item in items])
    labels = torch.stack([torch.as_tensor(item["label"]) for item in items])
    return images, labels
