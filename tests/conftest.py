"""Fixtures and hooks shared by every test module; the helpers they use are
in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import pytest

from tests.helpers import make_inputs


def pytest_configure(config: pytest.Config) -> None:
    """TensorFlow's C++ start-up lines stay out of test output, in this
    process and the builds it starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    first test that needed it, ends with the test run."""
    from tests.gcs_helpers import stop_emulator_process

    stop_emulator_process()
