"""How many items a dataset split holds, without loading it (the plan reads no images).

Embedded datasets are counted from their own definitions; the real datasets by the sizes of
their official releases (a local copy with another size is counted where it exists on disk).
"""
from __future__ import annotations

from repro.data.digits import VAL_FRACTION
from repro.data.street_scenes import DEFAULT_SIZE

# Official release sizes: Cityscapes fine annotations (train 2975 / val 500 / test 1525,
# Cordts et al. 2016); CIFAR-10 (train 50000 / test 10000, Krizhevsky 2009).
# BDD100K: the 001 paper's 8000 annotated frames as 7000 train / 1000 test (Tab. 1), the release's
# own 7000 / 1000 as official_train / official_val.
RELEASE_SIZES = {"cityscapes": {"train": 2975, "val": 500, "test": 1525},
                 "cifar10": {"train": 50000, "test": 10000},
                 "bdd100k": {"train": 7000, "test": 1000, "official_train": 7000, "official_val": 1000}}
_ALIASES = {"cifar10": {"val": "test"}, "digits": {"test": "val"}, "bdd100k": {"val": "test"}}
# scikit-learn's digits (load_digits: 1797 images), images per class 0..9; counted here so that a
# plan does not import scikit-learn (seconds) for a length
DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)


def split_size(name: str, split: str, n: int | None = None, seed: int = 0) -> int | None:
    """Items `load_dataset(name, split, n=n)` yields; None where it cannot be known before loading."""
    split = _ALIASES.get(name, {}).get(split, split)
    full = _full_size(name, split, seed)
    if name in ("street_scenes", "bdd_scenes") and n is not None:   # n is the number rendered
        return int(n)
    if full is None:
        return None if n is None else int(n)
    return full if n is None else min(full, int(n))


def _full_size(name: str, split: str, seed: int) -> int | None:
    if name in ("street_scenes", "bdd_scenes"):   # bdd_scenes: centre crops of the street scenes
        return DEFAULT_SIZE.get(split)
    if name == "digits":   # repro.data.digits.split_indices: per class round(n x VAL_FRACTION) held out
        val = sum(int(round(n * VAL_FRACTION)) for n in DIGITS_PER_CLASS)
        return val if split == "val" else sum(DIGITS_PER_CLASS) - val if split == "train" else None
    if name in RELEASE_SIZES:
        return RELEASE_SIZES[name].get(split)
    return None   # image_folder: whatever the folder holds
