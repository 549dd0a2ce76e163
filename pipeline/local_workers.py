"""How many workers a local build runs: one worker process per core unless
Beam's own --direct_num_workers or --direct_running_mode is given (then those
win). Beam's local runner defaults to one in-process worker, which leaves
every other core idle (BENCHMARKS.md, "Every core by default")."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
WORKER_FLAGS = ("--direct_num_workers", "--direct_running_mode")
PROCESSES = "multi_processing"


@dataclasses.dataclass(frozen=True)
class Workers:
    """A local run's workers, as Beam's DirectOptions name them."""

    count: int
    mode: str  # Beam's --direct_running_mode
    by_default: bool  # chosen here, not named on the command line

    def describe(self) -> str:
        if self.mode == "in_memory":
            workers = "1, in this process"
        elif self.mode == PROCESSES:
            workers = f"{self.count} process{'es' if self.count != 1 else ''}"
        else:
            workers = f"{self.count} thread{'s' if self.count != 1 else ''} in this process"
        return workers + (" (one per core)" if self.by_default else "")


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


def local_workers(flags: Sequence[str], cores: int) -> Optional[Workers]:
    """The workers a build with these command-line flags runs on a machine
    with `cores` cores: None on a remote runner; Beam's flags as given when
    either is named; otherwise one worker process per core."""
    options = PipelineOptions(list(flags))
    if not is_local(options.view_as(StandardOptions).runner):
        return None
    if names_workers(flags):
        direct = options.view_as(DirectOptions)
        return Workers(direct.direct_num_workers or cores, direct.direct_running_mode, False)
    return Workers(cores, PROCESSES, True)


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
