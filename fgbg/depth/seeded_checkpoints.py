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
"""

from __future__ import annotations

import os
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
