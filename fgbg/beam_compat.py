"""The private Apache Beam APIs fgbg relies on, and nowhere else.

Beam offers no public way to do these things; each use is wrapped here
so that a Beam upgrade that moves one breaks exactly one function, and
tests/test_beam_compat.py fails naming it.

- `options_parser`: Beam's own argparse subclass, so unknown-option checks
  parse exactly as `PipelineOptions` does (it accepts Beam's
  `--flag=value` forms and repeated options the way Beam does).
- `declared_options`: the option names an options class declares (argparse
  keeps its actions in the private `_actions`).
- `fnapi_environment_version`: the Dataflow environment version a Runner v2
  job carries, for dry-run job files (a private constant of Beam's Dataflow
  API client).
- `WORKER_THREAD_NAME`, `WORKER_MODULE`: how the local multi-process runner
  starts an SDK worker (a thread of that name runs `python -m` that module
  and raises when the process exits non-zero), which
  pipeline/worker_watchdog.py watches.
- `run_inference_module`: RunInference's module without its model
  manager's module, which imports PyTorch and SciPy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import List, Type

from apache_beam.options.pipeline_options import PipelineOptions

# apache_beam/runners/portability/fn_api_runner/worker_handlers.py and
# local_job_service.SubprocessSdkWorker.run.
WORKER_THREAD_NAME = "run_worker"
WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"


def options_parser() -> argparse.ArgumentParser:
    """An empty parser of the class Beam parses pipeline options with."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    return _BeamArgumentParser(allow_abbrev=False)


def declared_options(options_class: Type[PipelineOptions]) -> List[str]:
    """The destinations of every option `options_class` declares, sorted."""
    parser = argparse.ArgumentParser(add_help=False)
    options_class._add_argparse_args(parser)
    return sorted(action.dest for action in parser._actions)


def fnapi_environment_version() -> str:
    """The environment major version Beam's Dataflow client stamps on jobs."""
    from apache_beam.runners.dataflow.internal import apiclient

    return apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION


RUN_INFERENCE_MODULE = "apache_beam.ml.inference.base"
# Imported by RUN_INFERENCE_MODULE inside try/except ImportError.
MODEL_MANAGER_MODULE = "apache_beam.ml.inference.model_manager"


def run_inference_module() -> ModuleType:
    """Beam's RunInference module (RunInference, ModelHandler,
    KeyedModelHandler), imported without its model manager's module where
    neither is loaded yet.

    The model manager's module imports PyTorch, then SciPy, at its top
    (Beam 2.77), so every process that runs a depth model on TensorFlow or
    ONNX Runtime would load PyTorch for nothing wherever it is installed
    (BENCHMARKS.md, "A TensorFlow process's start-up"), even where SciPy is
    missing and the manager then fails to import anyway, as in fgbg's lock.
    RunInference's module catches the ImportError this makes, as it does
    that one, and imports the manager where a pipeline asks for it
    (use_model_manager=True, which fgbg never passes).
    """
    if RUN_INFERENCE_MODULE not in sys.modules and MODEL_MANAGER_MODULE not in sys.modules:
        sys.modules[MODEL_MANAGER_MODULE] = None  # its import raises ImportError
        try:
            importlib.import_module(RUN_INFERENCE_MODULE)
        finally:
            del sys.modules[MODEL_MANAGER_MODULE]
    return importlib.import_module(RUN_INFERENCE_MODULE)
