"""bench/bench_depth_gpu.py, the GPU measurement script, runs at its tiny
size on the CPU, so it still works when a GPU machine is next lent."""

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.helpers import run_bench  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.bench
def test_the_gpu_benchmark_runs_every_measurement_at_tiny_size(tmp_path):
    predictions = tmp_path / "serving.json"  # what bench_serving.py writes, in part
    predictions.write_text(json.dumps({"builds": [{"config": "in_process", "samples_s": 2.0}]}))
    data = run_bench(
        "bench_depth_gpu.py", tmp_path, "--tiny", "--predictions", str(predictions), timeout=600
    )
    results = {r["measurement"]: r for r in data["results"]}
    assert sorted(results) == [
        "baseline",
        "build=in_process",
        "model",
        "model=batch:2",
        "model=fp16",
        "model=tf32",
        "model=written",
        "precision_error",
        "precision_error=tf32",
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
    tf32 = results["precision_error=tf32"]  # no TensorFloat-32 on a CPU: fp32 itself
    assert tf32["precision"] == "tf32" and tf32["max_m"] == 0 and tf32["within_1_level"] == 1
    assert results["build=in_process"]["samples"] == 4
    assert results["stage=in_process"]["batches"] == 2
    assert data["environment"]["device"].startswith("CPU")
    table = (tmp_path / "tiny.md").read_text()
    build_row = next(line for line in table.splitlines() if line.startswith("| build=in_process |"))
    assert "2.0 samples/s (measured " in build_row  # beside the stand-in's prediction


@pytest.mark.bench
def test_the_gpu_benchmark_measures_depth_anything_alone_and_in_a_build(tmp_path):
    """gpu_machine.sh's Depth Anything V2 Small steps, at a tiny size."""
    data = run_bench(
        "bench_depth_gpu.py",
        tmp_path,
        *("--tiny", "--model", "da-small", "--input_size", "56x56"),
        *("--measurements", "model,model=fp32,build=in_process"),
        timeout=600,
    )
    results = {r["measurement"]: r for r in data["results"]}
    assert not [name for name, r in results.items() if "failed" in r]
    assert results["model"]["images"] >= 8 and results["model=fp32"]["wall_s"] > 0
    assert results["build=in_process"]["samples"] == 4
    assert data["environment"]["model"] == "da-small"
    assert "Model: Depth Anything V2 Small" in (tmp_path / "tiny.md").read_text()


@pytest.mark.processes
def test_a_misspelt_measurement_is_refused_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/bench_depth_gpu.py", "--tiny", "--results", str(tmp_path)]
        + ["--measurements", "model,model=writen"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "unknown model variant in 'model=writen'" in done.stderr
    assert not list(tmp_path.iterdir())


def test_densedepths_own_measurements_are_refused_for_depth_anything():
    from bench import bench_depth_gpu

    for name in ("baseline", "precision_error", "model=written"):
        with pytest.raises(ValueError, match="measures DenseDepth"):
            bench_depth_gpu.check_measurement(name, "da-small")
    bench_depth_gpu.check_measurement("model=bf16", "da-small")


def test_gpu_samples_keep_nvidia_smis_own_time():
    from bench.gpu_sampler import parse_gpu_sample

    when, busy, memory = parse_gpu_sample("2026/11/28 01:57:03.250, 87, 11311\n")
    local = datetime.datetime(2026, 11, 28, 1, 57, 3, 250000).timestamp()
    assert (when, busy, memory) == (local, 87.0, 11311.0)
    with pytest.raises(ValueError):
        parse_gpu_sample("[N/A], [N/A], 0")


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.processes
def test_a_measurement_past_its_timeout_is_killed_with_its_workers():
    """A hung Beam measurement must not keep holding the GPU: the child and
    every process it started (Beam's workers) are killed."""
    from bench.common import wait_or_kill_group

    process = subprocess.Popen(
        ["bash", "-c", "sleep 300 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    worker = int(process.stdout.readline())
    assert _alive(worker)
    with pytest.raises(RuntimeError, match="timed out after 1 s and was killed"):
        wait_or_kill_group(process, timeout_s=1)
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def test_only_the_tiny_run_shares_a_process_between_measurements():
    """The GPU machine's run keeps each measurement in a process of its own
    (its own GPU memory and peak RSS); --tiny runs all but the builds in one."""
    from bench import bench_depth_gpu

    names = ["model", "build=in_process", "baseline", "stage=in_process"]
    assert not bench_depth_gpu.parse_args([]).share_process
    assert bench_depth_gpu.parse_args(["--tiny"]).share_process
    assert bench_depth_gpu.process_groups(names, share_process=False) == [[n] for n in names]
    assert bench_depth_gpu.process_groups(names, share_process=True) == [
        ["model", "baseline", "stage=in_process"],
        ["build=in_process"],
    ]


def test_a_shared_process_that_fails_keeps_the_results_before_it(tmp_path, monkeypatch):
    """The measurements a shared child finished are kept, the one it died
    in is the failure, and the caller starts a fresh child for the rest."""
    from bench import bench_depth_gpu, common

    def child_dies_in_the_second(command, log, timeout_s):
        assert command[command.index("--child") + 1] == "model,baseline,stage=in_process"
        log.write_text(common.RESULT + json.dumps({"images": 8}) + "\nTraceback ...\n")
        raise RuntimeError("exited 1")

    monkeypatch.setattr(common, "run_measured", child_dies_in_the_second)
    args = bench_depth_gpu.parse_args(["--tiny"])
    results = bench_depth_gpu.run_child(args, ["model", "baseline", "stage=in_process"], tmp_path)
    assert results == [
        {"measurement": "model", "images": 8},
        {"measurement": "baseline", "failed": "exited 1"},
    ]
