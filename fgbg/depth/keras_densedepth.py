"""DenseDepth as its published NYU weights expect it, in tf_keras (Keras 2:
the published file's layer names contain '/', which Keras 3 refuses), and
the two ways to fill it: the published weights copied in by layer name, or
seeded random weights (--depth_model untrained).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import h5py
import tensorflow as tf
import tf_keras

from fgbg.depth.weight_layout import (
    DECODER_FILTERS,
    LEAKY_RELU_SLOPE,
    UP_BLOCKS,
    Layout,
    UpBlock,
    WeightSpec,
    match_weights,
    seeded_weights,
    short_weight_name,
    tap_mixes,
    weights_group,
)


class BilinearUpSampling2D(tf_keras.layers.Layer):
    """Bilinear up-sampling with aligned corners, serialised as in nyu.h5.

    The weights were trained with TF1 `resize_images(..., align_corners=True)`;
    `tf.image.resize` uses half-pixel centres instead and silently changes
    every output, so this calls the op TF1 used with the same flags.
    """

    def __init__(self, size=(2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.size = _pair(size)
        self.data_format = data_format or tf_keras.backend.image_data_format()
        if self.data_format != "channels_last":
            raise ValueError(
                f"BilinearUpSampling2D supports channels_last only, got "
                f"data_format={self.data_format!r}"
            )
        self.input_spec = tf_keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return upsample_aligned(inputs, self.size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(
            [
                batch,
                None if height is None else height * self.size[0],
                None if width is None else width * self.size[1],
                channels,
            ]
        )

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "data_format": self.data_format,
        }


def upsample_aligned(images: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
    """NHWC images scaled by `size` (rows, columns), bilinear, aligned corners."""
    shape = tf.shape(images)
    new_size = tf.stack([shape[1] * size[0], shape[2] * size[1]])
    return tf.raw_ops.ResizeBilinear(
        images=images, size=new_size, align_corners=True, half_pixel_centers=False
    )


def upsample2_aligned_by_gathers(images: tf.Tensor) -> tf.Tensor:
    """`upsample_aligned(images, (2, 2))` as gathers and linear interpolation,
    columns then rows as TensorFlow's kernel does, so that XLA can fuse the
    up-sampling with what follows (`add_tap`). XLA's own lowering of
    ResizeBilinear is no use for that: it makes the decoder slower, not
    faster (BENCHMARKS.md, "Depth on CPU")."""
    return _interpolate_aligned_x2(_interpolate_aligned_x2(images, axis=2), axis=1)


def _interpolate_aligned_x2(images: tf.Tensor, axis: int) -> tf.Tensor:
    """`images` at twice their size along `axis`, linear, aligned corners:
    output i samples input i * (n - 1) / (2n - 1), as ResizeBilinear
    computes it in float32."""
    size = tf.shape(images)[axis]
    scale = tf.cast(size - 1, tf.float32) / tf.cast(tf.maximum(2 * size - 1, 1), tf.float32)
    position = tf.cast(tf.range(2 * size), tf.float32) * scale
    lower = tf.floor(position)
    low = tf.cast(lower, tf.int32)
    high = tf.minimum(low + 1, size - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    fraction = tf.reshape(position - lower, shape)
    first = tf.gather(images, low, axis=axis)
    return first + (tf.gather(images, high, axis=axis) - first) * fraction


@tf.function(jit_compile=True)
def add_tap(conv_a_output: tf.Tensor, mixed: tf.Tensor, ky: tf.Tensor, kx: tf.Tensor) -> tf.Tensor:
    """`conv_a_output` plus one tap's mix up-sampled and shifted, compiled by
    XLA into one pass over the full-resolution output instead of TensorFlow's
    four (up-sample, pad, slice, add), which are memory-bound
    (BENCHMARKS.md, "Depth on CPU").

    The tap's offsets `ky`, `kx` are int32 tensors, not Python ints, so that
    the nine taps of a block share one trace: Python ints would trace and
    compile it once per tap and block in a model's first call, for the same
    values (BENCHMARKS.md, "A TensorFlow process's start-up")."""
    return conv_a_output + _shifted(upsample2_aligned_by_gathers(mixed), ky, kx)


def tap_offsets(tap: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Tap t's (ky, kx) = divmod(t, 3), as `add_tap` takes them."""
    return tuple(tf.constant(offset, tf.int32) for offset in divmod(tap, 3))


