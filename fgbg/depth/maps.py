"""Depth maps: the network's input sizes, the original's pre- and
post-processing, and the two encodings of a depth map as a file.

numpy and Pillow only, so the writer, the report and readers can use them
without TensorFlow.
"""

from __future__ import annotations

import io
from typing import Dict, Tuple

import numpy as np
from PIL import Image

from fgbg.images import encode_image

Size = Tuple[int, int]  # (width, height), PIL's order

# The file suffix the writer gives each depth encoding.
FILE_EXTENSION: Dict[str, str] = {"minmax": "jpg", "metric": "png"}

# Network inputs must be multiples of this: DenseNet halves the resolution five
# times and the decoder concatenates each level with its skip layer.
INPUT_MULTIPLE = 32

# DenseDepth's predict: depth = clip(MAX_DEPTH / output, MIN_DEPTH, MAX_DEPTH)
# / MAX_DEPTH, in units of 10 m.
MIN_DEPTH = 10.0
MAX_DEPTH = 1000.0
METRES_PER_DEPTH_UNIT = 10.0

# `encode_metric` stores millimetres: the model's range [0.01, 1] x 10 m is
# [100, 10000] mm, which fits a 16-bit PNG with 1 mm resolution.
METRIC_DEPTH_SCALE = 1000.0  # stored value per metre
METRIC_DEPTH_UNIT = (
    "metres: stored value / 1000 (16-bit PNG in millimetres; 100..10000 is the "
    "model's range, 0.1 m..10 m)"
)
_METRIC_PER_UNIT = METRES_PER_DEPTH_UNIT * METRIC_DEPTH_SCALE
METRIC_MIN_STORED = int(round(MIN_DEPTH / MAX_DEPTH * _METRIC_PER_UNIT))
METRIC_MAX_STORED = int(round(_METRIC_PER_UNIT))


def check_input_size(input_size: Size) -> None:
    """Raise unless both sides are positive multiples of INPUT_MULTIPLE."""
    if any(side <= 0 or side % INPUT_MULTIPLE for side in input_size):
        raise ValueError(
            f"depth input size {input_size[0]}x{input_size[1]} must be positive "
            f"multiples of {INPUT_MULTIPLE} (DenseNet halves it five times)"
        )


def preprocess(images: np.ndarray, input_size: Size) -> np.ndarray:
    """Composite(s) as the original fed them: Lanczos to `input_size`, /255, clipped.

    `images` is uint8, (H, W, 3) or (N, H, W, 3); the result is float32 with
    the same rank. The clip is a no-op for uint8 input and kept to match the
    original code. `input_size` is checked with the options
    (`check_input_size`), not on every batch.
    """
    if images.ndim == 3:
        return _preprocess_one(images, input_size)
    return np.stack([_preprocess_one(image, input_size) for image in images])


def _preprocess_one(image: np.ndarray, input_size: Size) -> np.ndarray:
    if image.shape[1::-1] != tuple(input_size):
        image = np.asarray(Image.fromarray(image).resize(input_size, Image.LANCZOS))
    return np.clip(image.astype(np.float32) / 255.0, 0.0, 1.0)


def postprocess(raw: np.ndarray) -> np.ndarray:
    """The authors' predict: clip(1000 / output, 10, 1000) / 1000, same shape.

    The result is depth in units of 10 m within [0.01, 1] (0.1 m to 10 m); a
    zero output divides to +inf and is clipped to the far limit.
    """
    with np.errstate(divide="ignore"):
        depth = MAX_DEPTH / np.asarray(raw, dtype=np.float32)
    return (np.clip(depth, MIN_DEPTH, MAX_DEPTH) / MAX_DEPTH).astype(np.float32)


def minmax_grey(depth: np.ndarray, out_size: Size) -> Image.Image:
    """The original's depth image before JPEG: per-image min-max to 0..255,
    rounded to the nearest grey level, Lanczos to `out_size`.

    Bright is far. The absolute scale is lost (each image is stretched to its
    own range); a constant map, which the original divided by zero on,
    becomes black.
    """
    grey = Image.fromarray(np.rint(minmax_scaled(depth)).astype(np.uint8))
    return grey.resize(out_size, Image.LANCZOS)


def minmax_scaled(depth: np.ndarray) -> np.ndarray:
    """Per-image min-max to 0..255, unrounded float32 (zeros for a constant map)."""
    depth = np.asarray(depth, dtype=np.float32)
    low, span = float(depth.min()), float(depth.max() - depth.min())
    return (depth - low) * (255.0 / span) if span > 0 else np.zeros_like(depth)


def encode_minmax(depth: np.ndarray, out_size: Size, quality: int) -> bytes:
    """The original encoding: `minmax_grey` as a grey JPEG."""
    return encode_image(minmax_grey(depth, out_size), "JPEG", quality=quality)


def encode_metric(depth: np.ndarray, out_size: Size) -> bytes:
    """Depth on one fixed scale for every image: 16-bit grey PNG in millimetres.

    Pixel value = round(depth in metres x 1000), within [100, 10000] (the
    model's 0.1 m to 10 m), so values compare across samples. Resized with
    Lanczos in float, then clipped to that range (Lanczos overshoots at
    edges).
    """
    millimetres = np.asarray(depth, dtype=np.float32) * _METRIC_PER_UNIT
    resized = np.asarray(Image.fromarray(millimetres).resize(out_size, Image.LANCZOS))
    clipped = np.clip(np.rint(resized), METRIC_MIN_STORED, METRIC_MAX_STORED).astype(np.uint16)
    return encode_image(Image.fromarray(clipped), "PNG")


def decode_metric(data: bytes) -> np.ndarray:
    """A depth PNG written by `encode_metric`, as float32 metres."""
    with Image.open(io.BytesIO(data)) as image:
        millimetres = np.asarray(image, dtype=np.float32)
    return millimetres / METRIC_DEPTH_SCALE
