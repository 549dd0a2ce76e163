"""DenseDepth (Alhashim and Wonka, 2018) as its published NYU weights expect it.

Everything the depth stage needs apart from Beam: the architecture and its one
custom layer, the three ways to obtain a model (published weights, seeded
random weights, a user's model file), and the pure pre/post-processing and
encoding functions. The Beam stage itself lives in `transforms/depth.py`.

The model is built and loaded with `tf_keras` (Keras 2): the published file's
layer names contain '/', which Keras 3 refuses. `transforms/__init__.py` sets
TF_USE_LEGACY_KERAS before anything imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import h5py
import numpy as np
import tensorflow as tf
import tf_keras
from PIL import Image

Size = Tuple[int, int]  # (width, height), PIL's order

UNTRAINED_WARNING = (
    "WARNING: depth maps were made by DenseDepth with seeded RANDOM weights "
    "(--depth_model untrained), not the published NYU weights: they are not "
    "depth estimates and must not be used for training."
)

MISSING_WEIGHTS_MESSAGE = (
    "--depth_model densedepth needs the published NYU Depth v2 weights, "
    "nyu.h5 (172,897,376 bytes), which the authors distribute from their "
    "repository https://github.com/ialhashim/DenseDepth ('Pre-trained "
    "Models'). Download it and pass --depth_weights PATH (a local path or a "
    "gs:// URI). To build without it, pass --depth_model untrained (the real "
    "architecture with seeded random weights: the depth maps are meaningless) "
    "or --depth_model none (composites only, no depth)."
)

# The encoder's output width; the published weights use the full width for the
# decoder (the repository's code default of half width does not load them).
DECODER_FILTERS = 1664

# Network inputs must be multiples of this: DenseNet halves the resolution five
# times and the decoder concatenates each level with its skip layer.
INPUT_MULTIPLE = 32

# DenseDepth's predict: depth = clip(MAX_DEPTH / output, MIN_DEPTH, MAX_DEPTH)
# / MAX_DEPTH, in units of 10 m.
MIN_DEPTH = 10.0
MAX_DEPTH = 1000.0
METRES_PER_DEPTH_UNIT = 10.0

# `encode_metric` stores millimetres: the model's range [0.01, 1] x 10 m is
# [100, 10000] mm, which fits a 16-bit PNG with 1 mm resolution.
METRIC_DEPTH_SCALE = 1000.0  # stored value per metre
METRIC_DEPTH_UNIT = (
    "metres: stored value / 1000 (16-bit PNG in millimetres; 100..10000 is the "
    "model's range, 0.1 m..10 m)"
)
_METRIC_PER_UNIT = METRES_PER_DEPTH_UNIT * METRIC_DEPTH_SCALE
METRIC_MIN_STORED = int(round(MIN_DEPTH / MAX_DEPTH * _METRIC_PER_UNIT))
METRIC_MAX_STORED = int(round(_METRIC_PER_UNIT))


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


# ---------------------------------------------------------------------------
# Architecture


def build_densedepth(seed: Optional[int] = None) -> tf_keras.Model:
    """The DenseDepth graph with the published file's layer names.

    With a seed, every weight is drawn from that seed (see
    `fill_seeded_weights`), so every worker that builds the untrained model
    gets the same one and tests can compare outputs across load paths.
    """
    encoder = tf_keras.applications.DenseNet169(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    x = tf_keras.layers.Conv2D(
        DECODER_FILTERS, 1, padding="same", name="conv2"
    )(encoder.output)
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
    x = tf_keras.layers.Conv2D(
        block.filters, 3, padding="same", name=f"{block.name}_convA"
    )(x)
    x = tf_keras.layers.Conv2D(
        block.filters, 3, padding="same", name=f"{block.name}_convB"
    )(x)
    return tf_keras.layers.LeakyReLU(0.2, name=f"{block.name}_leakyrelu")(x)


def fill_seeded_weights(model: tf_keras.Model, seed: int) -> None:
    """Overwrite every weight with values drawn from `seed`, by weight role.

    Drawn with numpy rather than Keras initialisers so the result depends on
    the seed alone (a draw per run, not per sample, so the run seed itself
    seeds it; no other draw uses the raw run seed), not on TensorFlow's global seed state or on what else the
    process built before. Batch-norm statistics and biases are random too
    (not Keras's constant 0/1), so a loader that swapped two of them would
    change the outputs and fail the tests.
    """
    rng = np.random.default_rng(seed)
    values = [
        _seeded_value(rng, _short_weight_name(w.name), tuple(w.shape))
        for w in model.weights
    ]
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


# ---------------------------------------------------------------------------
# Loading


class ModelLoadError(ValueError):
    """A model or weight file that cannot be used, with the reason."""


def load_depth_model(model: str, weights: Optional[str], seed: int) -> tf_keras.Model:
    """The depth model named by --depth_model / --depth_weights.

    - "densedepth": the architecture built here with the published weights
      from `weights` (local or gs://) copied in by layer name
      (`load_published_weights`, the default way to load nyu.h5).
    - "untrained": the same architecture with weights drawn from `seed`.
    - anything else: a path (local or gs://) to a Keras model file (.h5,
      .keras) or SavedModel directory, inspected before it is deserialised
      (`load_keras_model_safely`). Passing nyu.h5 itself here is the second
      way to load the published file: Keras `load_model` with the custom
      objects. The contract is DenseDepth's: NHWC RGB in [0, 1] in, one
      channel out whose values `postprocess` turns into depth
      (clip(1000 / y, 10, 1000) / 1000), at any resolution.
    """
    if model == "none":
        raise ModelLoadError("--depth_model none has no model: skip the depth stage")
    if model == "untrained":
        return build_densedepth(seed)
    if model == "densedepth":
        if not weights:
            raise ModelLoadError(MISSING_WEIGHTS_MESSAGE)
        with local_copy(weights) as path:
            return load_published_weights(path)
    with local_copy(model) as path:
        return load_keras_model_safely(path, source=model)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for `uri`, copying a remote file or directory to a temp dir.

    Keras and h5py only open local files (TensorFlow's own file layer also
    ignores a GCS emulator), so gs:// models are fetched through Beam's
    FileSystems first. A remote directory is copied whole (a SavedModel).
    """
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.get_scheme(uri) in (None, "file"):
        if not os.path.exists(uri):
            raise ModelLoadError(f"model file not found: {uri}")
        yield uri
        return
    root = uri.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="fgbg-model-") as tmp:
        if FileSystems.exists(FileSystems.join(root, "saved_model.pb")):
            local = os.path.join(tmp, os.path.basename(root))
            _copy_remote_tree(root, local)
        elif FileSystems.exists(root):
            local = os.path.join(tmp, os.path.basename(root))
            _copy_remote_file(root, local)
        else:
            raise ModelLoadError(f"model file not found: {uri}")
        yield local


def _copy_remote_tree(root: str, local_root: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    for match in FileSystems.match([root + "/**"])[0].metadata_list:
        relative = match.path[len(root) + 1:]
        _copy_remote_file(match.path, os.path.join(local_root, relative))


def _copy_remote_file(uri: str, local_path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    os.makedirs(os.path.dirname(local_path), exist_ok=True)
    with FileSystems.open(uri) as src, open(local_path, "wb") as dst:
        shutil.copyfileobj(src, dst, length=16 << 20)


# Published-weights loading: build, then copy by layer name ------------------


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
        plan = _weight_plan(model, _weights_group(h5, path), path)
        tf_keras.backend.batch_set_value(
            [(variable, dataset[()]) for variable, dataset in plan]
        )


def _weights_group(h5: h5py.File, path: str) -> h5py.Group:
    group = h5["model_weights"] if "model_weights" in h5 else h5
    if "layer_names" not in group.attrs:
        raise ModelLoadError(f"{path} holds no Keras weights (no 'layer_names')")
    return group


def _weight_plan(
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
        raise ModelLoadError(
            f"{path}: no weights for layer(s) {', '.join(map(repr, missing))}"
        )
    unexpected = sorted(set(stored) - set(layers))
    if unexpected:
        raise ModelLoadError(
            f"{path}: layer(s) {', '.join(map(repr, unexpected))} in the file "
            f"are not in the model"
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
    for layer_name in map(_text, group.attrs["layer_names"]):
        names = [_text(n) for n in group[layer_name].attrs.get("weight_names", [])]
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


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# User model files: inspect the stored config, then deserialise ---------------

# Layer classes a depth model may use. Everything here is a built-in tf_keras
# layer whose config holds only numbers and names; Lambda and TFOpLambda are
# left out on purpose (a Lambda config carries Python bytecode that legacy
# loading executes), and so is any class not listed.
ALLOWED_LAYERS = frozenset(
    """
    InputLayer Functional Model Sequential
    Conv2D Convolution2D Conv2DTranspose Convolution2DTranspose
    DepthwiseConv2D SeparableConv2D SeparableConvolution2D
    BatchNormalization LayerNormalization GroupNormalization UnitNormalization
    Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU
    MaxPooling2D MaxPool2D AveragePooling2D AvgPool2D
    GlobalAveragePooling2D GlobalAvgPool2D GlobalMaxPooling2D GlobalMaxPool2D
    ZeroPadding2D Cropping2D UpSampling2D Resizing Rescaling CenterCrop
    Reshape Permute Flatten RepeatVector Identity
    Concatenate Add Subtract Multiply Average Maximum Minimum Dot
    Dropout SpatialDropout2D GaussianNoise GaussianDropout AlphaDropout
    Dense EinsumDense MultiHeadAttention Attention Normalization
    """.split()
)

# The only custom objects a model file may name; nothing else is passed to
# Keras, so an unknown class can never resolve to code.
CUSTOM_OBJECTS: Dict[str, Any] = {"BilinearUpSampling2D": BilinearUpSampling2D}

# nyu.h5 was saved compiled with the authors' loss; compile=False never needs
# it, but Keras resolves every custom name it meets.
_LOAD_CUSTOM_OBJECTS: Dict[str, Any] = {**CUSTOM_OBJECTS, "depth_loss_function": None}


def _allowed_helper_classes() -> frozenset:
    """Initialiser, regulariser, constraint and dtype-policy class names.

    They appear inside layer configs; Keras resolves them in its own modules
    only, so they cannot name user code.
    """
    modules = (tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints)
    names = {n for m in modules for n in dir(m) if n[:1].isupper()}
    return frozenset(names | {"Policy"} | _JSON_DATA_MARKERS)


# How Keras's JSON encodes plain data (tuples, shapes, tensor specs) in
# SavedModel metadata; decoded to values, never to user classes.
_JSON_DATA_MARKERS = frozenset({"__tuple__", "TensorShape", "InputSpec", "TypeSpec"})


_KERAS_MODULES = ("keras", "tf_keras")
_SAVED_MODEL_LAYER_NODES = (
    "_tf_keras_layer",
    "_tf_keras_input_layer",
    "_tf_keras_network",
    "_tf_keras_model",
    "_tf_keras_sequential",
    "_tf_keras_rnn_layer",
)


def load_keras_model_safely(path: str, source: Optional[str] = None) -> tf_keras.Model:
    """Load a user's Keras model only after its stored config passes the allow-list.

    `path` is local; `source` names the file in messages (the gs:// URI it
    came from). HDF5 files also get their weights checked by layer name, as
    Keras's own HDF5 loader pairs layers by position.
    """
    source = source or path
    fmt = _model_format(path, source)
    check_config_is_safe(_stored_config(path, fmt, source), source)
    safe_mode = {"safe_mode": True} if fmt == "keras" else {}
    try:
        model = tf_keras.models.load_model(
            path, custom_objects=_LOAD_CUSTOM_OBJECTS, compile=False, **safe_mode
        )
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise ModelLoadError(f"{source}: Keras could not load the model: {error}") from error
    if fmt == "h5":
        with h5py.File(path, "r") as h5:
            _weight_plan(model, _weights_group(h5, source), source)
    return model


def _model_format(path: str, source: str) -> str:
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelLoadError(f"{source} is a directory but not a SavedModel")
        return "saved_model"
    if path.endswith(".keras") and zipfile.is_zipfile(path):
        return "keras"
    if h5py.is_hdf5(path):
        return "h5"
    raise ModelLoadError(f"{source} is not a Keras .h5/.keras file or a SavedModel")


def _stored_config(path: str, fmt: str, source: str) -> Any:
    """The model's layer configs as stored, parsed as plain JSON (no Keras)."""
    if fmt == "h5":
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs:
                raise ModelLoadError(
                    f"{source} holds weights only, no model; if these are "
                    f"DenseDepth weights pass --depth_model densedepth "
                    f"--depth_weights {source}"
                )
            return json.loads(_text(h5.attrs["model_config"]))
    if fmt == "keras":
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        config.pop("compile_config", None)  # never deserialised: compile=False
        return config
    return _saved_model_layer_configs(path, source)


def _saved_model_layer_configs(path: str, source: str) -> List[Any]:
    from tf_keras.protobuf import saved_metadata_pb2

    metadata_path = os.path.join(path, "keras_metadata.pb")
    if not os.path.exists(metadata_path):
        raise ModelLoadError(
            f"{source} is a SavedModel without Keras metadata; save the model "
            f"with tf_keras `model.save(dir)` so its layers can be checked"
        )
    metadata = saved_metadata_pb2.SavedMetadata()
    with open(metadata_path, "rb") as f:
        metadata.ParseFromString(f.read())
    return [
        json.loads(node.metadata)
        for node in metadata.nodes
        if node.identifier in _SAVED_MODEL_LAYER_NODES
    ]


def check_config_is_safe(config: Any, source: str) -> None:
    """Refuse a stored model config naming anything outside the allow-lists.

    Walks every object in the config (nested models and wrapped layers
    included): layers must be allow-listed built-ins or known custom objects,
    helper objects must be Keras's own, and module paths (the .keras format)
    must point into Keras. Raises ModelLoadError naming the file and layer.
    """
    helpers = _allowed_helper_classes()
    activations = frozenset(dir(tf_keras.activations))
    for obj, layer in _config_objects(config, layer=None):
        class_name = obj["class_name"]
        where = f"{source}: layer {layer!r}" if layer else source
        if class_name in CUSTOM_OBJECTS:
            continue
        if class_name == "function":
            if obj.get("config") not in activations:
                raise ModelLoadError(
                    f"{where} refers to function {obj.get('config')!r}, which is "
                    f"not a Keras activation; refusing to load it"
                )
        elif class_name not in ALLOWED_LAYERS and class_name not in helpers:
            raise ModelLoadError(
                f"{where} is of class {class_name!r}, which is not on the "
                f"allow-list of layer classes (Lambda layers and unknown "
                f"custom objects can run arbitrary code); refusing to load it"
            )
        module = obj.get("module")
        if module and module != "builtins" and module.split(".")[0] not in _KERAS_MODULES:
            raise ModelLoadError(
                f"{where} names module {module!r} outside Keras; refusing to load it"
            )


def _config_objects(node: Any, layer: Optional[str]) -> Iterator[Tuple[dict, Optional[str]]]:
    """Every dict with a 'class_name' in a config tree, with its enclosing layer."""
    if isinstance(node, dict):
        if "class_name" in node:
            config = node.get("config")
            name = node.get("name") or (config.get("name") if isinstance(config, dict) else None)
            layer = name or layer
            yield node, layer
        for value in node.values():
            yield from _config_objects(value, layer)
    elif isinstance(node, list):
        for value in node:
            yield from _config_objects(value, layer)


# ---------------------------------------------------------------------------
# Pre- and post-processing, encodings


def check_input_size(input_size: Size) -> None:
    """Raise unless both sides are positive multiples of INPUT_MULTIPLE."""
    if any(side <= 0 or side % INPUT_MULTIPLE for side in input_size):
        raise ValueError(
            f"depth input size {input_size[0]}x{input_size[1]} must be positive "
            f"multiples of {INPUT_MULTIPLE} (DenseNet halves it five times)"
        )


def preprocess(images: np.ndarray, input_size: Size) -> np.ndarray:
    """Composite(s) as the original fed them: Lanczos to `input_size`, /255, clipped.

    `images` is uint8, (H, W, 3) or (N, H, W, 3); the result is float32 with
    the same rank. The clip is a no-op for uint8 input and kept to match the
    original code.
    """
    check_input_size(input_size)
    if images.ndim == 3:
        return _preprocess_one(images, input_size)
    return np.stack([_preprocess_one(image, input_size) for image in images])


def _preprocess_one(image: np.ndarray, input_size: Size) -> np.ndarray:
    if image.shape[1::-1] != tuple(input_size):
        image = np.asarray(Image.fromarray(image).resize(input_size, Image.LANCZOS))
    return np.clip(image.astype(np.float32) / 255.0, 0.0, 1.0)


def postprocess(raw: np.ndarray) -> np.ndarray:
    """The authors' predict: clip(1000 / output, 10, 1000) / 1000, same shape.

    The result is depth in units of 10 m within [0.01, 1] (0.1 m to 10 m); a
    zero output divides to +inf and is clipped to the far limit.
    """
    with np.errstate(divide="ignore"):
        depth = MAX_DEPTH / np.asarray(raw, dtype=np.float32)
    return (np.clip(depth, MIN_DEPTH, MAX_DEPTH) / MAX_DEPTH).astype(np.float32)


def encode_minmax(depth: np.ndarray, out_size: Size, quality: int) -> bytes:
    """The original encoding: per-image min-max to 0..255, Lanczos, grey JPEG.

    Bright is far. The absolute scale is lost (each image is stretched to its
    own range); a constant map, which the original divided by zero on,
    becomes black. Values are rounded to the nearest grey level.
    """
    depth = np.asarray(depth, dtype=np.float32)
    low, span = float(depth.min()), float(depth.max() - depth.min())
    scaled = (depth - low) * (255.0 / span) if span > 0 else np.zeros_like(depth)
    grey = Image.fromarray(np.rint(scaled).astype(np.uint8))
    buffer = io.BytesIO()
    grey.resize(out_size, Image.LANCZOS).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_metric(depth: np.ndarray, out_size: Size) -> bytes:
    """Depth on one fixed scale for every image: 16-bit grey PNG in millimetres.

    Pixel value = round(depth in metres x 1000), within [100, 10000] (the
    model's 0.1 m to 10 m), so values compare across samples. Resized with
    Lanczos in float, then clipped to that range (Lanczos overshoots at
    edges).
    """
    millimetres = np.asarray(depth, dtype=np.float32) * _METRIC_PER_UNIT
    resized = np.asarray(Image.fromarray(millimetres).resize(out_size, Image.LANCZOS))
    clipped = np.clip(np.rint(resized), METRIC_MIN_STORED, METRIC_MAX_STORED).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(clipped).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_metric(data: bytes) -> np.ndarray:
    """A depth PNG written by `encode_metric`, as float32 metres."""
    with Image.open(io.BytesIO(data)) as image:
        millimetres = np.asarray(image, dtype=np.float32)
    return millimetres / METRIC_DEPTH_SCALE
