"""Depth precision: the rule on written maps (fgbg/depth/precision_rule.py),
the choice each worker makes (fgbg/depth/precision.py), the rule on the
real network at a tiny size, and a resume on other hardware."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fgbg.depth import models, precision, precision_rule
from tests.helpers import make_inputs, run_bench, small_build_args

REPO = Path(__file__).resolve().parents[1]
SIZE = (224, 224)
QUALITY = 85


def smooth_depth(seed: int, shape=(60, 80)) -> np.ndarray:
    """A post-processed depth map (units of 10 m) with a near object's edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    depth = 0.3 + 0.4 * yy + 0.1 * np.sin(6 * xx + rng.uniform(0, 3))
    depth[10:30, 20:45] = 0.12
    return depth.astype(np.float32)


def with_mantissa_bits(depth: np.ndarray, bits: int) -> np.ndarray:
    """`depth` rounded to `bits` bits of mantissa, as a coarser float would hold it."""
    mantissa, exponent = np.frexp(depth)
    return np.ldexp(np.round(mantissa * 2**bits) / 2**bits, exponent).astype(np.float32)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("encoding", ["minmax", "metric"])
def test_the_same_maps_pass_with_no_difference(encoding):
    maps = [smooth_depth(seed) for seed in range(3)]
    verdict = precision_rule.judge(maps, maps, encoding, SIZE, QUALITY)
    assert verdict.passes and verdict.difference == precision_rule.Difference(0.0, 0.0)


def test_minmax_budget_is_what_the_jpeg_already_loses():
    """fp32's own written maps differ from their unencoded values: that is
    the budget, and it is not zero."""
    maps = [smooth_depth(seed) for seed in range(3)]
    budget = precision_rule.judge(maps, maps, "minmax", SIZE, QUALITY).budget
    assert 0.1 < budget.mean < 3 and budget.p99 >= 1
    finer = precision_rule.judge(maps, maps, "minmax", SIZE, 100).budget
    assert finer.mean < budget.mean


@pytest.mark.parametrize("encoding", ["minmax", "metric"])
def test_a_coarse_precision_fails_and_a_fine_one_passes(encoding):
    """The rule can fail: a float with 4 bits of mantissa changes written
    maps beyond what the encoding loses; 16 bits does not."""
    maps = [smooth_depth(seed) for seed in range(3)]
    coarse = [with_mantissa_bits(m, 4) for m in maps]
    fine = [with_mantissa_bits(m, 16) for m in maps]
    assert not precision_rule.judge(maps, coarse, encoding, SIZE, QUALITY).passes
    assert precision_rule.judge(maps, fine, encoding, SIZE, QUALITY).passes


def test_metric_rule_is_relative_to_the_depth():
    maps = [smooth_depth(seed) for seed in range(2)]
    off_by = lambda factor: [m * factor for m in maps]  # noqa: E731
    assert precision_rule.judge(maps, off_by(1.001), "metric", SIZE, None).passes
    far = precision_rule.judge(maps, off_by(1.005), "metric", SIZE, None)
    assert not far.passes and far.difference.mean == pytest.approx(0.005, abs=0.0015)


def test_the_rule_needs_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        precision_rule.judge([smooth_depth(0)], [], "minmax", SIZE, QUALITY)


# --------------------------------------------------------------------------- the choice


def config(**changes):
    """The depth configuration of a default build, with `changes`."""
    from pipeline.config import depth_config
    from pipeline.options import FgbgOptions

    return dataclasses.replace(depth_config(FgbgOptions(["--depth_model=untrained"])), **changes)


@pytest.fixture
def cpu_with(monkeypatch):
    def set_flags(*flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))

    return set_flags


@pytest.fixture
def rule_passes(monkeypatch):
    """Let the rule table claim `precisions` for every setting."""

    def claim(*precisions):
        monkeypatch.setattr(precision, "meets_rule", lambda config, device: precisions)

    return claim


def test_auto_runs_what_the_hardware_has_and_the_rule_passed(cpu_with, rule_passes):
    rule_passes(models.BF16)
    cpu_with("avx512f", "avx512_bf16")
    assert precision.resolve(config()) == models.BF16
    cpu_with("amx_bf16")
    assert precision.resolve(config()) == models.BF16
    cpu_with("avx512f", "avx2")
    assert precision.resolve(config()) == models.FP32
    rule_passes()
    cpu_with("avx512_bf16")
    assert precision.resolve(config()) == models.FP32


def test_the_table_holds_only_what_was_measured_where_it_was_measured():
    torch_cpu = config(runtime="torch", device="cpu")
    assert precision.meets_rule(torch_cpu, "cpu") == (models.FP16,)
    assert precision.meets_rule(torch_cpu, "cuda") == ()  # the rule has not run on a GPU
    for changed in (
        {"out_size": (448, 448)},
        {"jpeg_quality": 95},
        {"input_size": (320, 256)},
        {"resize_on_device": True},
        {"encoding": "metric"},
        {"model": "my_model.h5"},
    ):
        assert precision.meets_rule(dataclasses.replace(torch_cpu, **changed), "cpu") == ()


def test_auto_runs_fp32_everywhere_today(cpu_with, monkeypatch):
    """fp16 met the rule on the CPU, which does not run it natively; no GPU
    entry yet. So the GPU's capability is not even asked."""
    cpu_with("avx512_bf16", "amx_bf16")
    assert precision.resolve(config()) == models.FP32
    assert precision.resolve(config(runtime="torch", device="cpu")) == models.FP32
    monkeypatch.setattr(precision, "device_kind", lambda _: "cuda")
    monkeypatch.setattr(precision, "offered", lambda device: pytest.fail("asked the GPU"))
    assert precision.resolve(config(runtime="torch", device="cuda")) == models.FP32


