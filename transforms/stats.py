"""Statistics: the true per-channel pixel mean and std of every image kind,
over the whole dataset and per split.

The original notebook reported the std of per-image stds, which normalises
nothing. Here each image contributes exact integer moments (pixel count, sum,
sum of squares per channel, as Python ints), keyed by (split, kind); merging
adds integers, so the result is exact and identical in any merge order, on
any runner. The transform graph normalises with the train split's numbers
only (`normalisation_splits`), so no validation or test pixel shapes what a
model is trained with.
"""
from __future__ import annotations

import io
import math
from typing import Dict, Hashable, Iterable, List, Tuple

import apache_beam as beam
import numpy as np
from PIL import Image

from transforms.types import Moments

KINDS = ("background", "overlay", "mask", "depth")
NORMALISATION_SPLIT = "train"
StatsKey = Tuple[str, str]  # (split, kind)


def binary_moments(foreground: int, pixels: int) -> Moments:
    """Moments of a single-channel 0/255 image with `foreground` pixels at 255."""
    return pixels, (255 * foreground,), (255 * 255 * foreground,)


def pixel_moments(pixels: np.ndarray) -> Moments:
    """Moments of an (H, W) or (H, W, C) integer image."""
    channels = pixels.reshape(pixels.shape[0] * pixels.shape[1], -1).astype(np.int64)
    sums = channels.sum(axis=0)
    squares = np.einsum("ij,ij->j", channels, channels)
    return (int(channels.shape[0]), tuple(int(v) for v in sums),
            tuple(int(v) for v in squares))


# 8-bit multi-channel modes, whose moments come from Pillow's per-channel
# histogram: exact, and several times cheaper than numpy's reductions over an
# interleaved (H, W, 3) array. Single-channel images are cheaper in numpy.
_HISTOGRAM_CHANNELS = {"RGB": 3, "RGBA": 4}
_VALUES = np.arange(256, dtype=np.int64)
_SQUARES = _VALUES * _VALUES


def histogram_moments(histogram: List[int], pixels: int, channels: int) -> Moments:
    """Moments from a per-channel 256-bin histogram (Pillow's layout)."""
    counts = np.asarray(histogram, dtype=np.int64).reshape(channels, 256)
    return (pixels, tuple(int(v) for v in counts @ _VALUES),
            tuple(int(v) for v in counts @ _SQUARES))


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
    return (a[0] + b[0], tuple(x + y for x, y in zip(a[1], b[1])),
            tuple(x + y for x, y in zip(a[2], b[2])))


def add_to_totals(totals: Dict[Hashable, Moments], key: Hashable,
                  moments: Moments) -> Dict[Hashable, Moments]:
    """Adds one image's moments to the totals under `key` (a kind, or a
    (split, kind)), in place; returns the totals."""
    totals[key] = add_moments(totals[key], moments) if key in totals else moments
    return totals


def normalisation_splits(splits: Iterable[str]) -> List[str]:
    """The splits whose pixels set the transform graph's mean and std: the
    train split alone, or every split of a build that has no train split (a
    tiny build whose few backgrounds all hashed into val or test), so that
    the graph still has numbers to use."""
    present = sorted(set(splits))
    return [NORMALISATION_SPLIT] if NORMALISATION_SPLIT in present else present


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


class MomentsByKeyFn(beam.CombineFn):
    """(key, Moments) elements -> {key: summed Moments}; keys are
    (split, kind) in the build."""

    def create_accumulator(self) -> Dict[Hashable, Moments]:
        return {}

    def add_input(self, accumulator: Dict[Hashable, Moments],
                  element: Tuple[Hashable, Moments]) -> Dict[Hashable, Moments]:
        return add_to_totals(accumulator, *element)

    def merge_accumulators(self, accumulators: Iterable[Dict[Hashable, Moments]]
                           ) -> Dict[Hashable, Moments]:
        merged: Dict[Hashable, Moments] = {}
        for accumulator in accumulators:
            for key, moments in accumulator.items():
                self.add_input(merged, (key, moments))
        return merged

    def extract_output(self, accumulator: Dict[Hashable, Moments]) -> Dict[Hashable, Moments]:
        return accumulator


def _summaries(totals: Dict[str, Moments], depth_scale: float) -> Dict[str, object]:
    """{kind: summary}, kinds in a fixed order."""
    return {kind: summarize(totals[kind], depth_scale if kind == "depth" else 255.0)
            for kind in KINDS if kind in totals}


def stats_document(totals: Dict[StatsKey, Moments], depth_scale: float,
                   depth_unit: str) -> Dict[str, object]:
    """The content of stats.json: every kind over the whole dataset, then
    `splits` with the same per split.

    `depth_scale` is the stored depth value that `mean_unit`/`std_unit` map to
    1.0 (255 for the min-max JPEG encoding); `depth_unit` says what it means.
    """
    overall: Dict[str, Moments] = {}
    by_split: Dict[str, Dict[str, Moments]] = {}
    for (split, kind), moments in sorted(totals.items()):
        add_to_totals(overall, kind, moments)
        add_to_totals(by_split.setdefault(split, {}), kind, moments)
    document: Dict[str, object] = _summaries(overall, depth_scale)
    document["splits"] = {split: _summaries(kinds, depth_scale)
                          for split, kinds in sorted(by_split.items())}
    document["notes"] = {
        "method": "exact pixel mean and population std over every pixel of every written image",
        "scales": "mean/std in stored pixel values; mean_unit/std_unit divide by 255 "
                  "(depth: by depth_scale)",
        "depth_scale": depth_scale,
        "depth_unit": depth_unit,
        "normalisation_splits": normalisation_splits(by_split),
        "normalisation": "transform/ standardises background and overlay with the pixels "
                         "of normalisation_splits only (train, when the build has one), "
                         "so no val or test pixel leaks into training",
    }
    return document


class ComputeStats(beam.PTransform):
    """((split, kind), Moments) -> one {(split, kind): Moments} dict."""

    def expand(self, moments):
        return moments | "SumMoments" >> beam.CombineGlobally(MomentsByKeyFn())
