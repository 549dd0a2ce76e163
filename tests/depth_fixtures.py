"""Shared helpers for the depth tests: tiny models of the depth contract,
composites, an in-process GCS emulator, and an independent numpy reference.

A plain module (not conftest.py): test modules import what they use.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from fgbg.depth.config import DepthConfig
from fgbg.types import Composite, Placement
from tests.helpers import emulated_bucket

# The tiny model: raw = TINY_BIAS + TINY_SCALE * mean(RGB) over 2x2 blocks, so
# raw lies in [2, 100] and DenseDepth's post-processing maps it to [0.01, 0.5].
TINY_SCALE = 98.0
TINY_BIAS = 2.0


def tiny_depth_config(**overrides) -> DepthConfig:
    """The untrained model's configuration at 64x64, metric, fixed batches of
    2, with `overrides`."""
    values = dict(
        model="untrained",
        weights=None,
        seed=0,
        batch_size=2,
        min_batch_size=2,
        target_batch_duration_s=10.0,
        input_size=(64, 64),
        encoding="metric",
        jpeg_quality=85,
        out_size=(32, 32),
    )
    values.update(overrides)
    return DepthConfig(**values)


def checkpoint_config(
    folder: str, side: int, runtime: Optional[str] = None, onnx_file: str = "", **overrides
) -> DepthConfig:
    """tiny_depth_config running the checkpoint in `folder` on the CPU at a
    `side` x `side` input, minmax, on the runtime it chooses (or `runtime`,
    with its ONNX export `onnx_file`), with `overrides`."""
    from fgbg.depth import checkpoints, models

    checkpoint = checkpoints.describe(folder, runtime, onnx_file or checkpoints.ONNX_WEIGHTS)
    values = dict(
        model=folder,
        runtime=checkpoint.runtime,
        device=models.CPU,
        input_size=(side, side),
        encoding="minmax",
        checkpoint=checkpoint,
    )
    values.update(overrides)
    return tiny_depth_config(**values)


def tiny_depth_model(bias: float = TINY_BIAS):
    """A model with DenseDepth's contract (RGB in [0, 1] -> raw output at half
    resolution) whose output a test can compute by hand."""
    import tf_keras

    inputs = tf_keras.Input((None, None, 3))
    pooled = tf_keras.layers.AveragePooling2D(2, name="pool")(inputs)
    conv = tf_keras.layers.Conv2D(1, 1, name="depth")
    model = tf_keras.Model(inputs, conv(pooled))
    conv.set_weights(
        [np.full((1, 1, 3, 1), TINY_SCALE / 3, np.float32), np.array([bias], np.float32)]
    )
    return model


def tiny_raw_reference(images: np.ndarray) -> np.ndarray:
    """The tiny model's output, (N, H/2, W/2), computed in numpy."""
    n, h, w, _ = images.shape
    blocks = images.reshape(n, h // 2, 2, w // 2, 2, 3).mean(axis=(2, 4, 5))
    return TINY_BIAS + TINY_SCALE * blocks


def write_published_h5(seed: int, path: str):
    """DenseDepth with weights drawn from `seed`, saved as nyu.h5 was saved: a
    full Keras 2 HDF5 model file (173 MB), the published file's layout. The
    Keras model saved, for references that need the network as written."""
    from fgbg.depth import keras_densedepth

    model = keras_densedepth.build_densedepth(seed=seed)
    model.save(path, save_format="h5")
    return model


def make_composite(number: int, overlay: np.ndarray, split: str = "train") -> Composite:
    placement = Placement(
        bg_stem="bg1",
        fg_stem="fg1",
        number=number,
        flip=False,
        scale=1.0,
        x=0,
        y=0,
        w=overlay.shape[1],
        h=overlay.shape[0],
    )
    return Composite(
        placement=placement,
        split=split,
        overlay=overlay,
        overlay_encoded=b"overlay-%d" % number,
        mask_encoded=b"mask-%d" % number,
    )


def random_overlays(count: int, size: int, seed: int) -> Sequence[np.ndarray]:
    """Smooth random uint8 images (a gradient plus noise), one per composite."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    images = []
    for _ in range(count):
        base = rng.uniform(0, 255) * ramp[None, :, None] + rng.uniform(0, 128, (1, 1, 3))
        noise = rng.normal(0, 8, (size, size, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images


def aligned_corners_bilinear(images: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with align_corners=True, NHWC, written from the definition:
    output pixel i samples the input at i * (in - 1) / (out - 1)."""

    def axis_weights(size_in: int, size_out: int):
        scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        position = np.arange(size_out) * scale
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, (position - low).astype(np.float64)

    y0, y1, fy = axis_weights(images.shape[1], out_h)
    x0, x1, fx = axis_weights(images.shape[2], out_w)
    images = images.astype(np.float64)
    rows = images[:, y0] * (1 - fy)[None, :, None, None] + images[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


@contextlib.contextmanager
def gcs_emulator(monkeypatch, bucket: str) -> Iterator[object]:
    """tests.helpers.emulated_bucket, with Beam made to connect anonymously
    at once (its credential lookup otherwise backs off and retries: Beam's
    apache_beam/internal/gcp/auth.py).
    Yields a google.cloud.storage bucket to upload into.
    """
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    with emulated_bucket(monkeypatch, bucket) as handle:
        yield handle


class OnnxExports:
    """Tiny seeded Depth Anything V2 checkpoints (safetensors) and their ONNX
    exports in the Hub's layout, at a fixed input side, each made once
    (conftest.py's session fixture `onnx_exports` holds one)."""

    def __init__(self, root: Path):
        self._root = root
        self._made: Dict[Tuple[int, bool], Tuple[str, str]] = {}

    def __call__(self, side: int = 56, metric: bool = False) -> Tuple[str, str]:
        """(checkpoint folder, export folder) for inputs of `side` x `side`;
        a metric one predicts metres up to 20."""
        if (side, metric) not in self._made:
            from fgbg.depth import seeded_checkpoints

            folder = self._root / f"{'metric' if metric else 'relative'}-{side}"
            checkpoint = seeded_checkpoints.write(str(folder / "safetensors"), metric=metric)
            export = seeded_checkpoints.export_onnx(checkpoint, str(folder / "onnx"), side)
            self._made[side, metric] = (checkpoint, export)
        return self._made[side, metric]