def test_a_named_precision_must_run_natively(cpu_with):
    cpu_with("avx2")
    assert precision.resolve(config(precision="fp32")) == models.FP32
    with pytest.raises(models.ModelLoadError, match="--depth_precision bf16.*offers fp32"):
        precision.resolve(config(precision="bf16"))
    cpu_with("avx512_bf16")
    assert precision.resolve(config(precision="bf16")) == models.BF16


def test_gpus_offer_what_their_tensor_units_run(monkeypatch, rule_passes):
    assert precision.gpu_offers((9, 0)) == ("bf16", "fp16", "tf32", "fp32")
    assert precision.gpu_offers((7, 5)) == ("fp16", "fp32")
    assert precision.gpu_offers((6, 1)) == ("fp32",)
    torch_gpu = config(runtime="torch", device="cuda")
    monkeypatch.setattr(precision, "device_kind", lambda _: "cuda")
    rule_passes(models.FP16, models.TF32)
    monkeypatch.setattr(precision, "offered", lambda _: precision.gpu_offers((8, 9)))
    assert precision.resolve(torch_gpu) == models.FP16  # bf16 is offered, but not passed
    monkeypatch.setattr(precision, "offered", lambda _: precision.gpu_offers((6, 1)))
    assert precision.resolve(torch_gpu) == models.FP32


def test_a_default_build_is_a_measured_setting():
    """Changing a default (size, quality, encoding, network input) without
    measuring the rule again would leave the table describing other builds."""
    assert precision.rule_key(config(runtime="torch"), "cpu") in precision.MEETS_RULE


def test_a_missing_cpuinfo_offers_fp32_only(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    precision.cpu_flags.cache_clear()
    try:
        assert precision.cpu_offers() == (models.FP32,)
    finally:
        precision.cpu_flags.cache_clear()


# --------------------------------------------------------------------------- a resume


RESUME_ON_OTHER_HARDWARE = """
import json, sys
from pathlib import Path
from fgbg.depth import precision
from pipeline import build

args, output = json.loads(sys.argv[1]), Path(sys.argv[2])
precision.meets_rule = lambda config, device: ("bf16",)
for flags in ([], ["avx512_bf16"], ["avx512_bf16"]):
    precision.cpu_flags = lambda flags=flags: frozenset(flags)
    build.run(args)
    records = [json.loads(p.read_text()) for p in sorted(output.glob("*/*/.pair.json"))]
    print(json.dumps({
        "made": json.loads((output / "timings.json").read_text())["counters"].get(
            "compositing.pairs", 0),
        "records": sorted({row["depth_precision"] for r in records for row in r["rows"]}),
        "manifest": json.loads((output / "manifest.json").read_text())["depth"]["precision"],
    }))
"""


@pytest.mark.e2e
def test_a_resume_on_hardware_with_another_precision_remakes_every_pair(tmp_path):
    """A build on a CPU without bfloat16 units, resumed on one with them:
    `auto` resolves to bf16 there, so every pair is made again and nothing
    mixes precisions; resumed again on that hardware, nothing is remade.
    (The hardware is simulated by the CPU flags each run sees, and the rule
    table made to allow bf16, which it does not today; in a process of its
    own, as TensorFlow's bf16 setting is process-wide.)"""
    inputs = make_inputs(tmp_path / "in", backgrounds=2, foregrounds=1)
    output = tmp_path / "out"
    args = small_build_args(
        inputs,
        output,
        f"--size={SIZE[0]}",
        "--depth_model=untrained",
        "--depth_input_size=64x64",
        "--scales=1.0",
        "--placements_per_scale=1",
        "--no_mirror",
    )
    done = subprocess.run(
        [sys.executable, "-c", RESUME_ON_OTHER_HARDWARE, json.dumps(args), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert runs == [
        {"made": 2, "records": ["fp32"], "manifest": "fp32"},
        {"made": 2, "records": ["bf16"], "manifest": "bf16"},
        {"made": 0, "records": ["bf16"], "manifest": "bf16"},
    ]


# --------------------------------------------------------------------------- the real network


@pytest.mark.model
@pytest.mark.bench
def test_every_precision_auto_may_pick_meets_the_rule_at_a_tiny_size(tmp_path):
    """bench/bench_precision.py at a tiny size (64x64 network input, the
    demo composites, one weight seed), judged at the dataset size the table
    was measured at: a change that makes a claimed precision worse fails
    here. PyTorch's bf16 and fp16 run on any CPU (emulated where it has no
    units); TensorFlow's bf16 runs as fp32 on a CPU without them."""
    claims = {
        (runtime, encoding, side, p)
        for (runtime, device, _, _, encoding, side, _), chosen in precision.MEETS_RULE.items()
        if device == "cpu"
        for p in chosen
    }
    assert claims, "no CPU entry: the table has nothing this test can recompute"
    sides = sorted({side for _, _, side, _ in claims})
    candidates = sorted({f"{runtime}-{p}" for runtime, _, _, p in claims})
    results = run_bench(
        "bench_precision.py",
        tmp_path,
        f"--candidates={','.join(candidates)}",
        "--seeds=0",
        "--images=2",
        "--input_size=64x64",
        f"--sides={','.join(map(str, sides))}",
        "--sets=demo",
        timeout=900,
    )
    judged = {
        (result["path"], verdict["encoding"], verdict["side"]): verdict
        for result in results
        for verdict in result["verdicts"]
    }
    for runtime, encoding, side, p in claims:
        verdict = judged[(f"{runtime}-{p}", encoding, side)]
        assert verdict["passes"], (runtime, p, verdict)
