"""Progress of local runs, across worker processes.

Beam's DirectRunner reports metrics only when the run ends, and with
multi-processing the workers are separate processes. Each counting DoFn
instance therefore keeps its own count in a tiny file of a shared local
folder, rewritten at most once a second; the launcher's ProgressReporter
sums the files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Optional

_LOGGER = logging.getLogger("fgbg.progress")


class ProgressFile:
    """One DoFn instance's count of finished samples."""

    _MIN_INTERVAL_S = 1.0

    def __init__(self, directory: Optional[str]):
        self._path = os.path.join(directory, uuid.uuid4().hex) if directory else None
        self._count = 0
        self._last_write = 0.0

    def add(self, amount: int = 1) -> None:
        self._count += amount
        if self._path and time.monotonic() - self._last_write >= self._MIN_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if not self._path:
            return
        temporary = f"{self._path}.tmp"
        with open(temporary, "w") as handle:
            handle.write(str(self._count))
        os.replace(temporary, self._path)
        self._last_write = time.monotonic()


def total_progress(directory: str) -> int:
    """The sum of every instance's last written count."""
    total = 0
    for name in os.listdir(directory):
        if name.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                total += int(handle.read() or 0)
        except (OSError, ValueError):
            continue
    return total


class ProgressReporter:
    """Logs samples done / expected, rate and ETA every interval on local
    runs, from the counts the workers keep in `directory`."""

    def __init__(self, directory: str, expected: int, interval_s: float):
        self._directory = directory
        self._expected = expected
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        done = total_progress(self._directory)
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = max(self._expected - done, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "unknown"
        return (
            f"progress: {done}/{self._expected} samples, {rate:.1f} samples/s, "
            f"elapsed {elapsed:.0f}s, ETA {eta}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            _LOGGER.info(self.line())
