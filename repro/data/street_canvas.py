"""Camera, parameter draws and z-buffered canvas shared by the street-scene renderer.

Geometry is a pinhole camera looking down a straight street, in normalised image
coordinates (u, v) in [0, 1] with v pointing down. A ground point at lateral offset x
and depth z projects to u = u_vp + x / (A z), v = v_h + 1 / z (camera height = 1), so
the road is a trapezoid toward the vanishing point (u_vp, v_h); facades are vertical
planes x = x_b; cars, people, poles, signs and trees are upright billboards at their
depth. A z-buffer resolves occlusion, so drawing order does not matter.

Every pixel is classified at its centre, so labels are exact (no antialiasing) and a
scene rendered at another resolution has the same layout. All scene parameters come
from one vector of uniforms per image; only +, -, *, /, floor and comparisons touch
them (no exp/log/sin), so an image is bit-identical however images are batched.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole",
               "traffic_sign", "background")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE, SIGN, BACKGROUND = range(len(CLASS_NAMES))

# Colour per class for previews (Cityscapes palette where the class exists there).
CLASS_COLORS = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
    (0, 0, 142), (220, 20, 60), (153, 153, 153), (220, 220, 0), (0, 0, 0)], dtype=np.uint8)

ASPECT = 2.0  # nominal width/height of the camera; fixed so the layout is resolution independent
N_PARAMS = 640  # uniforms drawn per image (the renderer asserts it uses no more)

f32 = np.float32
BUILDING_COLORS = np.array([(0.76, 0.70, 0.60), (0.62, 0.33, 0.26), (0.55, 0.55, 0.57), (0.86, 0.84, 0.79),
                      (0.72, 0.58, 0.42), (0.42, 0.40, 0.39), (0.66, 0.60, 0.66), (0.80, 0.72, 0.50)], f32)
CAR_COLORS = np.array([(0.92, 0.92, 0.92), (0.07, 0.07, 0.08), (0.62, 0.64, 0.67), (0.72, 0.08, 0.08),
                 (0.10, 0.22, 0.62), (0.12, 0.34, 0.20), (0.88, 0.76, 0.15), (0.35, 0.37, 0.40)], f32)
SHIRT_COLORS = np.array([(0.80, 0.15, 0.15), (0.15, 0.30, 0.70), (0.90, 0.90, 0.85), (0.10, 0.10, 0.10),
                   (0.95, 0.70, 0.10), (0.30, 0.55, 0.30), (0.55, 0.30, 0.60), (0.95, 0.45, 0.60)], f32)
PANTS_COLORS = np.array([(0.10, 0.12, 0.25), (0.08, 0.08, 0.08), (0.40, 0.35, 0.28), (0.25, 0.25, 0.28)], f32)
SKIN_COLORS = np.array([(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.64, 0.45, 0.33), (0.40, 0.27, 0.20)], f32)
SIGN_COLORS = np.array([(0.10, 0.30, 0.80), (0.85, 0.10, 0.10), (0.95, 0.80, 0.10), (0.10, 0.55, 0.25)], f32)
GROUND_COLORS = np.array([(0.46, 0.39, 0.29), (0.36, 0.34, 0.33), (0.55, 0.50, 0.43), (0.30, 0.27, 0.24)], f32)


class Draws:
    """Hands out fixed columns of the per-image uniforms, so parameter k is always column k."""

    def __init__(self, uniforms: np.ndarray):
        self.u = uniforms
        self.i = 0

    def take(self, k: int | None = None) -> np.ndarray:
        width = 1 if k is None else k
        if self.i + width > self.u.shape[1]:
            raise RuntimeError("street renderer needs more than N_PARAMS uniforms per image")
        out = self.u[:, self.i:self.i + width]
        self.i += width
        return out[:, 0] if k is None else out

    def uniform(self, lo, hi, k=None):
        return (lo + (hi - lo) * self.take(k)).astype(f32)

    def chance(self, p, k=None):
        return self.take(k) < p

    def pick(self, palette: np.ndarray, k=None):
        idx = np.floor(self.take(k) * len(palette)).astype(np.int64)
        return palette[np.minimum(idx, len(palette) - 1)]

    def inverse_depth(self, z_near, z_far, k=None):
        # Uniform in s = 1/z (uniform over image rows), returned as depth z.
        return (1.0 / self.uniform(1.0 / z_far, 1.0 / z_near, k)).astype(f32)


def col(a):
    """Per-image scalars [N] (or [N,3]) -> broadcastable [N,1,1] (or [N,3,1,1])."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(f32)
    return a[:, None, None] if a.ndim == 1 else a[:, :, None, None]


