"""bench_depth_parts.py's Winograd convolution is the convolution it stands
in for, so its timings compare like with like."""

import numpy as np
import pytest
import tensorflow as tf

from bench.bench_depth_parts import convb_layers, winograd_conv3x3, winograd_kernel


@pytest.mark.parametrize("height, width", [(8, 12), (7, 10), (5, 5)])
def test_winograd_matches_a_same_padded_3x3_convolution(height, width):
    generator = np.random.default_rng(height * width)
    images = generator.standard_normal((2, height, width, 5)).astype(np.float32)
    kernel = generator.standard_normal((3, 3, 5, 3)).astype(np.float32)
    expected = tf.nn.conv2d(images, kernel, 1, "SAME").numpy()
    got = winograd_conv3x3(tf.constant(images), tf.constant(winograd_kernel(kernel))).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_convb_layers_follow_the_decoder():
    layers = convb_layers((640, 480))
    assert [name.split()[0] for name, *_ in layers] == ["up4", "up3", "up2", "up1"]
    assert [(c, h, w) for _, c, h, w in layers] == [
        (104, 240, 320),
        (208, 120, 160),
        (416, 60, 80),
        (832, 30, 40),
    ]
