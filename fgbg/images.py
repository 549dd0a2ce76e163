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


def encode_image(image: Image.Image, image_format: str, **options) -> bytes:
    """`image` saved in `image_format` with Pillow's `options`, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
