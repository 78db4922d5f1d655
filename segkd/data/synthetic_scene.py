"""Scene pieces of the synthetic orange data: conveyor belt, belt dirt, fruit geometry, peel, shading.

A fruit is rendered inside its bounding box as a `FruitPatch`: geometry (normalised radius `d`, sphere
normals, edge coverage) plus the layers painters edit: `albedo` (peel colour before lighting), `height`
(bumps: pores, raised spots), `gloss` (specular strength) and `label`. `shade_and_composite` lights it and
pastes it onto the canvas; the label follows wherever the fruit covers at least half a pixel.
All values are float32 in 0..1; `scale` is the image size over 256, so shapes keep their look at any size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BELT_COLOURS = np.array([[0.20, 0.20, 0.21], [0.14, 0.17, 0.15], [0.15, 0.16, 0.20], [0.26, 0.25, 0.24]], np.float32)
DIRT_COLOURS = np.array([[0.36, 0.27, 0.17], [0.30, 0.24, 0.18], [0.45, 0.33, 0.20], [0.22, 0.18, 0.14]], np.float32)
FAR = 1e6  # distance given to pixels outside a painter's reach (finite, so cos/clip stay well defined)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """H×W low-frequency noise (about unit std) varying over `cell` pixels."""
    h, w = shape
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """H×W blurred white noise rescaled to unit std: peel pores, belt grain."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def draw_belt(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """H×W×3 conveyor belt: rubber grain, ridges across the running direction, uneven light."""
    base = BELT_COLOURS[rng.integers(len(BELT_COLOURS))] * rng.uniform(0.8, 1.25)
    yy, xx = np.ogrid[0:h, 0:w]
    angle = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05))
    period = rng.uniform(7, 16) * scale
    k = 2 * np.pi / period
    wave = np.sin((xx * (k * np.cos(angle))).astype(np.float32) + (yy * (k * np.sin(angle))).astype(np.float32))
    wave *= wave
    wave *= wave
    ridges = wave * wave * rng.uniform(0.04, 0.1)  # sin^8: thin bright ridges
    grain = fine_noise(rng, (h, w), 0.7 * scale) * rng.uniform(0.015, 0.03)
    light = 1 + 0.12 * smooth_noise(rng, (h, w), 96 * scale)
    shade = (1 + grain + ridges) * light
    return np.clip(base[None, None, :] * shade[..., None], 0, 1)


def add_belt_dirt(rng: np.random.Generator, image: np.ndarray, scale: float) -> None:
    """Distractors on the belt (background): brown smudges, crumbs and thin brown streaks."""
    h, w = image.shape[:2]
    paint = np.zeros((h, w), np.float32)
    colour = DIRT_COLOURS[rng.integers(len(DIRT_COLOURS))]
    blotch = smooth_noise(rng, (h, w), 10 * scale)
    for _ in range(rng.integers(0, 4)):  # smudges: noisy ellipses
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(4, 16, 2) * scale
        y0, y1, x0, x1 = _window(cy, cx, 1.6 * max(ry, rx), h, w)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2).astype(np.float32)
        smudge = np.clip(1.0 - d + 0.3 * blotch[y0:y1, x0:x1], 0, 1) * rng.uniform(0.3, 0.7)
        paint[y0:y1, x0:x1] = np.maximum(paint[y0:y1, x0:x1], smudge)
    lines = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(0, 4)):  # streaks: wind-scar look-alikes, but on the belt
        pts = random_walk(rng, (rng.uniform(0, w), rng.uniform(0, h)), rng.uniform(0, 2 * np.pi),
                          int(rng.integers(5, 12)), 3.0 * scale, 0.35)
        cv2.polylines(lines, [pts], False, 255, max(1, int(round(rng.uniform(1, 2.5) * scale))))
    paint = np.maximum(paint, lines.astype(np.float32) / 255 * rng.uniform(0.3, 0.6))
    n_crumbs = int(rng.integers(0, 30))
    ys, xs = rng.integers(0, h, n_crumbs), rng.integers(0, w, n_crumbs)
    paint[ys, xs] = np.maximum(paint[ys, xs], rng.uniform(0.4, 0.9, n_crumbs))
    image[:] = image * (1 - paint[..., None]) + colour * paint[..., None]


def random_walk(rng: np.random.Generator, start: tuple[float, float], angle: float, steps: int, step: float,
                wiggle: float) -> np.ndarray:
    """An irregular polyline (steps+1)×2 int32 (x, y): a heading that drifts by N(0, wiggle) per step."""
    headings = angle + np.cumsum(rng.normal(0, wiggle, steps))
    lengths = step * rng.uniform(0.6, 1.4, steps)
    xs = start[0] + np.concatenate([[0], np.cumsum(lengths * np.cos(headings))])
    ys = start[1] + np.concatenate([[0], np.cumsum(lengths * np.sin(headings))])
    return np.round(np.stack([xs, ys], 1)).astype(np.int32)


@dataclass
class FruitSpec:
    cy: float
    cx: float
    radius: float
    squash: float  # ellipse axis ratio - 1
    angle: float
    wobble: list[list[float]]  # amplitude and phase of the rim harmonics 2, 3, 4


def place_fruits(rng: np.random.Generator, h: int, w: int) -> list[FruitSpec]:
    """1-4 fruits (a lone one is larger), some cut by the image border, overlapping a little at most."""
    count = int(rng.choice([1, 2, 2, 3, 3, 4]))
    side = min(h, w)
    fruits: list[FruitSpec] = []
    for _ in range(count):
        radius = side * rng.uniform(0.2, 0.32) * (1.2 if count == 1 else 1.0)
        for _ in range(12):  # rejection: centres at least 0.7 * (r1 + r2) apart (else the last try stays)
            cy = rng.uniform(-0.25 * radius, h + 0.25 * radius)
            cx = rng.uniform(-0.25 * radius, w + 0.25 * radius)
            if all(np.hypot(cy - f.cy, cx - f.cx) > 0.7 * (radius + f.radius) for f in fruits):
                break
        wobble = np.stack([rng.uniform(0, 0.025, 3), rng.uniform(0, 2 * np.pi, 3)], 1).tolist()
        fruits.append(FruitSpec(cy, cx, radius, rng.uniform(0, 0.08), rng.uniform(0, np.pi), wobble))
    return fruits


class FruitPatch:
    """One fruit inside its bounding box (rows y0:y1, cols x0:x1 of the image), ready to paint."""

    def __init__(self, spec: FruitSpec, h: int, w: int, fine: np.ndarray, coarse: np.ndarray):
        r = spec.radius * (1 + spec.squash) + 2
        self.y0, self.y1 = max(0, int(spec.cy - r)), min(h, int(spec.cy + r) + 1)
        self.x0, self.x1 = max(0, int(spec.cx - r)), min(w, int(spec.cx + r) + 1)
        self.spec, self.radius = spec, spec.radius
        yy, xx = np.mgrid[self.y0 : self.y1, self.x0 : self.x1].astype(np.float32)
        self.dy, self.dx = yy - spec.cy, xx - spec.cx  # pixels from the centre
        ca, sa = float(np.cos(spec.angle)), float(np.sin(spec.angle))
        u, v = ca * self.dx + sa * self.dy, -sa * self.dx + ca * self.dy
        theta = np.arctan2(v, u)
        rim = 1 + sum(a * np.cos(k * theta + p) for k, (a, p) in zip((2, 3, 4), spec.wobble))
        scale = spec.radius * rim
        self.d = np.sqrt((u / (1 + spec.squash)) ** 2 + (v * (1 + spec.squash)) ** 2) / scale  # 1 at the rim
        self.coverage = np.clip((1 - self.d) * spec.radius + 0.5, 0, 1)  # anti-aliased edge, about 1 px
        self.inside = self.coverage >= 0.5
        self.nx, self.ny = self.dx / scale, self.dy / scale
        self.nz = np.sqrt(np.clip(1 - self.nx**2 - self.ny**2, 0, 1))
        self.fine = fine[self.y0 : self.y1, self.x0 : self.x1]
        self.coarse = coarse[self.y0 : self.y1, self.x0 : self.x1]
        shape = self.d.shape
        self.albedo = np.zeros((*shape, 3), np.float32)
        self.height = np.zeros(shape, np.float32)
        self.gloss = np.ones(shape, np.float32)
        self.label = np.zeros(shape, np.uint8)

    def random_point(self, rng: np.random.Generator, max_d: float) -> tuple[float, float]:
        """(y, x) in patch pixels of a point on the fruit with normalised radius < max_d, inside the image."""
        ys, xs = np.nonzero(self.d < max_d)
        if ys.size == 0:
            ys, xs = np.nonzero(self.inside)
        i = rng.integers(ys.size)
        return float(ys[i]), float(xs[i])

    def polar(self, y: float, x: float, reach: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distance in pixels, angle) of the patch pixels around the patch point (y, x).

        With `reach`, only pixels within that many pixels are computed; the others get distance `FAR`.
        """
        h, w = self.d.shape
        if reach is None:
            return _polar_box(y, x, 0, h, 0, w)
        dist = np.full((h, w), FAR, np.float32)
        angle = np.zeros((h, w), np.float32)
        y0, y1, x0, x1 = _window(y, x, reach, h, w)
        dist[y0:y1, x0:x1], angle[y0:y1, x0:x1] = _polar_box(y, x, y0, y1, x0, x1)
        return dist, angle

    def foreshortening(self, y: float, x: float) -> tuple[float, float]:
        """(angle of the rim direction, squash along it) at a patch point: shapes flatten towards the rim."""
        ny, nx = self.ny[int(y), int(x)], self.nx[int(y), int(x)]
        return float(np.arctan2(ny, nx)), float(max(self.nz[int(y), int(x)], 0.35))

    def paint(self, region: np.ndarray, colour: np.ndarray | list[float], alpha: np.ndarray | float,
              label: int | None = None) -> None:
        """Blend `colour` into the peel where `region` (bool) holds; `label` marks exactly those pixels."""
        idx = np.nonzero(region)
        a = (alpha[idx] if np.ndim(alpha) else np.full(idx[0].shape, alpha)).astype(np.float32)[:, None]  # N×1
        self.albedo[idx] = self.albedo[idx] * (1 - a) + np.asarray(colour, np.float32) * a
        if label is not None:
            self.label[region & self.inside] = label


