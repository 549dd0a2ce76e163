"""The Dataflow cost projection's arithmetic, on the committed measurements."""

import json

import pytest

from bench import project_dataflow
from bench.common import RESULTS

MEASURED = str(RESULTS / "compositing_pairs.json")


def project(tmp_path, *flags: str) -> dict:
    name = str(tmp_path / "projection")
    project_dataflow.main(
        ["--results", MEASURED, "--depth_cpu_s_per_image", "1.21", *flags, "--name", name]
    )
    return json.loads((tmp_path / "projection.json").read_text())


def test_flexrs_bills_vcpu_and_memory_below_batch_and_disk_the_same(tmp_path):
    batch = project(tmp_path, "--pricing", "batch")
    flexrs = project(tmp_path, "--pricing", "flexrs")
    discount = 1 - project_dataflow.FLEXRS_DISCOUNT
    assert flexrs["args"]["vcpu_hour"] == pytest.approx(batch["args"]["vcpu_hour"] * discount)
    assert flexrs["args"]["gb_hour"] == pytest.approx(batch["args"]["gb_hour"] * discount)
    assert flexrs["args"]["disk_gb_hour"] == batch["args"]["disk_gb_hour"]
    vcpus, gb = project_dataflow.MACHINES[batch["args"]["machine"]]
    disk = batch["args"]["disk_gb"] * batch["args"]["disk_gb_hour"]
    worker_hour = {
        name: vcpus * run["args"]["vcpu_hour"] + gb * run["args"]["gb_hour"] + disk
        for name, run in (("batch", batch), ("flexrs", flexrs))
    }
    ratio = flexrs["total_cost"] / batch["total_cost"]
    assert ratio == pytest.approx(worker_hour["flexrs"] / worker_hour["batch"], rel=1e-3)
    assert 0.6 < ratio < 0.61  # the disk, not discounted, keeps it just above 0.6


def test_given_prices_override_the_pricing_model(tmp_path):
    given = project(tmp_path, "--pricing", "flexrs", "--vcpu_hour", "0.1", "--gb_hour", "0.01")
    assert (given["args"]["vcpu_hour"], given["args"]["gb_hour"]) == (0.1, 0.01)
