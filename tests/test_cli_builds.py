"""Builds as users run them, one per depth path: `python -m pipeline.build`
in a fresh interpreter, on the local default runner (no --direct_* flag;
one process on 2 cores, pipeline/local_workers.py) with TFT on, on tiny
inputs; two paths run in a worker process per core, as the default does
from 3 cores and on a GPU (one with the model shared across them), where a
worker's own imports run. Every build has a temporary folder of its own,
which it must leave empty.

In-process builds share the test process's imports, so they cannot see what
goes wrong in a fresh worker process: a library loaded in the wrong order
there (fgbg/import_order.py) crashes the worker. Each build here has a
deadline, and a failure names its path, the exit status and the end of its
stderr. A new depth path is one more entry in PATHS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from fgbg import layout
from pipeline.local_workers import available_cores, local_workers
from tests.helpers import REPO, make_inputs

# Only stops a hang: a build here takes a small part of it.
DEADLINE_S = 600
STDERR_TAIL = 3000


@dataclasses.dataclass(frozen=True)
class DepthPath:
    """One way a build makes its depth maps, as a user asks for it."""

    name: str
    # The build's depth flags, given a folder for any model files it needs.
    flags: Callable[[Path], List[str]]
    runtime: str  # what the manifest's depth section says ran it
    needs: Tuple[str, ...] = ()  # modules the test process needs for the path


WORKER_PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _depth_anything(metric: bool, *runner: str) -> Callable[[Path], List[str]]:
    def flags(models: Path) -> List[str]:
        from fgbg.depth import seeded_checkpoints

        folder = seeded_checkpoints.write(
            str(models / ("metric" if metric else "relative")), metric=metric, max_depth=80
        )
        # 4x4 patches of 14: the network at its cheapest.
        encoding = ["--depth_encoding=metric"] if metric else []
        return [f"--depth_model={folder}", "--depth_input_size=56", *encoding, *runner]

    return flags


PATHS = [
    DepthPath(
        "densedepth-tensorflow",
        lambda models: ["--depth_model=untrained", "--depth_input_size=32x32"],
        "tensorflow",
    ),
    DepthPath(
        "densedepth-torch",
        lambda models: [
            "--depth_model=untrained",
            "--depth_runtime=torch",
            "--depth_input_size=32x32",
        ],
        "torch",
        ("torch",),
    ),
    DepthPath("depth-anything-relative", _depth_anything(False), "torch", ("transformers",)),
    DepthPath(
        "densedepth-tensorflow-shared-model",
        lambda models: [
            "--depth_model=untrained",
            "--depth_input_size=32x32",
            "--depth_share_model",
        ],
        "tensorflow",
    ),
    DepthPath(
        "depth-anything-metric-worker-processes",
        _depth_anything(True, *WORKER_PROCESSES),
        "torch",
        ("transformers",),
    ),
]


def build_command(inputs: dict, output: Path, depth_flags: List[str]) -> List[str]:
    """The command line, with the counts cut down: one background, one
    foreground, one scale, one placement (both flips: 2 samples)."""
    return [
        sys.executable,
        "-m",
        "pipeline.build",
        f"--bg={inputs['bg']}",
        f"--fg={inputs['fg']}",
        f"--fg_mask={inputs['fg_mask']}",
        f"--output={output}",
        "--size=64",
        "--scales=1.0",
        "--placements_per_scale=1",
        "--val_fraction=0",
        "--test_fraction=0",
        *depth_flags,
    ]


def run_build(path: DepthPath, command: List[str], temp: Path) -> subprocess.CompletedProcess:
    """Run the build in its own process group, so a hang kills its workers
    too, with `temp` its temporary folder."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{path.name}: the build did not finish in {DEADLINE_S} s; its stderr ends:\n"
            f"{stderr[-STDERR_TAIL:]}"
        )
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.e2e
@pytest.mark.processes
@pytest.mark.model
@pytest.mark.parametrize("path", PATHS, ids=[path.name for path in PATHS])
def test_a_command_line_build_on_the_default_runner_writes_its_dataset(path, tmp_path):
    for module in path.needs:
        pytest.importorskip(module)
    inputs = make_inputs(tmp_path / "inputs", backgrounds=1, foregrounds=1)
    (tmp_path / "models").mkdir()
    output = tmp_path / "out"
    command = build_command(inputs, output, path.flags(tmp_path / "models"))
    temp = tmp_path / "temp"
    temp.mkdir()
    done = run_build(path, command, temp)
    assert done.returncode == 0, (
        f"{path.name}: the build exited with status {done.returncode}; its stderr ends:\n"
        f"{done.stderr[-STDERR_TAIL:]}"
    )
    # The workers this machine's default (or the path's flags) gives.
    workers = local_workers(command[command.index("pipeline.build") + 1 :], available_cores())
    assert f"workers:  {workers.describe()}" in done.stdout, done.stdout
    manifest = json.loads((output / layout.MANIFEST_JSON).read_text())
    assert manifest["depth"]["runtime"] == path.runtime, path.name
    samples = manifest["counts"]["samples"]
    assert samples == 2 and len(list(output.glob("*/*/depth/*"))) == samples, path.name
    assert any((output / layout.TRANSFORM_DIR).rglob("saved_model.pb")), path.name
    # Nothing left behind in the temporary folder (a shared model's address
    # and lock files: fgbg/depth/shared_model_files.py).
    assert sorted(p.name for p in temp.iterdir()) == [], path.name
