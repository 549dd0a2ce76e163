"""Depth at GPU speed (issue 13): every figure from one invocation, on
whatever device the torch runtime sees, saved after each measurement so a
run cut short still reports what it measured.

--measurements, in the order they run (most telling first):
- model: the runtime's network alone (`DepthModel.predict` on inputs already
  at the network size); variants model=written / low_resolution (that
  decoder), compiled (`torch.compile`), batch:N, fp32 / bf16 / tf32 / fp16;
- baseline: the original's plain fp32 loop over batches of 60 (PIL Lanczos
  on the CPU, no autocast, the authors' post-processing, a min-max JPEG each);
- precision_error[=P]: --precision (or P) against fp32 on demo composites;
- stage=CONFIG: `EstimateDepth` in a Beam pipeline of demo composites,
  images/s less the model load;
- build=CONFIG: `python -m pipeline.build` with `--depth_runtime torch`,
  samples/s over its wall time. Stages and builds run precision auto.

--model da-small measures Depth Anything V2 Small instead of DenseDepth
(its architecture with seeded weights, through transformers): the model,
its variants of precision, batch and compile, stages and builds.

A CONFIG (bench/serving_configs.py) names how Beam's local runner serves the
model, e.g. `shared:16/device_resize`. Each measurement runs in a process of
its own (its own GPU memory and peak RSS), with nvidia-smi sampled where it
exists; --share_process (on in --tiny) runs all but the builds in one. If the
first measurement fails, the run stops there.

    python bench/bench_depth_gpu.py --name depth_gpu            # the GPU machine
    python bench/bench_depth_gpu.py --tiny --name depth_gpu_tiny  # any CPU (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, depth_gpu_report, gpu_sampler, serving_configs, workload  # noqa: E402
from fgbg.depth import families, models  # noqa: E402

DEFAULTS = workload.build_defaults()
BASELINE_BATCH = 60  # the original notebook's batch size

# --tiny: a run any CPU finishes in under a minute, so CI keeps this script working.
TINY = {
    "device": "cpu",
    "precision": models.BF16,
    "batch_size": 4,
    "images": 8,
    "distinct": 8,
    "input_size": "64x64",
    "measurements": "model,stage=in_process,build=in_process,baseline,precision_error,"
    "model=written,model=batch:2,model=tf32,model=fp16,precision_error=tf32,"
    "stage=shared:2/device_resize,stage=threads:2/device_resize",
    "backgrounds": 2,
    "foregrounds": 1,
    "build_flags": "--scales=1.0 --placements_per_scale=1",
    "share_process": True,
}


# model=written / model=low_resolution: that decoder whatever the device
# (the runtime's default: low resolution on a CPU, as written on a GPU).
DECODERS = {"written": False, "low_resolution": True}
# model=fp32 / bf16 / tf32 / fp16: that precision instead of --precision
PRECISIONS = tuple(p for p in models.PRECISIONS if p != models.AUTO)
# The GPU machine's default order: what decides the targets first, so that a
# run cut short by the machine's time limit still has them.
MEASUREMENTS = (
    "model,stage=shared:16/device_resize,build=shared:16/device_resize,"
    "build=threads:16/device_resize,model=fp16,model=compiled,model=fp32,model=tf32,"
    "precision_error=fp16,precision_error=tf32,stage=threads:16/device_resize,"
    "build=in_process/device_resize,stage=shared_pickle:16/device_resize,model=batch:64,"
    "model=batch:128,model=low_resolution,baseline,precision_error"
)


def depth_config(args, config_name: str = "", precision: str = ""):
    """The stage's configuration for these arguments (in `precision`, else
    --precision), served as `config_name` (bench/serving_configs.py) if given."""
    from pipeline.options import parse_size

    size, precision = parse_size(args.input_size), precision or args.precision
    config = workload.depth_config(size, args.batch_size, precision, "torch", args.device)
    config = dataclasses.replace(config, compile_model=args.compile)
    if args.checkpoint:
        config = workload.with_checkpoint(config, args.checkpoint)
    return serving_configs.depth_config_for(config, config_name) if config_name else config


def overlays(count: int, distinct: int) -> List[np.ndarray]:
    """`count` composite images of the demo inputs (`distinct` of them, repeated)."""
    composites = workload.demo_composites(min(count, distinct))
    return [composites[number % len(composites)] for number in range(count)]


def timed_loop(step, items: Sequence) -> Dict:
    """`step(item)` for each item: wall and CPU seconds, the results, and
    the wall-clock window the GPU sampler keeps."""
    cpu, started, window = common.tree_cpu_s(), time.perf_counter(), [time.time()]
    results = [step(item) for item in items]
    return {
        "timed_window": window + [time.time()],
        "wall_s": time.perf_counter() - started,
        "cpu_s": common.tree_cpu_s() - cpu,
        "results": results,
    }


# --- measurements, each in a child process -------------------------------------------


def measure_model(args, variant: str = "") -> Dict:
    """The network alone, on inputs already at the network size: the
    runtime's default path on the device, or a variant (see the module's doc)."""
    from fgbg.depth import torch_runtime

    config = depth_config(args)
    batch_size = int(variant.split(":", 1)[1]) if variant.startswith("batch:") else args.batch_size
    precision = variant if variant in PRECISIONS else config.precision
    depth = families.family(
        dataclasses.replace(config, compile_model=config.compile_model or variant == "compiled")
    )
    if variant in DECODERS:  # DenseDepth only (check_measurement)
        model = torch_runtime.DepthModel(
            torch_runtime.load_network(workload.DENSEDEPTH, None, config.seed),
            torch_runtime.resolve_device(config.device),
            precision,
            low_resolution_decoder=DECODERS[variant],
        )
    else:
        model = depth.load(precision)
    batch = depth.preprocess(np.stack(overlays(batch_size, args.distinct)))
    # two warm-up calls: cuDNN's algorithm search, torch.compile's first call
    warm_up = timed_loop(lambda _: model.predict(batch), range(2))["wall_s"]
    batches = max(1, args.images // batch_size)
    timed = timed_loop(lambda _: model.predict(batch), range(batches))
    del timed["results"]
    info = {"images": batches * batch_size, "batch_size": batch_size, "warm_up_s": warm_up}
    return {**timed, **info, **_device_memory(model.device)}


def measure_precision_error(args, precision: str = "") -> Dict:
    """A precision's depth (--precision's unless named) against fp32's on
    the distinct demo composites, both through the runtime's default path."""
    from fgbg.depth import maps, torch_runtime

    config = depth_config(args)
    network = torch_runtime.load_network("untrained", None, config.seed)
    device = torch_runtime.resolve_device(config.device)
    images = overlays(args.distinct, args.distinct)
    batch = np.stack([maps.preprocess(o, config.input_size) for o in images])

    def depth(precision: str) -> np.ndarray:
        model = torch_runtime.DepthModel(network, device, precision)
        raw = np.concatenate([model.predict(b) for b in common.batches(batch, args.batch_size)])
        return maps.postprocess(raw)[..., 0]

    precision = precision or config.precision
    errors = common.depth_errors(depth(precision), depth(models.FP32))
    return {"images": len(images), "precision": precision, **errors}


