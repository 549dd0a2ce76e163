"""bench/bench_depth_gpu.py, the GPU measurement script, runs at its tiny
size on the CPU, so it still works when a GPU machine is next lent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_every_measurement_at_tiny_size(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/bench_depth_gpu.py", "--tiny", "--name", "tiny"]
        + ["--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "tiny.json").read_text())
    results = {r["measurement"]: r for r in data["results"]}
    assert sorted(results) == [
        "baseline",
        "build=in_process",
        "model",
        "model=batch:2",
        "model=tf32",
        "model=written",
        "precision_error",
        "stage=in_process",
        "stage=shared:2/device_resize",
        "stage=threads:2/device_resize",
    ]
    assert not [name for name, r in results.items() if "failed" in r]
    measured = (
        "model",
        "model=written",
        "model=batch:2",
        "baseline",
        "stage=threads:2/device_resize",
    )
    for name in measured:
        assert results[name]["images"] >= 8 and results[name]["wall_s"] > 0
    assert results["model=batch:2"]["batch_size"] == 2
    error = results["precision_error"]
    assert error["precision"] == "bf16" and 0 < error["mean_m"] <= error["max_m"]
    assert 0 < error["within_1_level"] < 1
    assert results["build=in_process"]["samples"] == 4
    assert results["stage=in_process"]["batches"] == 2
    assert data["environment"]["device"].startswith("CPU")
    assert "| build=in_process |" in (tmp_path / "tiny.md").read_text()
