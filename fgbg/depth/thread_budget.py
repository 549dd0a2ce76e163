"""How many threads a process's depth runtime may use: its share of the
machine's cores (docs/thread-budgets.md).

A local build runs several worker processes, and each depth runtime would
otherwise start a pool of every core in each of them (TensorFlow's intra-
and inter-op pools, PyTorch's, ONNX Runtime's), so N processes x N threads
fight for N cores (BENCHMARKS.md, "Every core by default"). The budget is
decided where the build knows its processes (the launcher) and applied in
each worker before its runtime starts its pools (`apply`).

Importing this module imports no runtime.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class ThreadBudget:
    """The threads of each process that runs the depth model, and why
    (manifest.json records it under depth.threads).

    per_process: the runtime's CPU threads in each such process; None: the
        runtime's own default, every core of the machine it runs on.
    cores, processes: the machine's cores and the worker processes on it
        that the budget was made from; None where the launcher cannot know
        them (a remote runner's workers).
    shared_model: one process runs the model for all (--depth_share_model).
    named: the count came from --depth_threads, not from the rule.
    where: the machines it applies to, in words.
    """

    per_process: Optional[int]
    cores: Optional[int] = None
    processes: Optional[int] = None
    shared_model: bool = False
    named: bool = False
    where: str = "this machine"

    @property
    def threads_to_set(self) -> Optional[int]:
        """The count a worker sets in its runtime: none for a build whose one
        process has the machine (the runtimes' default is every core, and a
        process that already runs TensorFlow could not change it)."""
        if self.processes == 1 and not self.named:
            return None
        return self.per_process

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def threads_per_process(cores: int, processes: int, shared_model: bool) -> int:
    """The threads a process that runs the depth model gets: its share of
    the cores (cores / processes, at least one); with a model shared by the
    machine's processes, the one process that runs it gets the cores the
    others leave it (one each)."""
    cores, processes = max(1, cores), max(1, processes)
    if shared_model:
        return max(1, cores - (processes - 1))
    return max(1, cores // processes)


def local_budget(
    cores: int, processes: int, shared_model: bool, named: Optional[int] = None
) -> ThreadBudget:
    """The budget of a local build on `cores` cores with `processes` worker
    processes; `named` (--depth_threads) wins over the rule."""
    if named:
        return ThreadBudget(named, cores, processes, shared_model, named=True)
    return ThreadBudget(
        threads_per_process(cores, processes, shared_model), cores, processes, shared_model
    )


def remote_budget(
    process_per_core: bool, shared_model: bool, named: Optional[int] = None
) -> ThreadBudget:
    """The budget of a remote runner's workers (Dataflow), made without
    knowing their cores: with one SDK process per vCPU (Dataflow's default)
    the rule gives each process one thread, shared model or not (the
    process that runs it gets the vCPUs the others leave it: one); with one
    SDK process per VM, the runtime's default (every vCPU)."""
    where = "each worker VM: " + (
        "one SDK process per vCPU" if process_per_core else "one SDK process"
    )
    if named:
        return ThreadBudget(named, shared_model=shared_model, named=True, where=where)
    return ThreadBudget(1 if process_per_core else None, shared_model=shared_model, where=where)


def apply_tensorflow(threads: Optional[int]) -> None:
    """TensorFlow's intra- and inter-op pools at `threads` (None: its own
    default, every core). Must run before TensorFlow creates its context
    (its first op): a process whose context already runs (a build run
    inside a process that used TensorFlow before) keeps its pools, with a
    warning, since the counts change only the speed."""
    if not threads:
        return
    import tensorflow as tf

    threading = tf.config.threading
    if (
        threading.get_intra_op_parallelism_threads() == threads
        and threading.get_inter_op_parallelism_threads() == threads
    ):
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as error:  # "cannot be modified after initialization"
        logging.warning("depth threads: TensorFlow keeps its thread pools (%s)", error)


def apply_torch(threads: Optional[int]) -> None:
    """PyTorch's intra-op pool at `threads` and its inter-op pool likewise
    (None: its own default, every core). The inter-op count can be set once
    per process, before any inter-op work: a process that already has one
    keeps it (fgbg runs no inter-op work of its own)."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or inter-op work already ran
            pass
