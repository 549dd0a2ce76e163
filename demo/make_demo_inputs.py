"""Paint the bundled demo inputs: background "photos" and transparent cut-outs.

The original dataset (hand-picked photos, GIMP cut-outs) can neither be
redistributed nor fit in the repository, yet the demo and the tests need
inputs shaped like it: JPEG backgrounds of assorted sizes, RGBA PNG
foregrounds whose longest side is 150 px, and 0/255 masks for some of them.
Pictures that look like photos (gradients, textures, soft edges, shading)
exercise JPEG coding, resizing and alpha compositing the way real inputs do;
random noise would not, and would make the demo output unreadable.

Everything is drawn with numpy and Pillow from a fixed seed, so a rerun
rewrites identical files (for a given numpy/Pillow build).

Usage: python demo/make_demo_inputs.py [OUT_DIR]   (default: demo/inputs)
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

Field = NDArray[np.float64]  # (H, W) scalar field
RGB = NDArray[np.float64]  # (H, W, 3) colours on a 0..255 scale
Colour = tuple[float, float, float]
Paint = Colour | RGB  # a flat colour or a per-pixel colour field
Rng = np.random.Generator
Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Vec3 = tuple[float, float, float]

SEED = 15  # the original project was "Assignment 15A"
BG_JPEG_QUALITY = 90
BG_SUPERSAMPLE = 2  # scenes are painted 2x and downsampled, which anti-aliases them
FG_LONG_SIDE = 150  # the original set's "fg150": max(height, width) == 150
FG_SUPERSAMPLE = 4  # cut-outs are drawn 4x so LANCZOS gives soft alpha edges
ALPHA_FLOOR = 8  # alpha this close to 0 or 255 after downsampling is LANCZOS ringing
MASKED_FOREGROUNDS = 2  # fg_1, fg_2 ship a mask file; the rest rely on alpha
# Key light for the cut-outs: upper left and in front, as in most photos.
LIGHT = np.array([-0.45, -0.65, 0.62]) / np.linalg.norm([-0.45, -0.65, 0.62])


# --- fields and colour ------------------------------------------------------------------


def pair(value: float | tuple[float, float]) -> tuple[float, float]:
    """Accept a scalar or a (y, x) pair, so blurs and noise can be anisotropic."""
    return value if isinstance(value, tuple) else (value, value)


def blur(field: NDArray, sigma: float | tuple[float, float], periodic: bool = False) -> NDArray:
    """Gaussian-blur a float field, 2-D or with channels last.

    Pillow's GaussianBlur only takes 8-bit images, and shading derived from
    8-bit heights shows banding, so this filters in float with the FFT. Masks
    are reflect-padded so nothing wraps round; noise stays periodic so it can
    tile as a texture.
    """
    sy, sx = pair(sigma)
    pad = 0 if periodic else int(3 * max(sy, sx)) + 1
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (field.ndim - 2)
    padded = np.pad(field, widths, mode="symmetric")
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :]
    transfer = np.exp(-2.0 * np.pi**2 * ((sy * fy) ** 2 + (sx * fx) ** 2))
    if field.ndim == 3:
        transfer = transfer[..., None]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * transfer
    out = np.fft.irfft2(spectrum, s=padded.shape[:2], axes=(0, 1))
    return out[pad : out.shape[0] - pad, pad : out.shape[1] - pad]


def standardise(field: Field) -> Field:
    """Zero mean, unit spread: callers then pick thresholds independent of size."""
    return (field - field.mean()) / field.std()


def noise(rng: Rng, shape: tuple[int, int], cell: float | tuple[float, float]) -> Field:
    """Smooth random field with features about `cell` px across (periodic).

    Natural surfaces (plaster, sand, foliage, cloud) vary smoothly at a
    characteristic scale; white noise has no scale and reads as sensor noise.
    """
    return standardise(blur(rng.standard_normal(shape), cell, periodic=True))


def fractal(rng: Rng, shape: tuple[int, int], cell: float | tuple[float, float],
            octaves: int = 4) -> Field:
    """Noise octaves of halving size and weight: detail at every scale, like real texture."""
    cy, cx = pair(cell)
    total = sum(0.5**i * noise(rng, shape, (cy / 2**i, cx / 2**i)) for i in range(octaves))
    return standardise(total)


def smoothstep(edge0: float | NDArray, edge1: float | NDArray, x: NDArray) -> NDArray:
    """0 below edge0, 1 above edge1, smooth in between: soft thresholds look optical."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def coverage(signed_distance: NDArray) -> NDArray:
    """Coverage from a signed distance in px (positive inside): a one-pixel soft edge."""
    return np.clip(signed_distance + 0.5, 0.0, 1.0)


def box_coverage(yy: Field, xx: Field, box: Box, inset: float = 0.0) -> Field:
    """Coverage of an axis-aligned rectangle, shrunk by `inset` px on every side."""
    x0, y0, x1, y1 = box
    edges = [xx - x0 - inset, x1 - inset - xx, yy - y0 - inset, y1 - inset - yy]
    return coverage(np.minimum.reduce(edges))


def grid(height: int, width: int) -> tuple[Field, Field]:
    """Row and column index of every pixel, as floats."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return yy, xx


def ramp(t: NDArray, low: Colour, high: Colour) -> RGB:
    """Colour field interpolating low -> high with t (clipped to 0..1)."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    return np.asarray(low, float) * (1.0 - t) + np.asarray(high, float) * t


def textured(colour: Paint, field: Field, amount: float) -> RGB:
    """Modulate a colour's brightness by a zero-mean field: surface texture."""
    return np.asarray(colour, float) * (1.0 + amount * field)[..., None]


def paint(canvas: RGB, colour: Paint, alpha: NDArray) -> RGB:
    """Composite a colour (flat or per pixel) over an opaque canvas with coverage alpha."""
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    return canvas * (1.0 - a) + np.asarray(colour, float) * a


def fade(colour: Paint, haze: float | Field, towards: Colour) -> RGB:
    """Aerial perspective: distant things lose contrast towards the sky colour."""
    amount = np.asarray(haze, float)
    if amount.ndim:
        amount = amount[..., None]
    return np.asarray(colour, float) * (1.0 - amount) + np.asarray(towards, float) * amount


def gradient(height: int, width: int, stops: Sequence[tuple[float, Colour]]) -> RGB:
    """Vertical colour gradient through (position 0..1, colour) stops: skies, walls."""
    v = (np.arange(height) + 0.5) / height
    positions = [p for p, _ in stops]
    colours = np.array([c for _, c in stops], float)
    column = np.stack([np.interp(v, positions, colours[:, i]) for i in range(3)], axis=-1)
    return np.repeat(column[:, None, :], width, axis=1)


def ridge(rng: Rng, u: Field, waves: int, frequency: float) -> Field:
    """A skyline in [-1, 1] over u in 0..1: sines with 1/k weights, smooth yet irregular."""
    total = np.zeros_like(u)
    for k in range(1, waves + 1):
        f = frequency * k * rng.uniform(0.8, 1.25)
        total += np.sin(2 * np.pi * f * u + rng.uniform(0, 2 * np.pi)) / k
    return total / np.abs(total).max()


