"""The TensorFlow runtime of the depth stage: which model --depth_model names,
loaded, and its forward pass.

The depth stage (transforms/depth.py) needs two things from a runtime:
`load_depth_model(model, weights, seed, precision)` and the `predict` of
what it returns. fgbg/depth/torch_runtime.py has the same two, its loader
with the torch runtime's device options after these.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from fgbg.depth import models, thread_budget
from fgbg.depth.keras_densedepth import (
    LowResolutionDecoder,
    build_densedepth,
    load_published_weights,
)
from fgbg.depth.models import ModelLoadError
from fgbg.depth.safe_loading import load_keras_model_safely
from fgbg.storage import local_copy


def load_keras_model(model: str, weights: Optional[str], seed: int) -> tf_keras.Model:
    """The Keras model named by --depth_model / --depth_weights.

    - "densedepth": the architecture built here with the published weights
      from `weights` (local or gs://) copied in by layer name
      (`load_published_weights`, the default way to load nyu.h5).
    - "untrained": the same architecture with weights drawn from `seed`.
    - anything else: a path (local or gs://) to a Keras model file (.h5,
      .keras) or SavedModel directory, inspected before it is deserialised
      (`load_keras_model_safely`). Passing nyu.h5 itself here is the second
      way to load the published file: Keras `load_model` with the custom
      objects. The contract is DenseDepth's: NHWC RGB in [0, 1] in, one
      channel out whose values `maps.postprocess` turns into depth
      (clip(1000 / y, 10, 1000) / 1000), at any resolution.
    """
    source = models.model_file(model, weights)
    if source is None:
        return build_densedepth(seed)
    with models.reading_model_file(source), local_copy(source) as path:
        if model == models.PUBLISHED:
            loaded = load_published_weights(path)
        else:
            loaded = load_keras_model_safely(path, source=model)
    check_weights_are_finite(loaded, source)
    return loaded


def check_weights_are_finite(model: tf_keras.Model, source: str) -> None:
    """Refuse a model whose weights hold NaN or infinity, naming the weight:
    it would write meaningless depth for every sample."""
    for weight in model.weights:
        if not np.isfinite(weight.numpy()).all():
            raise ModelLoadError(f"{source}: weight {weight.name!r} holds NaN or infinite values")


class DepthModel:
    """A loaded depth model and its traced forward pass.

    For the DenseDepth architecture built here (`low_resolution_decoder`:
    the published weights or untrained), the pass is
    `keras_densedepth.LowResolutionDecoder`, the same function with part of
    the decoder at low resolution; a user's model file runs as written.

    A tf.function traced once per input shape: static shapes let TensorFlow
    specialise the graph, and the stage sees one shape per run, since it
    fills every CPU batch to the batch size (transforms/depth.py's
    `full_batch`). Safe to call from the threads that share the model in a
    worker process.
    """

    def __init__(self, model: tf_keras.Model, low_resolution_decoder: bool = False):
        self.model = model
        if low_resolution_decoder:
            self._forward = tf.function(LowResolutionDecoder(model))
        else:
            self._forward = tf.function(lambda images: model(images, training=False))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images).numpy()


def load_depth_model(
    model: str,
    weights: Optional[str],
    seed: int,
    precision: str = models.FP32,
    threads: Optional[int] = None,
) -> DepthModel:
    """The runtime's entry point: the named model, ready to predict in
    `precision` (fp32 or bf16, as fgbg/depth/precision.py resolved it), on
    `threads` intra- and inter-op threads (the process's budget,
    fgbg/depth/thread_budget.py; None: TensorFlow's default, every core), set
    before anything here starts TensorFlow's context.

    bf16 turns on oneDNN's automatic mixed precision for the worker process
    (TensorFlow's graph rewrite runs convolutions and matrix products in
    bfloat16 on the CPU's avx512_bf16 or AMX units, and keeps the rest in
    fp32). It is a process-wide TensorFlow setting, made here because a
    worker process holds one depth model.
    """
    if precision not in models.TENSORFLOW_PRECISIONS:
        raise ModelLoadError(
            f"--depth_precision {precision} needs --depth_runtime torch; the tensorflow "
            f"runtime runs {', '.join(models.TENSORFLOW_PRECISIONS)}"
        )
    thread_budget.apply_tensorflow(threads)
    # Set either way: a process that loaded a bf16 model before must not run
    # this one in bf16 too.
    tf.config.optimizer.set_experimental_options(
        {"auto_mixed_precision_onednn_bfloat16": precision == models.BF16}
    )
    densedepth = model in (models.PUBLISHED, models.UNTRAINED)
    return DepthModel(load_keras_model(model, weights, seed), low_resolution_decoder=densedepth)
