"""A local build's workers: one process per core unless Beam's flags say
otherwise; the summary's line says which ran."""

from __future__ import annotations

import pytest

from pipeline.local_workers import Workers, local_workers

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


def test_a_remote_runner_has_no_local_workers():
    assert local_workers([*BUILD, "--runner=DataflowRunner"], cores=6) is None


def test_the_summary_line_says_how_many_workers_ran():
    assert Workers(2, "multi_processing", True).describe() == "2 processes (one per core)"
    assert Workers(1, "multi_processing", False).describe() == "1 process"
    assert Workers(4, "multi_threading", False).describe() == "4 threads in this process"
    assert Workers(1, "in_memory", False).describe() == "1, in this process"
