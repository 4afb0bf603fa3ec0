"""The colour book of the 001 paper (Sec. 4.1, Fig. 8, Sec. 4.4): a JSON file of class -> RGB, read at
run time, used to write masks as colour images and to read edited or hand-painted masks back.

A mask is read by exact colour; an unknown colour is a one-line error naming its position, its colour
and the nearest class colour. The unlabeled colour reads as the ignore id (255), whose one-hot row is
all zeros.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.data.common import open_checked
from repro.errors import UserError

DEFAULT_PATH = Path(__file__).with_name("bdd100k_colorbook.json")
IGNORE = 255


@dataclass(frozen=True)
class ColorBook:
    names: tuple[str, ...]          # class names in id order 0..K-1
    colors: np.ndarray              # uint8 [K, 3]
    unlabeled_color: tuple[int, int, int] | None
    path: Path

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ColorBook":
        path = Path(path) if path is not None else DEFAULT_PATH
        try:
            doc = json.loads(path.read_text())
            entries = sorted(doc["classes"], key=lambda e: int(e["id"]))
            ids = [int(e["id"]) for e in entries]
            colors = np.array([[int(c) for c in e["color"]] for e in entries], dtype=np.int64)
            names = tuple(str(e["name"]) for e in entries)
            unl = doc.get("unlabeled")
            unlabeled = tuple(int(c) for c in unl["color"]) if unl else None
        except FileNotFoundError:
            raise UserError(f"colour book {path}: no such file") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"colour book {path}: not a colour book JSON ({type(e).__name__}: {e}); expected "
                            f'{{"classes": [{{"id", "name", "color": [r, g, b]}}, ...]}}') from None
        if ids != list(range(len(ids))):
            raise UserError(f"colour book {path}: class ids must be 0..{len(ids) - 1}, got {ids}")
        if colors.ndim != 2 or colors.shape[1] != 3 or ((colors < 0) | (colors > 255)).any():
            raise UserError(f"colour book {path}: every colour must be [r, g, b] in 0..255")
        all_colors = [tuple(c) for c in colors.tolist()] + ([unlabeled] if unlabeled else [])
        if len(set(all_colors)) != len(all_colors):
            raise UserError(f"colour book {path}: two entries share a colour; each class needs its own")
        return cls(names, colors.astype(np.uint8), unlabeled, path)

    def to_rgb(self, labels) -> np.ndarray:
        """Labels [..., H, W] (0..K-1, 255 unlabeled) -> RGB uint8 [..., H, W, 3]."""
        labels = np.asarray(labels, np.int64)
        table = np.zeros((256, 3), np.uint8)
        table[: self.num_classes] = self.colors
        if self.unlabeled_color is not None:
            table[IGNORE] = self.unlabeled_color
        return table[np.clip(labels, 0, 255)]

    def from_rgb(self, rgb: np.ndarray, where: str) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> labels int64 [H, W]; an unknown colour is a UserError naming the first
        such pixel (x, y), its colour and the nearest class colour."""
        rgb = np.asarray(rgb, np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise UserError(f"{where}: expected an RGB image, got an array of shape {rgb.shape}")
        flat = rgb.reshape(-1, 3).astype(np.int64)
        table = self.colors.astype(np.int64)
        codes = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
        ids = np.arange(self.num_classes)
        if self.unlabeled_color is not None:
            u = self.unlabeled_color
            codes = np.append(codes, (u[0] << 16) | (u[1] << 8) | u[2])
            ids = np.append(ids, IGNORE)
        code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
        order = np.argsort(codes)
        pos = np.searchsorted(codes[order], code).clip(0, len(codes) - 1)
        hit = codes[order][pos] == code
        if not hit.all():
            i = int(np.flatnonzero(~hit)[0])
            y, x = divmod(i, rgb.shape[1])
            c = flat[i]
            cands = [(n, tuple(int(v) for v in col)) for n, col in zip(self.names, self.colors)]
            if self.unlabeled_color is not None:
                cands.append(("unlabeled", tuple(self.unlabeled_color)))
            name, near = min(cands, key=lambda e: sum((a - int(b)) ** 2 for a, b in zip(e[1], c)))
            raise UserError(f"{where}: pixel (x={x}, y={y}) has colour {tuple(int(v) for v in c)}, which is in no "
                            f"class of the colour book {self.path.name}; nearest class colour: {name} {near}")
        return ids[order[pos]].reshape(rgb.shape[:2])

    def read_mask(self, path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
        """A colour mask image -> labels [H, W]; resized nearest-neighbour to `size` (H, W) if given."""
        from PIL import Image, UnidentifiedImageError

        path = Path(path)
        if not path.is_file():
            raise UserError(f"--mask {path}: no such file")
        try:
            with open_checked(path, f"--mask {path}") as im:
                rgb = np.asarray(im.convert("RGB"), np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"--mask {path}: not a readable image ({type(e).__name__})") from None
        labels = self.from_rgb(rgb, f"--mask {path}")
        if size is not None and labels.shape != tuple(size):
            img = Image.fromarray(labels.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST)
            labels = np.asarray(img, np.int64)
        return labels

    def write_mask(self, labels, path: str | Path) -> Path:
        from PIL import Image

        path = Path(path)
        Image.fromarray(self.to_rgb(labels)).save(path)
        return path


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels [B, H, W] -> float one-hot [B, K, H, W] (001 Sec. 4.2); the ignore id (255) is all zeros."""
    labels = labels.long()
    valid = (labels >= 0) & (labels < num_classes)
    out = torch.nn.functional.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    return out * valid[:, None].float()
