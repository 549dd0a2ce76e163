"""The private Beam APIs fgbg relies on (fgbg/beam_compat.py) still do what
fgbg needs. A Beam upgrade that moves or changes one fails here, naming it,
instead of deep inside a build or a dry run."""

from __future__ import annotations

import argparse

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from fgbg import beam_compat
from fgbg.beam_compat import declared_options, fnapi_environment_version, options_parser
from pipeline.options import FgbgOptions
from tests.helpers import fresh_interpreter_json


def test_options_parser_parses_like_pipeline_options():
    parser = options_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    StandardOptions._add_argparse_args(parser)
    known, unknown = parser.parse_known_args(["--runner=FnApiRunner", "--no_such_flag=1"])
    assert known.runner == "FnApiRunner" and unknown == ["--no_such_flag=1"]
    assert PipelineOptions(["--runner=FnApiRunner"]).view_as(StandardOptions).runner == known.runner


def test_declared_options_lists_an_options_class_own_flags():
    names = declared_options(FgbgOptions)
    assert names == sorted(names)
    assert {"bg", "fg", "output", "seed", "depth_model", "tft", "resume"} <= set(names)
    assert "runner" not in names


def test_the_dataflow_environment_version_is_a_version_string():
    version = fnapi_environment_version()
    assert isinstance(version, str) and version.isdigit()


def test_the_local_runner_starts_workers_as_the_watchdog_expects():
    """A thread named WORKER_THREAD_NAME runs each SDK worker process,
    started as `python -m WORKER_MODULE`, and raises when it exits non-zero."""
    import inspect

    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers

    assert f"name='{beam_compat.WORKER_THREAD_NAME}'" in inspect.getsource(worker_handlers)
    assert f"-m {beam_compat.WORKER_MODULE}" in inspect.getsource(fn_runner)
    run = inspect.getsource(local_job_service.SubprocessSdkWorker.run)
    assert "if p.returncode:" in run and "raise RuntimeError(" in run


@pytest.mark.processes
def test_run_inference_loads_without_the_model_manager_and_torch():
    """RunInference's module, as the depth stage (imported first) imports
    it, in a fresh interpreter: its classes are there (ModelManager as
    None: Beam's fallback, which imports it where a pipeline asks for it),
    and neither the model manager's module nor PyTorch is loaded."""
    probe = (
        "import json, sys\n"
        "import transforms.depth\n"
        "from fgbg import beam_compat\n"
        "base = beam_compat.run_inference_module()\n"
        "wanted = ('RunInference', 'ModelHandler', 'KeyedModelHandler', 'ModelManager')\n"
        "names = [name for name in wanted if hasattr(base, name)]\n"
        "state = {'names': names, 'manager': beam_compat.MODEL_MANAGER_MODULE in sys.modules,\n"
        "         'torch': 'torch' in sys.modules, 'fallback': base.ModelManager is None}\n"
        "print(json.dumps(state))\n"
    )
    assert fresh_interpreter_json(probe) == {
        "names": ["RunInference", "ModelHandler", "KeyedModelHandler", "ModelManager"],
        "manager": False,
        "torch": False,
        "fallback": True,
    }
