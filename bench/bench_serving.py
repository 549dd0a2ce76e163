"""How well each way of serving the depth model feeds a device, measured on
any CPU with a device stand-in (bench/standin.py) in place of the network.

Per configuration (bench/serving_configs.py names them), DenseDepth's
preprocessing and post-processing around the stand-in (builds also with
--models da-small: Depth Anything V2 Small's):
- serving: the depth stage alone with a stand-in too fast to wait, its CPU
  less a control's that makes and encodes the same composites, per image;
  the owner's share (the model's serving threads, from the stand-in's log)
  gives the ceiling: images per second one core can serve;
- build: whole builds with the stand-in at each --factors x the depth-off
  build's samples/s (the default local build of the same inputs, run first);
  efficiency is samples/s over the stand-in's rate, beside its busy share.

    python bench/bench_serving.py --name serving            # BENCHMARKS.md's figures
    python bench/bench_serving.py --tiny --name serving_tiny  # any CPU in a minute (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, serving_configs, standin, workload  # noqa: E402

# A stand-in this fast never makes the stage wait: what is left is serving.
FREE_RATE = 1e6
# The build's depth flags besides the model: the torch runtime on a GPU,
# whose network the stand-in replaces (so DenseDepth's builds never import
# torch), composites resized "on the device".
STANDIN_BUILD_FLAGS = ("--depth_runtime=torch", "--depth_device=cuda", "--depth_resize_on_device")

TINY = {
    "configs": "in_process,shared:2",
    "build_configs": "shared:2",
    "images": 16,
    "backgrounds": 2,
    "foregrounds": 1,
    "placements": 1,
    "factors": "2",
    "build_flags": "--no_tft --scales=1.0",
}


def child_env() -> Dict[str, str]:
    """Beam's worker processes unpickle bench's classes: they need the root on their path."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def standin_loader(rate: float, folder: Path):
    """A DepthConfig.loader for a stand-in at `rate`, logging under `folder`."""
    return functools.partial(
        standin.load_standin,
        rate=rate,
        lock_path=str(folder / "device.lock"),
        log_path=str(folder / "device.log"),
    )


# --- children ---------------------------------------------------------------------------


def stage_child(args) -> Dict:
    """The stage (or its control) as configured, with a free stand-in."""
    from pipeline.options import parse_size

    defaults = workload.build_defaults()
    size, batch_size = parse_size(defaults.depth_input_size), defaults.depth_gpu_batch_size
    base = workload.depth_config(size, batch_size, runtime="torch", device="cuda")
    depth = dataclasses.replace(
        serving_configs.depth_config_for(base, f"{args.config}/device_resize"),
        loader=standin_loader(FREE_RATE, Path(args.folder)),
    )
    control = args.child == "control"
    return serving_configs.run_stage(args.config, depth, args.images, args.distinct, control)


def build_child(args, pipeline_args: Sequence[str]) -> Dict:
    """`pipeline.build` with the stand-in at --rate in place of the network."""
    from pipeline import build
    from pipeline import config as build_config

    made_by_options = build_config.depth_config
    loader = standin_loader(args.rate, Path(args.folder))

    def with_standin(opts, checkpoint=None):
        depth = serving_configs.depth_config_for(made_by_options(opts, checkpoint), args.config)
        return dataclasses.replace(depth, loader=loader)

    # The benchmark's own process: its builds' depth stage gets the stand-in.
    build_config.depth_config = with_standin
    manifest = build.run(list(pipeline_args))
    return {"samples": manifest.counts.samples}


# --- the parent -------------------------------------------------------------------------


