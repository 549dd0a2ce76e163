"""TFRecords: the self-contained training records, and how to parse them.

Each record is a `tf.train.Example` holding the background, overlay, mask and
depth as encoded image bytes plus the sample's metadata, so a training job
needs nothing but the shards. The framing is written here (length, masked
CRC-32C) so shards can go through Beam's filesystems, local or gs://.

FEATURE_SPEC documents the record layout:
- id (bytes): '<bg>/<fg>/<number>'
- bg, fg, split (bytes); number, flip (0/1), x, y, w, h (int64); scale (float)
- background, overlay (bytes): JPEG
- mask (bytes): PNG (or JPEG with --mask_format jpg), 0/255 single channel
- depth (bytes): JPEG (depth_encoding minmax), 16-bit PNG (metric) or empty
- depth_encoding (bytes): 'minmax', 'metric' or 'none'
- blend (bytes): the sample's --blend mode (fgbg/blend_modes.py); written by
  builds with a --blend other than none, read as 'none' where absent (builds
  with --blend none write exactly the records they wrote before it)
- foot_x, foot_y, tries, fallback (int64), foot_depth (metres),
  applied_scale, visible_fraction (float): where the sample stands; written
  by builds with --placement depth only (transforms/scene_placement.py)
- background_moments, overlay_moments (int64 x 7): the written image's pixel
  count, per-channel sums and sums of squares (what transforms/normalization.py
  analyses)

Writing needs no TensorFlow: the protobuf library serialises TensorFlow's
Example messages, vendored in fgbg/proto. The parsing specs and decoders
below import TensorFlow when called.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Sequence, Union

import google_crc32c

from fgbg.blend_modes import NONE
from fgbg.images import CHANNELS
from fgbg.proto import example_pb2, feature_pb2
from fgbg.types import Moments, SampleRow

_CRC_MASK_DELTA = 0xA282EAD8

INT_FEATURES = ("number", "flip", "x", "y", "w", "h")
MOMENT_KINDS = ("background", "overlay")
BYTES_FEATURES = (
    "id",
    "bg",
    "fg",
    "split",
    "background",
    "overlay",
    "mask",
    "depth",
    "depth_encoding",
)
FLOAT_FEATURES = ("scale",)
# Bytes features that records of some builds lack, and what they read as then.
OPTIONAL_BYTES_FEATURES = {"blend": NONE.encode()}
# Features of builds with --placement depth only, read as -1 elsewhere.
SCENE_INT_FEATURES = ("foot_x", "foot_y", "tries", "fallback")
SCENE_FLOAT_FEATURES = ("foot_depth", "applied_scale", "visible_fraction")


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def moments_feature(kind: str) -> str:
    return f"{kind}_moments"


def flat_moments(moments: Moments) -> List[int]:
    """[count, sums..., squares...]"""
    count, sums, squares = moments
    return [count, *sums, *squares]


def feature_spec() -> Dict[str, object]:
    """The `tf.io.parse_single_example` spec of a record."""
    import tensorflow as tf

    spec: Dict[str, object] = {name: tf.io.FixedLenFeature([], tf.int64) for name in INT_FEATURES}
    spec.update(
        {
            moments_feature(kind): tf.io.FixedLenFeature([1 + 2 * CHANNELS[kind]], tf.int64)
            for kind in MOMENT_KINDS
        }
    )
    spec.update({name: tf.io.FixedLenFeature([], tf.string) for name in BYTES_FEATURES})
    spec.update({name: tf.io.FixedLenFeature([], tf.float32) for name in FLOAT_FEATURES})
    spec.update(
        {
            name: tf.io.FixedLenFeature([], tf.string, default_value=default)
            for name, default in OPTIONAL_BYTES_FEATURES.items()
        }
    )
    spec.update(
        {name: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for name in SCENE_INT_FEATURES}
    )
    spec.update(
        {
            name: tf.io.FixedLenFeature([], tf.float32, default_value=-1.0)
            for name in SCENE_FLOAT_FEATURES
        }
    )
    return spec


FeatureValue = Union[bytes, float, int, List[int]]


def _set_feature(feature: feature_pb2.Feature, value: FeatureValue) -> None:
    """Fill a tf.train.Feature: bytes as a BytesList, a float as a FloatList
    (float32), an int or a list of ints as an Int64List."""
    if isinstance(value, bytes):
        feature.bytes_list.value.append(value)
    elif isinstance(value, float):
        feature.float_list.value.append(value)
    else:
        feature.int64_list.value.extend(value if isinstance(value, list) else [value])


def _example(features: Dict[str, FeatureValue]) -> bytes:
    """A serialized tf.train.Example of {name: bytes, float, int or list of
    ints}.

    The messages are TensorFlow's own, vendored in fgbg/proto, so the bytes
    are those of TensorFlow's `SerializeToString(deterministic=True)`
    (deterministic: map keys in the runtime's sorted order, the same for
    both; tests/test_stats_records.py compares them), without importing
    TensorFlow: a worker that only writes records saves the import's time
    and memory (BENCHMARKS.md, "Compositing").
    """
    example = example_pb2.Example()
    entries = example.features.feature
    for name, value in features.items():
        _set_feature(entries[name], value)
    return example.SerializeToString(deterministic=True)


def sample_example(
    row: SampleRow,
    images: Dict[str, bytes],
    depth_encoding: str,
    background_moments: Moments,
    with_blend: bool = False,
) -> bytes:
    """Serialized tf.train.Example of one written sample; `images` maps
    background, overlay, mask and depth to encoded bytes (b"" for no depth);
    `with_blend` adds the sample's blending mode."""
    placement = row.placement
    features: Dict[str, FeatureValue] = {
        "id": placement.sample_id.encode(),
        "bg": placement.bg_stem.encode(),
        "fg": placement.fg_stem.encode(),
        "split": row.split.encode(),
        "number": placement.number,
        "flip": int(placement.flip),
        "x": placement.x,
        "y": placement.y,
        "w": placement.w,
        "h": placement.h,
        "scale": float(placement.scale),
        "depth_encoding": depth_encoding.encode(),
    }
    if with_blend:
        features["blend"] = row.blend.encode()
    if row.scene:
        point = row.scene
        features.update(
            foot_x=point.foot_x,
            foot_y=point.foot_y,
            tries=point.tries,
            fallback=int(point.fallback),
            foot_depth=float(point.foot_depth),
            applied_scale=float(point.applied_scale),
            visible_fraction=float(point.visible_fraction),
        )
    features.update({kind: images[kind] for kind in ("background", "overlay", "mask", "depth")})
    moments = {"background": background_moments, "overlay": row.moments["overlay"]}
    features.update({moments_feature(kind): flat_moments(moments[kind]) for kind in MOMENT_KINDS})
    return _example(features)


