"""Vectorised numpy renderer of procedural street scenes (the embedded Cityscapes stand-in).

The street itself (sky, ground, facades) is drawn here; billboard objects come from
street_objects, the camera and z-buffer from street_canvas. See street_canvas for the geometry.
"""

from __future__ import annotations

import numpy as np

from repro.data.street_canvas import (ASPECT, BACKGROUND, BUILDING, BUILDING_COLORS, CLASS_COLORS, CLASS_NAMES,
                                      GROUND_COLORS, N_PARAMS, ROAD, SIDEWALK, SKY, VEGETATION, Canvas, Draws,
                                      Scene, col, f32, frac)
from repro.data.street_objects import draw_cars, draw_people, draw_poles, draw_trees

__all__ = ["CLASS_COLORS", "CLASS_NAMES", "N_PARAMS", "colorize", "contact_sheet", "render"]


def _sky(s: Scene, d: Draws):
    c = s.c
    t = np.clip((s.v_h - c.v) / s.v_h, 0, 1)  # 0 at the horizon, 1 at the top
    overcast = col(d.chance(0.25))
    zenith = np.array([0.30, 0.52, 0.86], f32)[None, :, None, None]
    zenith = np.where(overcast[:, None], np.array([0.60, 0.62, 0.66], f32)[None, :, None, None], zenith)
    horizon = np.array([0.78, 0.86, 0.95], f32)[None, :, None, None]
    night = col(s.night)[:, None]
    zenith = np.where(night, np.array([0.01, 0.02, 0.07], f32)[None, :, None, None], zenith)
    horizon = np.where(night, np.array([0.10, 0.09, 0.16], f32)[None, :, None, None], horizon)
    color = horizon + (zenith - horizon) * t[:, None]
    cover = col(d.uniform(0.0, 0.9))
    cloud = np.clip((s.noise_c - (1 - cover)) * 3, 0, 1)[:, None] * (1 - 0.8 * night)
    color = color + (f32(0.93) - color) * (0.8 * cloud)
    c.paint(c.v < s.v_h, f32(1e6), SKY, color, glow=col(s.night))


def _ground(s: Scene, d: Draws, pix: np.ndarray):
    c = s.c
    sv = c.v - s.v_h  # [N,H,1] inverse depth of the ground row
    ok = sv > 1e-4
    z = np.where(ok, 1.0 / np.where(ok, sv, 1), np.inf).astype(f32)
    x = (c.u - s.u_vp) * ASPECT * z  # lateral position of the ground point
    rl, rr, lane = col(s.road_l), col(s.road_r), col(s.lane)
    road = (x >= rl) & (x < rr)
    walk = ((x >= rl - col(s.walk_l)) & (x < rl)) | ((x >= rr) & (x < rr + col(s.walk_r)))
    tex = (s.noise_f - 0.5)[:, None]
    # Asphalt with dashed centre line and solid edge lines.
    asphalt = col(d.uniform(0.22, 0.42))[:, None] + 0.08 * tex + 0.03 * pix[:, None]
    asphalt = asphalt * np.array([1.0, 1.0, 1.04], f32)[None, :, None, None]
    dash = (np.abs(x - lane) < 0.07) & (frac(z / col(d.uniform(1.5, 3.0))) < 0.5) & col(d.chance(0.8))
    edge = ((np.abs(x - rl - 0.2) < 0.06) | (np.abs(x - rr + 0.2) < 0.06)) & col(d.chance(0.5))
    asphalt = np.where((dash | edge)[:, None], f32(0.82), asphalt)
    # Paving stones: light, with tile seams across the walk and a bright kerb.
    paving = col(d.uniform(0.50, 0.68))[:, None] * d.pick(np.array([(1, 1, 1), (1.05, 0.98, 0.9)], f32))[:, :, None, None]
    seam = frac(z * col(d.uniform(1.0, 2.0))) < 0.12
    kerb = (np.abs(x - rl) < 0.12) | (np.abs(x - rr) < 0.12)
    paving = paving * np.where(seam, f32(0.88), 1)[:, None] + 0.03 * pix[:, None]
    paving = np.where(kerb[:, None], f32(0.75), paving)
    # Everything else on the ground (yards, verges, the street's far end): "background".
    other = d.pick(GROUND_COLORS)[:, :, None, None] * (0.85 + 0.3 * s.noise_f[:, None]) + 0.04 * pix[:, None]
    cls = np.where(road, ROAD, np.where(walk, SIDEWALK, BACKGROUND)).astype(np.uint8)
    color = np.where(road[:, None], asphalt, np.where(walk[:, None], paving, other))
    c.paint(ok & (x == x), z, cls, color)


