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
"""

from __future__ import annotations

import argparse
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
