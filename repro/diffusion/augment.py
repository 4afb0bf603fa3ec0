"""EDM's non-leaking geometric augmentation (Karras et al. 2022, App. F.2; NVlabs/edm training/augment.py).

Each transform is chosen per sample with probability p (times its multiplier); the network
is told what was done through a label vector, and sampling passes no labels (= zeros, the
un-augmented distribution), so the augmentations do not leak into the samples. EDM's
CIFAR-10 recipe: p = 0.12 with x-flip (multiplier 1e8, i.e. always chosen, then a fair coin),
y-flip, isotropic scale, rotation, anisotropic scale and fractional translation: 9 labels.

Stated simplification: EDM resamples with 2x wavelet (sym6) up/down-sampling around a
bilinear lookup; here the composed affine map is applied once with `grid_sample` (bicubic)
on a reflect-padded image. Samples with no geometric transform are passed through untouched
(EDM resamples every image once a geometric transform is enabled). Integer rotation and the
colour transforms of EDM's pipe are not implemented (EDM's CIFAR-10 recipe enables neither).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ random draws
def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=g.device)


def _chosen(g: torch.Generator, n: int, prob: float) -> torch.Tensor:
    """[n] bool: which samples get a transform applied with probability `prob` (clipped to 1)."""
    return _rand(g, n) < prob


# ------------------------------------------------------------------ 3x3 homogeneous matrices, batched [N, 3, 3]
def _matrix(a, b, c, d, tx, ty) -> torch.Tensor:
    """[[a, b, tx], [c, d, ty], [0, 0, 1]] from [N] tensors (or floats broadcast to them)."""
    ref = next(v for v in (a, b, c, d, tx, ty) if isinstance(v, torch.Tensor))
    row = lambda *vals: torch.stack([torch.as_tensor(v, dtype=ref.dtype, device=ref.device).expand_as(ref)
                                     for v in vals], dim=-1)
    return torch.stack([row(a, b, tx), row(c, d, ty), row(0.0, 0.0, 1.0)], dim=-2)


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix(1.0, 0.0, 0.0, 1.0, tx, ty)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix(sx, 0.0, 0.0, sy, 0.0, 0.0)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    c, s = theta.cos(), theta.sin()
    return _matrix(c, -s, s, c, 0.0, 0.0)


# ------------------------------------------------------------------ pixel operations
def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index i folded into [0, n) by mirror reflection without repeating the edge (F.pad 'reflect')."""
    return (n - 1) - ((n - 1) - i.remainder(2 * n - 2)).abs()


