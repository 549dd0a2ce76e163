"""How many workers a local build runs: by default what measured fastest for
its kind of build on a machine of its size (`default_workers`), unless
Beam's own --direct_num_workers or --direct_running_mode is given (then those
win). BENCHMARKS.md, "Every core by default", has the figures; each worker
process's depth runtime gets its share of the cores
(fgbg/depth/thread_budget.py, `depth_thread_budget`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from fgbg.depth import models, thread_budget
from fgbg.depth.thread_budget import ThreadBudget
from pipeline.dataflow import sdk_process_per_vcpu
from pipeline.options import FgbgOptions
from pipeline.options.depth import named_threads

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
WORKER_FLAGS = ("--direct_num_workers", "--direct_running_mode")
PROCESSES = "multi_processing"
IN_PROCESS = "in_memory"
# The kinds of build a default is chosen for (`default_workers`); below 3
# cores only a GPU build's differs, measured (docs/thread-budgets.md).
COMPOSITES_ONLY = "composites only"
DEPTH_ON_CPU = "depth on the CPU"  # any model, on TensorFlow, PyTorch or ONNX Runtime
DEPTH_ON_GPU = "depth on a GPU"
# Below this many cores, the kinds of build that measured fastest in one
# process on 2 cores run in one process (`default_workers`).
MIN_CORES_FOR_PROCESSES = 3


@dataclasses.dataclass(frozen=True)
class Workers:
    """A local run's workers, as Beam's DirectOptions name them."""

    count: int
    mode: str  # Beam's --direct_running_mode
    by_default: bool  # chosen here, not named on the command line

    def describe(self) -> str:
        if self.mode == IN_PROCESS:
            workers = "1, in this process"
        elif self.mode == PROCESSES:
            workers = f"{self.count} process{'es' if self.count != 1 else ''}"
        else:
            workers = f"{self.count} thread{'s' if self.count != 1 else ''} in this process"
        if not self.by_default:
            return workers
        return workers + (" (one per core)" if self.mode == PROCESSES else " (the default here)")


def processes_on_machine(workers: Workers) -> int:
    """The worker processes a local run starts: one for the in-process modes."""
    return workers.count if workers.mode == PROCESSES else 1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def names_workers(flags: Sequence[str]) -> bool:
    return any(flag.split("=", 1)[0] in WORKER_FLAGS for flag in flags)


def is_local(runner: Optional[str]) -> bool:
    """No runner means the local one (`resolve_runner`)."""
    return runner is None or runner.split(".")[-1] in LOCAL_RUNNERS


def build_kind(opts: FgbgOptions) -> str:
    """Which default a build gets: a model shared by the processes, or named
    for a GPU, is run_local.sh's GPU configuration."""
    if opts.depth_model == models.NONE:
        return COMPOSITES_ONLY
    if opts.depth_device == models.CUDA or opts.depth_share_model:
        return DEPTH_ON_GPU
    return DEPTH_ON_CPU


def default_workers(cores: int, kind: str) -> Workers:
    """The workers a build of `kind` runs on `cores` cores unless told
    (BENCHMARKS.md, "Every core by default", for each line's figures)."""
    if kind == DEPTH_ON_GPU:
        # The CPU work around a GPU model outgrows one process: the device
        # stand-in was kept busier and built faster with a process per core.
        return Workers(cores, PROCESSES, True)
    if cores < MIN_CORES_FOR_PROCESSES:
        # 2 cores, on a quiet machine: one process, its runtime on both
        # cores, was as fast as two for every model and runtime, and faster
        # for Depth Anything on either runtime (a second process loads
        # another model and runtime); composites only were no faster in two.
        return Workers(1, IN_PROCESS, True)
    # From 3 cores: the per-sample work spreads over the processes, projected
    # faster than one process held to about a core by its GIL (not measured).
    return Workers(cores, PROCESSES, True)


def local_workers(flags: Sequence[str], cores: int) -> Optional[Workers]:
    """The workers a build with these command-line flags runs on a machine
    with `cores` cores: None on a remote runner; Beam's flags as given when
    either is named; otherwise the default for its kind of build."""
    options = PipelineOptions(list(flags))
    if not is_local(options.view_as(StandardOptions).runner):
        return None
    if names_workers(flags):
        direct = options.view_as(DirectOptions)
        return Workers(direct.direct_num_workers or cores, direct.direct_running_mode, False)
    return default_workers(cores, build_kind(options.view_as(FgbgOptions)))


def apply_workers(options: PipelineOptions, workers: Workers) -> None:
    """Set `workers` in the options the pipeline runs with."""
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = workers.count
    direct.direct_running_mode = workers.mode


def resolve_runner(options: PipelineOptions) -> str:
    """Local runs use the FnApiRunner (the DirectRunner's engine) by name, so
    offline machines skip the Prism download attempt."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"
    return standard.runner.split(".")[-1]


def depth_thread_budget(
    opts: FgbgOptions,
    options: PipelineOptions,
    workers: Optional[Workers],
    cores: Optional[int] = None,
) -> Optional[ThreadBudget]:
    """The depth runtime's threads in each worker process
    (fgbg/depth/thread_budget.py) of a local build with `workers` on `cores`
    cores (this machine's by default), or of a remote runner's workers
    (`workers` None); none for a composites-only build."""
    if opts.depth_model == models.NONE:
        return None
    named, shared = named_threads(opts), opts.depth_share_model
    if workers is None:
        return thread_budget.remote_budget(sdk_process_per_vcpu(options), shared, named)
    cores = cores or available_cores()
    return thread_budget.local_budget(cores, processes_on_machine(workers), shared, named)
