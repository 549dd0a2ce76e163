"""Dataflow dry runs: the complete job description, built offline.

With `--dry_run=True` Beam's DataflowRunner translates the whole graph and
pickles every DoFn, then returns without staging or submitting anything, and
so without writing `--dataflow_job_file`. This writes that file from the job
it built, with the worker environment (machine type, accelerators, container
image) attached as a submission would have it, but nothing staged. Runner v2
jobs carry their graph as a separately staged pipeline proto, so it is
written beside the job file as `<job file>.pipeline.json`.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, TestOptions


def is_dry_run(options: PipelineOptions) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def write_dry_run_job(result, options: PipelineOptions) -> str:
    """Write the dry-run job's JSON to --dataflow_job_file and its pipeline
    proto beside it; returns the job file's path."""
    from apache_beam.runners.dataflow.internal import apiclient
    from google.protobuf import json_format

    from transforms.storage import write_file

    path = options.view_as(DebugOptions).dataflow_job_file
    if not path:
        raise ValueError("a Dataflow dry run needs --dataflow_job_file=PATH")
    job = result.job
    job.proto.environment = apiclient.Environment(
        packages=[], options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=None, proto_pipeline=job.proto_pipeline).proto
    write_file(path, job.json().encode())
    write_file(f"{path}.pipeline.json", json_format.MessageToJson(job.proto_pipeline).encode())
    return path
