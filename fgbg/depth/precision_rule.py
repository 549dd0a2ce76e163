"""The rule that says whether a precision is good enough for an encoding,
judged on the files a build writes rather than on the network's raw output.

A depth file already loses something to its encoding (a min-max JPEG rounds
to grey levels and adds JPEG's error; a metric PNG rounds to millimetres).
A faster precision is good enough when what it changes in the written files
hides inside that loss:

- minmax: its written maps differ from fp32's written maps by no more than
  fp32's written maps differ from fp32's unencoded maps (the same min-max
  scaling and resize in float, never rounded), in mean and in 99th
  percentile of grey levels;
- metric: millimetre steps leave almost no budget, so the budget is a
  chosen one, relative to the depth: 99th percentile of |difference| /
  depth at most METRIC_P99, mean at most METRIC_MEAN, far below the error
  the model itself makes (DenseDepth's published mean relative error on
  NYU is 12.3%).

Pure numpy and Pillow; bench/bench_precision.py and tests/test_precision.py
run it on real maps. Figures: BENCHMARKS.md, "Depth precision".
"""

from __future__ import annotations

import dataclasses
import io
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from fgbg.depth import maps

METRIC_P99 = 0.01  # 99th percentile of |candidate - fp32| / fp32, metric encoding
METRIC_MEAN = 0.0025  # mean of the same


@dataclasses.dataclass(frozen=True)
class Difference:
    """Mean and 99th percentile of a pooled absolute difference (grey levels
    for minmax, a fraction of the depth for metric)."""

    mean: float
    p99: float

    def within(self, budget: "Difference") -> bool:
        return self.mean <= budget.mean and self.p99 <= budget.p99


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A precision's difference from fp32 in written files, against the budget."""

    encoding: str
    difference: Difference
    budget: Difference

    @property
    def passes(self) -> bool:
        return self.difference.within(self.budget)


def minmax_unencoded(depth: np.ndarray, out_size: maps.Size) -> np.ndarray:
    """A depth map as `maps.encode_minmax` would store it with no loss:
    min-max to 0..255 and Lanczos to `out_size`, in float, unrounded."""
    scaled = maps.minmax_scaled(depth)
    return np.asarray(Image.fromarray(scaled, mode="F").resize(out_size, Image.LANCZOS))


def decoded(data: bytes) -> np.ndarray:
    """A written depth file's stored values, as float32."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image, dtype=np.float32)


def written(
    depth: np.ndarray, encoding: str, out_size: maps.Size, quality: Optional[int]
) -> np.ndarray:
    """The stored values of the file a build writes for `depth`."""
    if encoding == "minmax":
        return decoded(maps.encode_minmax(depth, out_size, quality))
    return decoded(maps.encode_metric(depth, out_size))


def pooled(differences: Sequence[np.ndarray]) -> Difference:
    values = np.concatenate([np.abs(d).ravel() for d in differences]).astype(np.float64)
    return Difference(mean=float(values.mean()), p99=float(np.percentile(values, 99)))


def judge(
    fp32: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    encoding: str,
    out_size: maps.Size,
    quality: Optional[int],
) -> Verdict:
    """The rule for `candidate`'s depth maps against fp32's of the same
    images (post-processed, as the depth stage encodes them), pooled over
    every pixel of every image."""
    if len(fp32) != len(candidate) or not fp32:
        raise ValueError(f"need the same images in both: {len(fp32)} fp32, {len(candidate)}")
    reference = [written(d, encoding, out_size, quality) for d in fp32]
    other = [written(d, encoding, out_size, quality) for d in candidate]
    if encoding == "minmax":
        budget = pooled([r - minmax_unencoded(d, out_size) for r, d in zip(reference, fp32)])
        difference = pooled([o - r for o, r in zip(other, reference)])
    else:
        budget = Difference(mean=METRIC_MEAN, p99=METRIC_P99)
        difference = pooled([(o - r) / r for o, r in zip(other, reference)])
    return Verdict(encoding=encoding, difference=difference, budget=budget)
