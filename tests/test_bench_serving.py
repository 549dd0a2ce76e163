"""bench/bench_serving.py and its device stand-in (bench/standin.py): the
stand-in holds one device machine-wide, and the benchmark runs every
measurement at its tiny size, so it cannot silently break."""

import multiprocessing

import numpy as np
import pytest

from bench import bench_serving, standin
from tests.helpers import run_bench


def _serve(rate: float, folder: str, calls: int) -> None:
    device = standin.StandInDevice(rate, f"{folder}/device.lock", f"{folder}/device.log")
    for _ in range(calls):
        device.predict_composites(np.zeros((4, 8, 8, 3), np.uint8), (64, 48))


@pytest.mark.processes
def test_the_stand_in_holds_one_device_across_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_serve, args=(200.0, str(tmp_path), 3)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    calls = standin.read_calls(tmp_path / "device.log")
    assert len(calls) == 9 and len({call.pid for call in calls}) == 3
    for earlier, later in zip(calls, calls[1:]):
        assert later.start >= earlier.end  # one forward pass at a time, machine-wide
    assert all(call.end - call.start >= 4 / 200.0 for call in calls)
    assert 0 < standin.busy_share(calls) <= 1


def test_the_stand_ins_maps_have_the_networks_shape(tmp_path):
    lock = str(tmp_path / "device.lock")  # the test's own: no device shared with another test
    device = standin.StandInDevice(1e6, lock, "/dev/null")
    maps = device.predict_composites(np.zeros((3, 224, 224, 3), np.uint8), (640, 480))
    assert maps.shape == (3, 240, 320, 1) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() > 0
    with pytest.raises(ValueError, match="rate"):
        standin.StandInDevice(0, lock, "/dev/null")
    head = standin.StandInDevice(1e6, lock, "/dev/null", full_size=True)
    maps = head.predict_composites(np.zeros((3, 224, 224, 3), np.uint8), (518, 518))
    assert maps.shape == (3, 518, 518)  # a transformers depth head's: the input's size


def test_owner_cpu_counts_each_serving_thread_once_at_its_latest():
    calls = [
        standin.DeviceCall(1, thread, 0.0, 1.0, 4, cpu)
        for thread, cpu in [(10, 0.1), (10, 0.3), (11, 0.2), (11, 0.25)]
    ]
    assert bench_serving.owner_cpu_s(calls) == pytest.approx(0.55)


@pytest.mark.bench
@pytest.mark.e2e
def test_the_serving_benchmark_runs_every_measurement_at_tiny_size(tmp_path):
    data = run_bench("bench_serving.py", tmp_path, "--tiny", timeout=900)
    serving = {row["config"]: row for row in data["serving"]}
    assert sorted(serving) == ["in_process", "shared:2"]
    for row in serving.values():
        assert row["images"] == 16 and row["batches"] >= 1 and row["serving_ms"] >= 0
    shared = serving["shared:2"]  # its owner's CPU is read from the stand-in's log
    assert shared["owner_ms"] > 0 and shared["ceiling_images_s"] > 0
    assert shared["worker_ms"] == pytest.approx(max(shared["serving_ms"] - shared["owner_ms"], 0))
    depth_off = data["depth_off"]
    assert depth_off["samples"] == 4 and depth_off["samples_s"] > 0
    (build,) = data["builds"]
    assert build["config"] == "shared:2" and build["samples"] == depth_off["samples"]
    assert build["images_served"] == build["samples"]  # every map came from the stand-in
    assert build["rate"] == pytest.approx(2 * depth_off["samples_s"])
    assert 0 < build["efficiency"] and 0 < build["device_busy_in_depth"] <= 1
    assert "| DenseDepth | shared:2 |" in (tmp_path / "tiny.md").read_text()


@pytest.mark.bench
@pytest.mark.e2e
def test_the_serving_benchmark_builds_with_depth_anythings_processing_around_the_stand_in(
    tmp_path,
):
    args = ("--tiny", "--models", "da-small", "--configs", "", "--input_size", "56")
    data = run_bench("bench_serving.py", tmp_path, *args, timeout=900)
    (build,) = data["builds"]
    assert build["model"] == "da-small" and build["samples"] == data["depth_off"]["samples"] == 4
    assert build["images_served"] == build["samples"]
    assert "| Depth Anything V2 Small | shared:2 |" in (tmp_path / "tiny.md").read_text()


def test_the_default_configuration_names_no_workers_and_in_process_names_beams_default():
    from bench import serving_configs

    assert serving_configs.runner_flags("default") == []
    assert serving_configs.runner_flags("default/device_resize") == ["--depth_resize_on_device"]
    assert serving_configs.serving("in_process").beam == [
        "--direct_running_mode=in_memory",
        "--direct_num_workers=1",
    ]
