"""Vectorised numpy renderer of procedural street scenes (the embedded Cityscapes stand-in).

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
_BUILDING = np.array([(0.76, 0.70, 0.60), (0.62, 0.33, 0.26), (0.55, 0.55, 0.57), (0.86, 0.84, 0.79),
                      (0.72, 0.58, 0.42), (0.42, 0.40, 0.39), (0.66, 0.60, 0.66), (0.80, 0.72, 0.50)], f32)
_CAR = np.array([(0.92, 0.92, 0.92), (0.07, 0.07, 0.08), (0.62, 0.64, 0.67), (0.72, 0.08, 0.08),
                 (0.10, 0.22, 0.62), (0.12, 0.34, 0.20), (0.88, 0.76, 0.15), (0.35, 0.37, 0.40)], f32)
_SHIRT = np.array([(0.80, 0.15, 0.15), (0.15, 0.30, 0.70), (0.90, 0.90, 0.85), (0.10, 0.10, 0.10),
                   (0.95, 0.70, 0.10), (0.30, 0.55, 0.30), (0.55, 0.30, 0.60), (0.95, 0.45, 0.60)], f32)
_PANTS = np.array([(0.10, 0.12, 0.25), (0.08, 0.08, 0.08), (0.40, 0.35, 0.28), (0.25, 0.25, 0.28)], f32)
_SKIN = np.array([(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.64, 0.45, 0.33), (0.40, 0.27, 0.20)], f32)
_SIGN = np.array([(0.10, 0.30, 0.80), (0.85, 0.10, 0.10), (0.95, 0.80, 0.10), (0.10, 0.55, 0.25)], f32)
_GROUND = np.array([(0.46, 0.39, 0.29), (0.36, 0.34, 0.33), (0.55, 0.50, 0.43), (0.30, 0.27, 0.24)], f32)


class _Draws:
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


def _col(a):
    """Per-image scalars [N] (or [N,3]) -> broadcastable [N,1,1] (or [N,3,1,1])."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(f32)
    return a[:, None, None] if a.ndim == 1 else a[:, :, None, None]