def sample(texture: Field, rows: Field, cols: Field) -> Field:
    """Bilinear lookup in a tiling texture: maps a flat texture onto a plane in perspective."""
    n, m = texture.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = rows - r0, cols - c0
    r0, c0 = r0.astype(int) % n, c0.astype(int) % m
    r1, c1 = (r0 + 1) % n, (c0 + 1) % m
    top = texture[r0, c0] * (1 - fc) + texture[r0, c1] * fc
    bottom = texture[r1, c0] * (1 - fc) + texture[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


def polygon_mask(height: int, width: int, points: Sequence[Point], soften: float = 0.0) -> Field:
    """Filled polygon as a 0..1 field, optionally blurred for soft light and shadow edges."""
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon(list(points), fill=255)
    mask = np.asarray(image, float) / 255.0
    return blur(mask, soften) if soften else mask


def cast_shadow(mask: Field, offset: Point, soften: float) -> Field:
    """Soft shadow that a mask standing off a wall casts on it, offset by (dx, dy) px."""
    dx, dy = offset
    shifted = np.roll(np.roll(mask, round(dy), axis=0), round(dx), axis=1)
    return blur(shifted, soften) * (1.0 - mask)


# --- backgrounds: shared pieces ---------------------------------------------------------


def sky(rng: Rng, height: int, width: int, horizon: float, zenith: Colour, glow: Colour,
        cover: float) -> RGB:
    """Sky darkening from the horizon to the zenith, with soft clouds lit from above.

    Cloud tops are brighter than their undersides (density compared with the
    density just above), which is what turns blobs into clouds.
    """
    yy, _ = grid(height, width)
    canvas = gradient(height, width, [(0.0, zenith), (horizon / height, glow), (1.0, glow)])
    density = fractal(rng, (height, width), (0.06 * height, 0.22 * width))
    above = np.roll(density, int(0.025 * height), axis=0)
    lit = np.clip(0.6 + 1.6 * (density - above), 0.0, 1.0)
    alpha = smoothstep(1.6 - 2 * cover, 2.6 - 2 * cover, density)
    alpha *= 0.95 * smoothstep(horizon, 0.55 * horizon, yy)
    return paint(canvas, ramp(lit, (168, 176, 194), (252, 252, 250)), alpha)


def paint_tree(canvas: RGB, rng: Rng, foot: Point, size: float, haze: float,
               haze_to: Colour) -> RGB:
    """A broadleaf tree standing at `foot`: cast shadow, trunk and lumpy canopy.

    The canopy is a union of discs roughened by noise and shaded by the
    direction to the light plus leaf clumps; haze fades it for distance.
    """
    x, y = foot
    yy, xx = grid(*canvas.shape[:2])
    spread = np.hypot((xx - x - 0.3 * size) / (0.5 * size), (yy - y) / (0.07 * size))
    canvas = canvas * (1.0 - 0.45 * (1.0 - haze) * smoothstep(1.0, 0.2, spread))[..., None]

    half = 0.04 * size * (1.0 + 0.7 * smoothstep(y - 0.15 * size, y, yy))  # roots flare out
    trunk = coverage(half - np.abs(xx - x)) * coverage(yy - (y - 0.6 * size)) * coverage(y - yy)
    bark = textured((88, 68, 50), noise(rng, canvas.shape[:2], (0.04 * size, 0.006 * size)), 0.18)
    bark *= (0.55 + 0.5 * smoothstep(x + half, x - half, xx))[..., None]  # lit from the left
    canvas = paint(canvas, fade(bark, haze, haze_to), trunk)

    cx, cy, radius = x, y - 0.66 * size, 0.34 * size
    distance = 0.62 * radius - np.hypot(xx - cx, (yy - cy) * 1.1)
    for _ in range(9):
        ox, oy = rng.normal(0.0, 0.38 * radius, 2)
        blob = radius * rng.uniform(0.42, 0.66) - np.hypot(xx - cx - ox, yy - cy - oy * 0.8)
        distance = np.maximum(distance, blob)
    clumps = fractal(rng, canvas.shape[:2], 0.06 * size)
    canopy = coverage(distance + 0.025 * size * np.clip(clumps, -2, 2))
    facing = ((cx - xx) * 0.6 + (cy - yy) * 0.8) / radius
    shade = np.clip(0.45 + 0.3 * facing + 0.22 * clumps, 0.0, 1.0)
    leaves = ramp(shade, (24, 46, 20), (132, 160, 66))
    return paint(canvas, fade(leaves, haze, haze_to), canopy)


def finish_photo(canvas: RGB, size: tuple[int, int], rng: Rng) -> Image.Image:
    """Make a supersampled painting a "photo": downsample, vignette, sensor grain, soft lens."""
    image = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    image = image.resize(size, Image.Resampling.LANCZOS)
    yy, xx = grid(size[1], size[0])
    radius2 = ((xx + 0.5) / size[0] - 0.5) ** 2 + ((yy + 0.5) / size[1] - 0.5) ** 2
    pixels = np.asarray(image, float) * (1.0 - 0.45 * radius2)[..., None]
    pixels += rng.normal(0.0, 2.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(0.4))


# --- backgrounds: the scenes ------------------------------------------------------------


def paint_meadow(rng: Rng, height: int, width: int) -> RGB:
    """Rolling farmland under a cloudy sky.

    Ridges recede with aerial perspective (paler and bluer with distance) and
    the field's mowing stripes converge on the vanishing point, which makes a
    flat picture read as a deep landscape.
    """
    yy, xx = grid(height, width)
    horizon, haze_to = 0.5 * height, (196, 214, 232)
    canvas = sky(rng, height, width, horizon, (58, 108, 184), haze_to, cover=0.45)
    u = xx[0] / width
    for top, amp, colour in [(0.40, 0.05, (126, 148, 170)), (0.47, 0.035, (92, 124, 100))]:
        line = height * (top + amp * ridge(rng, u, 6, 1.4))
        rock = textured(colour, fractal(rng, (height, width), 0.012 * height), 0.04)
        canvas = paint(canvas, rock, coverage(yy - line))

    field_top = height * (0.55 + 0.015 * ridge(rng, u, 4, 1.0))
    for x in rng.uniform(0.0, 1.0, 7) * width:
        foot = (x, np.interp(x, xx[0], field_top) + 2)
        canvas = paint_tree(canvas, rng, foot, 0.11 * height, haze=0.3, haze_to=haze_to)

    depth = np.clip((yy - horizon) / (height - horizon), 0.0, 1.0)  # 0 far .. 1 near
    across = (xx - 0.4 * width) / np.maximum(yy - horizon, 1.0)
    stripes = (smoothstep(-0.4, 0.4, np.sin(across * 7.0)) - 0.5) * smoothstep(0.1, 0.5, depth)
    blades = fractal(rng, (height, width), (0.006 * height, 0.0015 * height))
    grass = ramp(depth, (150, 168, 92), (66, 112, 38))
    grass *= (1.0 + 0.09 * stripes + 0.07 * blades * depth)[..., None]
    return paint(canvas, grass, coverage(yy - field_top))


def paint_window(canvas: RGB, rng: Rng, yy: Field, xx: Field, box: Box) -> RGB:
    """A sash window onto a bright garden: panes, frame, mullions, sill and its shadow."""
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = box
    bright = (226, 238, 246)
    view = gradient(height, width, [(0.0, (150, 194, 236)), (y1 / height, bright), (1.0, bright)])
    hedge = y0 + 0.72 * (y1 - y0) + 0.04 * height * ridge(rng, xx[0] / width, 8, 3.0)
    foliage = textured((150, 186, 120), fractal(rng, (height, width), 0.01 * height), 0.08)
    view = paint(view, foliage, coverage(yy - hedge))
    opening = box_coverage(yy, xx, box)
    canvas = paint(canvas, view, opening)

    bar = 0.008 * width
    frame = 1.0 - box_coverage(yy, xx, box, inset=2 * bar)
    mullions = np.maximum(coverage(bar - np.abs(xx - (x0 + x1) / 2)),
                          coverage(bar - np.abs(yy - (y0 + 0.42 * (y1 - y0)))))
    canvas = paint(canvas, (236, 232, 222), np.maximum(frame, mullions) * opening)
    sill = box_coverage(yy, xx, (x0 - 0.02 * width, y1, x1 + 0.02 * width, y1 + 0.02 * height))
    canvas = paint(canvas, (242, 238, 228), sill)
    shadow = cast_shadow(sill, (0.0, 0.012 * height), 0.008 * height)
    return canvas * (1.0 - 0.35 * shadow)[..., None]


def paint_picture(canvas: RGB, rng: Rng, yy: Field, xx: Field, box: Box) -> RGB:
    """A framed landscape painting on the wall, with the shadow it casts."""
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = box
    hills = y0 + 0.65 * (y1 - y0) + 0.03 * height * ridge(rng, xx[0] / width, 3, 4.0)
    art = ramp(smoothstep(y0, y1, yy), (120, 150, 190), (220, 180, 120))
    art = paint(art, (70, 110, 80), coverage(yy - hills))
    frame = box_coverage(yy, xx, box)
    shadow = cast_shadow(frame, (0.01 * width, 0.01 * height), 0.01 * height)
    canvas = canvas * (1.0 - 0.3 * shadow)[..., None]
    canvas = paint(canvas, (60, 42, 30), frame)
    return paint(canvas, art, box_coverage(yy, xx, box, inset=0.012 * width))


def plank_floor(rng: Rng, yy: Field, xx: Field, vanishing: Point) -> RGB:
    """Wooden planks running away from the camera towards the vanishing point.

    A plank's number is constant along lines through the vanishing point and
    distance grows as 1/(y - vy), so seams converge and end joints crowd
    together towards the wall as on a real floor; seams and joints are kept
    about one pixel wide at every distance.
    """
    height = yy.shape[0]
    vx, vy = vanishing
    dy = np.maximum(yy - vy, 1.0)
    across = (xx - vx) / dy * 3.2
    along = height / dy
    plank = np.floor(across).astype(int) % 256
    tone, offset = rng.uniform(0.82, 1.12, 256), rng.uniform(0.0, 1.0, 256)
    phase = rng.uniform(0.0, 2 * np.pi, 256)
    joint = along / 2.5 + offset[plank]
    seam_px = np.abs(across - np.round(across)) / 3.2 * dy
    joint_px = np.abs(joint - np.round(joint)) * 2.5 * dy**2 / height
    grain = np.sin(2 * np.pi * (across * 5.0 + 0.6 * np.sin(along * 1.3 + phase[plank])))
    wood = np.asarray((150.0, 100.0, 62.0)) * (tone[plank] * (1.0 + 0.05 * grain))[..., None]
    gaps = np.maximum(coverage(1.0 - seam_px), coverage(0.8 - joint_px))
    return wood * (1.0 - 0.45 * gaps)[..., None]


def paint_room(rng: Rng, height: int, width: int) -> RGB:
    """A sunlit room: wall with a window and a picture, plank floor in one-point perspective.

    The sunlit patch on the floor, the glow round the window and the darker
    far corner give the light a direction.
    """
    yy, xx = grid(height, width)
    floor_y = 0.7 * height
    window = (0.1 * width, 0.1 * height, 0.4 * width, 0.56 * height)
    glow = np.exp(-np.hypot(xx - 0.25 * width, (yy - 0.33 * height) * 1.3) / (0.45 * width))
    wall = textured((206, 188, 160), fractal(rng, (height, width), 0.06 * height), 0.012)
    canvas = wall * (0.62 + 0.5 * glow)[..., None]
    canvas = paint_window(canvas, rng, yy, xx, window)
    canvas = paint_picture(canvas, rng, yy, xx, (0.62 * width, 0.2 * height,
                                                 0.82 * width, 0.42 * height))

    floor = plank_floor(rng, yy, xx, (0.6 * width, 0.42 * height))
    sunlight = polygon_mask(height, width, [(0.28 * width, 0.78 * height),
                                            (0.58 * width, 0.78 * height),
                                            (0.86 * width, 1.02 * height),
                                            (0.36 * width, 1.02 * height)], soften=0.01 * height)
    floor *= (0.7 + 0.7 * sunlight + 0.25 * smoothstep(floor_y, height, yy))[..., None]
    contact = smoothstep(floor_y + 0.08 * height, floor_y, yy)  # shadow where floor meets wall
    floor *= (1.0 - 0.35 * contact)[..., None]
    canvas = paint(canvas, floor, coverage(yy - floor_y))

    skirting_top = floor_y - 0.035 * height
    board = ramp(smoothstep(skirting_top, floor_y, yy), (236, 232, 224), (196, 190, 180))
    canvas = paint(canvas, board, coverage(np.minimum(yy - skirting_top, floor_y - yy)))
    far_corner = 0.35 * smoothstep(0.55 * width, width, xx)
    return canvas * (1.0 - far_corner)[..., None]


def paint_beach(rng: Rng, height: int, width: int) -> RGB:
    """A beach: hazy headland, sea whose waves shrink towards the horizon, foam line and sand.

    The wave texture is mapped onto the water plane in perspective, so its
    streaks flatten and crowd together with distance as they do in photos;
    sand ripples are spaced evenly in depth for the same reason.
    """
    yy, xx = grid(height, width)
    horizon, haze_to = 0.44 * height, (214, 228, 236)
    canvas = sky(rng, height, width, horizon, (70, 132, 200), haze_to, cover=0.3)
    u = xx[0] / width
    headland = horizon - 0.05 * height * smoothstep(0.45, 0.05, u) * (
        0.8 + 0.2 * ridge(rng, u, 5, 3.0))
    land = textured((128, 146, 150), fractal(rng, (height, width), 0.01 * height), 0.05)
    canvas = paint(canvas, land, coverage(yy - headland))

    dy = np.maximum(yy - horizon, 0.5)
    waves = sample(fractal(rng, (256, 256), (1.5, 12.0)), 6.0 * height / dy,
                   (xx - 0.5 * width) / dy * 80.0)
    shore = height * (0.68 + 0.015 * ridge(rng, u, 5, 2.0))
    depth = np.clip((yy - horizon) / (shore - horizon), 0.0, 1.0)
    sea = ramp(depth**0.8, (36, 84, 126), (52, 156, 164))
    sea *= (1.0 + 0.12 * waves * smoothstep(0.0, 0.25, depth))[..., None]
    whitecaps = smoothstep(1.7, 2.4, waves) * smoothstep(0.2, 0.8, depth)
    sea = paint(sea, (236, 242, 240), 0.8 * whitecaps)
    canvas = paint(canvas, sea, coverage(yy - horizon) * (1 - coverage(yy - shore)))

    warp = noise(rng, (height, width), (0.02 * height, 0.1 * width))
    ripples = np.sin(2 * np.pi * (height / dy * 6.0 + 0.5 * warp))
    ripples *= smoothstep(shore + 0.02 * height, shore + 0.15 * height, yy)
    grain = fractal(rng, (height, width), 0.004 * height)
    sand = ramp(smoothstep(shore, shore + 0.08 * height, yy), (160, 146, 122), (226, 206, 168))
    sand *= (1.0 + 0.03 * grain + 0.035 * ripples)[..., None]
    canvas = paint(canvas, sand, coverage(yy - shore))

    froth = fractal(rng, (height, width), (0.004 * height, 0.02 * width))
    band = (smoothstep(shore - 0.035 * height, shore, yy)
            * smoothstep(shore + 0.012 * height, shore, yy))
    return paint(canvas, (244, 246, 244), band * smoothstep(-0.6, 0.6, froth + 0.3))


# The street scene's camera and layout, in metres.
EYE_HEIGHT = 1.6
STREET_HALF_WIDTH = 7.0  # centre line to the facades
ROAD_HALF_WIDTH = 5.0  # centre line to the kerb
BLOCK_LENGTH = 14.0  # each block along the street has its own height and colour
STREET_END = 140.0  # a cross street's buildings close the view there


def haze_at(distance: Field) -> Field:
    """Share of the sky colour in something `distance` metres away."""
    return 1.0 - np.exp(-distance / 90.0)


def street_facades(rng: Rng, sx: Field, sy: Field, focal: float,
                   heights: NDArray) -> tuple[RGB, NDArray, Field]:
    """Colour, visibility and distance of the building fronts on both sides of the street.

    `sx`, `sy` are offsets from the vanishing point in px; `heights` is
    (2 sides, blocks). Windows, shop fronts, cornices and sills are cut in
    facade coordinates (metres), and fade out where a pixel spans more than a
    metre or so of facade, before they would alias.
    """
    palette = np.array([(176, 158, 138), (150, 104, 84), (204, 194, 172), (124, 124, 128),
                        (192, 150, 108), (166, 88, 68)], float)
    colours = palette[rng.integers(0, len(palette), heights.shape)]
    window_tone = rng.uniform(0.4, 1.0, (64, 64))
    plaster = fractal(rng, (128, 128), 2.0)

    side = (sx > 0).astype(int)  # 0: left, 1: right
    distance = focal * STREET_HALF_WIDTH / np.maximum(np.abs(sx), 1e-3)
    up = EYE_HEIGHT - sy * distance / focal  # height above the pavement
    block = np.minimum((distance / BLOCK_LENGTH).astype(int), heights.shape[1] - 1)
    top = heights[side, block]
    visible = (up >= 0) & (up <= top) & (distance < STREET_END)
    detail = smoothstep(1.2, 0.4, distance**2 / (focal * STREET_HALF_WIDTH))

    column, storey = distance / 3.2, up / 3.3
    glass = ((np.abs(column % 1 - 0.5) < 0.22) & (np.abs(storey % 1 - 0.58) < 0.26)
             & (up > 3.6) & (up < top - 1.0))
    shop = (np.abs((distance / 7.0) % 1 - 0.5) < 0.36) & (up > 0.4) & (up < 3.0)
    trim = (up > top - 0.6) | ((np.abs(storey % 1 - 0.29) < 0.035) & (up > 3.6))
    tone = window_tone[column.astype(int) % 64, storey.astype(int) % 64]
    wall = textured(colours[side, block], sample(plaster, up * 8, distance * 8), 0.04)
    wall = paint(wall, ramp(tone, (40, 48, 60), (150, 166, 184)), (glass | shop) * detail)
    wall = paint(wall, (230, 226, 216), trim * detail)
    wall *= np.where(side == 0, 0.62, 1.02)[..., None]  # sun from the left: left side in shade
    return wall, visible, distance


def street_ground(rng: Rng, sx: Field, sy: Field, focal: float,
                  left_heights: NDArray) -> tuple[RGB, Field]:
    """Colour and distance of the road and pavements, with lane marks and kerbs.

    The low sun behind the left-hand buildings throws their shadow across the
    road, wider where a block is taller.
    """
    distance = focal * EYE_HEIGHT / np.maximum(sy, 1e-3)
    across = sx * distance / focal
    detail = smoothstep(1.0, 0.3, distance**2 / (focal * EYE_HEIGHT))
    tarmac = sample(fractal(rng, (128, 128), 2.0), distance * 4, across * 4)
    dashes = (np.abs(across) < 0.12) & ((distance / 9.0) % 1 < 0.45)
    road = paint(textured((82, 84, 88), tarmac, 0.08), (226, 224, 214), dashes * detail)
    slabs = ((np.abs(across) % 1.0 < 0.05) | (distance % 1.0 < 0.05)) * detail
    pavement = ramp(slabs, (166, 162, 152), (120, 116, 108))
    surface = np.where((np.abs(across) > ROAD_HALF_WIDTH)[..., None], pavement, road)
    kerb = (np.abs(across) > ROAD_HALF_WIDTH) & (np.abs(across) < ROAD_HALF_WIDTH + 0.25)
    surface = paint(surface, (196, 194, 188), kerb * detail)
    block = np.minimum((distance / BLOCK_LENGTH).astype(int), len(left_heights) - 1)
    shadow_edge = -STREET_HALF_WIDTH + 0.5 * left_heights[block]
    surface *= np.where(across < shadow_edge, 0.58, 1.0)[..., None]
    return surface, distance


def lamp_posts(canvas: RGB, yy: Field, xx: Field, vanishing: Point, focal: float,
               haze_to: Colour) -> RGB:
    """Street lamps every 15 m along the right kerb: verticals that shrink with distance."""
    vx, vy = vanishing
    for distance in np.arange(9.0, 70.0, 15.0):
        scale = focal / distance  # px per metre at that distance
        x, head = vx + 6.2 * scale, vy - 3.4 * scale
        pole = (coverage(0.09 * scale - np.abs(xx - x)) * coverage(vy + EYE_HEIGHT * scale - yy)
                * coverage(yy - head))
        lamp = coverage(0.12 * scale - np.hypot((xx - x + 0.4 * scale) / 3.0, yy - head))
        colour = fade((46, 50, 54), haze_at(distance), haze_to)
        canvas = paint(canvas, colour, np.maximum(pole, lamp))
    return canvas


def paint_street(rng: Rng, height: int, width: int) -> RGB:
    """A city street in one-point perspective, portrait format.

    Facades, road and pavements are planes of a small 3-D scene, so windows,
    kerbs, lane marks and lamp posts converge on the vanishing point and
    shrink properly; haze and a cast shadow finish the depth cue.
    """
    yy, xx = grid(height, width)
    vx, vy, focal = 0.5 * width, 0.46 * height, 0.8 * width
    haze_to = (206, 210, 214)
    canvas = sky(rng, height, width, vy, (96, 140, 196), haze_to, cover=0.25)
    sx, sy = xx - vx, yy - vy
    heights = rng.uniform(9.0, 30.0, (2, 16))

    wall, facade, wall_distance = street_facades(rng, sx, sy, focal, heights)
    canvas = paint(canvas, fade(wall, haze_at(wall_distance), haze_to), facade)
    surface, ground_distance = street_ground(rng, sx, sy, focal, heights[0])
    ground = (sy > 0) & ~facade
    canvas = paint(canvas, fade(surface, haze_at(ground_distance), haze_to), ground)
    far_end = (~facade & ~ground & (wall_distance >= STREET_END)
               & (EYE_HEIGHT - sy * STREET_END / focal < 24.0))
    canvas = paint(canvas, fade((150, 140, 130), 0.75, haze_to), far_end)
    return lamp_posts(canvas, yy, xx, (vx, vy), focal, haze_to)


def paint_park(rng: Rng, height: int, width: int) -> RGB:
    """A park: wooded horizon, a path winding over the lawn, trees at several distances.

    Trees further back are smaller, higher in the frame and hazier; that
    ordering is the main depth cue of the scene.
    """
    yy, xx = grid(height, width)
    horizon, haze_to = 0.5 * height, (200, 216, 228)
    canvas = sky(rng, height, width, horizon, (72, 124, 196), haze_to, cover=0.35)
    u = xx[0] / width
    crowns = np.zeros_like(u)
    for centre, radius in zip(rng.uniform(-0.05, 1.05, 46), rng.uniform(0.02, 0.05, 46)):
        crown = radius * np.sqrt(np.clip(1 - ((u - centre) / radius) ** 2, 0, None))
        crowns = np.maximum(crowns, crown)
    treeline = horizon - height * (0.03 + 0.9 * crowns)
    woods = textured((64, 92, 66), fractal(rng, (height, width), 0.008 * height), 0.12)
    canvas = paint(canvas, fade(woods, 0.35, haze_to), coverage(yy - treeline))

    depth = np.clip((yy - horizon) / (height - horizon), 0.0, 1.0)
    blades = fractal(rng, (height, width), (0.006 * height, 0.0015 * height))
    lawn = ramp(depth, (128, 156, 76), (64, 114, 36)) * (1.0 + 0.08 * blades * depth)[..., None]
    canvas = paint(canvas, lawn, coverage(yy - horizon))
    centre = width * (0.52 + 0.2 * np.sin(3.4 * depth + 0.6))
    half = width * (0.004 + 0.16 * depth**1.2)
    gravel = textured((188, 170, 134), fractal(rng, (height, width), 0.003 * height), 0.08)
    path = coverage(half - np.abs(xx - centre)) * coverage(yy - horizon)
    canvas = paint(canvas, gravel * (0.85 + 0.15 * depth)[..., None], path)

    # (x, y of the foot, size), as fractions of the frame, back to front.
    trees = [(0.08, 0.56, 0.14), (0.36, 0.54, 0.1), (0.7, 0.55, 0.12), (0.86, 0.6, 0.2),
             (0.2, 0.7, 0.34), (0.97, 0.84, 0.52)]
    for fx, fy, size in trees:
        haze = 0.4 * (1 - fy) ** 1.5
        canvas = paint_tree(canvas, rng, (fx * width, fy * height), size * height, haze, haze_to)
    return canvas


def sunset_sky(rng: Rng, height: int, width: int, horizon: float) -> RGB:
    """Dusk sky: indigo above to gold at the horizon, a low sun with glow and lit streaks."""
    yy, xx = grid(height, width)
    canvas = gradient(height, width, [(0.0, (40, 42, 96)), (0.28, (118, 74, 122)),
                                      (0.48, (232, 128, 88)), (0.6, (255, 196, 122)),
                                      (1.0, (255, 196, 122))])
    sun = np.hypot(xx - 0.72 * width, yy - 0.5 * height)  # distance from the sun
    canvas += (0.55 * np.exp(-sun / (0.12 * height)))[..., None] * np.array([255.0, 150.0, 70.0])
    streaks = fractal(rng, (height, width), (0.008 * height, 0.25 * width))
    lit = ramp(np.exp(-sun / (0.3 * width)), (150, 84, 116), (255, 170, 120))
    canvas = paint(canvas, lit, 0.7 * smoothstep(0.8, 1.8, streaks)
                   * smoothstep(horizon, 0.3 * height, yy))
    return paint(canvas, (255, 240, 206), coverage(0.032 * height - sun))


def dune_profile(rng: Rng, u: Field, width: int) -> Field:
    """Crest heights (0..1) over u for one row of dunes.

    Each dune has a long gentle windward slope and a short steep slip face,
    blurred a little so crests are rounded rather than knife-edged.
    """
    profile = np.zeros_like(u)
    for centre in rng.uniform(-0.1, 1.1, 6):
        slip, windward = rng.uniform(0.05, 0.09), rng.uniform(0.15, 0.3)
        span = np.where(u < centre, (centre - u) / slip, (u - centre) / windward)
        profile = np.maximum(profile, rng.uniform(0.4, 1.0) * np.clip(1 - span, 0, None) ** 1.6)
    return blur(profile[None, :], (0.1, 0.004 * width))[0]


def paint_desert(rng: Rng, height: int, width: int) -> RGB:
    """Dunes at sunset, in rows that pale with distance.

    Each row's light/shadow split follows the slope of its crest line (sun to
    the right), slanted downwards so it reads as a face; sand ripples are
    spaced evenly in depth, so they crowd towards the horizon.
    """
    yy, xx = grid(height, width)
    horizon = 0.6 * height
    canvas = sunset_sky(rng, height, width, horizon)
    u = xx[0] / width
    dy = np.maximum(yy - 0.95 * horizon, 1.0)
    warp = noise(rng, (height, width), (0.02 * height, 0.2 * width))
    ripples = np.sin(2 * np.pi * (height / dy * 5.0 + 0.5 * warp))
    ripples *= smoothstep(0.05 * height, 0.3 * height, dy)
    grain = fractal(rng, (height, width), 0.003 * height)
    rows = [(0.585, 0.03, 0.6), (0.62, 0.045, 0.42), (0.68, 0.06, 0.25), (0.77, 0.08, 0.1),
            (0.9, 0.1, 0.0)]  # (base line, crest height, haze), back to front
    for base, amp, haze in rows:
        line = height * (base - amp * dune_profile(rng, u, width))
        slope = np.gradient(line)  # > 0 where the crest falls to the right: faces the sun
        slant = np.interp(xx + 0.9 * (yy - line[None, :]), xx[0], slope)
        sand = ramp(smoothstep(-0.2, 0.3, slant), (128, 62, 58), (236, 140, 82))
        rim = smoothstep(line + 0.03 * height, line, yy)  # the crest catches the light
        sand *= (0.92 + 0.18 * rim + 0.05 * ripples + 0.025 * grain)[..., None]
        canvas = paint(canvas, fade(sand, haze, (236, 150, 120)), coverage(yy - line))
    return canvas


Scene = Callable[[Rng, int, int], RGB]
# Assorted sizes and aspect ratios, so the pipeline's resize to 224x224 is exercised.
BACKGROUNDS: tuple[tuple[Scene, tuple[int, int]], ...] = (
    (paint_meadow, (320, 240)),
    (paint_room, (400, 300)),
    (paint_beach, (256, 256)),
    (paint_street, (300, 400)),
    (paint_park, (512, 384)),
    (paint_desert, (640, 480)),
)


# --- foregrounds ------------------------------------------------------------------------


class Sketch:
    """A cut-out being drawn at FG_SUPERSAMPLE x resolution on a transparent canvas.

    Coordinates are in nominal output pixels; parts are drawn as hard masks at
    the higher resolution and the LANCZOS downsample in `cutout` is what turns
    them into anti-aliased alpha edges.
    """

    def __init__(self, width: float, height: float) -> None:
        self.shape = (round(height * FG_SUPERSAMPLE), round(width * FG_SUPERSAMPLE))
        self.rgb = np.zeros(self.shape + (3,))
        self.alpha = np.zeros(self.shape)
        yy, xx = grid(*self.shape)
        self.yy, self.xx = (yy + 0.5) / FG_SUPERSAMPLE, (xx + 0.5) / FG_SUPERSAMPLE

    def _draw(self, draw: Callable[[ImageDraw.ImageDraw], None]) -> Field:
        image = Image.new("L", self.shape[::-1], 0)
        draw(ImageDraw.Draw(image))
        return np.asarray(image, float) / 255.0

    @staticmethod
    def _scale(points: Sequence[Point]) -> list[Point]:
        return [(x * FG_SUPERSAMPLE, y * FG_SUPERSAMPLE) for x, y in points]

    def polygon(self, points: Sequence[Point]) -> Field:
        """Mask of a filled polygon."""
        return self._draw(lambda d: d.polygon(self._scale(points), fill=255))

    def ellipse(self, box: Box) -> Field:
        """Mask of the ellipse inscribed in box."""
        return self._draw(lambda d: d.ellipse(self._scale([box[:2], box[2:]]), fill=255))

    def rounded(self, box: Box, radius: float) -> Field:
        """Mask of a rounded rectangle."""
        corners = self._scale([box[:2], box[2:]])
        return self._draw(
            lambda d: d.rounded_rectangle(corners, radius * FG_SUPERSAMPLE, fill=255))

    def line(self, points: Sequence[Point], width: float) -> Field:
        """Mask of a thick polyline with round joints and caps (limbs, tails, seams)."""
        r = width / 2

        def draw(d: ImageDraw.ImageDraw) -> None:
            d.line(self._scale(points), fill=255, width=round(width * FG_SUPERSAMPLE),
                   joint="curve")
            for x, y in (points[0], points[-1]):
                d.ellipse(self._scale([(x - r, y - r), (x + r, y + r)]), fill=255)

        return self._draw(draw)

    def shade(self, mask: Field, base: Paint, relief: float, gloss: float = 0.0) -> RGB:
        """Light a part as if it bulged out of the picture by about `relief` px.

        The blurred mask serves as a height field; its normals lit by LIGHT
        give dark rims on the shadow side, bright rims towards the light and,
        with gloss, a specular highlight: flat fills would read as stickers.
        """
        height = blur(mask, relief * FG_SUPERSAMPLE)
        gy, gx = np.gradient(height)
        k = 2.5 * relief * FG_SUPERSAMPLE
        normal = np.stack([-gx * k, -gy * k, np.ones_like(gx)], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        lambert = np.clip(normal @ LIGHT, 0.0, 1.0)
        colour = np.asarray(base, float) * (0.3 + 0.85 * lambert)[..., None]
        if gloss:
            halfway = (LIGHT + [0.0, 0.0, 1.0]) / np.linalg.norm(LIGHT + [0.0, 0.0, 1.0])
            highlight = np.clip(normal @ halfway, 0.0, 1.0) ** 30
            colour = colour + (gloss * 255.0 * highlight)[..., None]
        return colour

    def paint(self, mask: Field, colour: Paint) -> None:
        """Composite a colour over the sketch (straight-alpha "over")."""
        a = np.clip(mask, 0.0, 1.0)
        out = a + self.alpha * (1.0 - a)
        weight = np.divide(a, out, out=np.zeros_like(a), where=out > 0)[..., None]
        self.rgb = self.rgb * (1.0 - weight) + np.asarray(colour, float) * weight
        self.alpha = out

    def fill(self, mask: Field, base: Paint, relief: float, gloss: float = 0.0) -> None:
        """Shade a part and paint it: the usual way to add a part."""
        self.paint(mask, self.shade(mask, base, relief, gloss))

    def cutout(self) -> Image.Image:
        """Crop tightly, scale so the longest side is FG_LONG_SIDE, clamp LANCZOS ringing.

        Raises if the crop is no longer tight afterwards, so the bundled files
        always meet the fg150 contract.
        """
        rgba = np.dstack([self.rgb, self.alpha * 255.0]).clip(0, 255).round().astype(np.uint8)
        image = Image.fromarray(rgba)
        image = image.crop(image.getbbox())
        scale = FG_LONG_SIDE / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        pixels = np.array(image.resize(size, Image.Resampling.LANCZOS))
        pixels[pixels[..., 3] < ALPHA_FLOOR] = 0
        pixels[..., 3][pixels[..., 3] > 255 - ALPHA_FLOOR] = 255
        result = Image.fromarray(pixels)
        if result.getbbox() != (0, 0) + size:
            raise ValueError(f"cut-out is not tightly cropped: bbox {result.getbbox()} of {size}")
        return result


def vertical(sketch: Sketch, top: float, bottom: float, high: Colour, low: Colour) -> RGB:
    """Colour graded from top to bottom of a part (sunlit top, shaded underside)."""
    return ramp(smoothstep(top, bottom, sketch.yy), high, low)


def cylinder(sketch: Sketch, centre: float, half_width: float) -> Field:
    """Brightness across an upright cylinder lit from the left: a round pot."""
    u = np.clip((sketch.xx - centre) / half_width, -1.0, 1.0)
    return 0.55 + 0.45 * np.sqrt(1.0 - u**2) - 0.2 * u


def draw_person(rng: Rng) -> Image.Image:
    """A person standing, seen from the front: T-shirt, jeans, short hair."""
    sk = Sketch(80, 156)
    skin, shirt, jeans = (222, 170, 136), (178, 52, 56), (54, 76, 116)
    cloth = noise(rng, sk.shape, 0.8 * FG_SUPERSAMPLE)
    arms = [([(21.5, 50), (18, 76)], (12.5, 73, 21.5, 88)),
            ([(58.5, 50), (62, 76)], (58.5, 73, 67.5, 88))]
    for forearm, hand in arms:
        sk.fill(sk.line(forearm, 8.5), skin, relief=2.5)
        sk.fill(sk.ellipse(hand), skin, relief=2.5)
    trousers = sk.polygon([(25, 79), (55, 79), (56.5, 98), (54, 143), (42, 143), (40.6, 94),
                           (39.4, 94), (38, 143), (26, 143), (23.5, 98)])
    sk.fill(trousers, textured(jeans, cloth, 0.035), relief=3.0)
    for x0 in (24.5, 41.5):
        sk.fill(sk.ellipse((x0, 139, x0 + 14, 150)), (42, 34, 30), relief=2.0, gloss=0.25)
    torso = np.maximum.reduce([
        sk.polygon([(24, 31), (56, 31), (61, 40), (56, 60), (55, 79), (25, 79), (24, 60),
                    (19, 40)]),
        sk.ellipse((18, 30, 34, 46)), sk.ellipse((46, 30, 62, 46)),  # shoulders
        sk.polygon([(19, 38), (25, 40), (26, 54), (16, 52)]),  # sleeves
        sk.polygon([(61, 38), (55, 40), (54, 54), (64, 52)]),
    ])
    fabric = textured(vertical(sk, 30, 80, shirt, (140, 38, 44)), cloth, 0.025)
    sk.fill(torso, fabric, relief=4.0)
    sk.fill(sk.rounded((25, 76, 55, 80.5), 1), (58, 40, 30), relief=1.0, gloss=0.2)  # belt
    sk.fill(sk.rounded((36.5, 22, 43.5, 33), 3), (196, 146, 114), relief=2.0)  # neck
    sk.paint(sk.polygon([(35.5, 30.5), (44.5, 30.5), (40, 37)]), (200, 150, 118))  # collar
    for x0 in (29.5, 47.5):
        sk.fill(sk.ellipse((x0, 12, x0 + 3, 19)), skin, relief=1.0)  # ears
    sk.fill(sk.ellipse((31, 4, 49, 27)), skin, relief=3.0)
    hair = np.minimum(sk.ellipse((30, 2, 50, 21)), 1.0 - sk.ellipse((31.5, 9.5, 48.5, 32)))
    strands = textured((60, 40, 28), noise(rng, sk.shape, (2.0, 0.5)), 0.15)
    sk.fill(hair, strands, relief=2.0, gloss=0.15)
    for x0 in (35, 42.5):
        sk.paint(sk.ellipse((x0, 14, x0 + 2.5, 15.8)) * 0.8, (52, 36, 30))  # eyes
    sk.paint(sk.ellipse((37.5, 21.0, 42.5, 22.2)) * 0.5, (150, 80, 76))  # mouth
    return sk.cutout()


def leaf_halves(sk: Sketch, base: Point, angle: float, length: float, width: float,
                droop: float) -> tuple[Field, Field, list[Point]]:
    """The two halves of a drooping, pointed leaf, and its midrib.

    Leaves bend further from vertical along their length; drawing each half
    separately lets one side of the midrib be lit and the other shaded.
    """
    t = np.linspace(0.0, 1.0, 24)
    heading = np.radians(angle) + np.radians(droop) * t**1.5 * np.sign(angle or 1.0)
    step = length / (len(t) - 1)
    xs = base[0] + np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1]) * step)])
    ys = base[1] - np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1]) * step)])
    taper = np.sin(np.pi * t) ** 0.8 * (1.0 - 0.35 * t) * smoothstep(0.0, 0.25, t) ** 0.5
    half_width = width / 2 * taper
    nx, ny = np.cos(heading), np.sin(heading)
    rib = list(zip(xs, ys))
    left = rib + list(zip(xs - nx * half_width, ys - ny * half_width))[::-1]
    right = rib + list(zip(xs + nx * half_width, ys + ny * half_width))[::-1]
    return sk.polygon(left), sk.polygon(right), rib


