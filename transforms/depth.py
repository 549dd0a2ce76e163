"""Depth stage: a depth map for every composite, through Beam's RunInference.

`EstimateDepth` takes Composites and returns them with `.depth` set to the
encoded depth image. Each composite is its own key through a KeyedModelHandler,
so the depth comes back attached to its sample with no GroupByKey: the stage
streams, batch by batch, and never holds more than a batch of samples.

The model is loaded once per worker process (RunInference's shared model,
loaded in the DoFn's setup), or once per machine with --depth_share_model,
whose callers hand it their batches and take back their maps through shared
memory (fgbg/depth/shared_memory.py), and is called on batches sized by
BatchElements.
Failures are loud: a batch that raises, or a model that returns non-finite or
misshapen output, fails the bundle (Beam retries it, then fails the job). No
dead-letter output: a sample without depth would break the dataset's
four-column CSV contract, and a half-depth dataset is worse than a failed run.

TensorFlow, PyTorch or ONNX Runtime is imported only when a worker loads
the model (through `fgbg.depth.tensorflow_runtime`, `torch_runtime`,
`transformers_runtime` or `onnx_runtime`), so composites-only builds never
load any.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

from fgbg.beam_compat import run_inference_module
from fgbg.depth import families, maps, models, precision, shared_memory
from fgbg.depth.config import DepthConfig
from fgbg.depth.shared_model_files import stage_tag
from fgbg.import_order import load_triton_first
from fgbg.types import Composite

# Without PyTorch, which Beam's model manager would load (fgbg/beam_compat.py).
_run_inference = run_inference_module()
KeyedModelHandler = _run_inference.KeyedModelHandler
ModelHandler = _run_inference.ModelHandler
RunInference = _run_inference.RunInference

# Beam metrics of this stage: RunInference's own (num_inferences,
# inference_batch_latency_micro_secs, load_model_latency_milli_secs,
# model_byte_size, inference_request_batch_size, failed_batches_counter) and
# ENCODED_COUNTER and CLIPPED_COUNTER.
DEPTH_METRICS_NAMESPACE = "fgbg_depth"
ENCODED_COUNTER = "depth_maps_encoded"
# Pixels of metric maps moved into the model's range (resampling's overshoot).
CLIPPED_COUNTER = "metric_depth_pixels_clipped"


class DepthModelHandler(ModelHandler[np.ndarray, np.ndarray, Any]):
    """A model handler for the depth model, whichever runtime runs it.

    Beam's stock TF and PyTorch handlers load through `load_model` or a
    state dict on the URI, which cannot copy a gs:// file through
    FileSystems, build the architecture and copy weights by name, or refuse
    unsafe model files; this one delegates loading, pre- and post-processing
    to the model's family (fgbg/depth/families.py). Examples are the
    composites' uint8 overlays; predictions are float32 maps holding what the
    family says (`content`), at the family's output resolution.
    """

    def __init__(self, config: DepthConfig):
        super().__init__(
            min_batch_size=config.min_batch_size,
            max_batch_size=config.batch_size,
            large_model=config.share_model,
        )
        self._config = config
        self._family = families.family(config)
        # On a GPU, BatchElements' sizes vary by design and cuDNN picks its
        # kernels per run (torch_runtime sets cudnn.benchmark), so its bits
        # are not reproducible anyway; filling batches would only waste it.
        self._fill_to = 0 if config.device == models.CUDA else config.batch_size

    def load_model(self):
        config = self._config
        if config.runtime == models.TORCH:
            # transformers reaches triton, in a process that may have loaded
            # TensorFlow: pipelines assembled without pipeline.build.run.
            load_triton_first()
        if config.loader is not None:
            model = config.loader(config)
        else:
            model = self._family.load(precision.resolve(config))
        if config.share_model and config.shared_memory:
            return shared_memory.SharedMemoryServer(model)
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[np.ndarray]:
        config = self._config
        try:
            if config.resize_on_device:
                images = np.stack(batch)
            else:
                images = full_batch(self._family.preprocess(np.stack(batch)), self._fill_to)
            raw = self._predict(model, images)
            return list(depth_maps(self._family.postprocess(raw), len(images))[: len(batch)])
        except ValueError as error:
            source = models.source(self._config.model, self._config.weights)
            raise ValueError(f"depth model {source}: {error}") from error

    def _predict(self, model, images: np.ndarray) -> np.ndarray:
        """The model's raw output for a batch: composites resized on the
        device, or images at the network size; through shared memory when
        the model is another process's."""
        config = self._config
        input_size = config.input_size if config.resize_on_device else None
        if config.share_model and config.shared_memory:
            return shared_memory.predict(model, images, input_size)
        if input_size is not None:
            return model.predict_composites(images, input_size)
        return model.predict(images)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        return {
            **super().batch_elements_kwargs(),
            "target_batch_duration_secs": self._config.target_batch_duration_s,
        }

    def get_metrics_namespace(self) -> str:
        return DEPTH_METRICS_NAMESPACE


