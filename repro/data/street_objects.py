"""Upright billboard objects of a street scene: trees, poles with lamps and signs, cars, people.

Each stands at a lateral offset x and depth z on the ground; its shape is drawn in billboard
coordinates (dx across, dh up, in camera heights) and z-tested against the scene.
"""

from __future__ import annotations

import numpy as np

from repro.data.street_canvas import (CAR, CAR_COLORS, PANTS_COLORS, PERSON, POLE, SHIRT_COLORS, SIGN,
                                      SIGN_COLORS, SKIN_COLORS, VEGETATION, Draws, Scene, col, f32)


def draw_trees(s: Scene, d: Draws, pix: np.ndarray, k_max: int = 6):
    active = d.take(k_max) < np.linspace(0.85, 0.3, k_max)
    left = d.chance(0.5, k_max)
    inset = d.uniform(0.2, 0.6, k_max)
    x = np.where(left, s.road_l[:, None] - s.walk_l[:, None] + inset, s.road_r[:, None] + s.walk_r[:, None] - inset)
    z = d.inverse_depth(2.5, 45.0, k_max)
    crown_h, radius = d.uniform(2.2, 3.4, k_max), d.uniform(0.8, 1.6, k_max)
    tint = d.uniform(0.7, 1.2, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        r = col(radius[:, k])
        trunk = s.rect(dx, dh, -0.09, 0.09, 0.0, col(crown_h[:, k]))
        e = (dx / r) ** 2 + ((dh - col(crown_h[:, k])) / r) ** 2
        crown = e < 1.0 + 0.6 * (s.noise_f - 0.5)
        mask = (trunk | crown) & col(active[:, k])
        leaf = col(tint[:, k])[:, None] * np.array([0.20, 0.42, 0.14], f32)[None, :, None, None] \
            * (0.55 + 0.9 * s.noise_f[:, None]) + 0.06 * pix[:, None]
        color = np.where(crown[:, None], leaf, np.array([0.30, 0.22, 0.15], f32)[None, :, None, None])
        s.c.paint(mask, col(z[:, k]), VEGETATION, color)


def draw_poles(s: Scene, d: Draws, k_max: int = 4):
    active = d.take(k_max) < np.linspace(0.95, 0.4, k_max)
    left = d.chance(0.5, k_max)
    x = np.where(left, s.road_l[:, None] - 0.35, s.road_r[:, None] + 0.35)
    z = d.inverse_depth(2.5, 30.0, k_max)
    top, width = d.uniform(3.2, 5.0, k_max), d.uniform(0.10, 0.18, k_max)
    lamp = d.chance(0.5, k_max)
    has_sign = d.chance(0.75, k_max)
    sign_h, size = d.uniform(1.9, 2.8, k_max), d.uniform(0.45, 0.75, k_max)
    shape = np.floor(d.take(k_max) * 3)
    sign_color = d.pick(SIGN_COLORS, k_max)
    grey = d.uniform(0.35, 0.6, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        w, t = col(width[:, k] / 2), col(top[:, k])
        toward = np.where(left[:, k], 1.0, -1.0).astype(f32)  # the lamp arm reaches over the road
        ax = dx * col(toward)
        arm = (ax > -w) & (ax < 0.9) & (dh > t - 0.12) & (dh < t) & col(lamp[:, k])
        head = (ax > 0.6) & (ax < 1.0) & (dh > t - 0.22) & (dh < t) & col(lamp[:, k])
        mask = (s.rect(dx, dh, -w, w, 0.0, t) | arm | head) & col(active[:, k])
        glow = head & col(s.night)
        color = np.where(glow[:, None], np.array([1.0, 0.95, 0.8], f32)[None, :, None, None],
                         col(grey[:, k])[:, None] * np.ones((1, 3, 1, 1), f32))
        s.c.paint(mask, col(z[:, k]), POLE, color, glow=glow)
        # Sign plate on the pole: rectangle, disc or triangle, with a white border.
        r, cy = col(size[:, k] / 2), col(sign_h[:, k])
        ady, ax_ = np.abs(dh - cy), np.abs(dx)
        sh = col(shape[:, k])
        rect = (ax_ < r) & (ady < r * 0.8)
        disc = (dx / r) ** 2 + ((dh - cy) / r) ** 2 < 1
        tri = (dh - cy > -r) & (ax_ < (r - (dh - cy)) * 0.6)
        plate = np.where(sh == 0, rect, np.where(sh == 1, disc, tri)) & (ady < r) & col(active[:, k] & has_sign[:, k])
        inner_r = r * 0.7
        inner = np.where(sh == 1, (dx / inner_r) ** 2 + ((dh - cy) / inner_r) ** 2 < 1,
                         (ax_ < inner_r) & (ady < inner_r * 0.75))
        color = np.where(inner[:, None], col(sign_color[:, k]), f32(0.92))
        s.c.paint(plate, col(z[:, k] - 0.02), SIGN, color)


def draw_cars(s: Scene, d: Draws, k_max: int = 6):
    active = d.take(k_max) < np.linspace(0.95, 0.3, k_max)
    parked = d.chance(0.3, k_max)
    side = d.chance(0.5, k_max)
    lane_x = s.road_l[:, None] + 0.75 + d.take(k_max) * (s.road_r - s.road_l - 1.5)[:, None]
    x = np.where(parked, np.where(side, s.road_l[:, None] + 0.75, s.road_r[:, None] - 0.75), lane_x)
    z = d.inverse_depth(2.3, 45.0, k_max)
    scale = np.where(d.chance(0.2, k_max), d.uniform(1.1, 1.6, k_max), f32(1.0))  # vans and trucks
    half_w = d.uniform(0.58, 0.68, k_max)
    body = d.pick(CAR_COLORS, k_max) * d.uniform(0.85, 1.1, k_max)[:, :, None]
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        hw, sc = col(half_w[:, k]), col(scale[:, k])
        lower = s.rect(dx, dh, -hw, hw, 0.14 * sc, 0.62 * sc)
        cabin = s.rect(dx, dh, -hw + 0.12, hw - 0.12, 0.62 * sc, 0.98 * sc)
        window = s.rect(dx, dh, -hw + 0.2, hw - 0.2, 0.66 * sc, 0.93 * sc)
        wheels = s.rect(np.abs(dx), dh, hw - 0.24, hw - 0.02, 0.0, 0.2)
        lights = s.rect(np.abs(dx), dh, hw - 0.18, hw - 0.04, 0.40 * sc, 0.50 * sc)
        mask = (lower | cabin | wheels) & col(active[:, k])
        # Cars left of the lane line come toward us (headlights), the others drive away (tail lights).
        oncoming = col(x[:, k] < s.lane)[:, None]
        lamp = np.where(oncoming, np.array([1.0, 0.97, 0.85], f32)[None, :, None, None],
                        np.array([0.95, 0.1, 0.05], f32)[None, :, None, None])
        color = np.where(wheels[:, None], f32(0.05), col(body[:, k]))
        color = np.where(window[:, None], np.array([0.12, 0.15, 0.2], f32)[None, :, None, None], color)
        color = np.where(lights[:, None], lamp, color)
        s.c.paint(mask, col(z[:, k]), CAR, color, glow=lights & col(s.night))


def draw_people(s: Scene, d: Draws, k_max: int = 5):
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
    shirt, pants, skin = d.pick(SHIRT_COLORS, k_max), d.pick(PANTS_COLORS, k_max), d.pick(SKIN_COLORS, k_max)
    for k in range(k_max):
        dx, dh = s.local(x[:, k], z[:, k])
        h, st = col(height[:, k]), col(stride[:, k])
        legs = s.rect(np.abs(dx), dh, 0.0, 0.06 + st, 0.0, 0.47 * h) & ~s.rect(np.abs(dx), dh, -1, st * 0.6, 0.0, 0.3 * h)
        torso = s.rect(dx, dh, -0.15 * h, 0.15 * h, 0.45 * h, 0.83 * h)
        arms = s.rect(np.abs(dx), dh, 0.15 * h, 0.2 * h, 0.5 * h, 0.8 * h)
        head = (dx / (0.075 * h)) ** 2 + ((dh - 0.91 * h) / (0.085 * h)) ** 2 < 1
        mask = (legs | torso | arms | head) & col(active[:, k])
        color = np.where(head[:, None], col(skin[:, k]), np.where(legs[:, None], col(pants[:, k]), col(shirt[:, k])))
        s.c.paint(mask, col(z[:, k]), PERSON, color)
