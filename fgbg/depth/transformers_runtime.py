"""The transformers runtime of the depth stage: a depth-estimation
checkpoint (fgbg/depth/checkpoints.py; Depth Anything V2 and any other that
`AutoModelForDepthEstimation` loads) on its device, its forward pass, and
the checkpoint's own image processor for the CPU's share of the work.

PyTorch runs it, as it runs DenseDepth in fgbg/depth/torch_runtime.py,
whose device choice, precisions and turn-taking it shares.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForDepthEstimation
from transformers.modeling_outputs import DepthEstimatorOutput
from transformers.utils import logging as transformers_logging

from fgbg.depth import checkpoints, thread_budget
from fgbg.depth.checkpoints import Checkpoint
from fgbg.depth.models import ModelLoadError
from fgbg.depth.torch_runtime import (
    check_weights_are_finite,
    composites_on_device,
    configure_cuda,
    forward_guard,
    forward_pass,
    resolve_device,
)


def image_processor(checkpoint: Checkpoint) -> Any:
    """The checkpoint's image processor, from its preprocessor_config.json.

    Pillow's backend: the same resize on every machine (the torchvision
    backend, chosen by default where torchvision is installed, resizes
    differently, and torchvision does not import beside the CPU build of
    PyTorch used here).
    """
    with tempfile.TemporaryDirectory(prefix="fgbg-processor-") as folder:
        with open(os.path.join(folder, checkpoints.PROCESSOR), "w") as out:
            json.dump(checkpoint.processor, out)
        return AutoImageProcessor.from_pretrained(folder, backend="pil")


def preprocess(processor: Any, composites: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    """uint8 NHWC composites as the processor prepares them (its resize to
    `input_size` (W, H), rescale and normalisation): float32 NCHW."""
    width, height = input_size
    prepared = processor(
        images=list(composites), size={"height": height, "width": width}, return_tensors="np"
    )
    return np.asarray(prepared["pixel_values"], dtype=np.float32)


def postprocess(processor: Any, raw: np.ndarray, out_size: Tuple[int, int]) -> np.ndarray:
    """The raw (N, h, w) predictions brought to `out_size` (W, H) by the
    processor's own post-processing (bicubic)."""
    width, height = out_size
    outputs = DepthEstimatorOutput(predicted_depth=torch.from_numpy(np.asarray(raw)))
    resized = processor.post_process_depth_estimation(
        outputs, target_sizes=[(height, width)] * len(raw)
    )
    return np.stack([one["predicted_depth"].numpy() for one in resized]).astype(np.float32)


class DepthModel:
    """A transformers depth network on its device, in eval mode, and its
    forward pass in the chosen precision: the torch runtime's contract
    (`predict` on network inputs, `predict_composites` on uint8 composites
    resized on the device), with predicted_depth (N, h, w) as the raw output.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        precision: str,
        compile_model: bool = False,
    ):
        configure_cuda(device, precision)
        self.device = device
        self.precision = precision
        self.network = network.eval().to(device)
        self._forward = torch.compile(self.network) if compile_model else self.network
        self._lock = forward_guard(device, compile_model)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def predict(self, pixel_values: np.ndarray) -> np.ndarray:
        """Raw output for NCHW float32 inputs the processor prepared."""
        batch = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32))
        return self._run(batch.to(self.device, non_blocking=True))

    def predict_composites(self, composites: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
        """Raw output for uint8 NHWC composites, resized to `input_size` on
        the device (bicubic, as the processor resizes) and normalised there
        (--depth_resize_on_device)."""
        images = composites_on_device(composites, input_size, self.device)
        return self._run((images - self._mean) / self._std)

    def _run(self, pixel_values: torch.Tensor) -> np.ndarray:
        with forward_pass(self.device, self.precision, self._lock):
            predicted = self._forward(pixel_values=pixel_values).predicted_depth
        return predicted.float().cpu().numpy()


def load_depth_model(
    checkpoint: Checkpoint,
    precision: str,
    device: str,
    compile_model: bool = False,
    threads: Optional[int] = None,
) -> DepthModel:
    """The runtime's entry point: the checkpoint's network (safetensors
    only, with the weights the launcher described) on `device`, on
    `threads` CPU threads (the process's budget, fgbg/depth/thread_budget.py;
    None: PyTorch's default, every core)."""
    thread_budget.apply_torch(threads)
    transformers_logging.disable_progress_bar()
    target = resolve_device(device)
    with checkpoints.local_folder(checkpoint) as folder:
        try:
            network = AutoModelForDepthEstimation.from_pretrained(
                folder, use_safetensors=True, dtype=torch.float32
            )
        except Exception as error:  # transformers' and safetensors' many ways to refuse a file
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelLoadError(
                f"{checkpoint.source}: transformers could not load it as a depth-estimation "
                f"model ({reason})"
            ) from error
    check_weights_are_finite(network, checkpoint.source)
    return DepthModel(
        network,
        target,
        checkpoint.processor.get("image_mean", (0.0, 0.0, 0.0)),
        checkpoint.processor.get("image_std", (1.0, 1.0, 1.0)),
        precision,
        compile_model,
    )
