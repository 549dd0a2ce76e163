"""Depth maps: DenseDepth's input sizes and the original's pre- and
post-processing, what a model's maps hold (`MapContent`), and the two
encodings of a depth map as a file.

numpy and Pillow only, so the writer, the report and readers can use them
without TensorFlow.
"""

from __future__ import annotations

import dataclasses
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

# What a map can hold: depth, or disparity (relative inverse depth: larger
# is nearer, up to an unknown scale and shift).
DEPTH = "depth"
DISPARITY = "disparity"

# Metric maps are 16-bit PNGs: the stored value per metre is the finest of
# these steps (1 mm, 2 mm, 5 mm, ...) that fits the model's range in 16 bits.
STORED_PER_METRE_CHOICES = (1000, 500, 200, 100, 50, 20, 10)
UINT16_MAX = 65535
_STEP_NAMES = {1000: "millimetres"}


@dataclasses.dataclass(frozen=True)
class MapContent:
    """What a model's post-processed maps hold, said once for the encoders,
    stats.json and the manifest.

    quantity: DEPTH or DISPARITY. Min-max images keep the dataset's one
        polarity, bright is far, so a disparity map is stored as the min-max
        of its negation (an exact affine image of the model's output).
    metric: values are metres x `metres_per_unit`, within the model's range
        [min_metres, max_metres]; False: relative, up to scale and shift.
    stored_per_metre: metric PNGs store round(metres x this).
    """

    quantity: str
    metric: bool
    metres_per_unit: float = 1.0
    min_metres: float = 0.0
    max_metres: float = 0.0
    stored_per_metre: int = 1000

    @property
    def description(self) -> str:
        """E.g. 'metric depth' or 'relative disparity', for the records."""
        return f"{'metric' if self.metric else 'relative'} {self.quantity}"

    def far_is_larger(self, values: np.ndarray) -> np.ndarray:
        """The map with larger values farther: disparity negated, depth as is."""
        return -values if self.quantity == DISPARITY else values

    @property
    def stored_range(self) -> Tuple[int, int]:
        """The model's range as stored values of a metric PNG."""
        return (
            int(round(self.min_metres * self.stored_per_metre)),
            int(round(self.max_metres * self.stored_per_metre)),
        )

    @property
    def metric_unit(self) -> str:
        """stats.json's depth_unit for a metric build."""
        low, high = self.stored_range
        step = _STEP_NAMES.get(
            self.stored_per_metre, f"steps of {1000 / self.stored_per_metre:g} mm"
        )
        return (
            f"metres: stored value / {self.stored_per_metre} (16-bit PNG in {step}; "
            f"{low}..{high} is the model's range, {self.min_metres:g} m..{self.max_metres:g} m)"
        )

    @property
    def minmax_unit(self) -> str:
        """stats.json's depth_unit for a min-max build."""
        negated = " of the negated disparity" if self.quantity == DISPARITY else ""
        return f"per-image min-max{negated}: 0 nearest, 255 farthest in that image"


def stored_per_metre(max_metres: float) -> int:
    """The finest step of STORED_PER_METRE_CHOICES that stores `max_metres`
    in 16 bits, so no value the model can predict is clipped."""
    for choice in STORED_PER_METRE_CHOICES:
        if max_metres * choice <= UINT16_MAX:
            return choice
    raise ValueError(f"a metric range up to {max_metres:g} m does not fit a 16-bit PNG")


# DenseDepth's maps: depth = clip(1000 / output, 10, 1000) / 1000, in units
# of 10 m (0.1 m to 10 m), stored in millimetres.
DENSEDEPTH_CONTENT = MapContent(
    quantity=DEPTH,
    metric=True,
    metres_per_unit=METRES_PER_DEPTH_UNIT,
    min_metres=MIN_DEPTH / MAX_DEPTH * METRES_PER_DEPTH_UNIT,
    max_metres=METRES_PER_DEPTH_UNIT,
    stored_per_metre=1000,
)
METRIC_DEPTH_SCALE = float(DENSEDEPTH_CONTENT.stored_per_metre)  # stored value per metre


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
    """The original encoding: `minmax_grey` as a grey JPEG (larger is brighter)."""
    return encode_image(minmax_grey(depth, out_size), "JPEG", quality=quality)


def metric_stored(
    depth: np.ndarray, out_size: Size, content: MapContent = DENSEDEPTH_CONTENT
) -> Tuple[np.ndarray, int]:
    """A metric map's stored values, and how many were clipped.

    Value = round(metres x content.stored_per_metre) (millimetres for
    DenseDepth, within [100, 10000], its 0.1 m to 10 m), so values compare
    across samples. Resized with Lanczos in float, then clipped to the
    model's range, which only resampling overshoots, at edges: the count
    says how many pixels it moved, so the stage can say so.
    """
    per_unit = content.metres_per_unit * content.stored_per_metre
    stored = np.asarray(depth, dtype=np.float32) * per_unit
    resized = np.rint(np.asarray(Image.fromarray(stored).resize(out_size, Image.LANCZOS)))
    low, high = content.stored_range
    outside = int(np.count_nonzero((resized < low) | (resized > high)))
    return np.clip(resized, low, high).astype(np.uint16), outside


def encode_metric(
    depth: np.ndarray, out_size: Size, content: MapContent = DENSEDEPTH_CONTENT
) -> bytes:
    """Depth on one fixed scale for every image: `metric_stored` as a 16-bit
    grey PNG."""
    return encode_stored(metric_stored(depth, out_size, content)[0])


def encode_stored(stored: np.ndarray) -> bytes:
    """Stored uint16 metric values as a 16-bit grey PNG."""
    return encode_image(Image.fromarray(stored), "PNG")


def decode_metric(data: bytes, stored_per_metre: float = METRIC_DEPTH_SCALE) -> np.ndarray:
    """A depth PNG written by `encode_metric`, as float32 metres."""
    with Image.open(io.BytesIO(data)) as image:
        stored = np.asarray(image, dtype=np.float32)
    return stored / stored_per_metre
