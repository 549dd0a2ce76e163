"""Every rule about option values is checked once, with the options, before
any work (pipeline/options/); the configuration derived from them is
complete (pipeline/config.py)."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import RunContext, build_config
from pipeline.options import FgbgOptions, UsageError, check_options

REQUIRED = ["--bg=in/bg/*", "--fg=in/fg/*", "--output=out"]
RUN = RunContext(
    started_at="2026-11-27T00:00:00+00:00", input_files={}, tft_temp_dir="tmp", progress_dir=None
)


def options(*flags: str) -> FgbgOptions:
    return PipelineOptions([*REQUIRED, *flags]).view_as(FgbgOptions)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--depth_model=untrained", "--depth_min_batch_size=3", "--depth_batch_size=2"],
            "--depth_min_batch_size must be at most --depth_batch_size",
        ),
        (
            ["--depth_model=untrained", "--depth_min_batch_size=0"],
            "--depth_min_batch_size must be >= 1",
        ),
        (
            ["--depth_model=untrained", "--depth_target_batch_duration_s=0"],
            "--depth_target_batch_duration_s must be > 0",
        ),
        (["--depth_model=untrained", "--depth_quality=0"], "--depth_quality must be in 1..100"),
        (["--size=0"], "--size must be >= 8"),
        (["--depth_model=densedepth"], "ialhashim/DenseDepth"),
        (["--depth_model=untrained", "--depth_weights=nyu.h5"], "densedepth only"),
        (["--depth_model=untrained", "--depth_input_size=640x470"], "multiples of 32"),
        (["--depth_model=none", "--depth_input_size=100x64"], "multiples of 32"),
        (["--depth_input_size=640by480"], "WIDTHxHEIGHT"),
        (["--depth_model=untrained", "--depth_device=cuda"], "are for --depth_runtime torch"),
        (["--depth_model=untrained", "--depth_compile"], "are for --depth_runtime torch"),
        (
            ["--depth_model=untrained", "--depth_resize_on_device"],
            "are for --depth_runtime torch",
        ),
        (["--depth_model=my.keras", "--depth_runtime=torch"], "needs --depth_runtime tensorflow"),
    ],
)
def test_depth_rules_are_checked_with_the_options(flags, message):
    with pytest.raises(UsageError, match=message):
        check_options(options(*flags))


def test_a_composites_only_build_has_no_depth_stage():
    opts = options("--depth_model=none")
    check_options(opts)
    config = build_config(opts, RUN)
    assert config.depth is None and config.depth_encoding == "none"
    assert config.depth_info.note and config.depth_extension == ""


def test_the_config_carries_every_depth_choice():
    opts = options(
        "--depth_model=untrained",
        "--depth_input_size=320x256",
        "--depth_encoding=metric",
        "--size=96",
        "--seed=5",
    )
    check_options(opts)
    depth = build_config(opts, RUN).depth
    assert (depth.model, depth.seed, depth.input_size, depth.encoding, depth.out_size) == (
        "untrained",
        5,
        (320, 256),
        "metric",
        (96, 96),
    )
    assert build_config(opts, RUN).depth_extension == "png"


def test_depth_precision_reaches_the_stage_but_not_the_pair_key():
    """Which precision ran is each worker's answer (fgbg/depth/precision.py),
    and each pair's record keeps it; the option asked for is not what a
    finished pair is compared by."""
    auto, fp32, bf16 = (
        options("--depth_model=untrained", *([f"--depth_precision={p}"] if p else []))
        for p in (None, "fp32", "bf16")
    )
    for checked in (auto, fp32, bf16):
        check_options(checked)
    configs = [build_config(o, RUN) for o in (auto, fp32, bf16)]
    assert [c.depth.precision for c in configs] == ["auto", "fp32", "bf16"]
    assert len({c.fingerprint for c in configs}) == 1


@pytest.mark.parametrize("precision", ["fp16", "tf32"])
def test_gpu_precisions_need_the_torch_runtime(precision):
    with pytest.raises(UsageError, match=f"--depth_precision {precision} is for --depth_runtime"):
        check_options(options("--depth_model=untrained", f"--depth_precision={precision}"))
    torch = ("--depth_model=untrained", "--depth_runtime=torch", f"--depth_precision={precision}")
    check_options(options(*torch))
    with pytest.raises(UsageError, match=f"--depth_precision {precision} needs a GPU"):
        check_options(options(*torch, "--depth_device=cpu"))


def test_depth_runtime_reaches_the_stage_the_manifest_and_the_pair_key():
    """Runtimes agree to fp32 rounding, not to the byte: a rerun on the other
    runtime makes its pairs anew rather than mixing the two."""
    tensorflow = options("--depth_model=untrained")
    torch = options(
        "--depth_model=untrained",
        "--depth_runtime=torch",
        "--depth_device=cpu",
        "--depth_compile",
    )
    check_options(torch)
    config = build_config(torch, RUN)
    assert (config.depth.runtime, config.depth.device, config.depth.compile_model) == (
        "torch",
        "cpu",
        True,
    )
    assert config.depth_info.to_json()["runtime"] == "torch"
    assert config.fingerprint != build_config(tensorflow, RUN).fingerprint


def test_gpu_depth_choices_reach_the_stage_and_beam():
    """--depth_share_model reaches Beam (RunInference's
    share_model_across_processes); --depth_resize_on_device changes the maps,
    so it is part of the pair key."""
    from transforms.depth import DepthModelHandler

    plain = options("--depth_model=untrained", "--depth_runtime=torch")
    gpu = options(
        "--depth_model=untrained",
        "--depth_runtime=torch",
        "--depth_share_model",
        "--depth_resize_on_device",
    )
    check_options(gpu)
    config = build_config(gpu, RUN)
    assert config.depth.share_model and config.depth.resize_on_device
    assert config.depth_info.to_json()["input_resize"] == "bicubic on the device"
    assert build_config(plain, RUN).depth_info.to_json()["input_resize"] == "lanczos on the cpu"
    assert DepthModelHandler(config.depth).share_model_across_processes()
    assert not DepthModelHandler(build_config(plain, RUN).depth).share_model_across_processes()
    assert config.fingerprint != build_config(plain, RUN).fingerprint


def test_batches_on_a_gpu_take_the_gpu_batch_size():
    cpu = options("--depth_model=untrained", "--depth_runtime=torch")
    gpu = options("--depth_model=untrained", "--depth_runtime=torch", "--depth_device=cuda")
    assert cpu.depth_gpu_batch_size > cpu.depth_batch_size
    assert build_config(cpu, RUN).depth.batch_size == cpu.depth_batch_size
    assert build_config(gpu, RUN).depth.batch_size == gpu.depth_gpu_batch_size
    # the smallest batch is checked against the size in effect, and names it
    on_gpu = ("--depth_model=untrained", "--depth_runtime=torch", "--depth_device=cuda")
    check_options(options(*on_gpu, "--depth_batch_size=2", "--depth_min_batch_size=3"))
    with pytest.raises(UsageError, match="at most --depth_gpu_batch_size"):
        check_options(options(*on_gpu, "--depth_gpu_batch_size=2", "--depth_min_batch_size=3"))


def test_the_torch_runtime_needs_pytorch_installed(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else find_spec(name, *a),
    )
    with pytest.raises(UsageError, match=r"pip install -e '\.\[torch\]'"):
        check_options(options("--depth_model=untrained", "--depth_runtime=torch"))


def test_the_default_precision_keeps_pair_keys_of_earlier_builds():
    """Outputs built before --depth_precision existed are still resumed: at
    its default the option is not part of the fingerprint."""
    from fgbg.pair_records import options_fingerprint
    from pipeline.config import SAMPLE_SHAPING_OPTIONS

    opts = options("--depth_model=untrained")
    earlier = options_fingerprint({name: getattr(opts, name) for name in SAMPLE_SHAPING_OPTIONS})
    assert build_config(opts, RUN).fingerprint == earlier
