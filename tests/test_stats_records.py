"""Exact statistics and TFRecord framing, without Beam."""
import itertools

import numpy as np
import tensorflow as tf

from transforms.records import frame_record
from transforms.stats import MomentsByKindFn, pixel_moments, summarize


def test_moments_give_numpy_mean_and_std():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(5)]
    fn = MomentsByKindFn()
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
    parts = [("mask", pixel_moments(rng.integers(0, 256, (4, 4), dtype=np.uint8)))
             for _ in range(4)]
    fn = MomentsByKindFn()
    results = set()
    for order in itertools.permutations(range(4)):
        accumulators = []
        for index in order:
            accumulators.append(fn.add_input(fn.create_accumulator(), parts[index]))
        merged = fn.merge_accumulators([fn.merge_accumulators(accumulators[:2]),
                                        fn.merge_accumulators(accumulators[2:])])
        results.add(repr(fn.extract_output(merged)))
    assert len(results) == 1


def test_framed_records_read_back_with_tf_data(tmp_path):
    payloads = [b"", b"a", bytes(range(256)) * 40]
    path = tmp_path / "records"
    path.write_bytes(b"".join(frame_record(payload) for payload in payloads))
    read = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    assert read == payloads
