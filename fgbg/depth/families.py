"""Depth models as families behind one interface, so the depth stage
(transforms/depth.py) never asks which one it runs.

A family says how its network is loaded (on which runtime and device, in
which precision), how composites become its inputs on the CPU, how its raw
outputs become maps, and what those maps hold (`maps.MapContent`), which
decides how they are encoded and described.

- DenseDepth: the published NYU weights, the untrained architecture or a
  Keras model file, on the TensorFlow or the PyTorch runtime; Lanczos to the
  network size, and the authors' clip(1000 / y) as metric depth.
- TransformersCheckpoint: a transformers depth-estimation checkpoint
  (Depth Anything V2), on PyTorch, with the checkpoint's own image
  processor before and after the network.
- OnnxExport: the same checkpoint's ONNX export, on ONNX Runtime, with the
  same processor's steps in numpy and Pillow (no PyTorch, no transformers).

Nothing here imports TensorFlow, PyTorch, transformers or onnxruntime: each
family imports its runtime when a worker first needs it.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

import numpy as np

from fgbg.depth import image_processor, maps, models
from fgbg.depth.config import DepthConfig


class DepthFamily(abc.ABC):
    """One kind of depth network, configured by the depth stage's config."""

    def __init__(self, config: DepthConfig):
        self.config = config

    @property
    @abc.abstractmethod
    def content(self) -> maps.MapContent:
        """What `postprocess`'s maps hold."""

    @abc.abstractmethod
    def load(self, precision: str) -> Any:
        """The network on its device, ready to run in `precision`: its
        `predict(inputs)` takes `preprocess`'s output, its
        `predict_composites(composites, input_size)` uint8 composites that it
        resizes on its device; both return the raw output."""

    @abc.abstractmethod
    def preprocess(self, composites: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) composites as the network takes them, on the CPU."""

    @abc.abstractmethod
    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """The raw output of a batch as (N, h, w) or (N, h, w, 1) maps."""


class DenseDepth(DepthFamily):
    """DenseDepth (Alhashim and Wonka, 2018), as the original notebook ran it."""

    @property
    def content(self) -> maps.MapContent:
        return maps.DENSEDEPTH_CONTENT

    def load(self, precision: str) -> Any:
        config = self.config
        if config.runtime == models.TORCH:
            from fgbg.depth import torch_runtime

            return torch_runtime.load_depth_model(
                config.model,
                config.weights,
                config.seed,
                precision,
                config.device,
                config.compile_model,
                config.threads,
            )
        from fgbg.depth import tensorflow_runtime

        return tensorflow_runtime.load_depth_model(
            config.model, config.weights, config.seed, precision, config.threads
        )

    def preprocess(self, composites: np.ndarray) -> np.ndarray:
        return maps.preprocess(composites, self.config.input_size)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return maps.postprocess(raw)


class TransformersCheckpoint(DepthFamily):
    """A transformers depth-estimation checkpoint (fgbg/depth/checkpoints.py).

    Its image processor is built once per worker process, on first use, in
    the process that prepares the batches (which, with a model shared
    across processes, is not the one that loaded the network).
    """

    def __init__(self, config: DepthConfig):
        super().__init__(config)
        self._processor: Optional[Any] = None

    def __getstate__(self):
        return {**self.__dict__, "_processor": None}

    @property
    def content(self) -> maps.MapContent:
        return self.config.checkpoint.content

    def load(self, precision: str) -> Any:
        from fgbg.depth import transformers_runtime

        config = self.config
        return transformers_runtime.load_depth_model(
            config.checkpoint, precision, config.device, config.compile_model, config.threads
        )

    def preprocess(self, composites: np.ndarray) -> np.ndarray:
        from fgbg.depth import transformers_runtime

        return transformers_runtime.preprocess(
            self._image_processor(), composites, self.config.input_size
        )

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        from fgbg.depth import transformers_runtime

        return transformers_runtime.postprocess(self._image_processor(), raw, self.config.out_size)

    def _image_processor(self) -> Any:
        if self._processor is None:
            from fgbg.depth import transformers_runtime

            self._processor = transformers_runtime.image_processor(self.config.checkpoint)
        return self._processor


class OnnxExport(DepthFamily):
    """A checkpoint's ONNX export (fgbg/depth/onnx_runtime.py), prepared and
    post-processed as its image processor does (fgbg/depth/image_processor.py),
    so its maps are the transformers runtime's."""

    @property
    def content(self) -> maps.MapContent:
        return self.config.checkpoint.content

    def load(self, precision: str) -> Any:
        """The export, in the precision its file holds (`precision`, which
        `precision.resolve` read from it)."""
        from fgbg.depth import onnx_runtime

        return onnx_runtime.load_depth_model(self.config.checkpoint, self.config.threads)

    def preprocess(self, composites: np.ndarray) -> np.ndarray:
        processor = self.config.checkpoint.processor
        return image_processor.preprocess(processor, composites, self.config.input_size)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return image_processor.postprocess(raw, self.config.out_size)


def family(config: DepthConfig) -> DepthFamily:
    """The family that runs this configuration's model."""
    if config.checkpoint is None:
        return DenseDepth(config)
    if config.checkpoint.runtime == models.ONNX:
        return OnnxExport(config)
    return TransformersCheckpoint(config)