def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def build_densedepth(seed: Optional[int] = None) -> tf_keras.Model:
    """The DenseDepth graph with the published file's layer names.

    With a seed, every weight is drawn from that seed (see
    `fill_seeded_weights`), so every worker that builds the untrained model
    gets the same one and tests can compare outputs across load paths.
    Without one every weight is zero, for the caller to set them all
    (`load_published_weights`): Keras's random initial values would be
    drawn only to be overwritten (`zero_initial_values`).
    """
    with tf.variable_creator_scope(zero_initial_values):
        encoder = tf_keras.applications.DenseNet169(
            include_top=False, weights=None, input_shape=(None, None, 3)
        )
        x = tf_keras.layers.Conv2D(DECODER_FILTERS, 1, padding="same", name="conv2")(encoder.output)
        for block in UP_BLOCKS:
            x = _up_block(x, encoder.get_layer(block.skip).output, block)
        depth = tf_keras.layers.Conv2D(1, 3, padding="same", name="conv3")(x)
    model = tf_keras.Model(encoder.input, depth, name="densedepth")
    if seed is not None:
        fill_seeded_weights(model, seed)
    return model


def zero_initial_values(next_creator, **kwargs) -> tf.Variable:
    """A `tf.variable_creator_scope` creator that starts a variable of known
    shape at zero instead of its Keras initialiser's random draw: for a
    model whose every weight is set next, the draws would be thrown away
    (BENCHMARKS.md, "A TensorFlow process's start-up")."""
    shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
    if callable(kwargs.get("initial_value")) and shape is not None:
        kwargs["initial_value"] = lambda: tf.zeros(shape, dtype)
    return next_creator(**kwargs)


def _up_block(x, skip, block: UpBlock):
    """Up-sample x2, concatenate the skip, two 3x3 convs, one LeakyReLU.

    One activation per block as the published weights were trained; the
    repository's current code has a second one after convA.
    """
    x = BilinearUpSampling2D((2, 2), name=f"{block.name}_upsampling2d")(x)
    x = tf_keras.layers.Concatenate(name=f"{block.name}_concat")([x, skip])
    x = tf_keras.layers.Conv2D(block.filters, 3, padding="same", name=f"{block.name}_convA")(x)
    x = tf_keras.layers.Conv2D(block.filters, 3, padding="same", name=f"{block.name}_convB")(x)
    return tf_keras.layers.LeakyReLU(LEAKY_RELU_SLOPE, name=f"{block.name}_leakyrelu")(x)


def fill_seeded_weights(model: tf_keras.Model, seed: int) -> None:
    """Overwrite every weight with values drawn from `seed`
    (`weight_layout.seeded_weights`), not from Keras initialisers, so the
    result does not depend on TensorFlow's global seed state or on what else
    the process built before."""
    values = [v for layer in seeded_weights(keras_layout(model), seed) for v in layer]
    tf_keras.backend.batch_set_value(list(zip(_layer_variables(model), values)))


def keras_layout(model: tf_keras.Model) -> Layout:
    """The model's layers with weights, as `weight_layout` describes a file."""
    return [
        (layer.name, [WeightSpec(short_weight_name(v.name), tuple(v.shape)) for v in variables])
        for layer, variables in _layers_with_weights(model)
    ]


def _layers_with_weights(model: tf_keras.Model):
    # Keras stores trainable then non-trainable weights, in this order.
    for layer in model.layers:
        if layer.weights:
            yield layer, layer.trainable_weights + layer.non_trainable_weights


def _layer_variables(model: tf_keras.Model) -> List[tf.Variable]:
    return [v for _, variables in _layers_with_weights(model) for v in variables]


def load_published_weights(path: str) -> tf_keras.Model:
    """DenseDepth built here, with weights copied from an HDF5 file by layer name.

    The default for --depth_model densedepth: it reads only arrays from the
    file, never its stored model config, so nothing in the file is
    deserialised or executed and a 2018 Keras config cannot break the load;
    and it fails naming the layer on any mismatch instead of loading
    partially.
    """
    model = build_densedepth()
    copy_weights_by_name(model, path)
    return model


