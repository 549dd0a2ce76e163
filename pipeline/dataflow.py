"""Dataflow: the worker defaults, the lock the workers install, and dry runs
that build the complete job description offline.

With `--dry_run=True` Beam's DataflowRunner translates the whole graph and
pickles every DoFn, then returns without staging or submitting anything, and
so without writing `--dataflow_job_file`. This writes that file from the job
it built, with the worker environment (machine type, accelerators, container
image) attached as a submission would have it, but nothing staged. Runner v2
jobs carry their graph as a separately staged pipeline proto, so it is
written beside the job file as `<job file>.pipeline.json`.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    TestOptions,
    WorkerOptions,
)

# The depth stage (DenseDepth on a 640x480 copy of every sample) is most of
# the CPU time, so the workers are sized for it:
# - n1-standard-8: Dataflow runs one SDK process per vCPU and each process
#   loads its own copy of the model; 3.75 GB per vCPU holds a copy plus a
#   batch of 640x480 activations, where highcpu types (0.9 GB per vCPU) would
#   run out of memory. Eight vCPUs spread the per-worker start-up (boot,
#   container pull, model load) over more cores than small types do. (GPU
#   workers are G2 machines, which an L4 needs: run_dataflow.sh --gpu.)
# - the worker cap bounds the spend rate, not the total: the work is fixed,
#   so more workers finish sooner for about the same money. 20 x 8 vCPUs
#   suits a regional CPU quota of a few hundred vCPUs.
DEFAULT_MACHINE_TYPE = "n1-standard-8"
DEFAULT_MAX_NUM_WORKERS = 20


def is_dataflow(runner: str) -> bool:
    """Beam accepts 'DataflowRunner', 'dataflow' and other spellings."""
    return runner.split(".")[-1].lower().removesuffix("runner") in ("dataflow", "testdataflow")


def sdk_process_per_vcpu(options: PipelineOptions) -> bool:
    """Whether Dataflow runs one SDK process per vCPU (its default) rather
    than one per VM (--experiments=no_use_multiple_sdk_containers): how many
    processes share each worker's cores (fgbg/depth/thread_budget.py)."""
    return "no_use_multiple_sdk_containers" not in (options.view_as(DebugOptions).experiments or [])


def apply_worker_defaults(options: PipelineOptions) -> WorkerOptions:
    """Fill in the worker type and cap the caller left unset.

    run_dataflow.sh and the Composer DAG both rely on these, so the numbers
    live here only. An empty --machine_type or --max_num_workers=0 also means
    "unset": that is what a scheduler renders for an unset variable, and
    neither is a usable value for Dataflow.
    """
    worker = options.view_as(WorkerOptions)
    worker.machine_type = worker.machine_type or DEFAULT_MACHINE_TYPE
    worker.max_num_workers = worker.max_num_workers or DEFAULT_MAX_NUM_WORKERS
    return worker


# The application's lock, beside setup.py (docs/dependencies.md).
LOCK = os.path.join("requirements", "app.txt")
# Beam's value for "install the requirements from PyPI on the workers".
NO_REQUIREMENTS_CACHE = "skip"


def apply_staging_defaults(options: PipelineOptions) -> SetupOptions:
    """Stage the lock beside --setup_file as the workers' --requirements_file,
    unless the caller named one or a container image (which installs the lock
    itself: Dockerfile).

    Beam's guidance is that the workers run the launcher's versions; setup.py
    only has ranges, which a worker would resolve to whatever is newest on the
    day. Unless --requirements_cache names a folder, the workers install the
    locked versions from PyPI when they start (Beam's "skip"), instead of the
    launcher downloading every wheel (TensorFlow's alone is hundreds of MB)
    and uploading them to the staging location for every job.
    """
    setup = options.view_as(SetupOptions)
    image = options.view_as(WorkerOptions).sdk_container_image
    if setup.setup_file and not setup.requirements_file and not image:
        lock = os.path.join(os.path.dirname(os.path.abspath(setup.setup_file)), LOCK)
        if os.path.isfile(lock):
            setup.requirements_file = lock
            setup.requirements_cache = setup.requirements_cache or NO_REQUIREMENTS_CACHE
    return setup


# Flexible Resource Scheduling (Beam's --flexrs_goal=COST_OPTIMIZED):
# Dataflow queues the job for up to six hours and runs it on a mix of
# preemptible and regular VMs at a lower price (docs/running-on-gcp.md,
# "FlexRS").
_FLEXRS_GOAL = "--flexrs_goal"
_GPU_OPTION = "worker_accelerator"


def without_unset_flexrs_goal(argv: Sequence[str]) -> List[str]:
    """`argv` less an empty --flexrs_goal.

    The Composer DAG renders "no FlexRS" as an empty value, like its other
    unset variables, but Beam's parser accepts only COST_OPTIMIZED or
    SPEED_OPTIMIZED there and would exit on ''.
    """
    kept: List[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == f"{_FLEXRS_GOAL}=":
            continue
        if arg == _FLEXRS_GOAL and rest and rest[0] == "":
            rest.pop(0)
            continue
        kept.append(arg)
    return kept


def flexrs_problem(options: PipelineOptions) -> Optional[str]:
    """Why these options cannot run as a FlexRS job, or None.

    Dataflow does not support GPUs in FlexRS jobs, so the pipeline refuses
    the combination before anything is submitted.
    """
    google_cloud = options.view_as(GoogleCloudOptions)
    if not google_cloud.flexrs_goal:
        return None
    service_options = google_cloud.dataflow_service_options or []
    experiments = options.view_as(DebugOptions).experiments or []
    gpu = [option for option in [*service_options, *experiments] if _GPU_OPTION in option]
    if gpu:
        return (
            f"--flexrs_goal cannot be combined with GPU workers ({gpu[0]}): "
            "Dataflow's FlexRS does not support GPUs"
        )
    return None


def is_dry_run(options: PipelineOptions) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def write_dry_run_job(result, options: PipelineOptions) -> str:
    """Write the dry-run job's JSON to --dataflow_job_file and its pipeline
    proto beside it; returns the job file's path."""
    from apache_beam.runners.dataflow.internal import apiclient
    from google.protobuf import json_format

    from fgbg.beam_compat import fnapi_environment_version
    from fgbg.storage import write_file

    path = options.view_as(DebugOptions).dataflow_job_file
    if not path:
        raise ValueError("a Dataflow dry run needs --dataflow_job_file=PATH")
    job = result.job
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=fnapi_environment_version(),
        proto_pipeline_staged_url=None,
        proto_pipeline=job.proto_pipeline,
    ).proto
    write_file(path, job.json().encode())
    write_file(f"{path}.pipeline.json", json_format.MessageToJson(job.proto_pipeline).encode())
    return path
