"""DenseDepth as its published NYU weights expect it, in tf_keras (Keras 2:
the published file's layer names contain '/', which Keras 3 refuses), and
the two ways to fill it: the published weights copied in by layer name, or
seeded random weights (--depth_model untrained).
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import h5py
import numpy as np
import tensorflow as tf
import tf_keras

from fgbg.depth.models import ModelLoadError

# The encoder's output width; the published weights use the full width for the
# decoder (the repository's code default of half width does not load them).
DECODER_FILTERS = 1664


class UpBlock(NamedTuple):
    """One decoder up-projection block: its layer-name prefix, width and skip."""

    name: str
    filters: int
    skip: str


UP_BLOCKS = (
    UpBlock("up1", DECODER_FILTERS // 2, "pool3_pool"),
    UpBlock("up2", DECODER_FILTERS // 4, "pool2_pool"),
    UpBlock("up3", DECODER_FILTERS // 8, "pool1"),
    UpBlock("up4", DECODER_FILTERS // 16, "conv1/relu"),
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
        shape = tf.shape(inputs)
        new_size = tf.stack([shape[1] * self.size[0], shape[2] * self.size[1]])
        return tf.raw_ops.ResizeBilinear(
            images=inputs, size=new_size, align_corners=True, half_pixel_centers=False
        )

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
    """
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


def _up_block(x, skip, block: UpBlock):
    """Up-sample x2, concatenate the skip, two 3x3 convs, one LeakyReLU.

    One activation per block as the published weights were trained; the
    repository's current code has a second one after convA.
    """
    x = BilinearUpSampling2D((2, 2), name=f"{block.name}_upsampling2d")(x)
    x = tf_keras.layers.Concatenate(name=f"{block.name}_concat")([x, skip])
    x = tf_keras.layers.Conv2D(block.filters, 3, padding="same", name=f"{block.name}_convA")(x)
    x = tf_keras.layers.Conv2D(block.filters, 3, padding="same", name=f"{block.name}_convB")(x)
    return tf_keras.layers.LeakyReLU(0.2, name=f"{block.name}_leakyrelu")(x)


def fill_seeded_weights(model: tf_keras.Model, seed: int) -> None:
    """Overwrite every weight with values drawn from `seed`, by weight role.

    Drawn with numpy rather than Keras initialisers so the result depends on
    the seed alone (a draw per run, not per sample, so the run seed itself
    seeds it; no other draw uses the raw run seed), not on TensorFlow's
    global seed state or on what else the process built before. Batch-norm
    statistics and biases are random too (not Keras's constant 0/1), so a
    loader that swapped two of them would change the outputs and fail the
    tests.
    """
    rng = np.random.default_rng(seed)
    values = [_seeded_value(rng, _short_weight_name(w.name), tuple(w.shape)) for w in model.weights]
    tf_keras.backend.batch_set_value(list(zip(model.weights, values)))


def _seeded_value(rng: np.random.Generator, role: str, shape: tuple) -> np.ndarray:
    if role == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        limit = np.sqrt(6.0 / (fan_in + shape[-1]))  # Glorot uniform
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    if role in ("gamma", "moving_variance"):
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    return rng.uniform(-0.05, 0.05, shape).astype(np.float32)


def _short_weight_name(name: str) -> str:
    """'conv1/bn/gamma:0' -> 'gamma'."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


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
    """Set every weight of `model` from the HDF5 file at `path`, by layer name.

    Accepts both a full-model file (`model.save('x.h5')`, weights under
    `model_weights/`, the layout of nyu.h5) and a weights-only file
    (`save_weights('x.h5')`).
    """
    with h5py.File(path, "r") as h5:
        plan = weight_plan(model, weights_group(h5, path), path)
        tf_keras.backend.batch_set_value([(variable, dataset[()]) for variable, dataset in plan])


def weights_group(h5: h5py.File, path: str) -> h5py.Group:
    group = h5["model_weights"] if "model_weights" in h5 else h5
    if "layer_names" not in group.attrs:
        raise ModelLoadError(f"{path} holds no Keras weights (no 'layer_names')")
    return group


def weight_plan(
    model: tf_keras.Model, group: h5py.Group, path: str
) -> List[Tuple[tf.Variable, h5py.Dataset]]:
    """Pair each model weight with its dataset in the file, or fail naming why.

    Checks both directions (a model layer missing from the file, a file layer
    the model lacks), the number of weights per layer, their names and their
    shapes, before anything is assigned.
    """
    stored = _stored_weight_names(group)
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    missing = sorted(set(layers) - set(stored))
    if missing:
        raise ModelLoadError(f"{path}: no weights for layer(s) {', '.join(map(repr, missing))}")
    unexpected = sorted(set(stored) - set(layers))
    if unexpected:
        raise ModelLoadError(
            f"{path}: layer(s) {', '.join(map(repr, unexpected))} in the file are not in the model"
        )
    plan = []
    for name, layer in layers.items():
        # Keras stores trainable then non-trainable weights, in this order.
        variables = layer.trainable_weights + layer.non_trainable_weights
        names = stored[name]
        if len(names) != len(variables):
            raise ModelLoadError(
                f"{path}: layer {name!r} has {len(names)} weights in the file, "
                f"the model expects {len(variables)}"
            )
        for variable, weight_name in zip(variables, names):
            plan.append((variable, _matching_dataset(group, name, weight_name, variable, path)))
    return plan


def _stored_weight_names(group: h5py.Group) -> Dict[str, List[str]]:
    """Layer name -> its weight names, for the layers that have weights."""
    stored = {}
    for layer_name in map(text, group.attrs["layer_names"]):
        names = [text(n) for n in group[layer_name].attrs.get("weight_names", [])]
        if names:
            stored[layer_name] = names
    return stored


def _matching_dataset(
    group: h5py.Group, layer: str, weight_name: str, variable, path: str
) -> h5py.Dataset:
    expected_role = _short_weight_name(variable.name)
    if _short_weight_name(weight_name) != expected_role:
        raise ModelLoadError(
            f"{path}: layer {layer!r} stores {weight_name!r} where the model "
            f"expects {expected_role!r}"
        )
    dataset = group[layer][weight_name]
    if tuple(dataset.shape) != tuple(variable.shape):
        raise ModelLoadError(
            f"{path}: layer {layer!r} weight {weight_name!r} has shape "
            f"{tuple(dataset.shape)} in the file, the model expects "
            f"{tuple(variable.shape)}"
        )
    return dataset


def text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
