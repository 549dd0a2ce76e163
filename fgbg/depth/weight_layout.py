"""DenseDepth's shape as the published nyu.h5 stores it, shared by both
runtimes: the architecture's numbers, the HDF5 weight-file layout and its
checks, and the seeded weights of --depth_model untrained.

numpy and h5py only, so the PyTorch runtime loads nyu.h5 without
TensorFlow, and both runtimes refuse a mismatched file with the same words;
h5py only for its types, so that a runtime that reads no HDF5 file (the
seeded weights, a transformers checkpoint) runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    import h5py

from fgbg.depth.models import ModelLoadError

# DenseNet-169, as Keras builds it: dense layers per block, growth rate, the
# bottleneck width factor, the transition's compression, BatchNorm epsilon.
DENSE_BLOCKS = (6, 12, 32, 32)
GROWTH_RATE = 32
BOTTLENECK_FACTOR = 4
COMPRESSION = 0.5
STEM_FILTERS = 64
BN_EPSILON = 1.001e-5

# The encoder's output width; the published weights use the full width for the
# decoder (the repository's code default of half width does not load them).
DECODER_FILTERS = 1664
LEAKY_RELU_SLOPE = 0.2


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


class WeightSpec(NamedTuple):
    """One stored weight of a layer: its role ('kernel', 'gamma', ...) and shape."""

    role: str
    shape: Tuple[int, ...]


# Each layer with weights, in the model's order, with its weights in Keras's
# order (trainable, then non-trainable).
Layout = Sequence[Tuple[str, Sequence[WeightSpec]]]


def conv_weights(kernel: int, c_in: int, c_out: int, bias: bool) -> List[WeightSpec]:
    """A Conv2D's weights as Keras stores them: kernel (kh, kw, in, out), bias."""
    specs = [WeightSpec("kernel", (kernel, kernel, c_in, c_out))]
    return specs + [WeightSpec("bias", (c_out,))] if bias else specs


def batch_norm_weights(channels: int) -> List[WeightSpec]:
    roles = ("gamma", "beta", "moving_mean", "moving_variance")
    return [WeightSpec(role, (channels,)) for role in roles]


def short_weight_name(name: str) -> str:
    """'conv1/bn/gamma:0' -> 'gamma'."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def weights_group(h5: h5py.File, path: str) -> h5py.Group:
    """The group holding the layers' weights, in a full-model file
    (`model.save('x.h5')`, under `model_weights/`, the layout of nyu.h5) or a
    weights-only file (`save_weights('x.h5')`)."""
    group = h5["model_weights"] if "model_weights" in h5 else h5
    if "layer_names" not in group.attrs:
        raise ModelLoadError(f"{path} holds no Keras weights (no 'layer_names')")
    return group


def match_weights(group: h5py.Group, layout: Layout, path: str) -> List[List[h5py.Dataset]]:
    """Each layer's datasets in the file, in `layout`'s order, or fail naming why.

    Checks both directions (a model layer missing from the file, a file layer
    the model lacks), the number of weights per layer, their roles and their
    shapes, before the caller assigns anything.
    """
    stored = _stored_weight_names(group)
    layers = dict(layout)
    missing = sorted(set(layers) - set(stored))
    if missing:
        raise ModelLoadError(f"{path}: no weights for layer(s) {', '.join(map(repr, missing))}")
    unexpected = sorted(set(stored) - set(layers))
    if unexpected:
        raise ModelLoadError(
            f"{path}: layer(s) {', '.join(map(repr, unexpected))} in the file are not in the model"
        )
    matched = []
    for name, specs in layout:
        names = stored[name]
        if len(names) != len(specs):
            raise ModelLoadError(
                f"{path}: layer {name!r} has {len(names)} weights in the file, "
                f"the model expects {len(specs)}"
            )
        matched.append(
            [
                _matching_dataset(group, name, stored_name, spec, path)
                for stored_name, spec in zip(names, specs)
            ]
        )
    return matched


def _stored_weight_names(group: h5py.Group) -> Dict[str, List[str]]:
    """Layer name -> its weight names, for the layers that have weights."""
    stored = {}
    for layer_name in map(text, group.attrs["layer_names"]):
        names = [text(n) for n in group[layer_name].attrs.get("weight_names", [])]
        if names:
            stored[layer_name] = names
    return stored


def _matching_dataset(
    group: h5py.Group, layer: str, weight_name: str, spec: WeightSpec, path: str
) -> h5py.Dataset:
    if short_weight_name(weight_name) != spec.role:
        raise ModelLoadError(
            f"{path}: layer {layer!r} stores {weight_name!r} where the model expects {spec.role!r}"
        )
    dataset = group[layer][weight_name]
    if tuple(dataset.shape) != tuple(spec.shape):
        raise ModelLoadError(
            f"{path}: layer {layer!r} weight {weight_name!r} has shape "
            f"{tuple(dataset.shape)} in the file, the model expects {tuple(spec.shape)}"
        )
    return dataset


def seeded_weights(layout: Layout, seed: int) -> List[List[np.ndarray]]:
    """Every weight of `layout` drawn from `seed`, by weight role, in order.

    Drawn with numpy so the result depends on the seed alone (a draw per
    run, not per sample, so the run seed itself seeds it; no other draw uses
    the raw run seed): every worker, and both runtimes, build the same
    untrained model. Batch-norm statistics and biases are random too (not
    0/1), so a loader that swapped two of them would change the outputs.
    """
    rng = np.random.default_rng(seed)
    return [[_seeded_value(rng, spec) for spec in specs] for _, specs in layout]


def _seeded_value(rng: np.random.Generator, spec: WeightSpec) -> np.ndarray:
    shape = spec.shape
    if spec.role == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        limit = np.sqrt(6.0 / (fan_in + shape[-1]))  # Glorot uniform
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    if spec.role in ("gamma", "moving_variance"):
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    return rng.uniform(-0.05, 0.05, shape).astype(np.float32)


def tap_mixes(
    conv_a_kernel: np.ndarray,
    x_channels: int,
    pre_kernel: Optional[np.ndarray] = None,
    pre_bias: Optional[np.ndarray] = None,
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The low-resolution decoder's nine 1x1 convolutions for one up block,
    from convA's Keras kernel (3, 3, Cin, Cout): for each tap t = 3 ky + kx,
    kernel (Cin_x, Cout) and bias (Cout), convA's weights at that tap for
    its first `x_channels` inputs (the upsampled ones).

    `pre_kernel` (1, 1, C, Cin_x) and `pre_bias`: a 1x1 convolution with no
    activation after it, folded in front (conv2 before up1); its input
    channels C then replace Cin_x. Combined in float64, returned as float32.
    Both runtimes' `LowResolutionDecoder` use it.
    """
    x_half = np.asarray(conv_a_kernel, np.float64)[:, :, :x_channels, :]
    mixes = []
    for kernel in x_half.reshape(9, x_channels, x_half.shape[-1]):  # (ky, kx) row-major
        bias = np.zeros(kernel.shape[-1])
        if pre_kernel is not None:
            bias = np.asarray(pre_bias, np.float64) @ kernel
            kernel = np.asarray(pre_kernel, np.float64)[0, 0] @ kernel
        mixes.append((kernel.astype(np.float32), bias.astype(np.float32)))
    return mixes