def value_noise(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of per-image random grids [N,gh,gw] at points u [1,1,W], v [1,H,1]."""
    n, gh, gw = grid.shape
    gx = u[0, 0] * (gw - 1)
    gy = v[0, :, 0] * (gh - 1)
    x0 = np.minimum(np.floor(gx).astype(np.int64), gw - 2)
    y0 = np.minimum(np.floor(gy).astype(np.int64), gh - 2)
    fx = (gx - x0).astype(f32)[None, None, :]
    fy = (gy - y0).astype(f32)[None, :, None]
    g = grid.astype(f32)
    top = g[:, y0][:, :, x0] * (1 - fx) + g[:, y0][:, :, x0 + 1] * fx
    bot = g[:, y0 + 1][:, :, x0] * (1 - fx) + g[:, y0 + 1][:, :, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def frac(x):
    return x - np.floor(x)


class Canvas:
    """Colour, label, depth and emission buffers for N images, with a z-tested paint."""

    def __init__(self, n: int, height: int, width: int):
        self.u = ((np.arange(width, dtype=f32) + 0.5) / width)[None, None, :]
        self.v = ((np.arange(height, dtype=f32) + 0.5) / height)[None, :, None]
        self.rgb = np.zeros((n, 3, height, width), f32)
        self.label = np.full((n, height, width), BACKGROUND, np.uint8)
        self.depth = np.full((n, height, width), np.inf, f32)
        self.glow = np.zeros((n, height, width), bool)  # emissive pixels: not dimmed at night

    def paint(self, mask, depth, cls, color, glow=False):
        m = np.logical_and(mask, np.asarray(depth, f32) < self.depth)
        np.copyto(self.depth, depth, where=m)
        np.copyto(self.label, np.asarray(cls, np.uint8), where=m)
        np.copyto(self.rgb, color, where=m[:, None])
        np.copyto(self.glow, glow, where=m)


class Scene:
    """Per-image scene parameters and the helpers that place billboards in it."""

    def __init__(self, d: Draws, canvas: Canvas):
        self.c = canvas
        self.v_h = col(d.uniform(0.36, 0.52))  # horizon row
        self.u_vp = col(d.uniform(0.40, 0.60))  # vanishing point column
        centre = d.uniform(-0.8, 0.8)
        half = d.uniform(1.6, 2.8)
        self.road_l, self.road_r = centre - half, centre + half
        self.lane = centre
        self.walk_l, self.walk_r = d.uniform(1.0, 2.2), d.uniform(1.0, 2.2)
        strip = d.uniform(0.0, 1.6, 2) * d.chance(0.55, 2)  # ground between sidewalk and facade
        self.facade_l = self.road_l - self.walk_l - strip[:, 0]
        self.facade_r = self.road_r + self.walk_r + strip[:, 1]
        self.night = d.chance(0.3)
        self.coarse = d.take(4 * 8).reshape(-1, 4, 8)
        self.fine = d.take(8 * 16).reshape(-1, 8, 16)
        self.noise_c = value_noise(self.coarse, canvas.u, canvas.v)  # [N,H,W] in [0,1]
        self.noise_f = value_noise(self.fine, canvas.u, canvas.v)

    def local(self, x, z):
        """Billboard coordinates of a pixel for an object standing at (x, z): lateral dx, height dh."""
        z = col(z)
        dx = (self.c.u - self.u_vp) * (ASPECT * z) - col(x)  # [N,1,W]
        dh = 1.0 + (self.v_h - self.c.v) * z  # [N,H,1]
        return dx, dh

    def rect(self, dx, dh, x0, x1, h0, h1):
        return ((dx >= x0) & (dx < x1)) & ((dh >= h0) & (dh < h1))