def draw_plant(rng: Rng) -> Image.Image:
    """A leafy plant in a terracotta pot: an organic outline full of gaps for the alpha."""
    sk = Sketch(130, 166)
    pot = sk.polygon([(43, 112), (87, 112), (81, 160), (49, 160)])
    sk.fill(pot, np.asarray((186, 94, 60)) * cylinder(sk, 65, 24)[..., None], relief=2.0)
    rim = sk.rounded((38, 104, 92, 115), 2.5)
    sk.fill(rim, np.asarray((198, 104, 68)) * cylinder(sk, 65, 27)[..., None], relief=1.5)

    count = 13
    angles = np.linspace(-78, 78, count) + rng.normal(0, 6, count)
    for order, i in enumerate(rng.permutation(count)):
        angle = angles[i]
        length = (92 - 38 * abs(angle) / 78) * rng.uniform(0.85, 1.05)
        left, right, rib = leaf_halves(sk, (65 + 0.12 * angle, 106), angle, length,
                                       width=rng.uniform(13, 19), droop=rng.uniform(25, 45))
        depth = 0.7 + 0.3 * order / (count - 1)  # leaves drawn first sit behind: darker
        green = np.array([rng.uniform(40, 70), rng.uniform(120, 150), rng.uniform(40, 62)]) * depth
        lit, unlit = (left, right) if angle < 0 else (right, left)
        sk.fill(lit, green * 1.1, relief=1.5, gloss=0.12)
        sk.fill(unlit, green * 0.8, relief=1.5, gloss=0.12)
        sk.paint(sk.line(rib[2:-3], 0.7) * 0.6, green * 1.35)
    # The soil goes on last: it hides the leaf stalks, which would otherwise glint.
    soil = textured((58, 40, 30), noise(rng, sk.shape, 2.0), 0.2)
    sk.fill(sk.ellipse((41, 103.5, 89, 109.5)), soil, relief=1.0)
    return sk.cutout()


