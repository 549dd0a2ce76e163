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
from typing import FrozenSet, Optional, Tuple

from fgbg.depth import models
from fgbg.depth.config import DepthConfig

# Fastest first where the hardware has units for it: bf16 before fp16 (the
# same speed on GPU tensor units, fp32's range), TF32 (a GPU's fp32
# convolutions on tensor units), fp32 last.
FASTEST_FIRST = (models.BF16, models.FP16, models.TF32, models.FP32)

# The precisions whose written maps met the rule for DenseDepth (the
# published architecture; seeded weights, its last layer scaled to a room's
# depths) on every weight seed and input set measured, per (runtime,
# encoding, dataset side, JPEG quality or None for metric). BENCHMARKS.md,
# "Depth precision", has the figures and the command; tests/test_precision.py
# recomputes them at a tiny size. bf16 is in no entry: it failed the rule on
# some seeds for both encodings in both runtimes. Settings not measured, or
# measured with no precision passing, resolve `auto` to fp32.
MEETS_RULE = {
    (models.TORCH, "minmax", 224, 85): (models.FP16,),
}

# /proc/cpuinfo flags of the CPUs with bfloat16 units oneDNN uses.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def encoding_key(config: DepthConfig) -> Tuple[str, str, int, Optional[int]]:
    """The build's runtime and depth encoding, as MEETS_RULE keys them."""
    quality = config.jpeg_quality if config.encoding == "minmax" else None
    return config.runtime, config.encoding, max(config.out_size), quality


def meets_rule(config: DepthConfig) -> Tuple[str, ...]:
    """The precisions measured to meet the rule for this build's encoding;
    none for a model other than DenseDepth, which was not measured."""
    if config.model not in (models.PUBLISHED, models.UNTRAINED):
        return ()
    return MEETS_RULE.get(encoding_key(config), ())


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


def offered(config: DepthConfig) -> Tuple[str, ...]:
    """Precisions the device this worker's model runs on offers natively."""
    if config.runtime == models.TORCH and config.device != models.CPU:
        import torch

        if torch.cuda.is_available():
            return gpu_offers(torch.cuda.get_device_capability())
    return cpu_offers()


def resolve(config: DepthConfig) -> str:
    """The precision this worker runs: `auto` is the fastest one the device
    offers that met the rule for the build's encoding, else fp32; a named
    one must be offered, so that what the records say is what ran."""
    here = offered(config)
    if config.precision == models.AUTO:
        good = meets_rule(config)
        return next(p for p in FASTEST_FIRST if p in here and (p in good or p == models.FP32))
    if config.precision not in here:
        raise models.ModelLoadError(
            f"--depth_precision {config.precision}: this worker's hardware does not "
            f"run it natively (it offers {', '.join(here)}); pass --depth_precision "
            "auto or fp32"
        )
    return config.precision