def paint_peel(rng: np.random.Generator, patch: FruitPatch) -> None:
    """Healthy navel-orange peel: orange base with colour drift, pores (dimples) and oil-gland speckle."""
    base = np.array([rng.uniform(0.86, 0.98), rng.uniform(0.40, 0.58), rng.uniform(0.03, 0.12)], np.float32)
    drift = 1 + 0.06 * patch.coarse
    pores = np.clip(patch.fine - 0.3, 0, None)
    patch.albedo[:] = base * drift[..., None] * (1 - 0.07 * pores)[..., None]
    patch.albedo[..., 1] *= 1 + 0.05 * np.roll(patch.coarse, 7, axis=0)  # yellower / redder zones
    patch.height[:] = -rng.uniform(0.6, 1.1) * pores - 0.25 * patch.fine


def paint_navel(rng: np.random.Generator, patch: FruitPatch) -> None:
    """The navel (background, an ulcer look-alike): a puckered ring of folds around a small dark pit."""
    cy, cx = patch.random_point(rng, 0.6)
    rn = patch.radius * rng.uniform(0.08, 0.16)
    dist, theta = patch.polar(cy, cx, 1.3 * rn)
    rr = dist / rn
    folds = 0.5 + 0.5 * np.cos(rng.integers(5, 10) * theta + rng.uniform(0, 6.3) + 3 * rr)
    ring = np.clip(1 - np.abs(rr - 0.7) / 0.5, 0, 1) * folds
    patch.paint(ring > 0, [0.78, 0.33, 0.05], 0.45 * ring)
    pit = np.clip(1 - rr / (0.3 + 0.1 * rng.random()), 0, 1)
    patch.paint(pit > 0, [0.35, 0.16, 0.05], 0.8 * pit)
    patch.height[:] += 1.2 * ring - 2.0 * pit


