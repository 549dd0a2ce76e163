"""Depth Anything V2 checkpoints with seeded weights, laid out as the
published ones (config.json, model.safetensors, preprocessor_config.json,
a model card), for tests and benchmarks on machines that cannot download
the published weights. Their maps are not depth.

Sizes: "small", Depth-Anything-V2-Small's architecture (24.8M parameters),
for measuring its cost; "tiny", the same design a few hundred times
smaller, for tests. Weights are drawn He-normal (a freshly initialised
model's 0.02-scaled weights give nearly constant maps) and a relative
head's last bias is positive (its ReLU would otherwise zero the map), so
maps vary with the image.

`export_onnx` makes a checkpoint's ONNX export in the Hub's layout (as
onnx-community's exports are laid out), `quantize` its int8 sibling.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

import torch
from transformers import (
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTImageProcessorPil,
)

# (hidden size, layers, heads, MLP size, layers read, neck sizes, fusion size)
_SIZES = {
    "small": (384, 12, 6, 1536, (3, 6, 9, 12), (48, 96, 192, 384), 64),
    "tiny": (32, 4, 2, 64, (1, 2, 3, 4), (8, 16, 32, 32), 16),
}
PATCH = 14
INPUT_SIDE = 518  # the published processor's


def config(size: str, metric: bool = False, max_depth: int = 20) -> DepthAnythingConfig:
    """The architecture of `size`; metric heads predict metres up to `max_depth`."""
    hidden, layers, heads, mlp, read, neck, fusion = _SIZES[size]
    backbone = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=mlp,
        patch_size=PATCH,
        image_size=INPUT_SIDE,
        out_indices=list(read),
        reshape_hidden_states=False,
    )
    extra = {"depth_estimation_type": "metric", "max_depth": max_depth} if metric else {}
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=PATCH,
        reassemble_hidden_size=hidden,
        neck_hidden_sizes=list(neck),
        fusion_hidden_size=fusion,
        **extra,
    )


def seeded_model(size: str, seed: int, metric: bool = False, max_depth: int = 20):
    """The network of `size` with weights drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config(size, metric, max_depth)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                fan_in = parameter[0].numel()
                parameter.copy_(
                    torch.randn(parameter.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
        if not metric:
            model.head.conv3.bias.fill_(1.0)
    return model


def write(
    folder: str,
    size: str = "tiny",
    seed: int = 0,
    metric: bool = False,
    max_depth: int = 20,
    licence: Optional[str] = "apache-2.0",
) -> str:
    """A checkpoint folder as the Hub serves Depth Anything V2's; returns it."""
    os.makedirs(folder, exist_ok=True)
    seeded_model(size, seed, metric, max_depth).save_pretrained(folder, safe_serialization=True)
    DPTImageProcessorPil(
        do_resize=True,
        size={"height": INPUT_SIDE, "width": INPUT_SIDE},
        keep_aspect_ratio=True,
        ensure_multiple_of=PATCH,
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    ).save_pretrained(folder)
    if licence:
        with open(os.path.join(folder, "README.md"), "w") as card:
            card.write(f"---\nlicense: {licence}\n---\n# Seeded Depth Anything V2 ({size})\n")
    return folder


def parameter_count(size: str) -> int:
    return sum(p.numel() for p in DepthAnythingForDepthEstimation(config(size)).parameters())


class _PredictedDepth(torch.nn.Module):
    """The network as exported: pixel_values in, predicted_depth out."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=pixel_values).predicted_depth


def export_onnx(checkpoint: str, folder: str, side: int) -> str:
    """The checkpoint folder's network exported to ONNX as the Hub lays an
    export out: `folder` gets its config.json, preprocessor_config.json,
    model card and onnx/model.onnx (no safetensors); returns `folder`.

    The batch is dynamic; height and width are fixed at `side`: the head
    computes its output size with int(), which torch.export specialises
    to the example's (the Hub's exports are dynamic in both).
    """
    from transformers import DepthAnythingForDepthEstimation

    from fgbg.depth import checkpoints

    os.makedirs(os.path.join(folder, "onnx"), exist_ok=True)
    for name in (checkpoints.CONFIG, checkpoints.PROCESSOR, checkpoints.MODEL_CARD):
        if os.path.exists(os.path.join(checkpoint, name)):
            shutil.copyfile(os.path.join(checkpoint, name), os.path.join(folder, name))
    network = DepthAnythingForDepthEstimation.from_pretrained(checkpoint).eval()
    example = torch.zeros(2, 3, side, side)
    torch.onnx.export(
        _PredictedDepth(network).eval(),
        (example,),
        os.path.join(folder, checkpoints.ONNX_WEIGHTS),
        dynamo=True,
        input_names=["pixel_values"],
        output_names=["predicted_depth"],
        dynamic_shapes={"pixel_values": {0: torch.export.Dim.DYNAMIC}},
        external_data=False,
        verbose=False,
    )
    return folder


def quantize(folder: str, name: str = "onnx/model_quantized.onnx") -> str:
    """The export's int8 sibling as the Hub's model_quantized.onnx is made:
    onnxruntime's quantize_dynamic (int8 weights, activations quantised per
    batch). Returns its path inside `folder`."""
    from onnxruntime.quantization import quantize_dynamic

    from fgbg.depth import checkpoints

    quantize_dynamic(os.path.join(folder, checkpoints.ONNX_WEIGHTS), os.path.join(folder, name))
    return name
