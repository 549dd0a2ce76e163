"""DenseDepth in PyTorch, computing the same function as the tf_keras graph
(fgbg/depth/keras_densedepth.py), and the two ways to fill it: the published
nyu.h5 read with h5py (no TensorFlow), or the seeded weights of
--depth_model untrained, identical to TensorFlow's for the same seed.

Written here rather than taken from torchvision: torchvision's DenseNet
differs from Keras's where the published weights notice (no explicit zero
padding before conv1 and pool1, BatchNorm epsilon 1e-5 instead of
1.001e-5), its parameter names would need a second name map, and PyPI's
torchvision does not import beside the CPU build of torch used here.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fgbg.depth.weight_layout import (
    BN_EPSILON,
    BOTTLENECK_FACTOR,
    COMPRESSION,
    DECODER_FILTERS,
    DENSE_BLOCKS,
    GROWTH_RATE,
    LEAKY_RELU_SLOPE,
    STEM_FILTERS,
    UP_BLOCKS,
    Layout,
    batch_norm_weights,
    conv_weights,
    match_weights,
    seeded_weights,
    tap_mixes,
    weights_group,
)

# The first dense stage's number in Keras's layer names (conv2_block1_...).
FIRST_STAGE = 2


class DenseDepth(nn.Module):
    """DenseNet-169 features and DenseDepth's decoder; NCHW RGB in [0, 1] in,
    the raw one-channel output at half resolution out.

    Layers are kept under their Keras names ('/' written as '__', which
    torch does not allow in a module name) and created in Keras's order, so
    `layout()` lists the weights exactly as nyu.h5 and the Keras model do.
    """

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict()
        self._conv("conv1/conv", 7, 3, STEM_FILTERS, stride=2, padding=0, bias=False)
        self._batch_norm("conv1/bn", STEM_FILTERS)
        channels = STEM_FILTERS
        for stage, count in enumerate(DENSE_BLOCKS, start=FIRST_STAGE):
            for block in range(1, count + 1):
                prefix = f"conv{stage}_block{block}"
                bottleneck = BOTTLENECK_FACTOR * GROWTH_RATE
                self._batch_norm(f"{prefix}_0_bn", channels)
                self._conv(f"{prefix}_1_conv", 1, channels, bottleneck, bias=False)
                self._batch_norm(f"{prefix}_1_bn", bottleneck)
                self._conv(f"{prefix}_2_conv", 3, bottleneck, GROWTH_RATE, bias=False)
                channels += GROWTH_RATE
            if stage < _last_stage():
                self._batch_norm(f"pool{stage}_bn", channels)
                self._conv(
                    f"pool{stage}_conv", 1, channels, int(channels * COMPRESSION), bias=False
                )
                channels = int(channels * COMPRESSION)
        self._batch_norm("bn", channels)
        self._conv("conv2", 1, channels, DECODER_FILTERS)
        width = DECODER_FILTERS
        for block in UP_BLOCKS:
            skip_channels = _skip_channels()[block.skip]
            self._conv(f"{block.name}_convA", 3, width + skip_channels, block.filters)
            self._conv(f"{block.name}_convB", 3, block.filters, block.filters)
            width = block.filters
        self._conv("conv3", 3, width, 1)

    def _conv(self, name, kernel, c_in, c_out, stride=1, padding=None, bias=True):
        padding = kernel // 2 if padding is None else padding  # Keras "same" at stride 1
        self.layers[_module_key(name)] = nn.Conv2d(
            c_in, c_out, kernel, stride=stride, padding=padding, bias=bias
        )

    def _batch_norm(self, name, channels):
        self.layers[_module_key(name)] = nn.BatchNorm2d(channels, eps=BN_EPSILON)

    def _layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.layers[_module_key(name)](x)

    def _bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._layer(name, x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features, skips = self.encode(images)
        x = self._layer("conv2", features)
        for block in UP_BLOCKS:
            # The weights were trained with TF1's aligned-corner bilinear resize.
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = torch.cat([x, skips[block.skip]], dim=1)
            x = self._layer(f"{block.name}_convA", x)
            x = self.finish_up_block(block.name, x)
        return self.output(x)

    def encode(self, images: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """DenseNet-169's features (after its last BatchNorm and ReLU) and the
        skips the decoder concatenates, by Keras layer name."""
        skips: Dict[str, torch.Tensor] = {}
        # Keras pads explicitly with zeros, then convolves and pools unpadded.
        x = self._layer("conv1/conv", F.pad(images, (3, 3, 3, 3)))
        x = skips["conv1/relu"] = self._bn_relu("conv1/bn", x)
        x = skips["pool1"] = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=2)
        for stage, count in enumerate(DENSE_BLOCKS, start=FIRST_STAGE):
            for block in range(1, count + 1):
                prefix = f"conv{stage}_block{block}"
                y = self._layer(f"{prefix}_1_conv", self._bn_relu(f"{prefix}_0_bn", x))
                y = self._layer(f"{prefix}_2_conv", self._bn_relu(f"{prefix}_1_bn", y))
                x = torch.cat([x, y], dim=1)
            if stage < _last_stage():
                x = self._layer(f"pool{stage}_conv", self._bn_relu(f"pool{stage}_bn", x))
                x = skips[f"pool{stage}_pool"] = F.avg_pool2d(x, 2, stride=2)
        return self._bn_relu("bn", x), skips

    def finish_up_block(self, name: str, conv_a_output: torch.Tensor) -> torch.Tensor:
        """An up block after its convA: convB, then the block's one LeakyReLU."""
        x = self._layer(f"{name}_convB", conv_a_output)
        return F.leaky_relu(x, LEAKY_RELU_SLOPE)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self._layer("conv3", x)

    def layout(self) -> Layout:
        """The weights as Keras stores them, layer by layer, in Keras's order."""
        return [(_keras_name(key), _keras_weights(module)) for key, module in self.layers.items()]

    def set_keras_weights(self, values: List[List[np.ndarray]]) -> None:
        """Set every weight from arrays in `layout()`'s order and Keras's shapes."""
        with torch.no_grad():
            for module, arrays in zip(self.layers.values(), values):
                for target, array in zip(_torch_weights(module), arrays):
                    if isinstance(module, nn.Conv2d) and array.ndim == 4:
                        array = np.transpose(
                            array, (3, 2, 0, 1)
                        )  # (kh, kw, in, out) -> (out, in, kh, kw)
                    target.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))


