"""A device stand-in: the depth runtime's contract with a forward pass that
holds a machine-wide "device" for `batch / rate` seconds without using a
CPU, so how a build serves its model can be measured on any machine. A
benchmark tool, not a product option: a benchmark hands `load_standin` to
`DepthConfig.loader`; everything around the forward pass is the project's.

Each pass holds an exclusive `flock` on one file (every process takes turns,
as on one GPU), sleeps for the batch's time, and logs a `DeviceCall`, from
which bench_serving.py computes the busy share and the owner's serving CPU.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import List, NamedTuple, Tuple

import numpy as np

# DenseDepth's output is half the input's resolution, one channel.
OUTPUT_STRIDE = 2


class DeviceCall(NamedTuple):
    """One forward pass, as the stand-in logged it."""

    pid: int
    thread: int
    start: float  # time.time() when the device was taken
    end: float  # and released
    images: int
    thread_cpu_s: float  # CPU seconds of the calling thread when it took the device


class StandInDevice:
    """The depth runtime's contract (`predict`, `predict_composites`) on a
    pretend device that serves `rate` images per second, one batch at a time
    machine-wide."""

    def __init__(self, rate: float, lock_path: str, log_path: str, full_size: bool = False):
        if rate <= 0:
            raise ValueError(f"the stand-in's rate must be positive, not {rate}")
        self._rate = rate
        self._full_size = full_size
        self._lock_path = lock_path
        self._log_path = log_path

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Raw maps for float32 NHWC images already at the network size."""
        return self._forward(images.shape[0], images.shape[1:3])

    def predict_composites(self, composites: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
        """Raw maps for uint8 NHWC composites, "resized on the device" to
        `input_size` (W, H)."""
        width, height = input_size
        return self._forward(composites.shape[0], (height, width))

    def _forward(self, count: int, size: Tuple[int, int]) -> np.ndarray:
        thread_cpu = time.thread_time()
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            start = time.time()
            time.sleep(count / self._rate)
            end = time.time()
            fcntl.flock(lock, fcntl.LOCK_UN)
        self._log(DeviceCall(os.getpid(), threading.get_ident(), start, end, count, thread_cpu))
        return raw_maps(count, size, self._full_size)

    def _log(self, call: DeviceCall) -> None:
        line = " ".join(repr(value) for value in call) + "\n"
        # One short O_APPEND write per call: lines from many processes never interleave.
        descriptor = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)


def raw_maps(count: int, size: Tuple[int, int], full_size: bool = False) -> np.ndarray:
    """(count, H/2, W/2, 1) float32 raw output in DenseDepth's range (a
    vertical ramp), a new array per call as a device-to-host copy would be;
    `full_size`: (count, H, W), as a transformers depth head returns it."""
    stride = 1 if full_size else OUTPUT_STRIDE
    height, width = size[0] // stride, size[1] // stride
    ramp = np.linspace(1.0, 100.0, height, dtype=np.float32)[:, None]
    maps = np.empty((count, height, width), dtype=np.float32)
    maps[:] = ramp
    return maps if full_size else maps[..., None]


def load_standin(config, *, rate: float, lock_path: str, log_path: str) -> StandInDevice:
    """`DepthConfig.loader` for the stand-in (bind the keywords with
    `functools.partial`); the stage's configuration says only the shape of
    the raw output (a transformers checkpoint's is the input's)."""
    return StandInDevice(rate, lock_path, log_path, full_size=config.checkpoint is not None)


def read_calls(log_path: Path) -> List[DeviceCall]:
    """The forward passes a stand-in logged, in order of their start."""
    if not log_path.exists():
        return []
    types = (int, int, float, float, int, float)  # DeviceCall's fields
    calls = [
        DeviceCall(*(kind(field) for kind, field in zip(types, line.split())))
        for line in log_path.read_text().splitlines()
    ]
    return sorted(calls, key=lambda call: call.start)


def busy_share(calls: List[DeviceCall]) -> float:
    """Share of the time from the first pass's start to the last's end that
    the device was held (passes never overlap: they hold one lock)."""
    if not calls:
        return 0.0
    window = max(call.end for call in calls) - calls[0].start
    held = sum(call.end - call.start for call in calls)
    return held / window if window > 0 else 0.0
