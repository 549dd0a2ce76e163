"""Which precision a worker's depth model runs in: `--depth_precision auto`
resolved on the worker, against what its hardware offers and what the
rule (fgbg/depth/precision_rule.py) passed for the build's encoding.

Resolved where the model runs because a launcher cannot know its workers'
hardware (a Dataflow job's VMs, a GPU machine). The same function answers
the depth stage (which precision to run) and the pair stages (which
precision a finished pair's maps must have been made in to be reused), so a
resume on other hardware remakes pairs instead of mixing precisions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import FrozenSet, Tuple

from fgbg.depth import models
from fgbg.depth.config import DepthConfig

# Fastest first where the hardware has units for it: bf16 before fp16 (the
# same speed on GPU tensor units, fp32's range), TF32 (a GPU's fp32
# convolutions on tensor units), fp32 last.
FASTEST_FIRST = (models.BF16, models.FP16, models.TF32, models.FP32)

# The precisions whose written maps met the rule for DenseDepth (its
# architecture with seeded weights, the last layer scaled to a room's
# depths) on every weight seed and input set measured, keyed by where and
# how they were measured: (runtime, device kind, network input, device
# resize, encoding, dataset side, JPEG quality or None for metric); the
# device kind also decides the decoder (fgbg/depth/torch_runtime.py).
# BENCHMARKS.md, "Depth precision", has the figures and the command;
# tests/test_precision.py recomputes the CPU entries at a tiny size. bf16 is
# in no entry: it failed the rule on some seeds for both encodings in both
# runtimes. fp16 passed on the CPU, which does not run it natively, so today
# `auto` resolves to fp32 everywhere; GPU entries wait for the rule to run on
# a GPU (bench/gpu_machine.sh). The published nyu.h5 was not checked.
MEETS_RULE = {
    (models.TORCH, models.CPU, (640, 480), False, "minmax", 224, 85): (models.FP16,),
}

# /proc/cpuinfo flags of the CPUs with bfloat16 units oneDNN uses.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def device_kind(config: DepthConfig) -> str:
    """Where this worker's model runs: "cuda" for the torch runtime on a
    visible GPU, else "cpu". (`torch.cuda.is_available` creates no CUDA
    context, so the stages that only ask cost the GPU nothing.)"""
    if config.runtime == models.TORCH and config.device != models.CPU:
        import torch

        if torch.cuda.is_available():
            return models.CUDA
    return models.CPU


def rule_key(config: DepthConfig, device: str) -> Tuple:
    """The build's depth settings as MEETS_RULE keys them."""
    quality = config.jpeg_quality if config.encoding == "minmax" else None
    return (
        config.runtime,
        device,
        tuple(config.input_size),
        config.resize_on_device,
        config.encoding,
        max(config.out_size),
        quality,
    )


def meets_rule(config: DepthConfig, device: str) -> Tuple[str, ...]:
    """The precisions measured to meet the rule for this build's settings on
    this kind of device; none for a model file other than DenseDepth's."""
    if config.model not in (models.PUBLISHED, models.UNTRAINED):
        return ()
    return MEETS_RULE.get(rule_key(config, device), ())


@functools.lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
    """This machine's CPU feature flags (none where /proc/cpuinfo is absent)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_offers() -> Tuple[str, ...]:
    """Precisions this CPU runs natively."""
    bf16 = (models.BF16,) if cpu_flags() & CPU_BF16_FLAGS else ()
    return bf16 + (models.FP32,)


def gpu_offers(capability: Tuple[int, int]) -> Tuple[str, ...]:
    """Precisions a CUDA GPU of this compute capability runs on tensor units."""
    if capability >= (8, 0):
        return (models.BF16, models.FP16, models.TF32, models.FP32)
    if capability >= (7, 0):
        return (models.FP16, models.FP32)
    return (models.FP32,)


def offered(device: str) -> Tuple[str, ...]:
    """Precisions this worker's device runs natively. On a GPU, asking
    initialises CUDA in the process, so only what needs the answer asks."""
    if device == models.CUDA:
        import torch

        return gpu_offers(torch.cuda.get_device_capability())
    return cpu_offers()


def resolve(config: DepthConfig) -> str:
    """The precision this worker runs: `auto` is the fastest one that met
    the rule for the build's settings and that the device runs natively,
    else fp32; a named one must run natively, so that what the records say
    is what ran. An ONNX export runs in the precision its file holds, which
    the options checked against a named one."""
    if config.checkpoint is not None and config.checkpoint.runtime == models.ONNX:
        return config.checkpoint.onnx_precision
    if config.precision == models.FP32:
        return models.FP32
    device = device_kind(config)
    if config.precision == models.AUTO:
        good = meets_rule(config, device)
        if not good:
            return models.FP32
        here = offered(device)
        return next((p for p in FASTEST_FIRST if p in good and p in here), models.FP32)
    here = offered(device)
    if config.precision not in here:
        raise models.ModelLoadError(
            f"--depth_precision {config.precision}: this worker's hardware does not "
            f"run it natively (it offers {', '.join(here)}); pass --depth_precision "
            "auto or fp32"
        )
    return config.precision