def draw_dog(rng: Rng) -> Image.Image:
    """A short-haired dog in profile, facing right: legs and tail make a busy outline."""
    sk = Sketch(168, 122)
    fur = textured(vertical(sk, 40, 88, (150, 98, 54), (222, 182, 128)),
                   noise(rng, sk.shape, (1.6, 0.5)), 0.035)
    legs = textured((176, 120, 68), noise(rng, sk.shape, (1.6, 0.5)), 0.035)
    sk.fill(sk.line([(32, 54), (22, 42), (17, 26)], 6.0), fur, relief=2.0)  # tail
    # Far legs first, in the body's shadow; all legs go behind the body.
    for box, shade in [((48, 66, 58, 112), 0.72), ((112, 66, 121, 112), 0.72),
                       ((33, 66, 46, 113), 1.0), ((99, 66, 111, 113), 1.0)]:
        sk.fill(sk.rounded(box, 4.5), legs * shade, relief=2.0)
        sk.fill(sk.ellipse((box[0] - 2.5, 106, box[2] + 3.5, 114)), legs * shade, relief=1.5)
    body = np.maximum.reduce([sk.ellipse((24, 38, 124, 84)), sk.ellipse((94, 38, 130, 82)),
                              sk.polygon([(102, 52), (114, 18), (136, 24), (128, 66)])])
    sk.fill(body, fur, relief=6.0)
    sk.fill(sk.ellipse((25, 41, 63, 83)), fur, relief=4.0)  # haunch
    head = np.maximum(sk.ellipse((112, 6, 146, 38)), sk.rounded((130, 18, 161, 36), 8.0))
    face = textured(vertical(sk, 6, 38, (166, 110, 62), (214, 170, 118)),
                    noise(rng, sk.shape, 1.0), 0.04)
    sk.fill(head, face, relief=4.0)
    collar = np.minimum(sk.line([(109, 36), (134, 46)], 4.5), body)
    sk.fill(collar, (40, 84, 170), relief=1.0, gloss=0.2)
    ear = sk.polygon([(117, 11), (130, 8), (129, 34), (121, 38), (114, 28)])
    sk.fill(ear, (104, 64, 36), relief=2.5)
    sk.fill(sk.ellipse((153, 18, 162, 27)), (26, 22, 22), relief=1.0, gloss=0.6)  # nose
    sk.fill(sk.ellipse((135, 15, 141, 21)), (24, 18, 16), relief=0.8, gloss=0.9)  # eye
    sk.paint(sk.line([(143, 33), (155, 31)], 0.8) * 0.7, (70, 40, 30))  # mouth
    return sk.cutout()