def run_child(args, child: str, config: str, folder: Path, extra: Sequence[str] = ()) -> Dict:
    """One child measurement in a fresh process tree: its wall and CPU
    seconds (every Beam worker included), its result, and the stand-in's log."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", child, "--config", config]
    command += ["--folder", str(folder), "--images", str(args.images)]
    command += ["--distinct", str(args.distinct), *extra]
    log = folder / "child.log"
    measured = common.run_measured(command, log, env=child_env(), timeout_s=args.timeout_s)
    result = common.child_result(log)
    return {**measured, **result, "calls": standin.read_calls(folder / "device.log")}


def owner_cpu_s(calls: List[standin.DeviceCall]) -> float:
    """CPU seconds the model's serving threads spent: each thread's CPU when
    it last took the device (Beam's proxy gives every caller a thread of its
    own in the owner, which does nothing but serve it)."""
    last: Dict[int, float] = {}
    for call in calls:
        last[call.thread] = max(last.get(call.thread, 0.0), call.thread_cpu_s)
    return sum(last.values())


def measure_serving(args, config: str, folder: Path) -> Dict:
    """Serving CPU per image for `config`, against its control."""
    control = run_child(args, "control", config, folder / "control")
    stage = run_child(args, "stage", config, folder / "stage")
    per_image_ms = 1000.0 * max(stage["cpu_s"] - control["cpu_s"], 0.0) / args.images
    shared = bool(serving_configs.serving(config).depth_fields.get("share_model"))
    owner_ms = 1000.0 * owner_cpu_s(stage["calls"]) / args.images if shared else per_image_ms
    return {
        "config": config,
        "images": args.images,
        "stage_cpu_s": stage["cpu_s"],
        "control_cpu_s": control["cpu_s"],
        "stage_wall_s": stage["wall_s"],
        "control_wall_s": control["wall_s"],
        "batches": len(stage["calls"]),
        "serving_ms": per_image_ms,
        "owner_ms": owner_ms,
        "worker_ms": max(per_image_ms - owner_ms, 0.0) if shared else 0.0,
        "ceiling_images_s": 1000.0 / owner_ms if owner_ms > 0 else float("inf"),
        "stage_images_s": args.images / stage["wall_s"],
        "others_cpu_s": stage["others_cpu_s"] + control["others_cpu_s"],
    }


def pipeline_args(globs: Dict[str, str], output: Path, args, extra: Sequence[str]) -> List[str]:
    """A build of the benchmark's inputs, every core unless `extra` says otherwise."""
    command = common.pipeline_command(globs, output, tft=True)
    flags = command[3:]  # less `python -m pipeline.build`
    flags += [f"--placements_per_scale={args.placements}", *args.build_flags.split(), *extra]
    return flags


def measure_depth_off(args, globs: Dict[str, str], folder: Path) -> Dict:
    """The default local build of the inputs with no depth: the reference rate."""
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "output"
    command = [sys.executable, "-m", "pipeline.build", *pipeline_args(globs, output, args, [])]
    measured = common.run_measured(command, folder / "build.log", timeout_s=args.timeout_s)
    samples = json.loads((output / "manifest.json").read_text())["counts"]["samples"]
    return {**measured, "samples": samples, "samples_s": samples / measured["wall_s"]}


def measure_build(
    args, model: str, config: str, rate: float, globs: Dict[str, str], folder: Path
) -> Dict:
    """A whole build of `model` (of workload.MODELS) served as `config`
    with the stand-in at `rate` images/s."""
    depth = [f"--depth_model={workload.depth_model(model, args.checkpoint)}"]
    depth += [f"--depth_input_size={args.input_size}"] if args.input_size else []
    flags = [*depth, *STANDIN_BUILD_FLAGS, *serving_configs.runner_flags(config)]
    build = pipeline_args(globs, folder / "output", args, flags)
    measured = run_child(args, "build", config, folder, ["--rate", str(rate), "--", *build])
    calls = measured.pop("calls")
    samples_s = measured["samples"] / measured["wall_s"]
    window = (calls[-1].end - calls[0].start) if calls else 0.0
    return {
        "model": model,
        "config": config,
        "rate": rate,
        **{key: measured[key] for key in ("samples", "wall_s", "cpu_s", "others_cpu_s")},
        "samples_s": samples_s,
        "efficiency": samples_s / rate,
        "device_busy_in_depth": standin.busy_share(calls),
        "depth_share_of_wall": window / measured["wall_s"],
        "batches": len(calls),
        "images_served": sum(call.images for call in calls),
    }


