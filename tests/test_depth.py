"""The depth stage: EstimateDepth on Composites through RunInference.

A tiny Keras model file with DenseDepth's contract makes the outputs exact and
fast to check; one case runs the full architecture (untrained) on two tiny
images.
"""

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from PIL import Image

from fgbg.depth import keras_densedepth as kd
from fgbg.depth import maps
from fgbg.depth.config import DepthConfig
from tests.depth_fixtures import (
    make_composite,
    random_overlays,
    tiny_depth_config,
    tiny_depth_model,
    tiny_raw_reference,
)
from transforms.depth import (
    DEPTH_METRICS_NAMESPACE,
    ENCODED_COUNTER,
    DepthModelHandler,
    EstimateDepth,
    depth_maps,
    full_batch,
)

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # composites and network input: no resize, so outputs are exact


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.h5")
    tiny_depth_model().save(path)
    return path


@pytest.fixture(scope="module")
def composites():
    return [
        make_composite(n, image)
        for n, image in enumerate(random_overlays(5, SIZE, seed=11), start=1)
    ]


def _run(config: DepthConfig, composites, check):
    """Run EstimateDepth with `check(outputs)` as the assert_that matcher."""
    pipeline = TestPipeline(runner="FnApiRunner")
    out = pipeline | beam.Create(composites, reshuffle=False) | EstimateDepth(config)
    assert_that(out, check)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _metric(result, name):
    query = result.metrics().query(
        MetricsFilter().with_namespace(DEPTH_METRICS_NAMESPACE).with_name(name)
    )
    return (query["counters"] + query["distributions"])[0].committed


def _by_sample(outputs, inputs):
    """{sample_id: output}, after checking every input came out exactly once."""
    ids = [c.placement.sample_id for c in outputs]
    assert sorted(ids) == sorted(c.placement.sample_id for c in inputs), ids
    return {c.placement.sample_id: c for c in outputs}


def _tiny_expected_depth(composite) -> np.ndarray:
    raw = tiny_raw_reference(composite.overlay[None].astype(np.float64) / 255.0)[0]
    return (np.clip(1000.0 / raw, 10, 1000) / 1000.0).astype(np.float32)


