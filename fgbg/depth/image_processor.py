"""A depth checkpoint's image processor in numpy and Pillow: the steps
transformers' DPT image processor (Depth Anything V2's and DPT's) takes
before the network, from the checkpoint's preprocessor_config.json, and its
`post_process_depth_estimation` after it.

Written out because the ONNX runtime (fgbg/depth/onnx_runtime.py) runs where
neither PyTorch nor transformers is installed (the quick start's
environment), and transformers' processor needs both: its post-processing
is PyTorch's bicubic `interpolate`. tests/test_onnx_runtime.py checks every
step against transformers' own processor.

numpy and Pillow only.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

# The processors whose steps these are (preprocessor_config.json's
# image_processor_type), with and without transformers' backend suffixes.
DPT_PROCESSORS = ("DPTImageProcessor", "DPTImageProcessorPil", "DPTImageProcessorFast")
# PyTorch's bicubic convolution constant (upsample_bicubic2d's A).
CUBIC_A = -0.75


def check_supported(processor: Dict) -> None:
    """ValueError unless `processor` (a parsed preprocessor_config.json)
    asks only for what `preprocess` does."""
    kind = processor.get("image_processor_type", "DPTImageProcessor")
    if kind not in DPT_PROCESSORS:
        raise ValueError(
            f"its image processor is {kind}; fgbg prepares images without transformers "
            f"only as {DPT_PROCESSORS[0]} does (Depth Anything V2, DPT)"
        )
    if processor.get("do_pad") and processor.get("size_divisor"):
        raise ValueError("its image processor pads images (do_pad), which fgbg does not")


def resized_size(
    image_size: Tuple[int, int], wanted: Tuple[int, int], keep_aspect_ratio: bool, multiple: int
) -> Tuple[int, int]:
    """(W, H) an image of `image_size` (W, H) is resized to for `wanted`
    (W, H): DPT's rule, which keeps the aspect ratio by scaling as little as
    possible and rounds each side to a multiple of the patch."""
    width, height = image_size
    scale_width, scale_height = wanted[0] / width, wanted[1] / height
    if keep_aspect_ratio:
        if abs(1 - scale_width) < abs(1 - scale_height):
            scale_height = scale_width
        else:
            scale_width = scale_height
    return (
        _multiple_of(scale_width * width, multiple),
        _multiple_of(scale_height * height, multiple),
    )


def _multiple_of(value: float, multiple: int) -> int:
    """The nearest multiple, by Python's round, as transformers rounds."""
    return round(value / multiple) * multiple


def preprocess(processor: Dict, composites: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    """uint8 NHWC composites as the processor prepares them for `input_size`
    (W, H): its resize (Pillow, with its resample filter), rescale and
    normalisation, as float32 NCHW."""
    return np.stack([_prepared(processor, image, input_size) for image in composites])


def network_size(
    processor: Dict, image_size: Tuple[int, int], input_size: Tuple[int, int]
) -> Tuple[int, int]:
    """(W, H) the network gets an image of `image_size` (W, H) at, for
    --depth_input_size `input_size`."""
    if not processor.get("do_resize", True):
        return image_size
    return resized_size(
        image_size,
        input_size,
        bool(processor.get("keep_aspect_ratio", False)),
        int(processor.get("ensure_multiple_of", 1)),
    )


def _prepared(processor: Dict, image: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    size = network_size(processor, (image.shape[1], image.shape[0]), input_size)
    if size != (image.shape[1], image.shape[0]):
        resample = Image.Resampling(int(processor.get("resample", Image.Resampling.BICUBIC)))
        image = np.asarray(Image.fromarray(image).resize(size, resample))
    values = image.astype(np.float32)
    if processor.get("do_rescale", True):
        # transformers rescales in float64 and then rounds to float32.
        factor = float(processor.get("rescale_factor", 1 / 255))
        values = (image.astype(np.float64) * factor).astype(np.float32)
    if processor.get("do_normalize", True):
        mean = np.asarray(processor.get("image_mean", (0.5, 0.5, 0.5)), np.float32)
        std = np.asarray(processor.get("image_std", (0.5, 0.5, 0.5)), np.float32)
        values = (values - mean) / std
    return values.transpose(2, 0, 1)


def postprocess(raw: np.ndarray, out_size: Tuple[int, int]) -> np.ndarray:
    """Raw (N, h, w) predictions brought to `out_size` (W, H) as
    `post_process_depth_estimation` brings them: PyTorch's bicubic
    `interpolate` (align_corners=False, A = -0.75, edge samples repeated,
    no antialiasing), as two matrix products per map (its weights, made
    once per pair of sizes, are read-only)."""
    raw = np.asarray(raw, dtype=np.float32)
    rows = bicubic_weights(raw.shape[1], out_size[1])
    columns = bicubic_weights(raw.shape[2], out_size[0])
    return (rows @ raw.astype(np.float64) @ columns.T).astype(np.float32)


@functools.lru_cache(maxsize=16)
def bicubic_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in): each output sample's weights over the input
    samples along one axis, with PyTorch's source positions (half-pixel
    centres, scale in/out) and its clamping of the taps at the edges."""
    scale = size_in / size_out
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    for out in range(size_out):
        source = scale * (out + 0.5) - 0.5
        first = math.floor(source)
        for tap, weight in zip(range(first - 1, first + 3), _cubic_taps(source - first)):
            weights[out, min(max(tap, 0), size_in - 1)] += weight
    weights.flags.writeable = False
    return weights


def _cubic_taps(t: float) -> Sequence[float]:
    """The four taps' weights at fraction `t` past the second tap."""

    def near(x: float) -> float:  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return far(t + 1), near(t), near(1 - t), far(2 - t)
