"""What a run prints: fgbg's own progress, warnings that matter and the
summary; other libraries' start-up chatter only with --verbose.

Two kinds of chatter need two fixes:
- Python logging (tfx-bsl's INFO lines, Beam's worker records relayed to
  the launcher): the root logger stays at WARNING and fgbg's own logger at
  INFO; Beam's relay of worker records keeps only errors.
- TensorFlow's C++ start-up lines, which every process that imports
  TensorFlow writes straight to file descriptor 2 before any logging
  setting applies (TF_CPP_MIN_LOG_LEVEL does not reach them): the run's
  stderr, inherited by its worker processes, goes through a filter that
  drops those lines and passes everything else through unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from typing import Iterator

LOGGER_NAME = "fgbg"
# Beam's relay of SDK worker log records to the launcher.
_WORKER_RELAY_LOGGER = "apache_beam.runners.portability.local_job_service"
_STAGE_FAILURE_LOGGER = "apache_beam.runners.common"
# absl's C++ log lines at INFO and WARNING (I1127 12:00:00.000000  123
# port.cc:153] ...; before absl is initialised the seconds field holds the
# epoch seconds), its notice that it logs before being initialised, the
# second line of TensorFlow's CPU-feature notice, and the error CUDA's stub
# logs on a machine without a GPU.
_ABSL_PREFIX = rb"\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "
_CHATTER = re.compile(
    rb"^(?:[IW]" + _ABSL_PREFIX + rb"[\w.]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate"
    rb"|E" + _ABSL_PREFIX + rb"cuda_platform\.cc:\d+\] failed call to cuInit)"
)


def configure_logging(verbose: bool) -> None:
    """fgbg's own records at INFO; everyone else's at WARNING (INFO with
    `verbose`), Beam's relayed worker records at ERROR unless `verbose`."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
    # Beam logs every postponed (string) annotation it meets in our DoFns.
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger(_WORKER_RELAY_LOGGER).setLevel(logging.ERROR)
        # Beam logs a failing stage's traceback before raising it; the run
        # prints the failure's reason itself (pipeline.build.main).
        logging.getLogger(_STAGE_FAILURE_LOGGER).setLevel(logging.CRITICAL)


def is_chatter(line: bytes) -> bool:
    return bool(_CHATTER.match(line))


@contextlib.contextmanager
def filtered_stderr(enabled: bool = True) -> Iterator[None]:
    """Route file descriptor 2 of this process, and of the processes it
    starts, through a thread that drops `is_chatter` lines."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end, original), daemon=True)
    relay.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)
        # The relay ends when every process holding the pipe has closed it;
        # worker processes end with the run, so this rarely waits.
        relay.join(timeout=5.0)


def _relay(read_end: int, target: int) -> None:
    """Copy kept lines to `target`, which it closes when the pipe ends."""
    with os.fdopen(read_end, "rb") as lines, os.fdopen(target, "wb", buffering=0) as out:
        for line in lines:
            if not is_chatter(line):
                out.write(line)


def failure_reason(error: BaseException) -> str:
    """The one line that says why a run failed: the last line of the
    error's message. Beam re-raises a stage's exception with the stage's
    name appended, and the multi-process runner's message carries the
    worker's whole traceback, whose last line is that exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