def _grey(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.mode == "L"
        return np.asarray(image, np.float32)


def test_metric_depth_is_attached_to_each_composite(tiny_model_file, composites):
    def check(outputs):
        results = _by_sample(outputs, composites)
        for composite in composites:
            out = results[composite.placement.sample_id]
            # auto: a user's model file runs fp32 (the rule measured DenseDepth)
            assert out.depth_precision == "fp32"
            assert dataclasses.replace(
                out, depth=None, overlay=None, depth_precision=None
            ) == dataclasses.replace(composite, overlay=None)
            np.testing.assert_array_equal(out.overlay, composite.overlay)
            metres = maps.decode_metric(out.depth)
            assert metres.shape == (SIZE // 2, SIZE // 2)
            np.testing.assert_allclose(metres, _tiny_expected_depth(composite) * 10, atol=0.0011)

    result = _run(tiny_depth_config(model=tiny_model_file), composites, check)
    assert _metric(result, "num_inferences") == 5
    assert _metric(result, ENCODED_COUNTER) == 5
    batch_sizes = _metric(result, "inference_request_batch_size")
    assert batch_sizes.max <= 2 and batch_sizes.count >= 3
    assert _metric(result, "inference_batch_latency_micro_secs").count == batch_sizes.count
    assert _metric(result, "load_model_latency_milli_secs").count >= 1


def test_minmax_depth_matches_the_original_encoding(tiny_model_file, composites):
    inputs = composites[:3]
    expected = {
        c.placement.sample_id: _grey(maps.encode_minmax(_tiny_expected_depth(c), (48, 40), 85))
        for c in inputs
    }

    def check(outputs):
        for sample_id, out in _by_sample(outputs, inputs).items():
            grey = _grey(out.depth)
            assert grey.shape == (40, 48)
            assert np.abs(grey - expected[sample_id]).max() <= 2

    _run(
        tiny_depth_config(model=tiny_model_file, encoding="minmax", out_size=(48, 40)),
        inputs,
        check,
    )


@pytest.mark.model
def test_full_architecture_on_two_images():
    """The real (untrained) DenseDepth through the stage, checked against a
    direct forward pass of the same seeded model."""
    images = random_overlays(2, SIZE, seed=5)
    inputs = [make_composite(n, image) for n, image in enumerate(images, start=1)]
    config = tiny_depth_config(model="untrained", seed=42, encoding="minmax", out_size=(48, 48))
    raw = kd.build_densedepth(seed=42).predict_on_batch(
        maps.preprocess(np.stack(images), config.input_size)
    )
    expected = {
        c.placement.sample_id: _grey(maps.encode_minmax(depth, (48, 48), 85))
        for c, depth in zip(inputs, maps.postprocess(raw)[..., 0])
    }

    def check(outputs):
        for sample_id, out in _by_sample(outputs, inputs).items():
            grey = _grey(out.depth)
            assert grey.shape == (48, 48) and grey.std() > 0
            assert np.abs(grey - expected[sample_id]).max() <= 3

    result = _run(config, inputs, check)
    assert _metric(result, "num_inferences") == 2


def test_a_failing_model_fails_the_pipeline(tmp_path, composites):
    """A model that would make non-finite depth fails loudly, naming its file,
    when the stage loads it (non-finite outputs of a model with finite
    weights fail its batch: test_depth_maps_checks_shape_and_values); no
    sample is silently dropped."""
    path = str(tmp_path / "nan.h5")
    tiny_depth_model(bias=float("nan")).save(path)
    with pytest.raises(Exception, match=rf"{path}: weight '.*bias.*' holds NaN"):
        _run(tiny_depth_config(model=path), composites[:2], lambda outputs: None)


def test_depth_maps_checks_shape_and_values():
    np.testing.assert_array_equal(
        depth_maps(np.ones((2, 3, 4, 1), np.float32), 2), np.ones((2, 3, 4))
    )
    with pytest.raises(ValueError, match="shape"):
        depth_maps(np.ones((2, 3, 4, 2), np.float32), 2)
    with pytest.raises(ValueError, match="shape"):
        depth_maps(np.ones((1, 3, 4), np.float32), 2)
    bad = np.ones((3, 2, 2), np.float32)
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="1 of 3"):
        depth_maps(bad, 3)


def test_file_extensions_match_the_encodings():
    depth = np.full((4, 4), 0.5, np.float32)
    formats = {
        "minmax": Image.open(io.BytesIO(maps.encode_minmax(depth, (4, 4), 85))).format,
        "metric": Image.open(io.BytesIO(maps.encode_metric(depth, (4, 4)))).format,
    }
    assert maps.FILE_EXTENSION == {"minmax": "jpg", "metric": "png"}
    assert formats == {"minmax": "JPEG", "metric": "PNG"}


@pytest.mark.processes
def test_importing_the_stage_does_not_import_tensorflow():
    code = (
        "import sys, transforms.depth; "
        "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.model
def test_bf16_precision_stays_close_to_fp32():
    """--depth_precision bf16 switches TensorFlow's oneDNN mixed precision on
    for the whole process, so it runs in a process of its own here."""
    code = """
import json, numpy as np
from fgbg.depth import maps, tensorflow_runtime
images = np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
inputs = np.stack([maps.preprocess(image, (64, 64)) for image in images])
fp32 = tensorflow_runtime.load_depth_model("untrained", None, 0, "fp32").predict(inputs)
bf16 = tensorflow_runtime.load_depth_model("untrained", None, 0, "bf16").predict(inputs)
print(json.dumps([float(np.abs(fp32 - bf16).max()), float(np.abs(fp32).max()),
                  bool(np.isfinite(bf16).all())]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    difference, scale, finite = json.loads(out.stdout.strip().splitlines()[-1])
    assert finite and difference <= 0.05 * scale


def test_a_model_with_the_wrong_output_shape_fails_its_first_batch_naming_the_file(tmp_path):
    import tf_keras

    inputs = tf_keras.Input((None, None, 3))
    three_channels = tf_keras.layers.Conv2D(3, 1, name="depth")(inputs)
    path = str(tmp_path / "wrong.h5")
    tf_keras.Model(inputs, three_channels).save(path)
    handler = DepthModelHandler(tiny_depth_config(model=path))
    model = handler.load_model()
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"depth model {path}: .*shape"):
        handler.run_inference([image, image], model)


@pytest.mark.model
def test_a_samples_depth_has_the_same_bits_in_any_batch_on_the_cpu():
    """Alone, at a bundle's end, or in a full batch: the same bytes (without
    filling, an image alone differs from itself in a batch of 4)."""
    handler = DepthModelHandler(tiny_depth_config(batch_size=4, min_batch_size=4))
    model = handler.load_model()
    images = random_overlays(4, SIZE, seed=3)
    together = handler.run_inference(images, model)
    for image, expected in zip(images, together):
        assert np.array_equal(handler.run_inference([image], model)[0], expected)
    tail = handler.run_inference(images[1:], model)
    assert len(tail) == 3 and all(np.array_equal(a, b) for a, b in zip(tail, together[1:]))


class RecordingModel:
    """Answers any batch with depth 1 and records the batch sizes it saw."""

    def __init__(self):
        self.sizes = []

    def predict(self, images):
        self.sizes.append(len(images))
        return np.ones((len(images), SIZE // 2, SIZE // 2, 1), np.float32)


@pytest.mark.parametrize("device, called_with", [("cpu", 4), ("auto", 4), ("cuda", 1)])
def test_cpu_calls_are_filled_to_the_batch_size_and_gpu_calls_are_not(device, called_with):
    handler = DepthModelHandler(tiny_depth_config(batch_size=4, min_batch_size=1, device=device))
    model = RecordingModel()
    out = handler.run_inference([np.zeros((SIZE, SIZE, 3), np.uint8)], model)
    assert len(out) == 1 and model.sizes == [called_with]


def test_full_batch_appends_copies_of_the_last_image_only_when_short():
    images = np.arange(2 * 3).reshape(2, 3)
    filled = full_batch(images, 4)
    assert filled.tolist() == [[0, 1, 2], [3, 4, 5], [3, 4, 5], [3, 4, 5]]
    assert full_batch(images, 2) is images and full_batch(images, 0) is images