def full_batch(images: np.ndarray, size: int) -> np.ndarray:
    """`images` with copies of the last one appended up to `size` images.

    On the CPU the bits of an image's depth depend on the size of the batch
    it runs in (TensorFlow's oneDNN kernels: an image alone and in a batch of
    4 differ in the last bits of the raw output; which images share its
    batch does not matter), and BatchElements
    leaves a partial batch wherever a bundle ends. So every CPU call runs a
    full batch, and a sample's depth map has the same bytes however the
    runner bundled it. The copies' outputs are dropped.
    """
    missing = size - len(images)
    if missing <= 0:
        return images
    return np.concatenate([images, np.repeat(images[-1:], missing, axis=0)])


def depth_maps(depth: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, h, w) depth maps from the model's post-processed output, or fail.

    Accepts (N, h, w, 1) or (N, h, w); anything else, or any non-finite value,
    raises so the batch fails loudly instead of writing garbage.
    """
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 3 or depth.shape[0] != batch_size:
        raise ValueError(
            f"depth model returned shape {depth.shape} for a batch of "
            f"{batch_size}; expected ({batch_size}, H, W, 1) or ({batch_size}, H, W)"
        )
    bad = int(np.count_nonzero(~np.isfinite(depth).reshape(batch_size, -1).all(axis=1)))
    if bad:
        raise ValueError(f"depth model returned non-finite values for {bad} of {batch_size} images")
    return depth


class EstimateDepth(beam.PTransform):
    """PCollection[Composite] -> the same composites with `.depth` encoded."""

    def __init__(self, config: DepthConfig):
        super().__init__()
        self._config = config

    def expand(self, composites):
        handler = KeyedModelHandler(DepthModelHandler(self._config))
        return (
            composites
            | "KeyByComposite" >> beam.Map(_keyed_by_composite)
            | "RunInference"
            >> RunInference(
                handler,
                metrics_namespace=DEPTH_METRICS_NAMESPACE,
                model_identifier=stage_tag(self._config.model_tag, "composites"),
            )
            | "EncodeDepth" >> beam.ParDo(_EncodeDepthFn(self._config))
        )


def _keyed_by_composite(composite: Composite) -> Tuple[Composite, np.ndarray]:
    """The composite is its own key, so its depth comes back attached to it."""
    return composite, composite.overlay


class _EncodeDepthFn(beam.DoFn):
    """Encode each depth map as configured and attach it to its composite,
    with the precision it was made in: resolved as the model's loader
    resolved it, on the same worker (fgbg/depth/precision.py)."""

    def __init__(self, config: DepthConfig):
        self._config = config
        self._precision: Optional[str] = None
        self._encoded = beam.metrics.Metrics.counter(DEPTH_METRICS_NAMESPACE, ENCODED_COUNTER)
        self._clipped = beam.metrics.Metrics.counter(DEPTH_METRICS_NAMESPACE, CLIPPED_COUNTER)

    def setup(self) -> None:
        self._precision = precision.resolve(self._config)

    def process(self, keyed: Tuple[Composite, np.ndarray]) -> Iterator[Composite]:
        composite, depth = keyed
        self._encoded.inc()
        encoded, clipped = encode_depth(depth, self._config)
        if clipped:
            self._clipped.inc(clipped)
        yield dataclasses.replace(composite, depth=encoded, depth_precision=self._precision)


def encode_depth(depth: np.ndarray, config: DepthConfig) -> Tuple[bytes, int]:
    """A map's stored image, as --depth_encoding says, by what it holds
    (min-max images are bright where far; metric PNGs keep the model's
    scale), and how many of its pixels were clipped to the model's range."""
    content = families.family(config).content
    if config.encoding == "minmax":
        far_larger = content.far_is_larger(depth)
        return maps.encode_minmax(far_larger, config.out_size, config.jpeg_quality), 0
    stored, clipped = maps.metric_stored(depth, config.out_size, content)
    return maps.encode_stored(stored), clipped
