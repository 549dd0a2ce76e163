"""What each --depth_model means, said once: the messages users see and the
error every loader raises. No TensorFlow."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

# The --depth_model values that are not a path to a model file.
PUBLISHED = "densedepth"
UNTRAINED = "untrained"
NONE = "none"

# --depth_precision: the arithmetic the model runs in; AUTO (below) lets each
# worker choose (fgbg/depth/precision.py). bf16 and fp16 run the convolutions
# and matrix products in that type (the rest in fp32); tf32 is a GPU's fp32
# on tensor units. The tensorflow runtime runs fp32 and bf16.
FP32 = "fp32"
BF16 = "bf16"
FP16 = "fp16"
TF32 = "tf32"
# What an ONNX export's int8 weights run in (the ONNX runtime records the
# precision its file holds: fgbg/depth/checkpoints.py).
INT8 = "int8"
TENSORFLOW_PRECISIONS = (FP32, BF16)
GPU_PRECISIONS = (FP16, TF32)  # what only the torch runtime on a GPU runs

# --depth_runtime: what runs the network (fgbg/depth/<runtime>_runtime.py).
TENSORFLOW = "tensorflow"
TORCH = "torch"
ONNX = "onnx"  # ONNX Runtime on the CPU, for a checkpoint's ONNX export
RUNTIMES = (TENSORFLOW, TORCH, ONNX)

# How composites reach the network size (the manifest's depth.input_resize):
# PIL's Lanczos on the CPU, as the original did, or --depth_resize_on_device.
LANCZOS_ON_CPU = "lanczos on the cpu"
BICUBIC_ON_DEVICE = "bicubic on the device"
BICUBIC_ON_CPU = "bicubic on the cpu"  # a transformers checkpoint's image processor

# --depth_device, for the torch runtime: the GPU when one is visible, or as
# named; and --depth_precision's default.
AUTO = "auto"
CPU = "cpu"
CUDA = "cuda"
DEVICES = (AUTO, CPU, CUDA)
PRECISIONS = (AUTO, FP32, BF16, FP16, TF32)

TORCH_KERAS_FILE_MESSAGE = (
    "--depth_runtime torch runs DenseDepth (--depth_model densedepth or untrained) "
    "and transformers checkpoints; a Keras model file needs --depth_runtime tensorflow"
)

UNTRAINED_WARNING = (
    "WARNING: depth maps were made by DenseDepth with seeded RANDOM weights "
    "(--depth_model untrained), not the published NYU weights: they are not "
    "depth estimates and must not be used for training."
)


def non_commercial_warning(model: str, licence: str) -> str:
    """The manifest's, summary's and report's warning for a checkpoint whose
    licence forbids commercial use (Depth Anything V2 Base and Large)."""
    return (
        f"WARNING: the depth model {model} is licensed {licence}: non-commercial use "
        "only. Its depth maps, and so this dataset, carry that restriction."
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


def source(model: str, weights: Optional[str]) -> Optional[str]:
    """Where --depth_model's model comes from: the weights file for the
    published model, else the model path itself (or its name)."""
    return weights if model == PUBLISHED else model


def model_file(model: str, weights: Optional[str]) -> Optional[str]:
    """The file --depth_model's model is read from, or None for the
    untrained model (built from the seed); refuses `none`, and the published
    model without --depth_weights. Both runtimes start their loading here."""
    if model == NONE:
        raise ModelLoadError("--depth_model none has no model: skip the depth stage")
    if model == UNTRAINED:
        return None
    found = source(model, weights)
    if not found:
        raise ModelLoadError(MISSING_WEIGHTS_MESSAGE)
    return found


class ModelLoadError(ValueError):
    """A model or weight file that cannot be used, with the reason."""


@contextlib.contextmanager
def reading_model_file(source: str) -> Iterator[None]:
    """Turn a missing or unreadable model file into ModelLoadError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {source}") from None
    except OSError as error:  # h5py's answer to a truncated or corrupt file
        raise ModelLoadError(f"{source}: not a readable model file ({error})") from error