def _facades(s: Scene, d: Draws, pix: np.ndarray, n_segments: int = 6):
    """Both sides: a row of segments along depth, each a building, a hedge/park, or a gap."""
    c = s.c
    for side, x_b in (("l", s.facade_l), ("r", s.facade_r)):
        x_b = col(x_b)
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
        colors = d.pick(BUILDING_COLORS, n_segments) * d.uniform(0.85, 1.1, n_segments)[:, :, None]
        windows = d.chance(0.85, n_segments)
        seg_h = np.zeros_like(zf)
        seg_kind = np.full(zf.shape, -1.0, f32)
        seg_color = np.zeros((zf.shape[0], 3, 1, zf.shape[2]), f32)
        seg_win = np.zeros(zf.shape, bool)
        for k in range(n_segments):
            inside = (zf >= col(bounds[:, k - 1] if k else np.zeros(len(x_b), f32))) & (zf < col(bounds[:, k]))
            is_veg = (kind[:, k] >= 3) & (kind[:, k] < 6)
            h = np.where(is_veg, hedge[:, k], heights[:, k])
            kk = np.where(kind[:, k] < 3, -1, np.where(is_veg, 0, 1)).astype(f32)
            np.copyto(seg_h, col(h), where=inside)
            np.copyto(seg_kind, col(kk), where=inside)
            np.copyto(seg_color, col(colors[:, k]), where=inside[:, None])
            np.copyto(seg_win, col(windows[:, k]), where=inside)
        height = (s.v_h - c.v) / np.where(valid, sf, 1) + 1.0  # height above ground on the facade plane
        is_bld = seg_kind == 1
        bump = np.where(is_bld, 0, 1.2 * (s.noise_c - 0.3))
        solid = valid & (seg_kind >= 0) & (height < seg_h + 1.0 + bump)
        # Window grid on buildings; at night a random subset is lit (integer hash of the cell).
        fy, fz = col(d.uniform(1.7, 2.4)), col(d.uniform(1.4, 3.0))
        win = seg_win & is_bld & (frac(height / fy) > 0.35) & (frac(height / fy) < 0.8) \
            & (frac(zf / fz) > 0.25) & (frac(zf / fz) < 0.75) & (height > 1.3) & (height < seg_h + 0.6)
        cell = (np.floor(height / fy).astype(np.int64) * 73856093) ^ (np.floor(zf / fz).astype(np.int64) * 19349663)
        salt = np.floor(d.take() * 1e6).astype(np.int64)[:, None, None]
        lit = ((cell ^ salt) % 1000 < col(d.uniform(200, 650))) & win & col(s.night)
        shade = col(d.uniform(0.72, 1.0))[:, None]  # the sun lights one side more than the other
        wall = seg_color * shade * (0.92 + 0.16 * s.noise_f[:, None]) + 0.03 * pix[:, None]
        glass = np.array([0.18, 0.22, 0.28], f32)[None, :, None, None] + 0.15 * (1 - s.noise_c[:, None])
        wall = np.where(win[:, None], glass, wall)
        wall = np.where(lit[:, None], np.array([1.0, 0.85, 0.5], f32)[None, :, None, None], wall)
        green = np.array([0.16, 0.38, 0.12], f32)[None, :, None, None] * (0.6 + 0.8 * s.noise_f[:, None]) \
            + 0.05 * pix[:, None]
        color = np.where(is_bld[:, None], wall, green)
        cls = np.where(is_bld, BUILDING, VEGETATION).astype(np.uint8)
        c.paint(solid, np.broadcast_to(zf, solid.shape), cls, color, glow=lit)


def _lighting(s: Scene, d: Draws) -> np.ndarray:
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
    d = Draws(np.asarray(uniforms, np.float64))
    canvas = Canvas(n, height, width)
    s = Scene(d, canvas)
    pix = pixel_noise.astype(f32)
    _sky(s, d)
    _ground(s, d, pix)
    _facades(s, d, pix)
    draw_trees(s, d, pix)
    draw_poles(s, d)
    draw_cars(s, d)
    draw_people(s, d)
    light = col(_lighting(s, d))
    sigma = col(d.uniform(0.008, 0.03))[:, None]
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
