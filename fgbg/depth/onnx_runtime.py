"""The ONNX runtime of the depth stage: a depth-estimation checkpoint's ONNX
export (fgbg/depth/checkpoints.py: `onnx/model.onnx` in the Hub's layout)
in an ONNX Runtime session on the CPU, and its forward pass.

The light runtime: onnxruntime is a small CPU wheel, and nothing here
needs PyTorch or transformers (the checkpoint's processor runs in numpy and
Pillow, fgbg/depth/image_processor.py), so the quick start's environment
makes real depth maps.

Where this departs from Beam's `apache_beam.ml.inference.onnx_inference`
(OnnxModelHandlerNumpy) and ONNX Runtime's defaults, and why:
- the stage keeps its one handler (transforms/depth.py) for every runtime,
  so this is a family's model, not a ModelHandler;
- the session is built from the checkpoint's local file, not from bytes
  that `onnx.load` parsed and re-serialised: external weights beside the
  file resolve, the worker holds no second copy of the model, the `onnx`
  package is not needed at run time, and the file is the one whose digest
  the launcher recorded (`checkpoints.local_folder`);
- the CPU provider only (Beam lists CUDA's first, which a CPU wheel warns
  about): this runtime is for machines without a GPU;
- SessionOptions: ONNX Runtime's own (every graph optimisation, its
  memory arena, a thread per core), except `intra_op_num_threads` when
  `threads` is given (a worker's share of the machine), and no graph
  optimisation for the launcher's check that the file loads.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import onnxruntime

from fgbg.depth import checkpoints
from fgbg.depth.checkpoints import Checkpoint
from fgbg.depth.models import ModelLoadError

PROVIDERS = ["CPUExecutionProvider"]


def session_options(threads: Optional[int] = None, optimise: bool = True):
    """ONNX Runtime's SessionOptions with the departures the module
    docstring lists; `optimise=False` only parses and checks the graph."""
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not optimise:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class DepthModel:
    """An ONNX export in an ONNX Runtime session: the depth families'
    contract (`predict` on the processor's NCHW float32 inputs, the raw
    (N, h, w) output back), in the precision its file holds."""

    def __init__(self, session: onnxruntime.InferenceSession, checkpoint: Checkpoint):
        self.session = session
        self.precision = checkpoint.onnx_precision
        self._name = f"{checkpoint.source}: {checkpoint.onnx_file}"
        self._input = session.get_inputs()[0].name
        self._fixed = fixed_size(session)

    def predict(self, pixel_values: np.ndarray) -> np.ndarray:
        """Raw output for NCHW float32 inputs the processor prepared."""
        size = (pixel_values.shape[3], pixel_values.shape[2])
        if self._fixed not in (None, size):
            raise ValueError(size_message(self._name, self._fixed, size))
        batch = np.ascontiguousarray(pixel_values, dtype=np.float32)
        raw = self.session.run(None, {self._input: batch})[0]
        return raw[:, 0] if raw.ndim == 4 else raw


def fixed_size(session: onnxruntime.InferenceSession) -> Optional[Tuple[int, int]]:
    """(W, H) of the inputs an export takes when it was exported for one
    size only (named dimensions are dynamic), else None."""
    height, width = session.get_inputs()[0].shape[2:]
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    return None


def size_message(name: str, fixed: Tuple[int, int], size: Tuple[int, int]) -> str:
    """The error for inputs of another size than a fixed-size export takes
    (onnxruntime's own names neither the file nor the fix)."""
    return (
        f"{name} was exported for {fixed[0]}x{fixed[1]} inputs, not {size[0]}x{size[1]}: "
        f"pass --depth_input_size {fixed[0]}x{fixed[1]}, or export it with a dynamic "
        "height and width"
    )


def session(checkpoint: Checkpoint, threads: Optional[int] = None, optimise: bool = True):
    """An ONNX Runtime session of the checkpoint's export, with the digest
    the launcher described; ModelLoadError naming the file when ONNX
    Runtime refuses it."""
    with checkpoints.local_folder(checkpoint) as folder:
        path = os.path.join(folder, checkpoint.onnx_file)
        try:
            return onnxruntime.InferenceSession(
                path, sess_options=session_options(threads, optimise), providers=PROVIDERS
            )
        except Exception as error:  # onnxruntime's Fail, InvalidProtobuf, InvalidGraph, ...
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelLoadError(
                f"{checkpoint.source}: {checkpoint.onnx_file} is not an ONNX model ONNX "
                f"Runtime can load ({reason})"
            ) from error


def check_loads(checkpoint: Checkpoint) -> Optional[Tuple[int, int]]:
    """ModelLoadError unless ONNX Runtime reads the export: parsed, its
    graph checked, not optimised (the launcher's check, before any worker).
    Returns the one input size (W, H) it takes, or None for any."""
    return fixed_size(session(checkpoint, threads=1, optimise=False))


def load_depth_model(checkpoint: Checkpoint, threads: Optional[int] = None) -> DepthModel:
    """The runtime's entry point: the checkpoint's ONNX export in a session
    on the CPU; `threads` sets its intra-op threads (None: ONNX Runtime's
    own choice, a thread per core)."""
    return DepthModel(session(checkpoint, threads), checkpoint)
