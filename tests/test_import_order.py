"""TensorFlow first and triton after it crash a process
(tensorflow/tensorflow#124205): fgbg/import_order.py keeps every process of a
build out of that order. Each case runs in a fresh interpreter, since the
crash is a segmentation fault, and the order is a process's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from fgbg import import_order
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


@pytest.mark.parametrize(
    "depth, loads",
    [
        (["--depth_model=none"], False),
        (["--depth_model=untrained"], False),  # DenseDepth on TensorFlow
        (["--depth_model=untrained", "--depth_runtime=torch"], True),
    ],
    ids=["no_depth", "densedepth_tensorflow", "densedepth_torch"],
)
def test_only_builds_with_depth_on_torch_order_triton_first(depth, loads):
    """The others never load triton, and loading it costs every process."""
    from pipeline.options import FgbgOptions, check_options

    opts = PipelineOptions(["--bg=b/*", "--fg=f/*", "--output=o", *depth]).view_as(FgbgOptions)
    check_options(opts)
    assert import_order.loads_triton(opts) == loads


def test_every_worker_of_such_a_build_starts_by_loading_triton():

    options = PipelineOptions(["--beam_plugins=some.plugin"])
    import_order.load_triton_first_everywhere(options)
    assert options.view_as(SetupOptions).beam_plugins == ["some.plugin", import_order.WORKER_START]
    # Beam passes the options to every worker, which imports the modules named.
    worker_options = PipelineOptions.from_dictionary(options.get_all_options())
    assert import_order.WORKER_START in worker_options.view_as(SetupOptions).beam_plugins
