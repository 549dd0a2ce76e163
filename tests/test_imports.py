"""Importing fgbg's modules changes nothing in the caller's process, and the
training reader brings in neither Beam nor TensorFlow until it is called."""

from __future__ import annotations

import pytest

from tests.helpers import fresh_interpreter_json

pytestmark = [pytest.mark.processes]


def imported_state(code: str) -> dict:
    """Run `code` in a fresh interpreter; report what it left behind."""
    probe = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        f"{code}\n"
        "print(json.dumps({'beam': any(m.startswith('apache_beam') for m in sys.modules),\n"
        "                  'run_inference': 'apache_beam.ml.inference.base' in sys.modules,\n"
        "                  'tensorflow': 'tensorflow' in sys.modules,\n"
        "                  'opencv': 'cv2' in sys.modules,\n"
        "                  'environ_changed': sorted(k for k in set(before) | set(os.environ)\n"
        "                                            if before.get(k) != os.environ.get(k))}))\n"
    )
    return fresh_interpreter_json(probe)


def test_the_training_reader_imports_neither_beam_nor_tensorflow():
    state = imported_state("import fgbg.training_data")
    assert state == {
        "beam": False,
        "run_inference": False,
        "tensorflow": False,
        "opencv": False,
        "environ_changed": [],
    }


def test_the_packages_change_nothing_on_import():
    state = imported_state("import fgbg, fgbg.depth, pipeline, transforms")
    assert state["environ_changed"] == []


def test_no_module_chooses_keras_for_the_caller():
    """Before, importing `transforms` set TF_USE_LEGACY_KERAS; the depth code
    now names tf_keras itself. (TensorFlow and h5py set variables of their
    own on import; ours set none.)"""
    state = imported_state(
        "import pipeline.build, fgbg.depth.tensorflow_runtime, fgbg.depth.safe_loading"
    )
    assert "TF_USE_LEGACY_KERAS" not in state["environ_changed"]


def test_a_graph_without_depth_or_tft_imports_neither_tensorflow_nor_run_inference():
    """Beam's RunInference module imports PyTorch whenever it is installed,
    costing every worker process memory (BENCHMARKS.md "Compositing"); a
    build without depth never needs it, and one without TFT either never
    needs TensorFlow. Nor does a build with --blend none load OpenCV."""
    state = imported_state(
        "from apache_beam.options.pipeline_options import PipelineOptions\n"
        "from pipeline import build\n"
        "from pipeline.config import RunContext, build_config\n"
        "from pipeline.options import FgbgOptions\n"
        "flags = ['--bg=b/*', '--fg=f/*', '--output=o', '--depth_model=none', '--no_tft']\n"
        "opts = PipelineOptions(flags)\n"
        "config = build_config(opts.view_as(FgbgOptions), RunContext('', {}, 't', None))\n"
        "import apache_beam as beam\n"
        "build.build_graph(beam.Pipeline(), config)"
    )
    assert not state["run_inference"] and not state["tensorflow"] and not state["opencv"]
