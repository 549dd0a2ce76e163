"""Fixtures and hooks shared by every test module; the helpers they use are
in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Tuple

import pytest

from pipeline.local_workers import available_cores
from tests.helpers import FULL_SIZE, comparable, make_inputs, small_build_args


def pytest_configure(config: pytest.Config) -> None:
    """TensorFlow's C++ start-up lines stay out of test output, in this
    process and the builds it starts. Under pytest-xdist each worker's
    OpenMP runtimes (PyTorch's) get its share of the cores, in the worker
    and the processes it starts, before any of them loads: two threads per
    worker on a core another worker keeps busy wait on each other at every
    layer (docs/development.md, "How the suite runs")."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // workers)))


@pytest.fixture
def inputs(tmp_path: Path) -> Dict[str, str]:
    return make_inputs(tmp_path / "inputs")


def pytest_sessionstart(session: pytest.Session) -> None:
    """triton before any test module loads TensorFlow: the other order
    crashes the test process (fgbg/import_order.py)."""
    from fgbg.import_order import load_triton_first

    load_triton_first()


@pytest.fixture(scope="session")
def onnx_exports(tmp_path_factory):
    """Tiny seeded Depth Anything V2 checkpoints and their ONNX exports,
    each exported once per test session (an export takes seconds):
    `onnx_exports(side, metric)` -> (safetensors folder, export folder)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.depth_fixtures import OnnxExports

    return OnnxExports(tmp_path_factory.mktemp("onnx-exports"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The GCS emulator's process (tests/gcs_helpers.py), started by the
    first test that needed it, ends with the test run (each pytest-xdist
    worker ends its own)."""
    from tests.gcs_helpers import stop_emulator_process

    stop_emulator_process()


@pytest.fixture(scope="session")
def full_size_clean(tmp_path_factory) -> Tuple[Dict[str, str], dict]:
    """4 backgrounds x 3 foregrounds, and the `comparable` files of one
    undisturbed full-size build of them, made once for every test that
    breaks a build of these inputs and compares its rerun (the tests only
    read the inputs; the build's files are compared, never written)."""
    from pipeline import build

    root = tmp_path_factory.mktemp("full_size")
    inputs = make_inputs(root / "in", backgrounds=4, foregrounds=3)
    output = root / "clean" / "out"
    build.run(small_build_args(inputs, output, *FULL_SIZE))
    return inputs, comparable(output)
