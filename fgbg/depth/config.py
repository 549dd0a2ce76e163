"""The depth stage's configuration, apart from the stage itself.

Beam's RunInference module, which the stage (transforms/depth.py) is built
on, imports PyTorch whenever it is installed, a cost in memory and start-up
time in every process (BENCHMARKS.md, "Compositing"). The configuration
lives here so that building a configuration, or a composites-only graph,
never imports it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

if TYPE_CHECKING:
    from fgbg.depth.checkpoints import Checkpoint


@dataclasses.dataclass(frozen=True)
class DepthConfig:
    """Everything the depth stage (transforms/depth.py) needs, checked with
    the options (pipeline/options/) before it gets here.

    model: "densedepth", "untrained", a Keras model path (local/gs://), or a
        transformers checkpoint (a folder or a Hub id), which `checkpoint`
        then describes.
    weights: the published nyu.h5 for model "densedepth".
    seed: the untrained model's weight seed.
    batch_size, min_batch_size: BatchElements' max and min batch size.
    target_batch_duration_s: BatchElements' target time per batch, which
        bounds the batch size it grows to between the two sizes. (Its
        max_batch_duration_secs is not exposed: setting it switches to a
        stateful implementation that routes every element through one key.)
    input_size: (W, H) the composite is resized to for the network.
    encoding: "minmax" (the original) or "metric" (16-bit PNG, millimetres).
    jpeg_quality: quality of "minmax" JPEGs.
    out_size: (W, H) of the stored depth image (the dataset size).
    precision: --depth_precision: "auto" (each worker resolves it,
        fgbg/depth/precision.py) or a named one (fgbg/depth/models.py).
    runtime: "tensorflow" or "torch", the module that loads and runs it.
    device: the torch runtime's "auto", "cpu" or "cuda".
    compile_model: the torch runtime wraps the network in `torch.compile`.
    resize_on_device: the torch runtime resizes uint8 composites to
        input_size on its device (bicubic) instead of PIL's Lanczos on the CPU.
    share_model: one model per machine, which every worker process calls
        (RunInference's share_model_across_processes), for a GPU that cannot
        hold a model per process.
    shared_memory: with share_model, batches and maps cross between the
        processes through shared memory (fgbg/depth/shared_memory.py) rather
        than pickled through Beam's proxy, which costs the model's process
        CPU on every image (False only to measure that: bench/bench_serving.py).
    checkpoint: the transformers checkpoint `model` names, as the launcher
        described it (fgbg/depth/checkpoints.py); None for DenseDepth.
    threads: the CPU threads of the runtime in each process that runs the
        model (fgbg/depth/thread_budget.py: the launcher's share of the cores per
        process, or --depth_threads); None: the runtime's default, every
        core, as in a build whose one process has the machine.
    model_tag: with share_model, what the stages' RunInference names the
        served model (fgbg/depth/shared_model_files.py: the launcher removes
        its files when the build ends); None: Beam's random name.
    loader: loads the model in place of the runtime (called with this
        configuration), for benchmarks' device stand-in (bench/standin.py);
        never set from the command line. The stage records the precision
        `precision.resolve` gives, whatever the loader runs.
    """

    model: str
    weights: Optional[str]
    seed: int
    batch_size: int
    min_batch_size: int
    target_batch_duration_s: float
    input_size: Tuple[int, int]
    encoding: str
    jpeg_quality: int
    out_size: Tuple[int, int]
    precision: str = "auto"
    runtime: str = "tensorflow"
    device: str = "auto"
    compile_model: bool = False
    resize_on_device: bool = False
    share_model: bool = False
    shared_memory: bool = True
    checkpoint: Optional["Checkpoint"] = None
    threads: Optional[int] = None
    model_tag: Optional[str] = None
    loader: Optional[Callable[["DepthConfig"], Any]] = None