def box_faces(low: Vec3, high: Vec3) -> list[tuple[Vec3, list[Vec3]]]:
    """The six faces of an axis-aligned box, each as (outward normal, corners in order)."""
    (x0, y0, z0), (x1, y1, z1) = low, high
    return [
        ((-1, 0, 0), [(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)]),
        ((1, 0, 0), [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)]),
        ((0, -1, 0), [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)]),
        ((0, 1, 0), [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)]),
        ((0, 0, -1), [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]),
        ((0, 0, 1), [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]),
    ]


def view_rotation(yaw: float, pitch: float) -> NDArray:
    """World -> camera rotation (camera looks along +z, y up), angles in degrees."""
    a, b = np.radians(yaw), np.radians(pitch)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return tilt @ turn


# A kitchen chair as boxes in centimetres (x right, y up, z away from the viewer),
# listed back to front so that painting them in order resolves occlusion.
CHAIR: tuple[tuple[Vec3, Vec3], ...] = (
    ((39, 0, 37), (43, 42, 41)),  # back legs, below the seat
    ((1, 0, 37), (5, 42, 41)),
    ((40, 14, 5), (42, 17, 37)),  # right stretcher
    ((39, 0, 1), (43, 42, 5)),  # right front leg
    ((2, 14, 5), (4, 17, 37)),  # left stretcher
    ((5, 20, 2), (39, 23, 4)),  # front stretcher
    ((1, 0, 1), (5, 42, 5)),  # left front leg
    ((5, 36, 37.5), (39, 42, 40.5)),  # aprons under the seat: back, right, left, front
    ((39.5, 36, 5), (42.5, 42, 37)),
    ((1.5, 36, 5), (4.5, 42, 37)),
    ((5, 36, 1.5), (39, 42, 4.5)),
    ((0, 42, 0), (44, 46, 42)),  # seat
    ((39, 46, 37), (43, 96, 41)),  # back posts
    ((1, 46, 37), (5, 96, 41)),
    ((11, 50, 38), (15, 84, 40)),  # slats
    ((20, 50, 38), (24, 84, 40)),
    ((29, 50, 38), (33, 84, 40)),
    ((5, 84, 37.5), (39, 94, 40.5)),  # top rail
)