def _last_stage() -> int:
    return FIRST_STAGE + len(DENSE_BLOCKS) - 1


def _skip_channels() -> Dict[str, int]:
    """The width of each skip the decoder concatenates."""
    widths = {"conv1/relu": STEM_FILTERS, "pool1": STEM_FILTERS}
    channels = STEM_FILTERS
    for stage, count in enumerate(DENSE_BLOCKS[:-1], start=FIRST_STAGE):
        channels = int((channels + count * GROWTH_RATE) * COMPRESSION)
        widths[f"pool{stage}_pool"] = channels
    return widths


def _module_key(keras_name: str) -> str:
    return keras_name.replace("/", "__")


def _keras_name(key: str) -> str:
    return key.replace("__", "/")


def _keras_weights(module: nn.Module):
    if isinstance(module, nn.Conv2d):
        return conv_weights(
            module.kernel_size[0], module.in_channels, module.out_channels, module.bias is not None
        )
    return batch_norm_weights(module.num_features)


def _torch_weights(module: nn.Module) -> List[torch.Tensor]:
    """The module's tensors in Keras's weight order (`_keras_weights`)."""
    if isinstance(module, nn.Conv2d):
        return [module.weight] + ([module.bias] if module.bias is not None else [])
    return [module.weight, module.bias, module.running_mean, module.running_var]


def build_densedepth(seed: int | None = None) -> DenseDepth:
    """The network in eval mode; with a seed, the weights TensorFlow's
    `build_densedepth(seed)` draws (`weight_layout.seeded_weights`)."""
    network = DenseDepth().eval()
    if seed is not None:
        network.set_keras_weights(seeded_weights(network.layout(), seed))
    return network


def load_published_weights(path: str) -> DenseDepth:
    """The network with every weight read from the HDF5 file at `path` by
    layer name, checked as the TensorFlow loader checks it
    (`weight_layout.match_weights`): only arrays are read, nothing in the
    file is deserialised, and any mismatch fails naming the layer."""
    import h5py  # only here: seeded weights and other families read no HDF5 file

    network = build_densedepth()
    with h5py.File(path, "r") as h5:
        matched = match_weights(weights_group(h5, path), network.layout(), path)
        network.set_keras_weights([[dataset[()] for dataset in layer] for layer in matched])
    return network