def translate_integer(images: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels with reflection at the borders: out[y, x] = in[y + ty, x - tx].

    As in EDM, +tx moves the content right and +ty moves it up. tx, ty: [N] int64.
    """
    N, C, H, W = images.shape
    ys = _reflect(torch.arange(H, device=images.device)[None, :] + ty[:, None], H)   # [N, H]
    xs = _reflect(torch.arange(W, device=images.device)[None, :] - tx[:, None], W)   # [N, W]
    images = images.gather(2, ys[:, None, :, None].expand(N, C, H, W))
    return images.gather(3, xs[:, None, None, :].expand(N, C, H, W))


def warp_affine(images: torch.Tensor, G_inv: torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
    """Resample images [N, C, H, W] so that output pixel p (centred pixel coordinates) reads input
    pixel G_inv p; outside the image the input is mirrored (reflect padding, as EDM)."""
    N, C, H, W = images.shape
    cx, cy = (W - 1) / 2, (H - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0, 1.0, 1.0, 1.0]],
                           dtype=G_inv.dtype, device=G_inv.device)
    reach = (G_inv @ corners)[:, :2].abs().amax(dim=(0, 2))            # farthest |x|, |y| read
    # symmetric margins keep the centre; +2 pixels of bicubic support; F.pad 'reflect' allows < size
    mx = min(max(math.ceil(reach[0].item() - cx) + 2, 0), W - 1)
    my = min(max(math.ceil(reach[1].item() - cy) + 2, 0), H - 1)
    padded = F.pad(images, [mx, mx, my, my], mode="reflect")
    Hp, Wp = H + 2 * my, W + 2 * mx
    # align_corners=False: normalised coordinate = 2 * centred pixel coordinate / size
    to_norm_in = torch.diag(torch.tensor([2 / Wp, 2 / Hp, 1.0], dtype=G_inv.dtype, device=G_inv.device))
    from_norm_out = torch.diag(torch.tensor([W / 2, H / 2, 1.0], dtype=G_inv.dtype, device=G_inv.device))
    theta = (to_norm_in @ G_inv @ from_norm_out)[:, :2].to(images.dtype)
    grid = F.affine_grid(theta, [N, C, H, W], align_corners=False)
    return F.grid_sample(padded, grid, mode=mode, padding_mode="reflection", align_corners=False)


# ------------------------------------------------------------------ the pipeline
@dataclass(frozen=True)
class AugmentPipe:
    """Callable (images [N, C, H, W] in [-1, 1], torch.Generator) -> (images, labels [N, label_dim]).

    Multipliers and ranges have EDM's names and defaults; a multiplier of 0 disables a transform
    and drops its labels. Label order (EDM's): xflip, yflip, translate_int x, y, scale,
    rotation cos - 1, sin, aniso w cos r, w sin r, translate_frac x, y. All randomness comes
    from the generator (on its device), so the same seed gives the same augmentation.
    """

    p: float
    xflip: float = 0.0
    yflip: float = 0.0
    translate_int: float = 0.0
    translate_int_max: float = 0.125     # relative to the image size
    scale: float = 0.0
    rotate_frac: float = 0.0
    aniso: float = 0.0
    translate_frac: float = 0.0
    scale_std: float = 0.2               # log2 standard deviation
    rotate_frac_max: float = 1.0         # 1 = full circle
    aniso_std: float = 0.2               # log2 standard deviation
    aniso_rotate_prob: float = 0.5       # anisotropy along a rotated frame
    translate_frac_std: float = 0.125    # relative to the image size
    interpolation: str = "bicubic"

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"augmentation probability p must be in [0, 1], got {self.p}")

    @property
    def label_dim(self) -> int:
        counts = ((self.xflip, 1), (self.yflip, 1), (self.translate_int, 2), (self.scale, 1),
                  (self.rotate_frac, 2), (self.aniso, 2), (self.translate_frac, 2))
        return sum(k for mult, k in counts if mult > 0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(images.device.type, enabled=False):   # matrices in float32 under AMP
            return self._augment(images, generator)

    def _augment(self, images: torch.Tensor, g: torch.Generator):
        N, _, H, W = images.shape
        dev = images.device
        labels: list[torch.Tensor] = []

        # Pixel blitting: exact flips and whole-pixel shifts.
        for mult, dim in ((self.xflip, 3), (self.yflip, 2)):
            if mult > 0:
                w = torch.randint(2, (N,), generator=g, device=g.device)
                w = torch.where(_chosen(g, N, mult * self.p), w, 0).to(dev)
                images = torch.where(w[:, None, None, None] == 1, images.flip(dim), images)
                labels.append(w)
        if self.translate_int > 0:
            w = _rand(g, 2, N) * 2 - 1
            w = torch.where(_chosen(g, N, self.translate_int * self.p), w, 0.0).to(dev)
            tx = (w[0] * (W * self.translate_int_max)).round().long()
            ty = (w[1] * (H * self.translate_int_max)).round().long()
            images = translate_integer(images, tx, ty)
            labels += [tx / (W * self.translate_int_max), ty / (H * self.translate_int_max)]

        # Geometric transforms, composed into one inverse map (output -> input coordinates).
        G_inv = torch.eye(3, device=g.device).expand(N, 3, 3)
        warped = torch.zeros(N, dtype=torch.bool, device=g.device)
        if self.scale > 0:
            w = _randn(g, N)
            on = _chosen(g, N, self.scale * self.p)
            w = torch.where(on, w, 0.0)
            s = torch.exp2(w * self.scale_std)
            G_inv, warped = G_inv @ scale2d(1 / s, 1 / s), warped | on
            labels.append(w)
        if self.rotate_frac > 0:
            w = (_rand(g, N) * 2 - 1) * (math.pi * self.rotate_frac_max)
            on = _chosen(g, N, self.rotate_frac * self.p)
            w = torch.where(on, w, 0.0)
            G_inv, warped = G_inv @ rotate2d(w), warped | on
            labels += [w.cos() - 1, w.sin()]
        if self.aniso > 0:
            w = _randn(g, N)
            r = (_rand(g, N) * 2 - 1) * math.pi
            on = _chosen(g, N, self.aniso * self.p)
            w = torch.where(on, w, 0.0)
            r = torch.where(_chosen(g, N, self.aniso_rotate_prob), r, 0.0)
            s = torch.exp2(w * self.aniso_std)
            # scale by s and 1/s along axes turned by r (r = 0 with prob. 1 - aniso_rotate_prob)
            G_inv = G_inv @ rotate2d(-r) @ scale2d(1 / s, s) @ rotate2d(r)
            warped = warped | on
            labels += [w * r.cos(), w * r.sin()]
        if self.translate_frac > 0:
            w = _randn(g, 2, N)
            on = _chosen(g, N, self.translate_frac * self.p)
            w = torch.where(on, w, 0.0)
            G_inv = G_inv @ translate2d(-w[0] * (W * self.translate_frac_std), -w[1] * (H * self.translate_frac_std))
            warped = warped | on
            labels += [w[0], w[1]]

        warped = warped.to(dev)
        if warped.any():   # untouched samples stay bit-exact
            images = images.clone()
            images[warped] = warp_affine(images[warped], G_inv.to(dev)[warped], self.interpolation)

        out_labels = (torch.stack([lab.to(dev, torch.float32) for lab in labels], dim=1) if labels
                      else torch.zeros(N, 0, device=dev))
        return images, out_labels


def edm_cifar10_augment(p: float = 0.12) -> AugmentPipe:
    """EDM's CIFAR-10 pipe (train.py --augment=0.12): xflip=1e8, yflip, scale, rotate_frac, aniso,
    translate_frac, each multiplier 1: 9 labels, matching DDPM++ augment_dim=9."""
    return AugmentPipe(p=p, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)


EDM_AUGMENT_DIM = edm_cifar10_augment(0.0).label_dim   # 9
