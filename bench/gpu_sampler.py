"""GPU utilisation and memory sampled with nvidia-smi while a benchmark
measures (bench/bench_depth_gpu.py); nothing where there is no GPU."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import threading
from typing import Dict, List, Optional, Sequence

import numpy as np


def parse_gpu_sample(line: str) -> List[float]:
    """[epoch s, utilisation %, memory MiB] from one nvidia-smi CSV line.
    The time is nvidia-smi's own (local time, as time.time() on the same
    machine): the pipe may deliver lines late."""
    stamp, utilisation, memory = (field.strip() for field in line.split(",")[:3])
    when = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
    return [when, float(utilisation), float(memory)]


class GpuSampler:
    """GPU utilisation (%) and memory (MiB) from nvidia-smi every 0.2 s;
    `summary(window)` keeps a timed loop's samples (start-up would dilute)."""

    def __init__(self):
        self.samples: List[List[float]] = []
        self._process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    def __enter__(self) -> "GpuSampler":
        if shutil.which("nvidia-smi"):
            query = "--query-gpu=timestamp,utilization.gpu,memory.used"
            self._process = subprocess.Popen(
                ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self.samples.append(parse_gpu_sample(line))
            except ValueError:
                continue

    def __exit__(self, *_) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait()
            self._reader.join(timeout=2)

    def summary(self, window: Optional[Sequence[float]] = None) -> Dict:
        samples = [s for s in self.samples if not window or window[0] <= s[0] <= window[1]]
        if not samples:
            return {}
        _, utilisation, memory = np.asarray(samples).T
        return {
            "gpu_busy_pct_mean": float(utilisation.mean()),
            "gpu_memory_mb_max": float(memory.max()),
        }