def paint_blemishes(rng: np.random.Generator, patch: FruitPatch, scale: float) -> None:
    """Healthy-peel distractors (background): tiny dark specks without halo, pale oil spots, regreening."""
    ys, xs = np.nonzero(patch.d < 0.9)
    if ys.size == 0:
        return
    for colour, n, size in (([0.32, 0.2, 0.1], rng.integers(0, 6), 1.2), ([0.98, 0.74, 0.36], rng.integers(0, 5), 1.6)):
        for i in rng.integers(0, ys.size, n):
            spot, _ = patch.polar(ys[i], xs[i], 2 * size * scale)
            patch.paint(spot < size * scale * rng.uniform(0.6, 1.2), colour, rng.uniform(0.4, 0.8))
    if rng.random() < 0.3:  # regreening: a greener, darker diffuse patch (a sunburn look-alike)
        cy, cx = patch.random_point(rng, 0.8)
        rr, _ = patch.polar(cy, cx)
        blob = np.clip(1 - rr / (patch.radius * rng.uniform(0.2, 0.4)) + 0.3 * patch.coarse, 0, 1)
        patch.paint(blob > 0, [0.62, 0.6, 0.12], 0.5 * blob)


def shade_and_composite(patch: FruitPatch, image: np.ndarray, label: np.ndarray, light: np.ndarray,
                        style: dict, scale: float) -> None:
    """Light the patch (Lambert + Blinn-Phong on bump-perturbed sphere normals) and paste it onto the image.

    Heights are in pixels of a 256-pixel image, so slopes (and the look) do not change with the image size.
    """
    gy, gx = np.gradient(patch.height * scale)
    nx, ny, nz = patch.nx - style["bump"] * gx, patch.ny - style["bump"] * gy, patch.nz + 1e-3
    norm = np.sqrt(nx**2 + ny**2 + nz**2)
    nx, ny, nz = nx / norm, ny / norm, nz / norm
    diffuse = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0, 1) ** style["shininess"]
    colour = patch.albedo * (style["ambient"] + style["diffuse"] * diffuse)[..., None]
    colour += (style["specular"] * spec * patch.gloss)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    cov = patch.coverage[..., None]
    box = (slice(patch.y0, patch.y1), slice(patch.x0, patch.x1))
    image[box] = image[box] * (1 - cov) + np.clip(colour, 0, 1) * cov
    label[box] = np.where(patch.inside, patch.label, label[box])


