"""Pixel moments: (pixel count, per-channel sums, per-channel sums of
squares) as Python ints, so that adding them is exact and independent of
order. Every mean and std fgbg reports or normalises with comes from these.
"""

from __future__ import annotations

import io
import math
from typing import Dict, Hashable, List

import numpy as np
from PIL import Image

from fgbg.types import Moments


def binary_moments(foreground: int, pixels: int) -> Moments:
    """Moments of a single-channel 0/255 image with `foreground` pixels at 255."""
    return pixels, (255 * foreground,), (255 * 255 * foreground,)


def pixel_moments(pixels: np.ndarray) -> Moments:
    """Moments of an (H, W) or (H, W, C) integer image."""
    channels = pixels.reshape(pixels.shape[0] * pixels.shape[1], -1).astype(np.int64)
    sums = channels.sum(axis=0)
    squares = np.einsum("ij,ij->j", channels, channels)
    return (int(channels.shape[0]), tuple(int(v) for v in sums), tuple(int(v) for v in squares))


# 8-bit multi-channel modes, whose moments come from Pillow's per-channel
# histogram: exact, and cheaper than numpy's reductions over an interleaved
# (H, W, 3) array (BENCHMARKS.md, "Compositing"). Single-channel images are
# cheaper in numpy.
_HISTOGRAM_CHANNELS = {"RGB": 3, "RGBA": 4}
_VALUES = np.arange(256, dtype=np.int64)
_SQUARES = _VALUES * _VALUES


def histogram_moments(histogram: List[int], pixels: int, channels: int) -> Moments:
    """Moments from a per-channel 256-bin histogram (Pillow's layout)."""
    counts = np.asarray(histogram, dtype=np.int64).reshape(channels, 256)
    return (
        pixels,
        tuple(int(v) for v in counts @ _VALUES),
        tuple(int(v) for v in counts @ _SQUARES),
    )


def encoded_moments(encoded: bytes) -> Moments:
    """Moments of an image as written (decoded back from its bytes).

    Identical to `pixel_moments(np.asarray(decoded))`; 8-bit colour images go
    through the decoded image's histogram instead of a numpy copy.
    """
    image = Image.open(io.BytesIO(encoded))
    channels = _HISTOGRAM_CHANNELS.get(image.mode)
    if channels is None:
        return pixel_moments(np.asarray(image))
    width, height = image.size
    return histogram_moments(image.histogram(), width * height, channels)


def add_moments(a: Moments, b: Moments) -> Moments:
    return (
        a[0] + b[0],
        tuple(x + y for x, y in zip(a[1], b[1])),
        tuple(x + y for x, y in zip(a[2], b[2])),
    )


def add_to_totals(
    totals: Dict[Hashable, Moments], key: Hashable, moments: Moments
) -> Dict[Hashable, Moments]:
    """Adds one image's moments to the totals under `key` (a kind, or a
    (split, kind)), in place; returns the totals."""
    totals[key] = add_moments(totals[key], moments) if key in totals else moments
    return totals


def summarize(moments: Moments, full_scale: float = 255.0) -> Dict[str, object]:
    """Mean and population std per channel, in stored values and divided by
    `full_scale` (255 for 8-bit images; a 16-bit metric depth passes its own)."""
    count, sums, squares = moments
    means = [s / count for s in sums]
    # Exact integer numerator: count*sum(x^2) - sum(x)^2 >= 0.
    stds = [math.sqrt(max(count * q - s * s, 0)) / count for s, q in zip(sums, squares)]
    return {
        "pixels": count,
        "mean": means,
        "std": stds,
        "mean_unit": [m / full_scale for m in means],
        "std_unit": [s / full_scale for s in stds],
    }
