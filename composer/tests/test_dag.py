"""The fgbg_rebuild DAG as Airflow 3 parses it, and its task rendered for a
given logical date, all offline. Run with composer/run_tests.sh (its own
virtualenv: Airflow and tensorflow-transform cannot share one)."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from pathlib import Path

import jinja2.meta
import pendulum
import pytest
from airflow.models import DagBag
from airflow.providers.apache.beam.hooks.beam import beam_options_to_args
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration
from airflow.sdk.execution_time.context import VariableAccessor
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import DataInterval, TimeRestriction

REPO = Path(__file__).resolve().parents[2]
DAG_FOLDER = REPO / "composer" / "dags"
DAG_ID = "fgbg_rebuild"
SRC = "/home/airflow/gcs/data/fgbg"
VARIABLES = (
    "fgbg_bucket",
    "fgbg_project",
    "fgbg_region",
    "fgbg_machine_type",
    "fgbg_max_num_workers",
    "fgbg_seed",
    "fgbg_flexrs",
)


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAG_FOLDER))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


@pytest.fixture(scope="module")
def task(dag):
    return dag.task_dict["build_dataset"]


@pytest.fixture
def variables(monkeypatch):
    """Airflow Variables as the environment backend serves them, AIRFLOW_VAR_<KEY>;
    starts with only the required bucket set."""
    for key in VARIABLES:
        monkeypatch.delenv(f"AIRFLOW_VAR_{key.upper()}", raising=False)

    def set_variable(key: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", value)

    set_variable("fgbg_bucket", "test-bucket")
    return set_variable


def render(task, logical_date: pendulum.DateTime):
    """A copy of the task with its templates rendered the way the task runner
    does for a run of this logical date (its context keys, the real Variable
    accessor)."""
    rendered = copy.deepcopy(task)
    context = {
        "logical_date": logical_date,
        "ds": logical_date.strftime("%Y-%m-%d"),
        "ds_nodash": logical_date.strftime("%Y%m%d"),
        "var": {"value": VariableAccessor(deserialize_json=False)},
    }
    rendered.render_template_fields(context)
    return rendered


def template_strings(value):
    """Every string among a templated field's values, nested ones included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from template_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from template_strings(item)
    elif isinstance(value, DataflowConfiguration):
        for name in value.template_fields:
            yield from template_strings(getattr(value, name))


NOV_25 = pendulum.datetime(2026, 11, 25, 3, tz="UTC")


def test_the_dag_folder_parses_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == [DAG_ID]


def test_schedule_is_monthly_and_fixed_in_time(dag):
    assert dag.schedule == "0 3 1 * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.start_date == pendulum.datetime(2026, 11, 1, tz="UTC")


def test_scheduled_run_of_december_first_has_that_logical_date(dag):
    """Airflow 3's cron schedules trigger at the cron time and use it as the
    logical date (not the start of the previous interval, as Airflow 2 did), so
    the run on 1 Dec 2026 builds v20261201."""
    timetable = coerce_to_core_timetable(dag.timetable)
    previous = pendulum.datetime(2026, 11, 1, 3, tz="UTC")
    run = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(previous, previous),
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    assert run.logical_date == pendulum.datetime(2026, 12, 1, 3, tz="UTC")


def test_one_task_runs_the_pipeline_module_on_dataflow(dag, task):
    assert dag.task_ids == ["build_dataset"]
    assert isinstance(task, BeamRunPythonPipelineOperator)
    assert task.runner == "DataflowRunner"
    assert [*task.py_options, task.py_file] == ["-m", "pipeline.build"]
    assert task.py_requirements == ["apache-beam[gcp]==2.77.0", SRC]
    assert task.retries == 1
    assert task.execution_timeout == timedelta(hours=12)


def test_output_job_name_and_labels_come_from_the_logical_date(task, variables):
    rendered = render(task, NOV_25)
    options = rendered.pipeline_options
    assert options["output"] == "gs://test-bucket/datasets/fgbg/v20261125"
    assert options["labels"] == {"dataset-version": "v20261125"}
    assert rendered.dataflow_config.job_name == "fgbg-build-v20261125"
    # No random suffix: Dataflow refuses a second running job of that name.
    assert rendered.dataflow_config.append_job_name is False


def test_inputs_model_and_staging_come_from_the_bucket_variable(task, variables):
    options = render(task, NOV_25).pipeline_options
    assert options["bg"] == "gs://test-bucket/inputs/bg/*.jpg"
    assert options["fg"] == "gs://test-bucket/inputs/fg/*.png"
    assert options["fg_mask"] == "gs://test-bucket/inputs/fg_mask/*"
    assert options["depth_weights"] == "gs://test-bucket/models/nyu.h5"
    assert options["temp_location"] == "gs://test-bucket/tmp"
    assert options["staging_location"] == "gs://test-bucket/staging"
    assert options["setup_file"] == f"{SRC}/setup.py"


def test_documented_defaults_apply_without_optional_variables(task, variables):
    rendered = render(task, NOV_25)
    config = rendered.dataflow_config
    # An empty project makes the operator use the connection's project.
    assert (config.project_id, config.location) == ("", "us-central1")
    assert config.gcp_conn_id == "google_cloud_default"
    options = rendered.pipeline_options
    # '' and 0 leave the worker type and cap to the pipeline's defaults
    # (tests/test_dataflow.py checks that they reach the job).
    assert (options["machine_type"], options["max_num_workers"], options["seed"]) == ("", "0", "0")
    assert options["flexrs_goal"] == "COST_OPTIMIZED"