def cast_shadow(image: np.ndarray, spec: FruitSpec, light: np.ndarray, strength: float) -> None:
    """Darken what lies under a fruit's soft shadow (belt and fruits drawn before it)."""
    h, w = image.shape[:2]
    r = spec.radius
    sy, sx = spec.cy - light[1] * 0.35 * r, spec.cx - light[0] * 0.35 * r
    y0, y1 = max(0, int(sy - 1.5 * r)), min(h, int(sy + 1.5 * r) + 1)
    x0, x1 = max(0, int(sx - 1.5 * r)), min(w, int(sx + 1.5 * r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.hypot((yy - sy).astype(np.float32), (xx - sx).astype(np.float32)) / (1.05 * r)
    shadow = np.clip((1.25 - d) / 0.5, 0, 1) ** 1.5 * strength
    image[y0:y1, x0:x1] *= (1 - shadow)[..., None]


def _window(y: float, x: float, reach: float, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows y0:y1, cols x0:x1 of an h×w array within `reach` of (y, x), clipped."""
    return max(0, int(y - reach)), min(h, int(y + reach) + 2), max(0, int(x - reach)), min(w, int(x + reach) + 2)


def _polar_box(y: float, x: float, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.ogrid[y0:y1, x0:x1]
    oy, ox = (yy - y).astype(np.float32), (xx - x).astype(np.float32)
    return np.hypot(oy, ox), np.arctan2(oy, ox)