def draw_chair(rng: Rng) -> Image.Image:
    """A wooden chair in three-quarter view from above.

    It is modelled as boxes in 3-D and projected, so every face takes the light
    consistently (tops brightest, the far side darkest) and the legs, rails and
    slats leave see-through gaps, which a cut-out's alpha must handle.
    """
    rotation = view_rotation(yaw=-32.0, pitch=-22.0)
    light = np.array([-0.5, 0.8, -0.45]) / np.linalg.norm([-0.5, 0.8, -0.45])
    corners = [c for low, high in CHAIR for _, face in box_faces(low, high) for c in face]
    projected = np.array(corners, float) @ rotation.T
    scale, margin = 1.35, 3.0
    left, top = projected[:, 0].min(), -projected[:, 1].max()
    sk = Sketch(np.ptp(projected[:, 0]) * scale + 2 * margin,
                np.ptp(projected[:, 1]) * scale + 2 * margin)
    wood = np.array([148.0, 96.0, 56.0])
    for low, high in CHAIR:
        axis = rotation @ np.eye(3)[int(np.argmax(np.subtract(high, low)))]
        across = sk.xx * -axis[1] - sk.yy * axis[0]  # screen distance across the grain
        wobble = noise(rng, sk.shape, 3.0 * FG_SUPERSAMPLE)
        grain = np.sin(2 * np.pi * across / 1.6 + 3.0 * wobble)
        tone = wood * rng.uniform(0.9, 1.08)
        for normal, face in box_faces(low, high):
            if (rotation @ np.asarray(normal, float))[2] >= 0:
                continue  # faces away from the camera
            screen = np.asarray(face, float) @ rotation.T
            points = [((x - left) * scale + margin, (-y - top) * scale + margin)
                      for x, y, _ in screen]
            brightness = 0.38 + 0.72 * max(0.0, float(np.dot(normal, light)))
            sk.fill(sk.polygon(points), textured(tone * brightness, grain, 0.06), relief=0.5,
                    gloss=0.05)
    return sk.cutout()


