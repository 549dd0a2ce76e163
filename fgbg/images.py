"""Image bytes: the one place arrays become JPEG or PNG files, and how many
channels each image kind of a sample has."""

from __future__ import annotations

import io
from typing import Dict

import numpy as np
from PIL import Image

# Pillow's JPEG quality scale; every JPEG quality option is checked against it.
JPEG_QUALITY = range(1, 101)

# The image kinds of a sample and their channels as stored (depth: one grey
# channel, 8-bit for minmax maps, 16-bit for metric ones).
CHANNELS: Dict[str, int] = {"background": 3, "overlay": 3, "mask": 1, "depth": 1}


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    return encode_image(Image.fromarray(pixels), "JPEG", quality=quality)


def encode_png(pixels: np.ndarray) -> bytes:
    return encode_image(Image.fromarray(pixels), "PNG")


def encode_png_fast(pixels: np.ndarray) -> bytes:
    """A PNG by OpenCV: zlib level 1, its default strategy, every row
    filtered by 'Sub'. Lossless like `encode_png`, in a fraction of its time
    on 16-bit depth (Pillow tries every filter on every row, and offers no
    choice), with larger files (BENCHMARKS.md, "Placement by depth"). Every
    setting is given, so the bytes do not follow OpenCV's defaults. OpenCV
    is imported on the first call: a build that never calls it (a default
    one) never loads it."""
    import cv2

    settings = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_DEFAULT,
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_SUB,
    ]
    written, data = cv2.imencode(".png", pixels, settings)
    if not written:
        raise ValueError(f"OpenCV could not encode a {pixels.dtype} array of {pixels.shape}")
    return data.tobytes()


def encode_image(image: Image.Image, image_format: str, **options) -> bytes:
    """`image` saved in `image_format` with Pillow's `options`, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
