"""A local build's workers: the measured default for its kind of build and
machine unless Beam's flags say otherwise; the summary's line says which
ran; each worker process's depth threads."""

from __future__ import annotations

import pytest

from pipeline.local_workers import (
    COMPOSITES_ONLY,
    DEPTH_ON_CPU,
    DEPTH_ON_GPU,
    Workers,
    build_kind,
    default_workers,
    local_workers,
)

BUILD = ["--bg=in/bg/*", "--fg=in/fg/*", "--output=out"]


@pytest.mark.parametrize("runner", [[], ["--runner=FnApiRunner"], ["--runner", "DirectRunner"]])
def test_a_local_build_that_names_no_workers_runs_one_process_per_core(runner):
    assert local_workers([*BUILD, *runner], cores=6) == Workers(6, "multi_processing", True)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--direct_num_workers=3"], Workers(3, "in_memory", False)),
        (["--direct_running_mode", "multi_threading"], Workers(1, "multi_threading", False)),
        (["--direct_running_mode=in_memory"], Workers(1, "in_memory", False)),
        (
            ["--direct_num_workers=0", "--direct_running_mode=multi_processing"],
            Workers(6, "multi_processing", False),
        ),
    ],
)
def test_named_workers_win(flags, expected):
    assert local_workers([*BUILD, *flags], cores=6) == expected


@pytest.mark.parametrize(
    "flags, kind",
    [
        (["--depth_model=none"], COMPOSITES_ONLY),
        ([], DEPTH_ON_CPU),
        (["--depth_runtime=torch", "--depth_device=cpu"], DEPTH_ON_CPU),
        (["--depth_model=depth-anything/Depth-Anything-V2-Small-hf"], DEPTH_ON_CPU),
        (["--depth_runtime=torch", "--depth_device=cuda"], DEPTH_ON_GPU),
        (["--depth_share_model"], DEPTH_ON_GPU),
    ],
)
def test_two_cores_run_a_process_each_only_for_gpu_builds(flags, kind):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import FgbgOptions

    opts = PipelineOptions([*BUILD, *flags]).view_as(FgbgOptions)
    assert build_kind(opts) == kind
    expected = (
        Workers(1, "in_memory", True)
        if kind in (COMPOSITES_ONLY, DEPTH_ON_CPU)
        else Workers(2, "multi_processing", True)
    )
    assert local_workers([*BUILD, *flags], cores=2) == expected
    assert default_workers(8, kind) == Workers(8, "multi_processing", True)


def test_a_remote_runner_has_no_local_workers():
    assert local_workers([*BUILD, "--runner=DataflowRunner"], cores=6) is None


def test_the_summary_line_says_how_many_workers_ran():
    assert Workers(2, "multi_processing", True).describe() == "2 processes (one per core)"
    assert Workers(1, "multi_processing", False).describe() == "1 process"
    assert Workers(4, "multi_threading", False).describe() == "4 threads in this process"
    assert Workers(1, "in_memory", False).describe() == "1, in this process"
    assert Workers(1, "in_memory", True).describe() == "1, in this process (the default here)"


def depth_budget(flags, cores: int = 6, model: str = "untrained"):
    """The thread budget a build with `flags` gets on `cores` cores."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.local_workers import depth_thread_budget
    from pipeline.options import FgbgOptions

    args = [*BUILD, f"--depth_model={model}", *flags]
    options = PipelineOptions(args)
    return depth_thread_budget(
        options.view_as(FgbgOptions), options, local_workers(args, cores), cores
    )


def test_each_worker_process_gets_its_share_of_the_cores():
    multi = ["--direct_running_mode=multi_processing"]
    assert depth_budget([*multi, "--direct_num_workers=3"]).per_process == 2
    assert depth_budget([*multi, "--direct_num_workers=3", "--depth_share_model"]).per_process == 4
    one = depth_budget(["--direct_running_mode=in_memory"])
    assert (one.per_process, one.processes, one.threads_to_set) == (6, 1, None)


def test_a_named_thread_count_wins_over_the_budget():
    named = depth_budget(["--direct_running_mode=multi_processing", "--depth_threads=4"])
    assert (named.per_process, named.named, named.threads_to_set) == (4, True, 4)


def test_dataflow_workers_get_a_thread_per_sdk_process():
    dataflow = depth_budget(["--runner=DataflowRunner"])
    assert (dataflow.per_process, dataflow.cores) == (1, None)
    one_process = ["--runner=DataflowRunner", "--experiments=no_use_multiple_sdk_containers"]
    assert depth_budget(one_process).threads_to_set is None


def test_a_composites_only_build_has_no_budget():
    assert depth_budget([], model="none") is None


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_thread_count_is_auto_or_positive(value):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import FgbgOptions, UsageError, check_options

    opts = PipelineOptions([*BUILD, f"--depth_threads={value}"]).view_as(FgbgOptions)
    with pytest.raises(UsageError, match="--depth_threads"):
        check_options(opts)