def car_wheel(sk: Sketch, centre: Point) -> None:
    """A tyre with a five-spoke alloy rim."""
    x, y = centre
    sk.fill(sk.ellipse((x - 11.5, y - 11.5, x + 11.5, y + 11.5)), (34, 34, 36), relief=2.0,
            gloss=0.1)
    angle = np.arctan2(sk.yy - y, sk.xx - x)
    radius = np.hypot(sk.xx - x, sk.yy - y)
    spokes = (np.cos(5 * angle) < 0.2) & (radius > 2.2) & (radius < 6.2)
    metal = np.where(spokes[..., None], np.array([60.0, 60, 64]), np.array([204.0, 206, 210]))
    sk.fill(sk.ellipse((x - 7, y - 7, x + 7, y + 7)), metal, relief=1.0, gloss=0.5)


def draw_car(rng: Rng) -> Image.Image:
    """A red saloon car in profile, facing left.

    Glossy paint is faked the way photos show it: bright sky reflection on
    the upper body, a dark band under the shoulder line, and specular glints.
    """
    sk = Sketch(164, 66)
    outline = sk.polygon([(6, 44), (7, 35), (12, 30), (42, 25.5), (58, 12.5), (65, 10),
                          (101, 10), (107, 12), (125, 25), (150, 27), (156, 31), (157.5, 44),
                          (155.5, 51), (8, 51)])
    rounded = (blur(outline, 2.0 * FG_SUPERSAMPLE) > 0.5).astype(float)
    wheels = [(33.0, 51.0), (128.0, 51.0)]
    arches = np.maximum.reduce([sk.ellipse((x - 13, y - 13, x + 13, y + 13)) for x, y in wheels])
    sk.paint(arches, (22, 22, 24))  # the dark wheel wells, seen round the tyres
    body = rounded * (1 - arches)
    bodywork = np.where((sk.yy < 33.0)[..., None],
                        ramp(smoothstep(10, 33, sk.yy), (236, 96, 92), (196, 36, 40)),
                        ramp(smoothstep(33, 51, sk.yy), (150, 20, 26), (96, 12, 18)))
    sk.fill(body, bodywork, relief=2.5, gloss=0.35)
    shoulder = np.minimum(sk.line([(12, 31.5), (154, 30.5)], 0.9), body)
    sk.paint(shoulder * 0.7, (250, 170, 170))

    glass = sk.polygon([(61, 14), (100, 14), (104.5, 15.5), (119, 25.5), (51, 25.5)])
    sheen = smoothstep(2.5, 0.0, np.abs((sk.xx - 70) + 1.2 * (sk.yy - 14) - 10))
    tint = ramp(smoothstep(14, 26, sk.yy), (92, 110, 128), (30, 36, 46)) + (70 * sheen)[..., None]
    sk.fill(glass, tint, relief=0.8, gloss=0.3)
    sk.paint(sk.polygon([(84, 13.5), (87.5, 13.5), (88, 26), (84.5, 26)]), (30, 30, 34))

    for x in (57.5, 88.5, 118.5):  # door seams
        sk.paint(np.minimum(sk.line([(x, 26.5), (x + 0.5, 49)], 0.6), body) * 0.8, (80, 10, 14))
    for x in (74, 104):  # door handles
        sk.fill(sk.rounded((x, 30, x + 7, 32), 0.8), (206, 206, 210), relief=0.4, gloss=0.4)
    sk.fill(sk.ellipse((56, 21, 64, 27.5)), (170, 28, 34), relief=1.2, gloss=0.4)  # mirror
    headlight = sk.polygon([(7.5, 34), (18, 31.5), (17, 36.5), (8, 37.5)])
    sk.fill(headlight, (236, 236, 220), relief=0.6, gloss=0.6)
    taillight = sk.polygon([(151, 29), (156, 31.5), (157, 38), (151.5, 38)])
    sk.fill(taillight, (214, 30, 34), relief=0.6, gloss=0.5)
    for x0, x1 in [(6, 22), (146, 158)]:  # bumpers
        bumper = np.minimum(sk.rounded((x0, 44, x1, 51.5), 2.0), rounded)
        sk.fill(bumper, (44, 44, 48), relief=1.0)
    for centre in wheels:
        car_wheel(sk, centre)
    return sk.cutout()