def measure_baseline(args) -> Dict:
    """The original's loop: batches of 60, fp32, everything in sequence."""
    import torch

    from fgbg.depth import maps, torch_densedepth, torch_runtime

    config = depth_config(args)
    device = torch_runtime.resolve_device(config.device)
    network = torch_densedepth.build_densedepth(config.seed).to(device)
    batches = common.batches(overlays(args.images, args.distinct), BASELINE_BATCH)

    def one_batch(batch: Sequence[np.ndarray]) -> int:
        inputs = torch.from_numpy(maps.preprocess(np.stack(batch), config.input_size))
        with torch.inference_mode():
            raw = network(inputs.to(device).permute(0, 3, 1, 2).contiguous())
        depth = maps.postprocess(raw.permute(0, 2, 3, 1).cpu().numpy())[..., 0]
        return sum(bool(maps.encode_minmax(d, config.out_size, config.jpeg_quality)) for d in depth)

    one_batch(batches[0])  # warm-up
    timed = timed_loop(one_batch, batches)
    return {**timed, "images": sum(timed.pop("results")), **_device_memory(device)}


def measure_stage(args, config_name: str) -> Dict:
    """EstimateDepth in a Beam pipeline on the local runner, as configured."""
    depth = depth_config(args, config_name, models.AUTO)
    return serving_configs.run_stage(config_name, depth, args.images, args.distinct)


