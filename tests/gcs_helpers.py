"""The GCS emulator for the tests: one process for the whole test run, or
for each of its pytest-xdist workers (tests/gcs_server.py, on ports the
system picks), started by the first test that needs it and stopped when the
run ends (conftest.py's `pytest_sessionfinish`); each test gets it wiped,
holding its own fresh bucket(s). Beam and google-cloud-storage reach
it over HTTP through STORAGE_EMULATOR_HOST, as they would reach GCS.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

SERVER = Path(__file__).with_name("gcs_server.py")
START_TIMEOUT_S = 60.0


class EmulatorProcess:
    """The running emulator process: its JSON API's URL and its control API."""

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(
                f"the GCS emulator ({SERVER.name}) did not start within {START_TIMEOUT_S:.0f} s "
                f"(exit status {self._process.returncode}): {self.log()[-3000:]}"
            )
        ports = json.loads(line)
        self.url = f"http://127.0.0.1:{ports['api']}"
        self._control = f"http://127.0.0.1:{ports['control']}/_control"

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _call(self, path: str, document: Optional[dict] = None, timeout: float = 30) -> dict:
        data = None if document is None else json.dumps(document).encode()
        with urllib.request.urlopen(f"{self._control}/{path}", data, timeout=timeout) as answer:
            return json.loads(answer.read())

    def reset(self, *buckets: str) -> None:
        """Empty storage holding `buckets`, answering as the emulator does."""
        self._call("reset", {"buckets": list(buckets)})

    def answer(self, preconditions: bool = False, repeated_uploads: bool = False) -> None:
        """With `preconditions`, answer `ifGenerationMatch` on object inserts
        and deletes as GCS does (412 when the generation differs; 0 means
        "does not exist"): the output lease (fgbg/lease.py) is built on them.
        With `repeated_uploads`, answer a repeat of a finished resumable
        upload's last chunk as GCS does (200 with the object), so a client
        whose answer was lost can retry. gcp-storage-emulator does neither;
        this extends the test server, not the code under test. Until the
        next reset."""
        self._call(
            "answers", {"preconditions": preconditions, "repeated_uploads": repeated_uploads}
        )

    def stop_when(self, containing: str, count: int, down_s: float) -> None:
        """Once the storage holds `count` objects whose names contain
        `containing`, stop serving (connections refused) for `down_s`
        seconds, then serve the same storage again on the same port."""
        self._call("outage", {"containing": containing, "count": count, "down_s": down_s})

    def outage_over(self, timeout_s: float) -> bool:
        """Whether the outage asked for has ended, waiting up to `timeout_s`."""
        answer = self._call(f"outage?timeout={timeout_s}", timeout=timeout_s + 30)
        return answer["over"]

    def stop(self) -> None:
        """Close its input (it exits then), wait a bounded time, kill."""
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


_RUNNING: Optional[EmulatorProcess] = None


def emulator_process() -> EmulatorProcess:
    """The test run's emulator, started on first use."""
    global _RUNNING
    if _RUNNING is None:
        _RUNNING = EmulatorProcess()
    return _RUNNING


def stop_emulator_process() -> None:
    """Stop the test run's emulator, if one was started."""
    global _RUNNING
    if _RUNNING is not None:
        _RUNNING.stop()
        _RUNNING = None


@contextlib.contextmanager
def emulator(
    monkeypatch,
    bucket: str,
    *more_buckets: str,
    preconditions: bool = False,
    repeated_uploads: bool = False,
) -> Iterator[EmulatorProcess]:
    """The emulator, emptied to hold `bucket` (and `more_buckets`),
    answering as `EmulatorProcess.answer` says; STORAGE_EMULATOR_HOST points
    at it, and Beam connects to it anonymously at once (its credential
    lookup otherwise backs off and retries for about 20 s:
    apache_beam/internal/gcp/auth.py). Emptied again at the end."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    process = emulator_process()
    process.reset(bucket, *more_buckets)
    process.answer(preconditions, repeated_uploads)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", process.url)
    try:
        yield process
    finally:
        process.reset()


@contextlib.contextmanager
def emulated_bucket(monkeypatch, bucket: str, **answers: bool) -> Iterator[object]:
    """The emulator's bucket (a google.cloud.storage Bucket), to upload into
    and inspect; `answers` as `emulator`'s."""
    from google.cloud import storage

    with emulator(monkeypatch, bucket, **answers):
        yield storage.Client.create_anonymous_client().bucket(bucket)
