"""Reading a built dataset for training.

`training_dataset(output, split)` is the main entry point: model-ready
`(inputs, targets)` batches, normalised by the dataset's own TFT graph
(transforms/normalize.py), so every consumer normalises with the same,
correct statistics:

    import tensorflow as tf
    from transforms.training_data import training_dataset

    train = training_dataset("demo/output", "train", batch_size=16, shuffle_buffer=512)
    for inputs, targets in train.take(1):
        inputs["overlay"]     # float32 (16, 224, 224, 3), standardised per channel
        targets["mask"]       # float32 (16, 224, 224, 1), 0 or 1

`label_csv_dataset(csv)` reads the original format (`label_data.csv`) alone,
for code written against the original dataset.
"""
from __future__ import annotations

import csv
import io
import posixpath
from typing import List, Optional

from transforms import layout
from transforms.normalize import raw_feature_spec
from transforms.records import decode_exact, match_files
from transforms.storage import read_file

INPUT_FEATURES = ("background", "overlay")
TARGET_FEATURES = ("mask", "depth")


def training_dataset(output: str, split: str, batch_size: int = 32, shuffle_buffer: int = 0,
                     seed: int = 0, repeat: bool = False, drop_remainder: bool = False,
                     prefetch: bool = True):
    """`tf.data.Dataset` of `(inputs, targets)` dict pairs for one split.

    inputs: background, overlay (float32, standardised per channel).
    targets: mask (float32 0/1) and, when the build made depth, depth
    (float32; see transforms/normalize.py for its scale).
    shuffle_buffer=0 keeps the shards' stable order; set it for training.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    files = match_files(layout.resolve(output, f"{layout.TFRECORD_DIR}/{split}-*"))
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
    text = read_file(csv_path).decode("utf-8")
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
    folder = posixpath.dirname(csv_path)
    if base_dir is None:
        inside = rows[0][0].split("/", 1)[0] == posixpath.basename(folder)
        base_dir = posixpath.dirname(folder) if inside else folder
    with_depth = all(len(row) > 3 and row[3] for row in rows)
    columns = {name: [layout.resolve(base_dir, row[index]) for row in rows]
               for index, name in enumerate(("background", "overlay", "mask", "depth"))
               if name != "depth" or with_depth}
    channels = {"background": 3, "overlay": 3, "mask": 1, "depth": 1}

    def load(paths):
        return {name: decode_exact(tf.io.read_file(path), channels[name])
                for name, path in paths.items()}

    return tf.data.Dataset.from_tensor_slices(columns).map(
        load, num_parallel_calls=tf.data.AUTOTUNE)
