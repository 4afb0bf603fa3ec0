"""The label maps a spec's dataset provides, shared by the semantic-synthesis and mask-guided (BDD)
families: the first n (image, map) pairs, the same for every cell."""
from __future__ import annotations

import torch

from repro.data import load_dataset, stack
from repro.errors import UserError


def load_maps(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n (image, label map) pairs of a spec's dataset/split: the same maps for every cell."""
    data = load_dataset(dataset.name, split=dataset.split, resolution=dataset.resolution, root=dataset.root,
                        n=n, seed=dataset.seed)
    images, maps = stack(data, limit=n)
    if maps.ndim != 3:
        raise UserError(f"dataset {dataset.name} has no per-pixel label maps; semantic synthesis needs them")
    if maps.shape[0] < n:
        raise UserError(f"dataset {dataset.name} split {dataset.split} has {maps.shape[0]} maps; the spec asks "
                        f"for {n}")
    return images, maps.long()
