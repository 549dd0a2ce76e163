"""The depth maps around the network (fgbg/depth/maps.py): pre- and
post-processing as the original did them, and the two stored encodings."""

import io

import numpy as np
import pytest
from PIL import Image

from fgbg.depth import maps
from tests.depth_fixtures import random_overlays


def test_preprocess_resizes_with_lanczos_and_scales_to_unit_range():
    image = random_overlays(1, 32, seed=1)[0]
    out = maps.preprocess(image, (64, 96))
    expected = np.asarray(Image.fromarray(image).resize((64, 96), Image.LANCZOS), np.float32) / 255
    assert out.dtype == np.float32 and out.shape == (96, 64, 3)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    batch = maps.preprocess(np.stack([image, 255 - image]), (64, 96))
    assert batch.shape == (2, 96, 64, 3)
    np.testing.assert_array_equal(batch[0], out)
    assert batch.min() >= 0 and batch.max() <= 1


def test_preprocess_keeps_exact_values_at_the_input_size():
    image = np.full((32, 64, 3), 51, np.uint8)
    np.testing.assert_array_equal(
        maps.preprocess(image, (64, 32)), np.full((32, 64, 3), 0.2, np.float32)
    )


@pytest.mark.parametrize("size", [(100, 64), (0, 32), (640, 470)])
def test_input_size_must_be_multiples_of_32(size):
    with pytest.raises(ValueError, match="multiples of 32"):
        maps.check_input_size(size)


def test_postprocess_is_the_authors_predict():
    raw = np.array([0.5, 1, 2, 10, 100, 1000, 0, -1, 40], np.float32).reshape(1, 3, 3, 1)
    expected = np.array([1, 1, 0.5, 0.1, 0.01, 0.01, 1, 0.01, 0.025], np.float32).reshape(
        1, 3, 3, 1
    )
    out = maps.postprocess(raw)
    assert out.shape == raw.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# Encodings


def _gradient(h=32, w=32, low=0.2, high=0.6):
    return np.tile(np.linspace(low, high, w, dtype=np.float32), (h, 1))


def test_minmax_stretches_each_image_to_0_255():
    depth = _gradient()
    data = maps.encode_minmax(depth, (32, 32), quality=85)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.mode == "L" and image.size == (32, 32)
        grey = np.asarray(image, np.float32)
    expected = (depth - 0.2) / 0.4 * 255
    assert np.abs(grey - expected).max() <= 4
    assert grey[:, 0].mean() < 3 and grey[:, -1].mean() > 252
    # Same shape, other absolute range: same picture (the scale is lost).
    other = np.asarray(
        Image.open(io.BytesIO(maps.encode_minmax(depth * 2 + 0.1, (32, 32), 85))), np.float32
    )
    assert np.abs(other - grey).max() <= 2


def test_minmax_resizes_and_honours_quality():
    depth = np.random.default_rng(2).random((24, 32)).astype(np.float32)
    with Image.open(io.BytesIO(maps.encode_minmax(depth, (16, 8), quality=85))) as image:
        assert image.size == (16, 8)
    assert len(maps.encode_minmax(depth, (32, 24), quality=95)) > len(
        maps.encode_minmax(depth, (32, 24), quality=20)
    )


def test_minmax_of_a_constant_map_is_black():
    data = maps.encode_minmax(np.full((8, 8), 0.3, np.float32), (8, 8), quality=85)
    assert np.asarray(Image.open(io.BytesIO(data))).max() <= 1


def test_metric_is_a_16_bit_png_in_millimetres():
    depth = np.array([[0.01, 0.1234], [0.5, 1.0]], np.float32)
    data = maps.encode_metric(depth, (2, 2))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode.startswith("I")
        millimetres = np.asarray(image)
    np.testing.assert_array_equal(millimetres, [[100, 1234], [5000, 10000]])
    np.testing.assert_allclose(maps.decode_metric(data), [[0.1, 1.234], [5.0, 10.0]], rtol=1e-6)


def test_metric_scale_is_shared_across_images_and_resized():
    near = maps.decode_metric(maps.encode_metric(np.full((16, 16), 0.2, np.float32), (8, 8)))
    far = maps.decode_metric(maps.encode_metric(np.full((16, 16), 0.4, np.float32), (8, 8)))
    assert near.shape == (8, 8)
    np.testing.assert_allclose(near, 2.0)
    np.testing.assert_allclose(far, 4.0)
    edge = np.zeros((16, 16), np.float32) + 0.01
    edge[:, 8:] = 1.0  # Lanczos overshoots at the step: stays within 0.1..10 m
    values = maps.decode_metric(maps.encode_metric(edge, (12, 12)))
    assert values.min() >= 0.1 and values.max() <= 10.0


def test_metric_values_outside_the_models_range_are_clipped_and_counted():
    """Only resampling overshoots a model's range (Lanczos rings at a step);
    what it moves back is counted, so the stage can say so."""
    content = maps.MapContent(
        quantity=maps.DEPTH, metric=True, max_metres=80.0, stored_per_metre=500
    )
    step = np.zeros((8, 8), np.float32)
    step[:, 4:] = 80.0
    stored, clipped = maps.metric_stored(step, (32, 32), content)
    assert clipped > 0
    assert stored.min() == 0 and stored.max() == 40_000
    _, none_clipped = maps.metric_stored(np.full((8, 8), 40.0, np.float32), (32, 32), content)
    assert none_clipped == 0