def test_variables_override_the_defaults(task, variables):
    for key, value in {
        "fgbg_project": "my-project",
        "fgbg_region": "europe-west4",
        "fgbg_machine_type": "n2-standard-8",
        "fgbg_max_num_workers": "50",
        "fgbg_seed": "7",
        "fgbg_flexrs": "False",
    }.items():
        variables(key, value)
    rendered = render(task, NOV_25)
    assert isinstance(rendered.dataflow_config, DataflowConfiguration)
    assert (rendered.dataflow_config.project_id, rendered.dataflow_config.location) == (
        "my-project",
        "europe-west4",
    )
    options = rendered.pipeline_options
    assert (options["machine_type"], options["max_num_workers"], options["seed"]) == (
        "n2-standard-8",
        "50",
        "7",
    )
    assert options["flexrs_goal"] == ""


def test_a_missing_bucket_variable_fails_before_anything_runs(task, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_FGBG_BUCKET", raising=False)
    with pytest.raises(Exception, match="fgbg_bucket"):
        render(task, NOV_25)


def test_rerunning_a_date_rebuilds_its_version_and_other_dates_never_touch_it(task, variables):
    first = render(task, NOV_25).pipeline_options["output"]
    assert render(task, NOV_25.add(hours=20)).pipeline_options["output"] == first
    later = render(task, pendulum.datetime(2026, 12, 1, 3, tz="UTC")).pipeline_options["output"]
    assert later == "gs://test-bucket/datasets/fgbg/v20261201"
    assert not later.startswith(first + "/") and not first.startswith(later + "/")


def test_templates_read_only_the_logical_date_and_variables(dag, task):
    env = dag.get_template_env()
    used = set()
    for field in task.template_fields:
        for text in template_strings(getattr(task, field)):
            used |= jinja2.meta.find_undeclared_variables(env.parse(text))
    assert used == {"ds_nodash", "var"}


def test_the_dag_file_never_reads_the_clock():
    source = (DAG_FOLDER / "fgbg_rebuild.py").read_text()
    assert not re.search(r"\b(now|utcnow|today)\s*\(", source)


def test_the_pipeline_accepts_every_rendered_option(task, variables, monkeypatch):
    """The command line the operator builds parses with the pipeline's own
    options (the Airflow virtualenv has the same Beam)."""
    monkeypatch.syspath_prepend(str(REPO))
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

    from pipeline.dataflow import apply_worker_defaults
    from pipeline.options import FgbgOptions, unknown_arguments

    options = dict(render(task, NOV_25).pipeline_options)
    # As BeamHook.start_python_pipeline passes labels: key=value items.
    options["labels"] = [f"{key}={value}" for key, value in options.pop("labels").items()]
    parsed = PipelineOptions(beam_options_to_args(options))
    known = parsed.get_all_options()
    assert set(options) <= set(known), set(options) - set(known)
    assert parsed.view_as(FgbgOptions).output == "gs://test-bucket/datasets/fgbg/v20261125"
    assert parsed.view_as(FgbgOptions).seed == 0
    assert parsed.view_as(GoogleCloudOptions).labels == ["dataset-version=v20261125"]
    assert parsed.view_as(FgbgOptions).force is True  # a retry may take a stale lease
    assert "--force" in beam_options_to_args(options)
    # What the operator adds at run time (BeamRunPythonPipelineOperator with a
    # DataflowConfiguration) must be known too: the pipeline refuses unknown options.
    added = {
        "project": "my-project",
        "region": "us-central1",
        "job_name": "fgbg-build-x",
        "impersonate_service_account": "sa@my-project.iam.gserviceaccount.com",
    }
    assert unknown_arguments(beam_options_to_args({**options, **added})) == []
    worker = apply_worker_defaults(parsed)
    assert (worker.machine_type, worker.max_num_workers) == ("n1-standard-8", 20)


def test_the_flexrs_variable_reaches_the_pipeline(task, variables, monkeypatch):
    """FlexRS by default; 'false' renders '', which the pipeline reads as no FlexRS."""
    monkeypatch.syspath_prepend(str(REPO))
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

    from pipeline.dataflow import without_unset_flexrs_goal

    for value, goal in (("true", "COST_OPTIMIZED"), ("FALSE", None), ("false", None)):
        variables("fgbg_flexrs", value)
        rendered = render(task, NOV_25).pipeline_options["flexrs_goal"]
        argv = without_unset_flexrs_goal(beam_options_to_args({"flexrs_goal": rendered}))
        assert PipelineOptions(argv).view_as(GoogleCloudOptions).flexrs_goal == goal, value


def test_a_run_without_a_logical_date_fails_to_render(task, variables):
    """Airflow 3 allows runs without a logical date; such a run must not fall
    back to anything else (like the clock) for its version."""
    rendered = copy.deepcopy(task)
    with pytest.raises(Exception, match="ds_nodash"):
        rendered.render_template_fields(
            {"var": {"value": VariableAccessor(deserialize_json=False)}}
        )
