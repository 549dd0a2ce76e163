"""Safe loading of a user's Keras model file (--depth_model PATH): its
stored config is read as plain JSON and checked against allow-lists before
Keras deserialises anything, so a file cannot run code on a worker.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import h5py
import tf_keras

from fgbg.depth.keras_densedepth import BilinearUpSampling2D, weight_plan
from fgbg.depth.models import ModelLoadError
from fgbg.depth.weight_layout import text, weights_group

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
            weight_plan(model, weights_group(h5, source), source)
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
            return json.loads(text(h5.attrs["model_config"]))
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