def report(serving: List[Dict], depth_off: Optional[Dict], builds: List[Dict], argv) -> str:
    rows = [
        [s["config"], *(f"{s[key]:.3f}" for key in ("serving_ms", "worker_ms", "owner_ms"))]
        + [f"{s['ceiling_images_s']:,.0f}", f"{s['stage_images_s']:.3g}"]
        for s in serving
    ]
    build_rows = [
        [
            workload.MODELS[b["model"]],
            b["config"],
            f"{b['rate'] / depth_off['samples_s']:.2f}x = {b['rate']:.3g}",
            f"{b['samples_s']:.3g}",
            f"**{100 * b['efficiency']:.0f}%**",
            f"{100 * b['device_busy_in_depth']:.0f}%",
            f"{100 * b['depth_share_of_wall']:.0f}%",
            f"{b['wall_s']:.1f}",
        ]
        for b in builds
    ]
    parts = [f"## Serving the depth model, with a device stand-in\n\n{common.header(argv)}"]
    if serving:
        parts += [
            f"Serving CPU per image (DenseDepth's stage less its control, {serving[0]['images']} "
            "images; owner: the process that holds the model, its serving threads where other "
            "processes call it; ceiling: 1000 / owner ms):",
            common.table(
                "configuration | serving ms/image | workers ms/image | owner ms/image | "
                "ceiling images/s | stage images/s",
                rows,
            ),
        ]
    if depth_off:
        parts += [
            f"Whole builds of {depth_off['samples']} samples; depth off: "
            f"{depth_off['samples_s']:.3g} samples/s ({depth_off['wall_s']:.1f} s):",
            common.table(
                "model | configuration | stand-in rate (x depth off = images/s) | samples/s | "
                "efficiency | device busy while depth ran | depth's share of the wall time | "
                "wall s",
                build_rows,
            ),
        ]
    return "\n\n".join(parts)


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_output_options(parser, "serving")
    add = parser.add_argument
    add("--tiny", action="store_true", help="a run any CPU finishes in a minute (options win)")
    add("--models", default=workload.DENSEDEPTH, help=f"builds': of {', '.join(workload.MODELS)}")
    add("--input_size", default="", help="the depth builds' network input (default: the model's)")
    add("--configs", default="in_process,threads:8,shared_pickle:4,shared:4")
    add("--build_configs", default="in_process,threads:8,shared_pickle:4,shared:4")
    add("--images", type=int, default=2000, help="serving: images per stage run")
    add("--distinct", type=int, default=32, help="distinct demo composites")
    add("--backgrounds", type=int, default=20)
    add("--foregrounds", type=int, default=20)
    add("--placements", type=int, default=5, help="per scale (40 samples/pair)")
    add("--factors", default="0.25,0.5,1", help="stand-in rates x depth-off")
    add("--rates", default="", help="stand-in images/s for the builds, instead of --factors")
    add("--build_flags", default="", help="more pipeline flags for every build")
    add("--timeout_s", type=float, default=1800.0)
    add("--child", choices=["stage", "control", "build"], help=argparse.SUPPRESS)
    add("--config", help=argparse.SUPPRESS)
    add("--folder", help=argparse.SUPPRESS)
    add("--rate", type=float, help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].tiny:  # TINY's sizes become the defaults
        parser.set_defaults(**TINY)
    args, pipeline = parser.parse_known_args(argv)
    args.pipeline = [flag for flag in pipeline if flag != "--"]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        build = args.child == "build"
        common.print_result(build_child(args, args.pipeline) if build else stage_child(args))
        return 0
    configs = serving_configs.config_names(args.configs)
    models = args.models.split(",")
    if set(models) - set(workload.MODELS):
        raise ValueError(f"--models: {args.models!r}, not of {', '.join(workload.MODELS)}")
    build_configs = serving_configs.config_names(args.build_configs)
    factors = [float(factor) for factor in args.factors.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as scratch:
        folder = Path(scratch)
        # Depth Anything's seeded checkpoint, written once for its builds.
        wanted = workload.DEPTH_ANYTHING in models
        args.checkpoint = workload.depth_anything_small(folder) if wanted else ""
        serving = [measure_serving(args, c, folder / f"serving_{i}") for i, c in enumerate(configs)]
        depth_off = None
        if build_configs:
            globs = workload.make_inputs(folder / "inputs", args.backgrounds, args.foregrounds)
            depth_off = measure_depth_off(args, globs, folder / "depth_off")
        rates = [float(r) for r in args.rates.split(",")] if args.rates else []
        if depth_off and not rates:
            rates = [factor * depth_off["samples_s"] for factor in factors]
        builds = [
            measure_build(args, model, config, rate, globs, folder / f"build_{m}_{index}_{number}")
            for m, model in enumerate(models)
            for index, config in enumerate(build_configs)
            for number, rate in enumerate(rates)
        ]
    markdown = report(serving, depth_off, builds, ["bench/bench_serving.py", *argv])
    data = {"serving": serving, "depth_off": depth_off, "builds": builds}
    common.save(args.name, markdown, data, folder=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
