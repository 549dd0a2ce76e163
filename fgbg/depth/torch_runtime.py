"""The PyTorch runtime of the depth stage (--depth_runtime torch): DenseDepth
(fgbg/depth/torch_densedepth.py) loaded, placed on its device, and its
forward pass.

The same two names as fgbg/depth/tensorflow_runtime.py, `load_depth_model`
and `DepthModel.predict`, with the same contract: NHWC RGB in [0, 1] in,
the raw output (N, H/2, W/2, 1) as float32 out. It runs the published
weights and the untrained model only; a user's Keras model file needs the
TensorFlow runtime.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from fgbg.depth import models, thread_budget
from fgbg.depth.models import ModelLoadError
from fgbg.depth.torch_densedepth import (
    DenseDepth,
    LowResolutionDecoder,
    build_densedepth,
    load_published_weights,
)
from fgbg.storage import local_copy


def load_network(model: str, weights: Optional[str], seed: int) -> DenseDepth:
    """The network --depth_model / --depth_weights name, on the CPU, or fail
    with ModelLoadError naming the file and the reason."""
    source = models.model_file(model, weights)
    if source is None:
        return build_densedepth(seed)
    if model != models.PUBLISHED:
        raise ModelLoadError(models.TORCH_KERAS_FILE_MESSAGE)
    with models.reading_model_file(source), local_copy(source) as path:
        network = load_published_weights(path)
    check_weights_are_finite(network, source)
    return network


def check_weights_are_finite(network: torch.nn.Module, source: str) -> None:
    """Refuse weights holding NaN or infinity, naming the layer: they would
    write meaningless depth for every sample."""
    for name, tensor in network.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{source}: weight {name!r} holds NaN or infinite values")


def resolve_device(device: str) -> torch.device:
    """'auto' is the GPU when this process sees one, else the CPU; 'cuda'
    without a visible GPU fails here, naming the option."""
    if device == models.AUTO:
        return torch.device(models.CUDA if torch.cuda.is_available() else models.CPU)
    if device == models.CUDA and not torch.cuda.is_available():
        raise ModelLoadError("--depth_device cuda: PyTorch sees no CUDA GPU in this process")
    return torch.device(device)


class DepthModel:
    """The network on its device, in eval mode, channels_last, and its
    forward pass in the chosen precision.

    On a CPU the decoder runs at low resolution (`LowResolutionDecoder`: the
    same function up to fp32 rounding, with fewer multiply-adds); on a GPU
    the network runs as written, which is faster there: its many small
    per-tap kernels cost a GPU more than the multiply-adds they save
    (BENCHMARKS.md, "Depth on a GPU"). `low_resolution_decoder` overrides
    the choice, for comparisons.

    channels_last: the NHWC batch the stage hands over becomes an NCHW view
    with no copy, and oneDNN (CPU) and cuDNN (GPU) pick their fastest
    convolutions for that layout. bf16 and fp16 run under autocast
    (convolutions and matrix products in that type, the rest in fp32); tf32
    is fp32 with a GPU's convolutions and matrix products on TensorFloat-32.
    `torch.compile` is optional: it pays a compile per input shape for faster
    batches on a GPU.
    Safe to call from the threads that share the model in a worker process;
    on a GPU, and with `torch.compile`, they take turns (`forward_guard`).
    """

    def __init__(
        self,
        network: DenseDepth,
        device: torch.device,
        precision: str = models.FP32,
        compile_model: bool = False,
        low_resolution_decoder: Optional[bool] = None,
    ):
        self.device = device
        self.precision = precision
        configure_cuda(device, precision)
        if low_resolution_decoder is None:
            low_resolution_decoder = low_resolution_decoder_wins(device)
        module = LowResolutionDecoder(network) if low_resolution_decoder else network
        self.network = module.eval().to(device=device, memory_format=torch.channels_last)
        self._forward = torch.compile(self.network) if compile_model else self.network
        self._lock = forward_guard(device, compile_model)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Raw output for NHWC float32 images already at the network size."""
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return self._run(batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2))

    def predict_composites(self, composites: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
        """Raw output for uint8 NHWC composites at any size, resized to
        `input_size` (W, H) on the device (--depth_resize_on_device).

        Bicubic, not the original's Lanczos, which PyTorch does not have:
        BENCHMARKS.md ("Depth on CPU") measures what that changes in the
        depth maps. It moves the resize, PIL's largest cost per image, off
        the CPU, and a uint8 composite is 1/24 of the bytes of its float32
        640x480 input, which is what crosses to a GPU, or to a model shared
        across worker processes.
        """
        return self._run(composites_on_device(composites, input_size, self.device))

    def _run(self, images: torch.Tensor) -> np.ndarray:
        images = images.contiguous(memory_format=torch.channels_last)
        with forward_pass(self.device, self.precision, self._lock):
            raw = self._forward(images)
        return raw.float().permute(0, 2, 3, 1).cpu().numpy()


def configure_cuda(device: torch.device, precision: str) -> None:
    """Process-wide settings for a GPU's forward passes (a worker process
    holds one depth model). Convolution shapes repeat batch after batch: let
    cuDNN time its algorithms once per shape and keep the fastest. fp32
    means fp32: cuDNN would otherwise run convolutions in TF32, which is a
    precision of its own (fgbg/depth/precision.py)."""
    if device.type != models.CUDA:
        return
    torch.backends.cudnn.benchmark = True
    fp32 = precision == models.FP32
    torch.backends.cudnn.allow_tf32 = not fp32
    torch.backends.cuda.matmul.allow_tf32 = not fp32


def composites_on_device(
    composites: np.ndarray, input_size: Tuple[int, int], device: torch.device
) -> torch.Tensor:
    """uint8 NHWC composites as NCHW floats in [0, 1] on `device`, resized
    to `input_size` (W, H) there with bicubic interpolation."""
    batch = torch.from_numpy(np.ascontiguousarray(composites, dtype=np.uint8))
    images = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    width, height = input_size
    if tuple(images.shape[-2:]) != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bicubic", align_corners=False)
    return images.clamp(0, 255) / 255


# The precisions that run under autocast, and in which dtype.
_AUTOCAST = {models.BF16: torch.bfloat16, models.FP16: torch.float16}


@contextlib.contextmanager
def forward_pass(device: torch.device, precision: str, lock) -> Iterator[None]:
    """A forward pass's context: its turn (`forward_guard`), no autograd,
    and autocast for the precisions that run under it."""
    dtype = _AUTOCAST.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    with lock, torch.inference_mode(), autocast:
        yield


def low_resolution_decoder_wins(device: torch.device) -> bool:
    """Whether the low-resolution decoder is the faster path on `device`:
    yes on CPUs, no on a GPU (BENCHMARKS.md, "Depth on CPU" and "Depth on a
    GPU")."""
    return device.type == models.CPU


def forward_guard(device: torch.device, compile_model: bool):
    """The guard around a forward pass. A shared model is called from
    several threads. On a GPU the calls run one after another anyway, but
    each would hold a batch's activations meanwhile, so many worker
    processes sharing one model can fill the GPU's memory (BENCHMARKS.md,
    "Depth on a GPU"). torch.compile's tracing is not documented as
    thread-safe. So those take turns (only the forward pass: each caller's
    input, resized on the device, waits outside); CPU calls overlap (each
    uses its own threads)."""
    if device.type == models.CUDA or compile_model:
        return threading.Lock()
    return contextlib.nullcontext()


def load_depth_model(
    model: str,
    weights: Optional[str],
    seed: int,
    precision: str = models.FP32,
    device: str = models.AUTO,
    compile_model: bool = False,
    threads: Optional[int] = None,
) -> DepthModel:
    """The runtime's entry point: the named model on `device`, ready to
    predict in `precision`, on `threads` CPU threads (the process's budget,
    fgbg/depth/thread_budget.py; None: PyTorch's default, every core)."""
    thread_budget.apply_torch(threads)
    target = resolve_device(device)
    return DepthModel(load_network(model, weights, seed), target, precision, compile_model)