def _device_memory(device) -> Dict:
    import torch

    if device.type != models.CUDA:
        return {}
    return {"cuda_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}


def child(args) -> None:
    """Run the measurements --child names (comma-separated), one after
    another, and print each one's result as a line of stdout."""
    for measurement in args.child.split(","):
        cpu = common.tree_cpu_s()
        kind, _, variant = measurement.partition("=")
        if kind == "baseline":
            measured = measure_baseline(args)
        else:
            measure = {"model": measure_model, "precision_error": measure_precision_error}
            measured = measure.get(kind, measure_stage)(args, variant)
        # The model and the baseline time their loop; a stage's run includes
        # its start-up, as a build's does.
        measured.setdefault("cpu_s", common.tree_cpu_s() - cpu)
        measured["peak_rss_mb"] = common.own_peak_rss_mb()
        common.print_result(measured)


# --- the parent: runs each child, the builds, and reports -----------------------------


def run_child(args, measurements: Sequence[str], folder: Path) -> List[Dict]:
    """`measurements` in one child process, in order (killed with its Beam
    workers past --timeout_s each); its output goes to a log in `folder`.
    Their results up to the first that fails, that one's failure included."""
    command = [sys.executable, __file__, "--child", ",".join(measurements), *args.forwarded]
    log = folder / f"{measurements[0].replace(':', '_').replace('/', '_')}.log"
    failure = None
    try:
        with gpu_sampler.GpuSampler() as gpu:
            common.run_measured(command, log, timeout_s=args.timeout_s * len(measurements))
    except RuntimeError as error:
        failure = str(error)[-2000:]
    measured = common.child_results(log)
    done = min(len(measured), len(measurements) - 1) if failure else len(measurements)
    results = [
        {"measurement": name, **result, **gpu.summary(result.get("timed_window"))}
        for name, result in zip(measurements[:done], measured)
    ]
    if failure:
        results.append({"measurement": measurements[done], "failed": failure})
    return results


def process_groups(measurements: Sequence[str], share_process: bool) -> List[List[str]]:
    """The measurements, grouped as processes run them: each in its own, or
    with `share_process` all but the builds in the first (each build is a
    `pipeline.build` process of its own either way)."""
    if not share_process:
        return [[name] for name in measurements]
    builds = [[name] for name in measurements if name.startswith("build=")]
    others = [name for name in measurements if not name.startswith("build=")]
    return ([others] if others else []) + builds


def run_build(args, config_name: str, globs: Dict[str, str], folder: Path) -> Dict:
    """One whole build with the torch runtime, as configured."""
    extra = [f"--depth_model={workload.depth_model(args.model, args.checkpoint)}"]
    extra += ["--depth_runtime=torch"]
    extra += [f"--depth_device={args.device}", f"--depth_precision={models.AUTO}"]
    batch_sizes = ("--depth_batch_size", "--depth_gpu_batch_size", "--depth_min_batch_size")
    extra += [f"--depth_input_size={args.input_size}"]
    extra += [f"{flag}={args.batch_size}" for flag in batch_sizes]
    extra += ["--depth_compile"] if args.compile else []
    extra += [*serving_configs.runner_flags(config_name), *args.build_flags.split()]
    measurement = f"build={config_name}"
    output = folder / config_name.replace(":", "_").replace("/", "_")
    try:
        with gpu_sampler.GpuSampler() as gpu:
            measured = common.run_pipeline(globs, output, extra=extra, timeout_s=args.timeout_s)
    except RuntimeError as error:
        return {"measurement": measurement, "failed": str(error)[-2000:]}
    return {"measurement": measurement, **measured, **gpu.summary()}


def check_measurement(name: str, model: str) -> None:
    """Refuse a misspelt measurement, or one `model` has no part in, before
    any runs (not after the GPU time is spent)."""
    kind, _, variant = name.partition("=")
    if model != workload.DENSEDEPTH and (
        kind in ("baseline", "precision_error") or variant in DECODERS
    ):
        raise ValueError(f"{name!r} measures DenseDepth, not --model {model}")
    if kind == "model":
        batch = variant.startswith("batch:") and variant[len("batch:") :].isdigit()
        if not (batch or variant in ("", "compiled", *DECODERS, *PRECISIONS)):
            raise ValueError(f"unknown model variant in {name!r}")
    elif kind == "precision_error":
        if variant not in ("", *PRECISIONS):
            raise ValueError(f"unknown precision in {name!r}: {', '.join(PRECISIONS)}")
    elif kind == "stage":
        serving_configs.serving(variant)
    elif kind == "build":
        if serving_configs.serving(variant).depth_fields.get("shared_memory") is False:
            raise ValueError(f"{name!r}: a build's flags cannot pickle a shared model's batches")
    elif name != "baseline":
        raise ValueError(f"unknown measurement {name!r}: model, baseline, precision_error, ...")


def environment(args) -> Dict:
    import torch

    from fgbg.depth import torch_runtime

    device = torch_runtime.resolve_device(args.device)
    cuda = device.type == models.CUDA
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores)"
    fields = ("model", "precision", "batch_size", "input_size", "compile")
    return {"device": name, "torch": torch.__version__, **{f: getattr(args, f) for f in fields}}