def copy_weights_by_name(model: tf_keras.Model, path: str) -> None:
    """Set every weight of `model` from the HDF5 file at `path`, by layer name
    (a full-model file or a weights-only one, `weight_layout.weights_group`)."""
    with h5py.File(path, "r") as h5:
        plan = weight_plan(model, weights_group(h5, path), path)
        tf_keras.backend.batch_set_value([(variable, dataset[()]) for variable, dataset in plan])


def weight_plan(
    model: tf_keras.Model, group: h5py.Group, path: str
) -> List[Tuple[tf.Variable, h5py.Dataset]]:
    """Pair each model weight with its dataset in the file, or fail naming why
    (`weight_layout.match_weights`)."""
    datasets = [d for layer in match_weights(group, keras_layout(model), path) for d in layer]
    return list(zip(_layer_variables(model), datasets))


class LowResolutionDecoder(tf.Module):
    """DenseDepth's forward pass with the x half of each up block's convA at
    low resolution: the same function up to fp32 rounding, with fewer
    multiply-adds (BENCHMARKS.md, "Depth on CPU"). The algebra is in
    `torch_densedepth.LowResolutionDecoder`'s docstring; the weights come
    from `weight_layout.tap_mixes`, shared with the torch runtime.

    Only for the DenseDepth architecture built here (the published weights
    or untrained); a user's model file runs as written.
    """

    def __init__(self, model: tf_keras.Model):
        super().__init__()
        skips = [model.get_layer(block.skip).output for block in UP_BLOCKS]
        self.encoder = tf_keras.Model(model.input, [model.get_layer("relu").output, *skips])
        conv2 = model.get_layer("conv2").get_weights()
        pre = {"pre_kernel": conv2[0], "pre_bias": conv2[1]}
        x_channels = DECODER_FILTERS
        self.blocks = []
        for block in UP_BLOCKS:
            kernel_a, bias_a = model.get_layer(f"{block.name}_convA").get_weights()
            mixes = tap_mixes(kernel_a, x_channels, **pre)
            self.blocks.append(
                (
                    [tf.constant(kernel[None, None]) for kernel, _ in mixes],
                    [tf.constant(bias) for _, bias in mixes],
                    tf.constant(kernel_a[:, :, x_channels:]),
                    tf.constant(bias_a),
                    model.get_layer(f"{block.name}_convB"),
                    model.get_layer(f"{block.name}_leakyrelu"),
                )
            )
            pre, x_channels = {}, block.filters
        self.conv3 = model.get_layer("conv3")

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        x, *skips = self.encoder(images, training=False)
        for (mix_kernels, mix_biases, skip_kernel, bias, conv_b, activation), skip in zip(
            self.blocks, skips
        ):
            conv_a_output = tf.nn.conv2d(skip, skip_kernel, 1, "SAME") + bias
            # One tap at a time, each after the previous one's add: all nine
            # at once hold 9 x Cout full-resolution channels and their
            # shifted copies, more peak memory for the same arithmetic and
            # no speed (BENCHMARKS.md, "Depth on CPU").
            for tap, (mix_kernel, mix_bias) in enumerate(zip(mix_kernels, mix_biases)):
                with tf.control_dependencies([conv_a_output]):
                    mixed = tf.nn.conv2d(x, mix_kernel, 1, "VALID") + mix_bias
                conv_a_output = add_tap(conv_a_output, mixed, *tap_offsets(tap))
            x = activation(conv_b(conv_a_output))
        return self.conv3(x)


def _shifted(image: tf.Tensor, ky: tf.Tensor, kx: tf.Tensor) -> tf.Tensor:
    """NHWC `image` moved so that output (i, j) holds input (i + ky - 1,
    j + kx - 1), zero outside the image (convA's zero padding). A slice
    from tensor offsets and a static size, which XLA compiles once for all
    offsets."""
    height, width = tf.shape(image)[1], tf.shape(image)[2]
    padded = tf.pad(image, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return tf.slice(padded, tf.stack([0, ky, kx, 0]), tf.stack([-1, height, width, -1]))
