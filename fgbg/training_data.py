"""Reading a built dataset for training.

`training_dataset(output, split)` is the main entry point: model-ready
`(inputs, targets)` batches, normalised by the dataset's own TFT graph
(transforms/normalization.py), so every consumer normalises with the same,
correct statistics:

    import tensorflow as tf
    from fgbg.training_data import training_dataset

    train = training_dataset("demo/output", "train", batch_size=16, shuffle_buffer=512)
    for inputs, targets in train.take(1):
        inputs["overlay"]     # float32 (16, 224, 224, 3), standardised per channel
        targets["mask"]       # float32 (16, 224, 224, 1), 0 or 1

`label_csv_dataset(csv)` reads the original format (`label_data.csv`) alone,
for code written against the original dataset, and `read_tfrecords(pattern)`
the raw decoded records.

Files are found and read with TensorFlow's own file layer (`tf.io.gfile`,
local or gs://), so importing this module imports neither Beam nor
TensorFlow, and changes nothing in the caller's process; TensorFlow and
tensorflow-transform are imported when a reader is called.
"""

from __future__ import annotations

import csv
import io
from typing import List, Optional

from fgbg import layout
from fgbg.images import CHANNELS
from fgbg.records import decode_exact, feature_spec, raw_feature_spec

INPUT_FEATURES = ("background", "overlay")
TARGET_FEATURES = ("mask", "depth")


def training_dataset(
    output: str,
    split: str,
    batch_size: int = 32,
    shuffle_buffer: int = 0,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    prefetch: bool = True,
):
    """`tf.data.Dataset` of `(inputs, targets)` dict pairs for one split.

    inputs: background, overlay (float32, standardised per channel).
    targets: mask (float32 0/1) and, when the build made depth, depth
    (float32; see transforms/normalization.py for its scale).
    shuffle_buffer=0 keeps the shards' stable order; set it for training.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    files = _matching_files(layout.resolve(output, f"{layout.TFRECORD_DIR}/{split}-*"))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards for split {split!r} under {output}")
    transform = tft.TFTransformOutput(layout.resolve(output, layout.TRANSFORM_DIR))
    raw_spec = raw_feature_spec(with_depth="depth" in transform.transformed_feature_spec())
    transform_layer = transform.transform_features_layer()

    dataset = tf.data.TFRecordDataset(files)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def to_pair(serialized):
        transformed = transform_layer(tf.io.parse_example(serialized, raw_spec))
        inputs = {name: transformed[name] for name in INPUT_FEATURES}
        targets = {name: transformed[name] for name in TARGET_FEATURES if name in transformed}
        return inputs, targets

    dataset = dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def read_label_rows(csv_path: str) -> List[List[str]]:
    """The rows of a label_data.csv: bg;overlay;mask;depth, every field quoted."""
    import tensorflow as tf

    with tf.io.gfile.GFile(csv_path, "rb") as handle:
        text = handle.read().decode("utf-8")
    return [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]


def label_csv_dataset(csv_path: str, base_dir: Optional[str] = None):
    """`tf.data.Dataset` of decoded uint8 images from a label_data.csv alone.

    Paths in the CSV are relative to the dataset's parent folder: by default
    the folder above the CSV's (fgbg writes the CSV inside the dataset), or
    the CSV's own folder when the paths do not start with its folder's name
    (the original kept the CSV beside `Dataset/`). Yields dicts with
    background, overlay, mask (H, W, C uint8) and depth when the CSV has it
    (a 16-bit metric depth PNG is read as uint8 here; use the TFRecords for
    full range).
    """
    import tensorflow as tf

    rows = read_label_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    if base_dir is None:
        base_dir = layout.label_base_dir(csv_path, rows[0][0])
    with_depth = all(len(row) > 3 and row[3] for row in rows)
    columns = {
        name: [layout.resolve(base_dir, row[index]) for row in rows]
        for index, name in enumerate(("background", "overlay", "mask", "depth"))
        if name != "depth" or with_depth
    }

    def load(paths):
        return {
            name: decode_exact(tf.io.read_file(path), CHANNELS[name])
            for name, path in paths.items()
        }

    return tf.data.Dataset.from_tensor_slices(columns).map(
        load, num_parallel_calls=tf.data.AUTOTUNE
    )


def decode_record(serialized, depth_encoding: str):
    """Parse one record into decoded image tensors (uint8 HxWxC; metric depth
    uint16) plus its metadata."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    decoded = dict(parsed)
    for name in ("background", "overlay", "mask"):
        decoded[name] = decode_exact(parsed[name], CHANNELS[name])
    if depth_encoding == "minmax":
        decoded["depth"] = decode_exact(parsed["depth"], CHANNELS["depth"])
    elif depth_encoding == "metric":
        decoded["depth"] = decode_exact(parsed["depth"], CHANNELS["depth"], tf.uint16)
    else:
        del decoded["depth"]
    return decoded


def read_tfrecords(pattern: str, depth_encoding: str = "none"):
    """A `tf.data.Dataset` of decoded samples from shards matching `pattern`.

    `depth_encoding` is the build's (manifest.json, `options.depth_encoding`,
    or 'none' for a composites-only build).
    """
    import tensorflow as tf

    files = _matching_files(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    return tf.data.TFRecordDataset(files).map(
        lambda serialized: decode_record(serialized, depth_encoding),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _matching_files(pattern: str) -> List[str]:
    """Sorted paths matching a local or gs:// glob."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(pattern))