def parse_args(argv) -> argparse.Namespace:
    parser = common.doc_parser(__doc__)
    add = parser.add_argument
    add("--tiny", action="store_true", help=f"defaults of CI's size (options still apply): {TINY}")
    add("--model", default=workload.DENSEDEPTH, choices=tuple(workload.MODELS), help="the network")
    add("--device", default=models.AUTO, choices=models.DEVICES)
    add("--precision", default=models.BF16, choices=PRECISIONS)
    add("--batch_size", type=int, default=DEFAULTS.depth_gpu_batch_size)
    add("--images", type=int, default=2048, help="images per model/stage run")
    add(
        "--distinct",
        type=int,
        default=32,
        help="distinct demo composites, composed once, then repeated under new sample "
        "numbers; precision_error compares these",
    )
    add("--input_size", default=DEFAULTS.depth_input_size)
    add("--compile", action="store_true", help="torch.compile the network")
    add(
        "--measurements",
        default=MEASUREMENTS,
        help="comma-separated, run in this order (see above)",
    )
    add("--timeout_s", type=float, default=240.0, help="longest one measurement may run")
    add(
        "--share_process",
        action="store_true",
        help="all but the builds in one process, where starting one (PyTorch, the network) "
        "costs more than the measurement, as in a CPU's tiny run (BENCHMARKS.md, 'The test "
        "suite'); peak RSS is then the process's so far, a stage's GPU figures the process's",
    )
    add("--backgrounds", type=int, default=25)
    add("--foregrounds", type=int, default=10)
    add("--build_flags", default="", help="more flags for every build")
    common.add_output_options(parser, "depth_gpu")
    add(
        "--predictions",
        type=Path,
        help="a bench_serving.py result file whose builds predict this run's (gpu_machine.sh)",
    )
    add("--child", default=None, help=argparse.SUPPRESS)
    add("--checkpoint", default="", help=argparse.SUPPRESS)  # da-small's folder, for children
    if parser.parse_args(argv).tiny:  # TINY's sizes become the defaults; options still win
        parser.set_defaults(**TINY)
    args = parser.parse_args(argv)
    forwarded = ("model", "device", "precision", "batch_size", "images", "distinct", "input_size")
    args.forwarded = [f"--{name}={getattr(args, name)}" for name in forwarded]
    args.forwarded += ["--compile"] if args.compile else []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    measurements = [m for m in args.measurements.split(",") if m]
    for measurement in measurements:
        check_measurement(measurement, args.model)
    predictions = depth_gpu_report.load_predictions(args.predictions)
    env = environment(args)
    argv_used = sys.argv if argv is None else [__file__, *argv]
    results: List[Dict] = []

    def record(result: Dict) -> None:
        """Keep every figure so far on disk: a run cut short still reports."""
        results.append(result)
        markdown = depth_gpu_report.report(results, env, argv_used, predictions)
        common.save(args.name, markdown, {"environment": env, "results": results}, args.results)

    with tempfile.TemporaryDirectory(prefix="fgbg-depth-gpu-") as folder:
        if args.model == workload.DEPTH_ANYTHING:
            args.checkpoint = workload.depth_anything_small(Path(folder))
            args.forwarded.append(f"--checkpoint={args.checkpoint}")
        globs: Dict[str, str] = {}
        for group in process_groups(measurements, args.share_process):
            while group:  # after a failure, the rest of a group in a fresh process
                common.say(", ".join(group))
                kind, _, config = group[0].partition("=")
                if kind != "build":
                    done = run_child(args, group, Path(folder))
                else:
                    globs = globs or workload.make_inputs(
                        Path(folder) / "inputs", args.backgrounds, args.foregrounds
                    )
                    done = [run_build(args, config, globs, Path(folder))]
                for result in done:
                    record(result)
                if "failed" in results[0]:
                    return 1  # the network itself does not run: nothing else would
                group = group[len(done) :]
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
