"""From dataset to training: the TFT graph and a real training client."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image

from fgbg import layout
from fgbg.records import raw_feature_spec
from fgbg.training_data import label_csv_dataset, read_label_rows, training_dataset
from pipeline import build
from tests.depth_fixtures import tiny_depth_model
from tests.helpers import make_inputs, small_build_args

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A tiny build with depth from a small model of DenseDepth's contract."""
    root = tmp_path_factory.mktemp("training")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=2)
    model_path = root / "tiny_depth.h5"
    tiny_depth_model().save(str(model_path))
    output = root / "out"
    # val 0.25 of 3 backgrounds: one in val, two in train.
    build.run(
        small_build_args(
            inputs,
            output,
            f"--depth_model={model_path}",
            "--depth_input_size=64x64",
            "--val_fraction=0.25",
            "--test_fraction=0",
            tft=True,
        )
    )
    return output


def test_transform_graph_normalizes_with_the_train_splits_numbers(dataset):
    document = json.loads((dataset / "stats.json").read_text())
    assert sorted(document["splits"]) == ["train", "val"]
    assert document["notes"]["normalisation_splits"] == ["train"]
    stats = document["splits"]["train"]
    for kind in ("background", "overlay"):
        assert not np.allclose(stats[kind]["mean"], document[kind]["mean"]), (
            "the train split should differ from the whole dataset here"
        )
    transform = tft.TFTransformOutput(str(dataset / layout.TRANSFORM_DIR))
    files = sorted(str(p) for p in (dataset / "tfrecords").glob("*"))
    serialized = next(iter(tf.data.TFRecordDataset(files).batch(48)))
    raw = tf.io.parse_example(serialized, raw_feature_spec(with_depth=True))
    transformed = transform.transform_features_layer()(raw)
    for kind in ("background", "overlay"):
        pixels = np.stack(
            [np.asarray(Image.open(io.BytesIO(data))) for data in raw[kind].numpy()]
        ).astype(np.float64)
        expected = (pixels - np.array(stats[kind]["mean"])) / np.array(stats[kind]["std"])
        np.testing.assert_allclose(transformed[kind].numpy(), expected, atol=1e-4)
    mask = transformed["mask"].numpy()
    assert set(np.unique(mask)) == {0.0, 1.0} and mask.shape == (48, 64, 64, 1)
    depth = transformed["depth"].numpy()
    assert depth.dtype == np.float32 and 0 <= depth.min() and depth.max() <= 1
    np.testing.assert_allclose(depth.mean(), document["depth"]["mean_unit"][0], rtol=1e-5)


def test_a_tfx_trainer_parses_the_records_with_the_transforms_raw_spec(dataset):
    """What a TFX trainer does first: the raw feature spec from transform/
    (its metadata/ folder), the records parsed with it, then the graph."""
    transform = tft.TFTransformOutput(str(dataset / layout.TRANSFORM_DIR))
    spec = transform.raw_feature_spec()
    assert spec == raw_feature_spec(with_depth=True)
    shard = sorted(str(p) for p in (dataset / "tfrecords").glob("train-*"))[0]
    serialized = next(iter(tf.data.TFRecordDataset(shard).batch(64)))
    transformed = transform.transform_features_layer()(tf.io.parse_example(serialized, spec))
    count = int(serialized.shape[0])
    assert count > 0
    assert {name: tuple(tensor.shape) for name, tensor in transformed.items()} == {
        "background": (count, 64, 64, 3),
        "overlay": (count, 64, 64, 3),
        "mask": (count, 64, 64, 1),
        "depth": (count, 64, 64, 1),
    }
    assert all(tensor.dtype == tf.float32 for tensor in transformed.values())
    assert set(transformed) == set(transform.transformed_feature_spec())


def encoder_decoder() -> tf.keras.Model:
    """A small two-headed encoder-decoder: mask logits and depth."""
    background = tf.keras.Input((64, 64, 3), name="background")
    overlay = tf.keras.Input((64, 64, 3), name="overlay")
    x = tf.keras.layers.Concatenate()([background, overlay])
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.UpSampling2D(4)(x)
    x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    mask = tf.keras.layers.Conv2D(1, 1, name="mask")(x)
    depth = tf.keras.layers.Conv2D(1, 1, activation="sigmoid", name="depth")(x)
    return tf.keras.Model(
        {"background": background, "overlay": overlay}, {"mask": mask, "depth": depth}
    )


def test_a_keras_model_trains_on_the_consumer_api(dataset):
    tf.keras.utils.set_random_seed(0)
    train = training_dataset(
        str(dataset),
        "train",
        batch_size=8,
        shuffle_buffer=48,
        seed=1,
        repeat=True,
        drop_remainder=True,
    )
    inputs, targets = next(iter(train))
    assert {k: v.dtype for k, v in inputs.items()} == {
        "background": tf.float32,
        "overlay": tf.float32,
    }
    assert set(targets) == {"mask", "depth"}
    model = encoder_decoder()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(3e-3),
        loss={
            "mask": tf.keras.losses.BinaryCrossentropy(from_logits=True),
            "depth": tf.keras.losses.MeanAbsoluteError(),
        },
    )
    history = model.fit(train, steps_per_epoch=10, epochs=4, verbose=0).history["loss"]
    assert all(np.isfinite(history))
    assert history[-1] < history[0] * 0.8, history


def test_label_csv_reader_reads_the_original_format(dataset):
    records = list(label_csv_dataset(str(dataset / "label_data.csv")))
    rows = read_label_rows(str(dataset / "label_data.csv"))
    assert len(records) == len(rows) == 48
    first = records[0]
    on_disk = np.asarray(Image.open(dataset.parent / rows[0][2]))
    assert np.array_equal(first["mask"].numpy()[..., 0], on_disk)
    assert first["overlay"].shape == (64, 64, 3) and first["depth"].shape == (64, 64, 1)