def moments_example(moments: Dict[str, Moments], image_kinds: Sequence[str]) -> bytes:
    """A record that carries only pixel moments (MOMENT_KINDS, summed over any
    number of samples) and empty images: what the normalisation analysis
    reads (transforms/normalization.py). Its sums equal the sums over the
    samples' own records, because moments add."""
    features: Dict[str, FeatureValue] = {kind: b"" for kind in image_kinds}
    features.update({moments_feature(kind): flat_moments(moments[kind]) for kind in MOMENT_KINDS})
    return _example(features)


def raw_feature_spec(with_depth: bool) -> Dict[str, object]:
    """What the normalization graph parses from a record: the encoded images
    and the moments of the standardized kinds (MOMENT_KINDS)."""
    import tensorflow as tf

    names = [kind for kind in CHANNELS if with_depth or kind != "depth"]
    spec: Dict[str, object] = {name: tf.io.FixedLenFeature([], tf.string) for name in names}
    spec.update(
        {
            moments_feature(kind): tf.io.FixedLenFeature([1 + 2 * CHANNELS[kind]], tf.int64)
            for kind in MOMENT_KINDS
        }
    )
    return spec


def decode_exact(encoded, channels: int, dtype=None):
    """Decode a JPEG or PNG tensor as every other tool does.

    TensorFlow's default JPEG decoding (INTEGER_FAST) is biased darker than
    libjpeg's accurate method, which Pillow (and so stats.json) uses (docs/training.md,
    "Training on the dataset"). INTEGER_ACCURATE matches Pillow exactly.
    16-bit PNGs need dtype tf.uint16 to keep their range.
    """
    import tensorflow as tf

    dtype = dtype or tf.uint8
    if dtype == tf.uint16:
        return tf.io.decode_png(encoded, channels=channels, dtype=tf.uint16)
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(encoded, channels=channels),
    )
