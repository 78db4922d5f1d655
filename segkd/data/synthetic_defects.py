"""The three FastSegFormer defect classes, painted onto a `FruitPatch` with exact labels.

Each painter blends colour into the peel (before lighting, so defects are shaded like the peel) and marks
exactly the pixels it painted (within the fruit) with its class. Shape statistics follow the classes' looks:
- 1 sunburn: a large pale, dull, diffuse patch with a ragged edge, flattened towards the rim;
- 2 ulcer: a cluster of small dark raised spots, each with a pale yellow halo (both labelled);
- 3 wind scarring: a few thin, irregular, roughly parallel brownish streaks, rough and matte.
"""

from __future__ import annotations

import cv2
import numpy as np

from segkd.data.synthetic_scene import FruitPatch, random_walk, smooth_noise

SUNBURN, ULCER, WIND_SCARRING = 1, 2, 3


def paint_sunburn(rng: np.random.Generator, patch: FruitPatch, scale: float) -> None:
    cy, cx = patch.random_point(rng, 0.75)
    rim_angle, squash = patch.foreshortening(cy, cx)
    dist, theta = patch.polar(cy, cx)
    along, across = dist * np.cos(theta - rim_angle), dist * np.sin(theta - rim_angle)
    size = patch.radius * rng.uniform(0.22, 0.48)
    ellipse = np.sqrt((along / (size * squash)) ** 2 + (across / (size * rng.uniform(0.7, 1.2))) ** 2)
    ragged = smooth_noise(rng, dist.shape, 7 * scale)
    blob = 1 - ellipse + 0.3 * ragged
    region = blob > 0
    core = np.clip(blob * rng.uniform(1.5, 4), 0, 1)  # diffuse: strongest inside, fading to the edge
    mottle = 1 + 0.25 * smooth_noise(rng, dist.shape, 3 * scale)
    alpha = rng.uniform(0.3, 0.65) * (0.35 + 0.65 * core) * mottle
    colour = np.array([0.96, 0.8, 0.52], np.float32) * rng.uniform(0.88, 1.04)
    patch.paint(region, colour, np.clip(alpha, 0.1, 0.9), SUNBURN)
    if rng.random() < 0.35:  # an older burn: a browner centre
        patch.paint(region & (core > 0.8), [0.72, 0.52, 0.3], rng.uniform(0.15, 0.35) * core, SUNBURN)
    patch.gloss[region] *= 0.55
    patch.height[region] *= 0.5  # smoother, flatter peel


def paint_ulcer(rng: np.random.Generator, patch: FruitPatch, scale: float) -> None:
    cy, cx = patch.random_point(rng, 0.8)
    spread = patch.radius * rng.uniform(0.04, 0.22)
    h, w = patch.d.shape
    for _ in range(int(rng.integers(2, 10))):
        py = float(np.clip(cy + rng.normal(0, spread), 0, h - 1))
        px = float(np.clip(cx + rng.normal(0, spread), 0, w - 1))
        core_r = rng.uniform(1.5, 3.8) * scale
        halo_r = core_r * rng.uniform(1.6, 2.4)
        dist, _ = patch.polar(py, px, halo_r)
        halo = dist < halo_r
        fade = np.clip((halo_r - dist) / (halo_r - core_r), 0, 1)
        patch.paint(halo, [0.99, 0.76, 0.32], rng.uniform(0.25, 0.5) * (0.4 + 0.6 * fade), ULCER)
        core = dist < core_r
        dome = np.clip(1 - dist / core_r, 0, 1)
        patch.paint(core, np.array([0.32, 0.17, 0.07]) * rng.uniform(0.8, 1.3), 0.55 + 0.4 * dome, ULCER)
        patch.height[:] += 1.6 * np.sqrt(dome)  # raised: catches a small highlight
        patch.gloss[core] = 1.4


def paint_wind_scarring(rng: np.random.Generator, patch: FruitPatch, scale: float) -> None:
    cy, cx = patch.random_point(rng, 0.7)
    heading = rng.uniform(0, 2 * np.pi)
    lines = np.zeros(patch.d.shape, np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        start = (cx + rng.normal(0, 0.12 * patch.radius), cy + rng.normal(0, 0.12 * patch.radius))
        pts = random_walk(rng, start, heading + rng.normal(0, 0.25), int(rng.integers(5, 14)), 2.5 * scale, 0.3)
        width = max(1, int(round(rng.uniform(1.5, 3.5) * scale)))
        cv2.polylines(lines, [pts], False, 1, width, cv2.LINE_8)
        if rng.random() < 0.3:  # a short branch off the streak
            at = pts[rng.integers(len(pts))]
            twig = random_walk(rng, (float(at[0]), float(at[1])), heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2),
                               int(rng.integers(2, 5)), 2.0 * scale, 0.4)
            cv2.polylines(lines, [twig], False, 1, max(1, width - 1), cv2.LINE_8)
    region = lines > 0
    colour = np.array([0.64, 0.5, 0.32], np.float32) * rng.uniform(0.75, 1.1)
    alpha = rng.uniform(0.45, 0.8) * (0.85 + 0.15 * np.clip(patch.fine, -1, 1))
    patch.paint(region, colour, alpha, WIND_SCARRING)
    patch.gloss[region] *= 0.3
    patch.height[region] += 0.5 + 0.4 * patch.fine[region]  # scabby, raised


DEFECT_PAINTERS = {SUNBURN: paint_sunburn, ULCER: paint_ulcer, WIND_SCARRING: paint_wind_scarring}
