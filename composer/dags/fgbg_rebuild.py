"""Monthly rebuild of the fgbg dataset on Dataflow (Cloud Composer 3, Airflow 3).

Each run builds one dataset version, named after the run's logical date:

    version   v<logical date as YYYYMMDD>                   e.g. v20261201
    output    gs://<fgbg_bucket>/datasets/fgbg/<version>
    job       fgbg-build-<version> on Dataflow

The version comes from the logical date alone, never from the clock, so
clearing a run rebuilds the same version in place (the build is deterministic
for a seed and its inputs, and reuses the samples a failed attempt finished),
while runs of other dates write other prefixes and never touch older
versions. The Dataflow job name carries no random suffix, so Dataflow itself
refuses a second concurrent job for the same version. A manual run needs a
logical date (the trigger form's default, or `airflow dags trigger
--logical-date`); without one the templates fail to render and nothing starts.

Airflow Variables, read when the task runs (not when the file is parsed):

    fgbg_bucket            required: holds inputs/{bg,fg,fg_mask}/ and
                           models/nyu.h5; datasets, temp and staging go there
    fgbg_project           default: the google_cloud_default connection's
                           project (in Composer, the environment's own)
    fgbg_region            default us-central1
    fgbg_machine_type      default: the pipeline's (pipeline/dataflow.py)
    fgbg_max_num_workers   default: the pipeline's (pipeline/dataflow.py)
    fgbg_seed              default 0
    fgbg_flexrs            default true: the job runs as a FlexRS job
                           (Flexible Resource Scheduling): Dataflow queues
                           it for up to 6 hours, then runs it on preemptible
                           and regular VMs at a lower price; a monthly
                           rebuild can wait, and the task's 12-hour limit
                           holds the wait plus the build. "false" starts it
                           at once on regular VMs (docs/running-on-gcp.md,
                           "FlexRS")

The task installs the fgbg package from a copy of the repository in the
environment bucket's data/fgbg/ folder (SRC below) into a fresh virtualenv,
then runs `python -m pipeline.build` there; docs/running-on-gcp.md says how
to upload it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration
from airflow.sdk import DAG

SRC = "/home/airflow/gcs/data/fgbg"  # gs://<environment bucket>/data/fgbg, as Composer mounts it
BEAM = "apache-beam[gcp]==2.77.0"

VERSION = "v{{ ds_nodash }}"
BUCKET = "{{ var.value.fgbg_bucket }}"
INPUTS = f"gs://{BUCKET}/inputs"


class TemplatedProjectDataflowConfiguration(DataflowConfiguration):
    """Upstream templates job_name and location but not project_id."""

    template_fields = (*DataflowConfiguration.template_fields, "project_id")


with DAG(
    dag_id="fgbg_rebuild",
    description="Rebuild the fgbg dataset on Dataflow as version v<logical date>",
    schedule="0 3 1 * *",  # 03:00 UTC on the 1st: the run of 1 Dec 2026 builds v20261201
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=15)},
    doc_md=__doc__,
    tags=["fgbg", "dataflow"],
):
    BeamRunPythonPipelineOperator(
        task_id="build_dataset",
        runner="DataflowRunner",
        py_file="pipeline.build",
        py_options=["-m"],
        py_requirements=[BEAM, SRC],
        pipeline_options={
            "bg": f"{INPUTS}/bg/*.jpg",
            "fg": f"{INPUTS}/fg/*.png",
            "fg_mask": f"{INPUTS}/fg_mask/*",
            "depth_weights": f"gs://{BUCKET}/models/nyu.h5",
            "output": f"gs://{BUCKET}/datasets/fgbg/{VERSION}",
            "seed": "{{ var.value.get('fgbg_seed', '0') }}",
            "temp_location": f"gs://{BUCKET}/tmp",
            "staging_location": f"gs://{BUCKET}/staging",
            "setup_file": f"{SRC}/setup.py",
            # Unset variables render as '' and 0, which the pipeline reads as
            # "use the default", so the worker numbers live in one place.
            "machine_type": "{{ var.value.get('fgbg_machine_type', '') }}",
            "max_num_workers": "{{ var.value.get('fgbg_max_num_workers', '0') }}",
            "labels": {"dataset-version": VERSION},
            # '' (the variable set to false) is "no FlexRS" to the pipeline.
            "flexrs_goal": (
                "{{ '' if var.value.get('fgbg_flexrs', 'true') | lower == 'false' "
                "else 'COST_OPTIMIZED' }}"
            ),
            # A retry takes over the output lease its killed attempt left
            # (stale after 10 minutes without renewal; retries wait 15). The
            # fixed job name still stops a second job while one runs.
            "force": True,
        },
        dataflow_config=TemplatedProjectDataflowConfiguration(
            job_name=f"fgbg-build-{VERSION}",
            append_job_name=False,
            project_id="{{ var.value.get('fgbg_project', '') }}",
            location="{{ var.value.get('fgbg_region', 'us-central1') }}",
        ),
        # Past this the task is killed and on_kill cancels the Dataflow job.
        execution_timeout=timedelta(hours=12),
    )
