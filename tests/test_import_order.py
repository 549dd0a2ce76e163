"""TensorFlow first and triton after it crash a process
(tensorflow/tensorflow#124205): fgbg/import_order.py keeps every process of a
build out of that order. Each case runs in a fresh interpreter, since the
crash is a segmentation fault, and the order is a process's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from tests.helpers import REPO

pytestmark = [pytest.mark.processes]

# The depth stage loading a Depth Anything V2 checkpoint and running it once,
# as a worker does after TFT or DenseDepth's runtime loaded TensorFlow.
DEPTH_STAGE = """
import numpy as np
from fgbg.depth import checkpoints, models
from tests.depth_fixtures import tiny_depth_config
from transforms.depth import DepthModelHandler

folder = sys.argv[1]
config = tiny_depth_config(
    model=folder,
    runtime=models.TORCH,
    device=models.CPU,
    input_size=(56, 56),
    encoding="minmax",
    checkpoint=checkpoints.describe(folder),
)
handler = DepthModelHandler(config)
(depth,) = handler.run_inference([np.full((32, 32, 3), 128, np.uint8)], handler.load_model())
print("depth", depth.shape, "triton", sys.modules.get("triton") is not None)
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    pytest.importorskip("transformers")
    pytest.importorskip("triton")  # the bug needs it; run_tests.sh installs it
    from fgbg.depth import seeded_checkpoints

    return seeded_checkpoints.write(str(tmp_path_factory.mktemp("tiny") / "relative"))


def run_after(first: str, checkpoint: str) -> subprocess.CompletedProcess:
    """`first`, then the depth stage, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{first}\n{DEPTH_STAGE}", checkpoint],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.model
def test_the_depth_stage_runs_in_a_process_that_loaded_tensorflow_first(checkpoint):
    """Where TensorFlow came first, the stage hides triton instead of loading it."""
    done = run_after("import tensorflow", checkpoint)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-3000:]}"
    assert "depth (32, 32) triton False" in done.stdout
    assert "tensorflow/tensorflow#124205" in done.stderr


@pytest.mark.model
def test_a_worker_loads_triton_first_so_tensorflow_may_follow(checkpoint):
    """What each SDK worker imports at its start (Beam's --beam_plugins)."""
    done = run_after("import fgbg.worker_start\nimport tensorflow", checkpoint)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-3000:]}"
    assert "depth (32, 32) triton True" in done.stdout


def test_every_build_names_the_worker_start_module_for_its_workers():
    from pipeline import build

    options = PipelineOptions(["--beam_plugins=some.plugin"])
    build.start_workers_with_triton_first(options)
    assert options.view_as(SetupOptions).beam_plugins == ["some.plugin", build.WORKER_START]
    # Beam passes the options to every worker, which imports the modules named.
    worker_options = PipelineOptions.from_dictionary(options.get_all_options())
    assert build.WORKER_START in worker_options.view_as(SetupOptions).beam_plugins