def _value_noise(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def _frac(x):
    return x - np.floor(x)


class _Canvas:
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


class _Scene:
    """Per-image scene parameters and the helpers that place billboards in it."""

    def __init__(self, d: _Draws, canvas: _Canvas):
        self.c = canvas
        self.v_h = _col(d.uniform(0.36, 0.52))  # horizon row
        self.u_vp = _col(d.uniform(0.40, 0.60))  # vanishing point column
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
        self.noise_c = _value_noise(self.coarse, canvas.u, canvas.v)  # [N,H,W] in [0,1]
        self.noise_f = _value_noise(self.fine, canvas.u, canvas.v)

    def local(self, x, z):
        """Billboard coordinates of a pixel for an object standing at (x, z): lateral dx, height dh."""
        z = _col(z)
        dx = (self.c.u - self.u_vp) * (ASPECT * z) - _col(x)  # [N,1,W]
        dh = 1.0 + (self.v_h - self.c.v) * z  # [N,H,1]
        return dx, dh

    def rect(self, dx, dh, x0, x1, h0, h1):
        return ((dx >= x0) & (dx < x1)) & ((dh >= h0) & (dh < h1))


def _sky(s: _Scene, d: _Draws):
    c = s.c
    t = np.clip((s.v_h - c.v) / s.v_h, 0, 1)  # 0 at the horizon, 1 at the top
    overcast = _col(d.chance(0.25))
    zenith = np.array([0.30, 0.52, 0.86], f32)[None, :, None, None]
    zenith = np.where(overcast[:, None], np.array([0.60, 0.62, 0.66], f32)[None, :, None, None], zenith)
    horizon = np.array([0.78, 0.86, 0.95], f32)[None, :, None, None]
    night = _col(s.night)[:, None]
    zenith = np.where(night, np.array([0.01, 0.02, 0.07], f32)[None, :, None, None], zenith)
    horizon = np.where(night, np.array([0.10, 0.09, 0.16], f32)[None, :, None, None], horizon)
    color = horizon + (zenith - horizon) * t[:, None]
    cover = _col(d.uniform(0.0, 0.9))
    cloud = np.clip((s.noise_c - (1 - cover)) * 3, 0, 1)[:, None] * (1 - 0.8 * night)
    color = color + (f32(0.93) - color) * (0.8 * cloud)
    c.paint(c.v < s.v_h, f32(1e6), SKY, color, glow=_col(s.night))


def _ground(s: _Scene, d: _Draws, pix: np.ndarray):
    c = s.c
    sv = c.v - s.v_h  # [N,H,1] inverse depth of the ground row
    ok = sv > 1e-4
    z = np.where(ok, 1.0 / np.where(ok, sv, 1), np.inf).astype(f32)
    x = (c.u - s.u_vp) * ASPECT * z  # lateral position of the ground point
    rl, rr, lane = _col(s.road_l), _col(s.road_r), _col(s.lane)
    road = (x >= rl) & (x < rr)
    walk = ((x >= rl - _col(s.walk_l)) & (x < rl)) | ((x >= rr) & (x < rr + _col(s.walk_r)))
    tex = (s.noise_f - 0.5)[:, None]
    # Asphalt with dashed centre line and solid edge lines.
    asphalt = _col(d.uniform(0.22, 0.42))[:, None] + 0.08 * tex + 0.03 * pix[:, None]
    asphalt = asphalt * np.array([1.0, 1.0, 1.04], f32)[None, :, None, None]
    dash = (np.abs(x - lane) < 0.07) & (_frac(z / _col(d.uniform(1.5, 3.0))) < 0.5) & _col(d.chance(0.8))
    edge = ((np.abs(x - rl - 0.2) < 0.06) | (np.abs(x - rr + 0.2) < 0.06)) & _col(d.chance(0.5))
    asphalt = np.where((dash | edge)[:, None], f32(0.82), asphalt)
    # Paving stones: light, with tile seams across the walk and a bright kerb.
    paving = _col(d.uniform(0.50, 0.68))[:, None] * d.pick(np.array([(1, 1, 1), (1.05, 0.98, 0.9)], f32))[:, :, None, None]
    seam = _frac(z * _col(d.uniform(1.0, 2.0))) < 0.12
    kerb = (np.abs(x - rl) < 0.12) | (np.abs(x - rr) < 0.12)
    paving = paving * np.where(seam, f32(0.88), 1)[:, None] + 0.03 * pix[:, None]
    paving = np.where(kerb[:, None], f32(0.75), paving)
    # Everything else on the ground (yards, verges, the street's far end): "background".
    other = d.pick(_GROUND)[:, :, None, None] * (0.85 + 0.3 * s.noise_f[:, None]) + 0.04 * pix[:, None]
    cls = np.where(road, ROAD, np.where(walk, SIDEWALK, BACKGROUND)).astype(np.uint8)
    color = np.where(road[:, None], asphalt, np.where(walk[:, None], paving, other))
    c.paint(ok & (x == x), z, cls, color)


def _facades(s: _Scene, d: _Draws, pix: np.ndarray, n_segments: int = 6):
    """Both sides: a row of segments along depth, each a building, a hedge/park, or a gap."""
    c = s.c
    for side, x_b in (("l", s.facade_l), ("r", s.facade_r)):
        x_b = _col(x_b)
        sf = (c.u - s.u_vp) * ASPECT / x_b  # inverse depth of the facade seen in this column
        valid = sf > 1e-4
        zf = np.where(valid, 1.0 / np.where(valid, sf, 1), np.inf).astype(f32)  # [N,1,W]
        lengths = d.uniform(2.5, 10.0, n_segments)
        bounds = np.concatenate([d.uniform(1.0, 4.0)[:, None], lengths], 1).cumsum(1).astype(f32)
        bounds[:, -1] = np.inf  # the last segment closes the street
        kind = np.floor(d.take(n_segments) * 20)  # 0-2 gap, 3-5 vegetation, else building
        kind[:, -1] = 10
        heights = d.uniform(1.5, 8.0, n_segments)
        hedge = d.uniform(0.0, 2.2, n_segments)
        colors = d.pick(_BUILDING, n_segments) * d.uniform(0.85, 1.1, n_segments)[:, :, None]
        windows = d.chance(0.85, n_segments)
        seg_h = np.zeros_like(zf)
        seg_kind = np.full(zf.shape, -1.0, f32)
        seg_color = np.zeros((zf.shape[0], 3, 1, zf.shape[2]), f32)
        seg_win = np.zeros(zf.shape, bool)
        for k in range(n_segments):
            inside = (zf >= _col(bounds[:, k - 1] if k else np.zeros(len(x_b), f32))) & (zf < _col(bounds[:, k]))
            is_veg = (kind[:, k] >= 3) & (kind[:, k] < 6)
            h = np.where(is_veg, hedge[:, k], heights[:, k])
            kk = np.where(kind[:, k] < 3, -1, np.where(is_veg, 0, 1)).astype(f32)
            np.copyto(seg_h, _col(h), where=inside)
            np.copyto(seg_kind, _col(kk), where=inside)
            np.copyto(seg_color, _col(colors[:, k]), where=inside[:, None])
            np.copyto(seg_win, _col(windows[:, k]), where=inside)
        height = (s.v_h - c.v) / np.where(valid, sf, 1) + 1.0  # height above ground on the facade plane
        is_bld = seg_kind == 1
        bump = np.where(is_bld, 0, 1.2 * (s.noise_c - 0.3))
        solid = valid & (seg_kind >= 0) & (height < seg_h + 1.0 + bump)
        # Window grid on buildings; at night a random subset is lit (integer hash of the cell).
        fy, fz = _col(d.uniform(1.7, 2.4)), _col(d.uniform(1.4, 3.0))
        win = seg_win & is_bld & (_frac(height / fy) > 0.35) & (_frac(height / fy) < 0.8) \
            & (_frac(zf / fz) > 0.25) & (_frac(zf / fz) < 0.75) & (height > 1.3) & (height < seg_h + 0.6)
        cell = (np.floor(height / fy).astype(np.int64) * 73856093) ^ (np.floor(zf / fz).astype(np.int64) * 19349663)
        salt = np.floor(d.take() * 1e6).astype(np.int64)[:, None, None]
        lit = ((cell ^ salt) % 1000 < _col(d.uniform(200, 650))) & win & _col(s.night)
        shade = _col(d.uniform(0.72, 1.0))[:, None]  # the sun lights one side more than the other
        wall = seg_color * shade * (0.92 + 0.16 * s.noise_f[:, None]) + 0.03 * pix[:, None]
        glass = np.array([0.18, 0.22, 0.28], f32)[None, :, None, None] + 0.15 * (1 - s.noise_c[:, None])
        wall = np.where(win[:, None], glass, wall)
        wall = np.where(lit[:, None], np.array([1.0, 0.85, 0.5], f32)[None, :, None, None], wall)
        green = np.array([0.16, 0.38, 0.12], f32)[None, :, None, None] * (0.6 + 0.8 * s.noise_f[:, None]) \
            + 0.05 * pix[:, None]
        color = np.where(is_bld[:, None], wall, green)
        cls = np.where(is_bld, BUILDING, VEGETATION).astype(np.uint8)
        c.paint(solid, np.broadcast_to(zf, solid.shape), cls, color, glow=lit)


def _trees(s: _Scene, d: _Draws, pix: np.ndarray, k_max: int = 6):
    active = d.take(k_max) < np.linspace(0.85, 0.3, k_max)
    left = d.chance(0.5, k_max)
    inset = d.uniform(0.2, 0.6, k_max)
    x = np.where(left, s.road_l[:, None] - s.walk_l[:, None] + inset, s.road_r[:, None] + s.walk_r[:, None] - inset)
    z = d.inverse_depth(2.5, 45.0, k_max)
    crown_h, radius = d.uniform(2.2, 3.4, k_max), d.uniform(0.8, 1.6, k_max)
    tint = d.uniform(0.7, 1.2, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        r = _col(radius[:, k])
        trunk = s.rect(dx, dh, -0.09, 0.09, 0.0, _col(crown_h[:, k]))
        e = (dx / r) ** 2 + ((dh - _col(crown_h[:, k])) / r) ** 2
        crown = e < 1.0 + 0.6 * (s.noise_f - 0.5)
        mask = (trunk | crown) & _col(active[:, k])
        leaf = _col(tint[:, k])[:, None] * np.array([0.20, 0.42, 0.14], f32)[None, :, None, None] \
            * (0.55 + 0.9 * s.noise_f[:, None]) + 0.06 * pix[:, None]
        color = np.where(crown[:, None], leaf, np.array([0.30, 0.22, 0.15], f32)[None, :, None, None])
        s.c.paint(mask, _col(z[:, k]), VEGETATION, color)


def _poles(s: _Scene, d: _Draws, k_max: int = 4):
    active = d.take(k_max) < np.linspace(0.95, 0.4, k_max)
    left = d.chance(0.5, k_max)
    x = np.where(left, s.road_l[:, None] - 0.35, s.road_r[:, None] + 0.35)
    z = d.inverse_depth(2.5, 30.0, k_max)
    top, width = d.uniform(3.2, 5.0, k_max), d.uniform(0.10, 0.18, k_max)
    lamp = d.chance(0.5, k_max)
    has_sign = d.chance(0.75, k_max)
    sign_h, size = d.uniform(1.9, 2.8, k_max), d.uniform(0.45, 0.75, k_max)
    shape = np.floor(d.take(k_max) * 3)
    sign_color = d.pick(_SIGN, k_max)
    grey = d.uniform(0.35, 0.6, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        w, t = _col(width[:, k] / 2), _col(top[:, k])
        toward = np.where(left[:, k], 1.0, -1.0).astype(f32)  # the lamp arm reaches over the road
        ax = dx * _col(toward)
        arm = (ax > -w) & (ax < 0.9) & (dh > t - 0.12) & (dh < t) & _col(lamp[:, k])
        head = (ax > 0.6) & (ax < 1.0) & (dh > t - 0.22) & (dh < t) & _col(lamp[:, k])
        mask = (s.rect(dx, dh, -w, w, 0.0, t) | arm | head) & _col(active[:, k])
        glow = head & _col(s.night)
        color = np.where(glow[:, None], np.array([1.0, 0.95, 0.8], f32)[None, :, None, None],
                         _col(grey[:, k])[:, None] * np.ones((1, 3, 1, 1), f32))
        s.c.paint(mask, _col(z[:, k]), POLE, color, glow=glow)
        # Sign plate on the pole: rectangle, disc or triangle, with a white border.
        r, cy = _col(size[:, k] / 2), _col(sign_h[:, k])
        ady, ax_ = np.abs(dh - cy), np.abs(dx)
        sh = _col(shape[:, k])
        rect = (ax_ < r) & (ady < r * 0.8)
        disc = (dx / r) ** 2 + ((dh - cy) / r) ** 2 < 1
        tri = (dh - cy > -r) & (ax_ < (r - (dh - cy)) * 0.6)
        plate = np.where(sh == 0, rect, np.where(sh == 1, disc, tri)) & (ady < r) & _col(active[:, k] & has_sign[:, k])
        inner_r = r * 0.7
        inner = np.where(sh == 1, (dx / inner_r) ** 2 + ((dh - cy) / inner_r) ** 2 < 1,
                         (ax_ < inner_r) & (ady < inner_r * 0.75))
        color = np.where(inner[:, None], _col(sign_color[:, k]), f32(0.92))
        s.c.paint(plate, _col(z[:, k] - 0.02), SIGN, color)


def _cars(s: _Scene, d: _Draws, k_max: int = 6):
    active = d.take(k_max) < np.linspace(0.95, 0.3, k_max)
    parked = d.chance(0.3, k_max)
    side = d.chance(0.5, k_max)
    lane_x = s.road_l[:, None] + 0.75 + d.take(k_max) * (s.road_r - s.road_l - 1.5)[:, None]
    x = np.where(parked, np.where(side, s.road_l[:, None] + 0.75, s.road_r[:, None] - 0.75), lane_x)
    z = d.inverse_depth(2.3, 45.0, k_max)
    scale = np.where(d.chance(0.2, k_max), d.uniform(1.1, 1.6, k_max), f32(1.0))  # vans and trucks
    half_w = d.uniform(0.58, 0.68, k_max)
    body = d.pick(_CAR, k_max) * d.uniform(0.85, 1.1, k_max)[:, :, None]
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        hw, sc = _col(half_w[:, k]), _col(scale[:, k])
        lower = s.rect(dx, dh, -hw, hw, 0.14 * sc, 0.62 * sc)
        cabin = s.rect(dx, dh, -hw + 0.12, hw - 0.12, 0.62 * sc, 0.98 * sc)
        window = s.rect(dx, dh, -hw + 0.2, hw - 0.2, 0.66 * sc, 0.93 * sc)
        wheels = s.rect(np.abs(dx), dh, hw - 0.24, hw - 0.02, 0.0, 0.2)
        lights = s.rect(np.abs(dx), dh, hw - 0.18, hw - 0.04, 0.40 * sc, 0.50 * sc)
        mask = (lower | cabin | wheels) & _col(active[:, k])
        # Cars left of the lane line come toward us (headlights), the others drive away (tail lights).
        oncoming = _col(x[:, k] < s.lane)[:, None]
        lamp = np.where(oncoming, np.array([1.0, 0.97, 0.85], f32)[None, :, None, None],
                        np.array([0.95, 0.1, 0.05], f32)[None, :, None, None])
        color = np.where(wheels[:, None], f32(0.05), _col(body[:, k]))
        color = np.where(window[:, None], np.array([0.12, 0.15, 0.2], f32)[None, :, None, None], color)
        color = np.where(lights[:, None], lamp, color)
        s.c.paint(mask, _col(z[:, k]), CAR, color, glow=lights & _col(s.night))


def _people(s: _Scene, d: _Draws, k_max: int = 5):
    active = d.take(k_max) < np.linspace(0.9, 0.3, k_max)
    left = d.chance(0.5, k_max)
    across = d.take(k_max)
    on_walk = np.where(left, s.road_l[:, None] - s.walk_l[:, None] * (0.15 + 0.7 * across),
                       s.road_r[:, None] + s.walk_r[:, None] * (0.15 + 0.7 * across))
    crossing = d.chance(0.15, k_max)
    x = np.where(crossing, s.road_l[:, None] + across * (s.road_r - s.road_l)[:, None], on_walk)
    z = d.inverse_depth(2.3, 28.0, k_max)
    height = d.uniform(1.0, 1.25, k_max)
    stride = d.uniform(0.0, 0.12, k_max)
    shirt, pants, skin = d.pick(_SHIRT, k_max), d.pick(_PANTS, k_max), d.pick(_SKIN, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        h, st = _col(height[:, k]), _col(stride[:, k])
        legs = s.rect(np.abs(dx), dh, 0.0, 0.06 + st, 0.0, 0.47 * h) & ~s.rect(np.abs(dx), dh, -1, st * 0.6, 0.0, 0.3 * h)
        torso = s.rect(dx, dh, -0.15 * h, 0.15 * h, 0.45 * h, 0.83 * h)
        arms = s.rect(np.abs(dx), dh, 0.15 * h, 0.2 * h, 0.5 * h, 0.8 * h)
        head = (dx / (0.075 * h)) ** 2 + ((dh - 0.91 * h) / (0.085 * h)) ** 2 < 1
        mask = (legs | torso | arms | head) & _col(active[:, k])
        color = np.where(head[:, None], _col(skin[:, k]), np.where(legs[:, None], _col(pants[:, k]), _col(shirt[:, k])))
        s.c.paint(mask, _col(z[:, k]), PERSON, color)


def _lighting(s: _Scene, d: _Draws) -> np.ndarray:
    """Per-image colour multiplier: tinted daylight of varying strength, or dim blue night."""
    day = d.uniform(0.75, 1.15)[:, None] * (1.0 + d.uniform(-0.08, 0.08, 3))
    warm = d.uniform(-0.06, 0.06)
    day = day * (1.0 + warm[:, None] * np.array([1.0, 0.2, -1.0], f32))
    night = d.uniform(0.2, 0.32)[:, None] * np.array([0.85, 0.9, 1.15], f32)
    return np.where(s.night[:, None], night, day).astype(f32)


def render(uniforms: np.ndarray, pixel_noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render N scenes from uniforms [N, N_PARAMS] and standard-normal noise [N,H,W].

    Returns uint8 images [N,3,H,W], uint8 labels [N,H,W] and a bool night flag [N].
    """
    with np.errstate(all="ignore"):  # inf/nan only arise off-mask (points at infinite depth)
        return _render(uniforms, pixel_noise)


def _render(uniforms, pixel_noise):
    n, height, width = pixel_noise.shape
    d = _Draws(np.asarray(uniforms, np.float64))
    canvas = _Canvas(n, height, width)
    s = _Scene(d, canvas)
    pix = pixel_noise.astype(f32)
    _sky(s, d)
    _ground(s, d, pix)
    _facades(s, d, pix)
    _trees(s, d, pix)
    _poles(s, d)
    _cars(s, d)
    _people(s, d)
    light = _col(_lighting(s, d))
    sigma = _col(d.uniform(0.008, 0.03))[:, None]
    rgb = np.where(canvas.glow[:, None], canvas.rgb, canvas.rgb * light) + sigma * pix[:, None]
    images = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return images, canvas.label, s.night.copy()


def colorize(labels: np.ndarray) -> np.ndarray:
    """Labels [..., H, W] -> RGB uint8 [..., H, W, 3] with the preview palette."""
    return CLASS_COLORS[np.asarray(labels, np.int64)]


def contact_sheet(images: np.ndarray, labels: np.ndarray, columns: int = 2, gap: int = 2) -> np.ndarray:
    """uint8 images [N,3,H,W] + labels [N,H,W] -> one RGB sheet [rows*(H+gap), columns*(2W+gap), 3].

    Each tile is the image next to its colourised label map; for previews and reports.
    """
    n, _, h, w = images.shape
    rows = -(-n // columns)
    sheet = np.full((rows * (h + gap), columns * (2 * w + gap), 3), 255, np.uint8)
    for i in range(n):
        y, x = (i // columns) * (h + gap), (i % columns) * (2 * w + gap)
        sheet[y:y + h, x:x + w] = images[i].transpose(1, 2, 0)
        sheet[y:y + h, x + w:x + 2 * w] = colorize(labels[i])
    return sheet
