"""A run prints fgbg's progress, warnings and summary; other libraries'
chatter (TensorFlow's C++ start-up lines in every process, tfx-bsl's INFO
lines, Beam's relayed worker records) only with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.console import is_chatter
from pipeline.local_workers import COMPOSITES_ONLY, available_cores, default_workers
from tests.helpers import IN_PROCESS, small_build_args

REPO = Path(__file__).resolve().parents[1]
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def test_tensorflow_start_up_lines_are_chatter_and_errors_are_not():
    assert is_chatter(b"I0000 00:00:1795803838.977164   15392 port.cc:153] oneDNN custom ops\n")
    assert is_chatter(b"WARNING: All log messages before absl::InitializeLog() is called are\n")
    assert is_chatter(
        b"E0000 00:00:17958.397521   15392 cuda_platform.cc:52] failed call to cuInit\n"
    )
    assert not is_chatter(b"E0000 00:00:17958.397521   15392 op_kernel.cc:1] Out of memory\n")
    assert not is_chatter(b"Traceback (most recent call last):\n")
    assert not is_chatter(b"2026-11-27 18:24:12,237 INFO progress: 0/60 samples\n")


def build_output(args) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.build", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.e2e
def test_a_run_is_quiet_unless_verbose(tmp_path, inputs):
    """Also the workers' line: the quiet run names no workers (the default
    for this machine), the loud one names two."""
    default = small_build_args(inputs, tmp_path / "quiet", tft=True)
    quiet = build_output([arg for arg in default if arg != IN_PROCESS])
    assert "fgbg: 32 samples" in quiet
    workers = default_workers(available_cores(), COMPOSITES_ONLY).describe()
    assert f"  workers:  {workers}\n" in quiet
    lines = quiet.splitlines(keepends=True)
    assert not [line for line in lines if is_chatter(line.encode())]
    assert "Setting to DenseTensor" not in quiet and "Worker: " not in quiet
    assert len(lines) < 20, quiet

    loud = build_output(
        small_build_args(inputs, tmp_path / "loud", *MULTI_PROCESS, "--verbose", tft=True)
    )
    assert "fgbg: 32 samples" in loud
    assert "  workers:  2 processes\n" in loud
    assert "Setting to DenseTensor" in loud and "Worker: " in loud
    assert [line for line in loud.splitlines(keepends=True) if is_chatter(line.encode())]
