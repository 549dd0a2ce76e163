"""Exact statistics and TFRecord framing, without Beam."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2
from tensorflow.core.example import example_pb2 as tensorflow_example_pb2
from tensorflow.core.example import feature_pb2 as tensorflow_feature_pb2

from fgbg import records
from fgbg.moments import pixel_moments, summarize
from fgbg.proto import example_pb2, feature_pb2
from fgbg.records import frame_record
from fgbg.types import Placement, SampleRow
from transforms.stats import MomentsByKeyFn, normalization_splits, stats_document

REPO = Path(__file__).resolve().parents[1]

# What fgbg/records.py's hand-written wire-format encoder (before the protobuf
# library serialised records, issue 16) wrote for the records of
# records_of_known_bytes(): the switch must not change a byte.
PLAIN_SAMPLE_BYTES = bytes.fromhex(
    "0ad1020a210a126261636b67726f756e645f6d6f6d656e7473120b1a090a07090708090a0b0c0a140a0a6261"
    "636b67726f756e6412060a040a0262670a0d0a02626712070a050a036267310a1a0a0e64657074685f656e63"
    "6f64696e6712080a060a046e6f6e650a0d0a05646570746812040a020a000a0e0a02666712080a060a046667"
    "5f320a0d0a04666c697012051a030a01010a0a0a016812051a030a01280a140a026964120e0a0c0a0a626731"
    "2f66675f322f330a0e0a046d61736b12060a040a026d6b0a0f0a066e756d62657212051a030a01030a1e0a0f"
    "6f7665726c61795f6d6f6d656e7473120b1a090a07090102030405060a110a076f7665726c617912060a040a"
    "026f760a110a057363616c65120812060a049a99193f0a100a0573706c697412070a050a0376616c0a0a0a01"
    "7712051a030a011e0a0a0a017812051a030a010a0a0a0a017912051a030a0114"
)

EDGE_SAMPLE_BYTES = bytes.fromhex(
    "0af2020a210a126261636b67726f756e645f6d6f6d656e7473120b1a090a07010000000000000a140a0a6261"
    "636b67726f756e6412060a040a02ffd80a0b0a02626712050a030a01620a1c0a0e64657074685f656e636f64"
    "696e67120a0a080a066d696e6d61780a100a05646570746812070a050a030000000a0b0a02666712050a030a"
    "01660a0d0a04666c697012051a030a01000a0a0a016812051a030a01010a0f0a02696412090a070a05622f66"
    "2f300a100a046d61736b12080a060a0489504e470a0f0a066e756d62657212051a030a01000a340a0f6f7665"
    "726c61795f6d6f6d656e747312211a1f0a1d8080a8e24a80f88c0600018080a8c2e1dea80280808080808080"
    "8040000a0f0a076f7665726c617912040a020a000a110a057363616c65120812060a040000a03f0a120a0573"
    "706c697412090a070a05747261696e0a0f0a0177120a1a080a068080808080200a130a0178120e1a0c0a0afb"
    "ffffffffffffffff010a0a0a017912051a030a0100"
)

MOMENTS_WITH_DEPTH_BYTES = bytes.fromhex(
    "0a85010a210a126261636b67726f756e645f6d6f6d656e7473120b1a090a07040102030506070a120a0a6261"
    "636b67726f756e6412040a020a000a0d0a05646570746812040a020a000a0c0a046d61736b12040a020a000a"
    "1e0a0f6f7665726c61795f6d6f6d656e7473120b1a090a07000000000000000a0f0a076f7665726c61791204"
    "0a020a00"
)

MOMENTS_WITHOUT_DEPTH_BYTES = bytes.fromhex(
    "0a7f0a2a0a126261636b67726f756e645f6d6f6d656e747312141a120a1001ff01ff01ff0181fc0381fc0381"
    "fc030a120a0a6261636b67726f756e6412040a020a000a0c0a046d61736b12040a020a000a1e0a0f6f766572"
    "6c61795f6d6f6d656e7473120b1a090a07020304050607080a0f0a076f7665726c617912040a020a00"
)


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


# A plain validation sample without depth, used by the encoder tests.
PLAIN_ROW = SampleRow(
    placement=Placement("bg1", "fg_2", 3, True, 0.6, 10, 20, 30, 40),
    split="val",
    bg_path="bg/bg1.jpg",
    overlay_path="o.jpg",
    mask_path="m.png",
    depth_path="",
    moments={"overlay": (9, (1, 2, 3), (4, 5, 6))},
)


def records_of_known_bytes():
    """Four records, each with the bytes the hand-written encoder gave it:
    a plain sample, one with edge values (negative, 2**40 and 2**62 ints,
    empty and binary images), and moments records with and without depth."""
    plain = PLAIN_ROW
    edge = SampleRow(
        placement=Placement("b", "f", 0, False, 1.25, -5, 0, 2**40, 1),
        split="train",
        bg_path="",
        overlay_path="",
        mask_path="",
        depth_path="",
        moments={
            "overlay": (
                50176 * 400000,
                (255 * 50176, 0, 1),
                (255 * 255 * 50176 * 400000, 2**62, 0),
            )
        },
    )
    edge_images = {
        "background": b"\xff\xd8",
        "overlay": b"",
        "mask": b"\x89PNG",
        "depth": b"\0" * 3,
    }
    return [
        (
            records.sample_example(
                plain,
                {"background": b"bg", "overlay": b"ov", "mask": b"mk", "depth": b""},
                "none",
                (9, (7, 8, 9), (10, 11, 12)),
            ),
            PLAIN_SAMPLE_BYTES,
        ),
        (
            records.sample_example(edge, edge_images, "minmax", (1, (0, 0, 0), (0, 0, 0))),
            EDGE_SAMPLE_BYTES,
        ),
        (
            records.moments_example(
                {"background": (4, (1, 2, 3), (5, 6, 7)), "overlay": (0, (0, 0, 0), (0, 0, 0))},
                ["background", "overlay", "mask", "depth"],
            ),
            MOMENTS_WITH_DEPTH_BYTES,
        ),
        (
            records.moments_example(
                {
                    "background": (1, (255, 255, 255), (65025, 65025, 65025)),
                    "overlay": (2, (3, 4, 5), (6, 7, 8)),
                },
                ["background", "overlay", "mask"],
            ),
            MOMENTS_WITHOUT_DEPTH_BYTES,
        ),
    ]


def test_records_keep_the_hand_written_encoders_bytes():
    for index, (serialized, expected) in enumerate(records_of_known_bytes()):
        assert serialized == expected, index


def as_tensorflows(module) -> str:
    """A vendored proto file's descriptor with TensorFlow's file and package
    names in place of fgbg's: the only change the vendoring made."""
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return (
        str(proto)
        .replace("fgbg/proto/", "tensorflow/core/example/")
        .replace("fgbg.tensorflow", "tensorflow")
    )


def test_vendored_protos_are_tensorflows_but_for_the_package():
    """Same messages, field numbers, types and options as the installed
    TensorFlow's, so the same wire format."""
    for vendored, tensorflows in (
        (feature_pb2, tensorflow_feature_pb2),
        (example_pb2, tensorflow_example_pb2),
    ):
        expected = descriptor_pb2.FileDescriptorProto()
        tensorflows.DESCRIPTOR.CopyToProto(expected)
        assert as_tensorflows(vendored) == str(expected)


@pytest.mark.processes
def test_writing_records_imports_no_tensorflow_and_tensorflow_loads_after():
    """This module imports TensorFlow first; a worker imports records first.
    Either way protobuf's descriptor pool must accept both Example messages
    (it refuses a second `tensorflow.Example`, whichever comes second)."""
    code = (
        "import sys, fgbg.records\n"
        "print('tensorflow' in sys.modules)\n"
        "import tensorflow as tf\n"
        "print(tf.train.Example.DESCRIPTOR.full_name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "tensorflow.Example"]


def test_sample_records_parse_with_the_feature_spec():
    row = PLAIN_ROW
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
