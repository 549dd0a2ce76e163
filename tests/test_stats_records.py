"""Exact statistics and TFRecord framing, without Beam."""

import itertools

import numpy as np
import tensorflow as tf

from fgbg import records
from fgbg.moments import pixel_moments, summarize
from fgbg.records import frame_record
from fgbg.types import Placement, SampleRow
from transforms.stats import MomentsByKeyFn, normalization_splits, stats_document


def test_moments_give_numpy_mean_and_std():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(5)]
    fn = MomentsByKeyFn()
    accumulator = fn.create_accumulator()
    for image in images:
        accumulator = fn.add_input(accumulator, ("overlay", pixel_moments(image)))
    summary = summarize(fn.extract_output(accumulator)["overlay"])
    pixels = np.concatenate([image.reshape(-1, 3) for image in images]).astype(np.float64)
    np.testing.assert_allclose(summary["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(summary["std"], pixels.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(summary["std_unit"], pixels.std(axis=0) / 255, rtol=1e-12)


def test_merge_is_exact_in_any_order():
    rng = np.random.default_rng(2)
    parts = [
        ("mask", pixel_moments(rng.integers(0, 256, (4, 4), dtype=np.uint8))) for _ in range(4)
    ]
    fn = MomentsByKeyFn()
    results = set()
    for order in itertools.permutations(range(4)):
        accumulators = []
        for index in order:
            accumulators.append(fn.add_input(fn.create_accumulator(), parts[index]))
        merged = fn.merge_accumulators(
            [fn.merge_accumulators(accumulators[:2]), fn.merge_accumulators(accumulators[2:])]
        )
        results.add(repr(fn.extract_output(merged)))
    assert len(results) == 1


def test_framed_records_read_back_with_tf_data(tmp_path):
    payloads = [b"", b"a", bytes(range(256)) * 40]
    path = tmp_path / "records"
    path.write_bytes(b"".join(frame_record(payload) for payload in payloads))
    read = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    assert read == payloads


def tensorflow_example(features) -> bytes:
    """The same record built with TensorFlow's own protobuf classes."""

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        if isinstance(value, float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        values = value if isinstance(value, list) else [value]
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return tf.train.Example(
        features=tf.train.Features(
            feature={name: feature(value) for name, value in features.items()}
        )
    ).SerializeToString(deterministic=True)


def test_hand_written_examples_are_tensorflows_bytes():
    rng = np.random.default_rng(5)
    names = [
        "id",
        "x",
        "Y",
        "w_h",
        "background",
        "background_moments",
        "overlay",
        "overlay_moments",
        "é",
        "a" * 200,
        "a",
        "ab",
        "abc",
        "a\x00",
        "",
        "depth",
    ]
    edge_ints = [0, 1, 127, 128, 16383, 16384, -1, -(2**63), 2**63 - 1, 50176 * 255 * 255 * 400000]
    edge_floats = [0.0, -0.0, 0.1, 0.75, -3.4e38, 1e-45]
    edge_bytes = [b"", b"\x00", bytes(range(256)), b"x" * 127, b"y" * 128, b"z" * 20000]
    for trial in range(200):
        features = {}
        for name in rng.choice(names, size=rng.integers(1, len(names)), replace=False):
            kind = trial % 4 if trial < 8 else int(rng.integers(0, 4))
            if kind == 0:
                features[str(name)] = edge_bytes[rng.integers(len(edge_bytes))]
            elif kind == 1:
                features[str(name)] = edge_floats[rng.integers(len(edge_floats))]
            elif kind == 2:
                features[str(name)] = int(rng.choice(edge_ints))
            else:
                features[str(name)] = [int(v) for v in rng.choice(edge_ints, size=7)]
        assert records._example(features) == tensorflow_example(features), features


def test_sample_records_parse_with_the_feature_spec():
    row = SampleRow(
        placement=Placement("bg1", "fg_2", 3, True, 0.6, 10, 20, 30, 40),
        split="val",
        bg_path="bg/bg1.jpg",
        overlay_path="o.jpg",
        mask_path="m.png",
        depth_path="",
        moments={"overlay": (9, (1, 2, 3), (4, 5, 6))},
    )
    images = {"background": b"bg", "overlay": b"ov", "mask": b"mk", "depth": b""}
    serialized = records.sample_example(row, images, "none", (9, (7, 8, 9), (10, 11, 12)))
    parsed = tf.io.parse_single_example(serialized, records.feature_spec())
    assert parsed["id"].numpy() == b"bg1/fg_2/3" and parsed["split"].numpy() == b"val"
    assert [int(parsed[k].numpy()) for k in ("number", "flip", "x", "y", "w", "h")] == [
        3,
        1,
        10,
        20,
        30,
        40,
    ]
    assert abs(float(parsed["scale"].numpy()) - 0.6) < 1e-7
    assert parsed["overlay_moments"].numpy().tolist() == [9, 1, 2, 3, 4, 5, 6]
    assert parsed["background_moments"].numpy().tolist() == [9, 7, 8, 9, 10, 11, 12]
    assert parsed["depth"].numpy() == b"" and parsed["mask"].numpy() == b"mk"


def test_stats_document_sums_splits_and_keeps_each():
    rng = np.random.default_rng(3)
    images = {
        key: rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
        for key in (("train", "overlay"), ("val", "overlay"), ("test", "overlay"))
    }
    totals = {key: pixel_moments(image) for key, image in images.items()}
    document = stats_document(totals, 255.0, "relative")
    everything = np.concatenate([image.reshape(-1, 3) for image in images.values()])
    np.testing.assert_allclose(document.kinds["overlay"].mean, everything.mean(axis=0), rtol=1e-12)
    for split in ("train", "val", "test"):
        own = images[(split, "overlay")].reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(
            document.splits[split]["overlay"].std, own.std(axis=0), rtol=1e-12
        )
    assert document.notes.normalization_splits == ["train"]
    assert document.to_json()["notes"]["normalisation_splits"] == ["train"]


def test_normalization_falls_back_to_every_split_without_a_train_split():
    assert normalization_splits(["val", "train", "test", "train"]) == ["train"]
    assert normalization_splits(["val", "test"]) == ["test", "val"]