class LowResolutionDecoder(nn.Module):
    """The same function as a `DenseDepth`, up to fp32 rounding, with the
    costliest part of its decoder done at a quarter of the pixels.

    Each up block computes convA(cat(U x, skip)), with U the aligned-corner
    bilinear x2 upsample. convA is linear, so it splits by input channel
    into convA_x(U x) + convA_skip(skip) + bias; and convA_x(U x) is the sum
    over its nine taps t of shift_t(W_t U x) = shift_t(U(W_t x)), since U
    acts on each channel alone and W_t (the tap's channel mix) on each pixel
    alone. So the x half becomes nine 1x1 convolutions (one per tap) at low
    resolution, each upsampled and added with its shift (the shift's zero
    fill is convA's zero padding). conv2 (1x1, no activation before up1)
    folds into up1's mixes. The decoder does far fewer multiply-adds
    (BENCHMARKS.md, "Depth on CPU", counts them and measures the time and
    memory).

    It shares the encoder and convB/conv3 with `network`; the new weights are
    combined in float64 and stored as float32.
    """

    def __init__(self, network: DenseDepth):
        super().__init__()
        self.network = network
        self.mixes = nn.ModuleDict()
        self.skip_conv = nn.ModuleDict()
        layers = network.layers
        pre = layers["conv2"]
        x_channels = DECODER_FILTERS
        for block in UP_BLOCKS:
            conv_a = layers[_module_key(f"{block.name}_convA")]
            self.mixes[block.name] = _tap_mixes(conv_a, x_channels, pre)
            self.skip_conv[block.name] = _skip_half(conv_a, x_channels)
            pre, x_channels = None, block.filters
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x, skips = self.network.encode(images)
        for block in UP_BLOCKS:
            conv_a_output = self.skip_conv[block.name](skips[block.skip])
            # One tap at a time: all nine at once would hold 9 x Cout
            # full-resolution channels, more peak memory for the same
            # arithmetic (BENCHMARKS.md, "Depth on CPU").
            for tap, mix in enumerate(self.mixes[block.name]):
                upsampled = F.interpolate(
                    mix(x), scale_factor=2, mode="bilinear", align_corners=True
                )
                _add_shifted(conv_a_output, upsampled, *divmod(tap, 3))
            x = self.network.finish_up_block(block.name, conv_a_output)
        return self.network.output(x)


def _tap_mixes(conv_a: nn.Conv2d, x_channels: int, pre: Optional[nn.Conv2d]) -> nn.ModuleList:
    """`weight_layout.tap_mixes` as nine 1x1 convolutions, one per tap."""
    folded = {}
    if pre is not None:
        folded = {"pre_kernel": _keras_kernel(pre), "pre_bias": pre.bias.detach().cpu().numpy()}
    mixes = nn.ModuleList()
    for kernel, bias in tap_mixes(_keras_kernel(conv_a), x_channels, **folded):
        mix = nn.Conv2d(*kernel.shape, 1)
        with torch.no_grad():
            mix.weight.copy_(torch.from_numpy(kernel.T[:, :, None, None].copy()))
            mix.bias.copy_(torch.from_numpy(bias))
        mixes.append(mix)
    return mixes


def _keras_kernel(conv: nn.Conv2d) -> np.ndarray:
    """(out, in, kh, kw) -> Keras's (kh, kw, in, out)."""
    return conv.weight.detach().cpu().permute(2, 3, 1, 0).numpy()


def _skip_half(conv_a: nn.Conv2d, x_channels: int) -> nn.Conv2d:
    """convA restricted to the skip's input channels, with convA's bias."""
    skip = nn.Conv2d(conv_a.in_channels - x_channels, conv_a.out_channels, 3, padding=1)
    with torch.no_grad():
        skip.weight.copy_(conv_a.weight[:, x_channels:])
        skip.bias.copy_(conv_a.bias)
    return skip


def _add_shifted(y: torch.Tensor, tap: torch.Tensor, ky: int, kx: int) -> None:
    """y[..., i, j] += tap[..., i + ky - 1, j + kx - 1], zero outside the
    image, in place: only the part of y whose source lies inside the image
    is touched, with no padded copy: one pass over that part, and no
    full-resolution temporary."""
    height, width = y.shape[2:]
    dy, dx = ky - 1, kx - 1
    top, bottom = max(0, -dy), height - max(0, dy)
    left, right = max(0, -dx), width - max(0, dx)
    y[:, :, top:bottom, left:right] += tap[:, :, top + dy : bottom + dy, left + dx : right + dx]