FOREGROUNDS: tuple[Callable[[Rng], Image.Image], ...] = (
    draw_person, draw_plant, draw_dog, draw_chair, draw_car)


# --- files ------------------------------------------------------------------------------


def image_rng(kind: int, number: int) -> Rng:
    """One generator per image, so editing one drawing leaves the other files unchanged."""
    return np.random.default_rng((SEED, kind, number))


def write_backgrounds(folder: Path) -> int:
    """Write bg1.jpg .. as JPEG (quality 90) at their assorted native sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, (scene, (width, height)) in enumerate(BACKGROUNDS, start=1):
        rng = image_rng(0, number)
        canvas = scene(rng, height * BG_SUPERSAMPLE, width * BG_SUPERSAMPLE)
        photo = finish_photo(canvas, (width, height), rng)
        photo.save(folder / f"bg{number}.jpg", quality=BG_JPEG_QUALITY, optimize=True)
    return len(BACKGROUNDS)


def write_foregrounds(fg_folder: Path, mask_folder: Path) -> tuple[int, int]:
    """Write fg_N.png (RGBA) and, for the first MASKED_FOREGROUNDS, mask_fg_N.png.

    A mask is (alpha > 0) * 255 of its cut-out. Only some foregrounds get a
    mask file because the pipeline must handle both sources of a mask: a
    supplied file, or the cut-out's alpha channel.
    """
    fg_folder.mkdir(parents=True, exist_ok=True)
    mask_folder.mkdir(parents=True, exist_ok=True)
    for number, draw in enumerate(FOREGROUNDS, start=1):
        cutout = draw(image_rng(1, number))
        cutout.save(fg_folder / f"fg_{number}.png", optimize=True)
        if number <= MASKED_FOREGROUNDS:
            mask = (np.asarray(cutout)[..., 3] > 0).astype(np.uint8) * 255
            Image.fromarray(mask).save(mask_folder / f"mask_fg_{number}.png", optimize=True)
    return len(FOREGROUNDS), MASKED_FOREGROUNDS


def main(argv: Sequence[str]) -> int:
    """Write all demo inputs under OUT_DIR (default: demo/inputs next to this script)."""
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "inputs"
    backgrounds = write_backgrounds(out / "bg")
    foregrounds, masks = write_foregrounds(out / "fg", out / "fg_mask")
    print(f"wrote {backgrounds} backgrounds, {foregrounds} foregrounds and {masks} masks "
          f"under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
