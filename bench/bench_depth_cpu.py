"""Depth on CPU: each way this machine can run DenseDepth, against today's path, in one run.

Every path runs in a process of its own (thread settings and TensorFlow's
graph options are per process), on the same composites and the same seeded
weights (the real architecture, `--depth_model untrained`), and does the
pipeline's whole batch step: Lanczos resize to the network size, the
network, the authors' post-processing. Paths:

- tf fp32 written: the depth stage before this issue, the baseline
  (transforms/depth.py's handler with the Keras model as written, default
  threads);
- tf fp32: today's default, the handler with `LowResolutionDecoder` (the
  same function with convA's upsampled half at low resolution);
- tf fp32 written, 1 thread: one intra-op thread, as one worker process per
  core would run;
- tf fp32 written + XLA: the same graph compiled with `jit_compile=True`;
- tf bf16 (written, and with the low-resolution decoder):
  `--depth_precision bf16` (oneDNN's automatic mixed precision);
- torch fp32 written / fp32 / fp32 1 thread / bf16: `--depth_runtime torch`
  on the CPU (channels_last; bf16 is CPU autocast), with the same seeded
  weights;
- torch fp32 device resize: `--depth_resize_on_device`, bicubic in torch
  instead of PIL's Lanczos (its error is mostly the resampling's);
- OpenVINO fp32 / bf16: the Keras model converted in-process with
  `openvino.convert_model` (measured only when openvino is installed: it is
  not a dependency of fgbg);
- da-small-224 / da-small-518: another model, Depth Anything V2 Small
  (its full architecture with seeded weights, fgbg/depth/seeded_checkpoints.py),
  through the same handler on PyTorch at a 224 or 518 square input, its
  maps post-processed to the dataset size: its cost, not its error (no
  error columns: it is not DenseDepth);
- da-onnx-224 / da-onnx-518 / da-int8-224 / da-int8-518: the same seeded
  Small exported to ONNX for that input side (torch.onnx.export), and its
  int8 sibling (onnxruntime's quantize_dynamic, which is how the Hub's
  model_quantized.onnx is made), through the same handler on the onnx
  runtime (ONNX Runtime's default threads, as torch's). Below the table:
  their largest difference from the torch path's maps, and the precision
  rule (fgbg/depth/precision_rule.py, minmax at the dataset size) for int8
  against the fp32 export.

Reported per path: CPU seconds per image (the process's own, over the timed
batches after a warm-up batch), wall images/s, the process's peak RSS, and
its error against tensorflow fp32 on the same images: depth in metres (max
and mean absolute difference) and the stored min-max grey levels
(`maps.minmax_grey` at the dataset size: share of pixels within 1 level,
largest difference). The composites are the demo scenes with the demo
cut-outs pasted by the pipeline's own compositing.

    python bench/bench_depth_cpu.py --images 8 --name depth_cpu

With --builds, whole `python -m pipeline.build` runs of each kind of build
(BUILDS: depth off, DenseDepth on each runtime, Depth Anything V2 Small at
224) in each --configs way of running (bench/serving_configs.py's names,
each optionally followed by build flags), each a fresh process tree,
interleaved round by round (A B A B), with the model-alone paths of the
same run beside them: wall and CPU per sample, medians over the rounds.

    python bench/bench_depth_cpu.py --builds none,tf,torch,da-small-224 --rounds 3 \\
        --paths tf-fp32-written,tf-fp32,torch-fp32,da-small-224 --name every_core

With --startup N, N fresh processes each go through a TensorFlow depth
process's start-up phase by phase, as the depth stage does (the seeded
model, the default decoder), then run two batches: CPU s per phase,
medians, and the first batch's excess over the second (tracing, the first
call's kernels).

    python bench/bench_depth_cpu.py --paths "" --startup 3 --name tf_startup
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, serving_configs, workload  # noqa: E402

DEFAULTS = workload.build_defaults()
PATHS = (
    "tf-fp32-written,tf-fp32,tf-fp32-written-1thread,tf-fp32-written-xla,tf-bf16-written,"
    "tf-bf16,torch-fp32-written,torch-fp32,torch-fp32-1thread,torch-bf16,"
    "torch-fp32-device-resize,openvino-fp32,openvino-bf16,da-small-224,da-small-518,"
    "da-onnx-224,da-onnx-518,da-int8-224,da-int8-518"
).split(",")
DEPTH_ANYTHING = "da-"  # the paths of Depth Anything V2 Small, by kind and input side
# Depth Anything's kinds: its checkpoint on torch, its ONNX export, the export's int8.
ONNX_FILES = {"da-small": "", "da-onnx": "onnx/model.onnx", "da-int8": "onnx/model_quantized.onnx"}
BASELINE = "tf-fp32-written"  # the depth stage before the low-resolution decoder
# Kinds of build: their flags (the samples: 1 background x 4 cut-outs)
# and the model-alone path each is compared with; "{da}" is the checkpoint.
BUILDS = {
    "none": ("--placements_per_scale=3", None),
    "tf": ("--depth_model=untrained", "tf-fp32"),
    "torch": ("--depth_model=untrained --depth_runtime=torch --depth_device=cpu", "torch-fp32"),
    "da-small-224": (
        "--depth_model={da} --depth_input_size=224 --depth_device=cpu --placements_per_scale=3",
        "da-small-224",
    ),
    "da-onnx-224": (
        "--depth_model={da}-onnx-224 --depth_runtime=onnx --depth_input_size=224 "
        "--placements_per_scale=3",
        "da-onnx-224",
    ),
}
BUILD_FLAGS = ["--seed=8", "--placements_per_scale=1"]


def batch_step(
    path: str, size, batch_size: int, checkpoint: str = ""
) -> Callable[[np.ndarray], np.ndarray]:
    """The path's whole batch step: uint8 composites -> post-processed depth.

    A path is runtime-precision-variants: "written" runs the network as
    written instead of the runtime's low-resolution decoder; "1thread",
    "xla" and "device-resize" are described in the module docstring.
    """
    from fgbg.depth import maps
    from transforms.depth import DepthModelHandler

    if path.startswith(DEPTH_ANYTHING):
        kind, side = path.rsplit("-", 1)
        config = workload.depth_config((int(side),) * 2, batch_size, runtime="torch", device="cpu")
        folder = f"{checkpoint}-onnx-{side}" if ONNX_FILES[kind] else checkpoint
        config = workload.with_checkpoint(config, folder, ONNX_FILES[kind])
        handler = DepthModelHandler(config)
        model = handler.load_model()
        return lambda batch: np.stack(handler.run_inference(list(batch), model))
    runtime, precision, *rest = path.split("-", 2)
    variants = rest[0] if rest else ""  # e.g. "written-1thread": tested with `in`
    if runtime in ("tf", "torch"):
        name = "torch" if runtime == "torch" else "tensorflow"
        config = workload.depth_config(size, batch_size, precision, name, "auto")
        if runtime == "torch":
            resize = "device-resize" in variants
            config = dataclasses.replace(config, device="cpu", resize_on_device=resize)
        set_threads(runtime, 1 if "1thread" in variants else None)
        handler = DepthModelHandler(config)
        model = handler.load_model()
        if "written" in variants or "xla" in variants:
            model = as_written(runtime, model, precision, xla="xla" in variants)
        return lambda batch: np.stack(handler.run_inference(list(batch), model))

    if runtime != "openvino":
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    import openvino

    from fgbg.depth.tensorflow_runtime import load_keras_model

    keras_model = load_keras_model("untrained", None, DEFAULTS.seed)
    converted = openvino.convert_model(keras_model, input=[(batch_size, size[1], size[0], 3)])
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()

    def step(batch: np.ndarray) -> np.ndarray:
        inputs = np.stack([maps.preprocess(image, size) for image in batch])
        raw = request.infer({0: inputs})[compiled.output(0)]
        return maps.postprocess(np.asarray(raw))[..., 0]

    return step


def set_threads(runtime: str, threads) -> None:
    """One intra-op thread per process, as one worker process per core runs."""
    if threads is None:
        return
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def as_written(runtime: str, model, precision: str, xla: bool = False):
    """The runtime's model running the network as written (optionally
    XLA-compiled, TensorFlow only), not the low-resolution decoder."""
    if runtime == "torch":
        from fgbg.depth import torch_runtime

        network = model.network.network  # LowResolutionDecoder -> DenseDepth
        return torch_runtime.DepthModel(
            network, model.device, precision, low_resolution_decoder=False
        )
    import tensorflow as tf

    from fgbg.depth import tensorflow_runtime

    written = tensorflow_runtime.DepthModel(model.model, low_resolution_decoder=False)
    if xla:
        keras = model.model
        written._forward = tf.function(
            lambda images: keras(images, training=False), jit_compile=True
        )
    return written


def worker(args) -> None:
    """Child: build the path, warm it up on one batch, time the rest."""
    from pipeline.options import parse_size

    images, batch_size = np.load(args.images_file), args.batch_size
    step = batch_step(args.worker, parse_size(args.size), batch_size, args.checkpoint)
    step(images[:batch_size])
    wall, cpu = time.perf_counter(), common.own_cpu_s()
    depth = np.concatenate([step(batch) for batch in common.batches(images, batch_size)])
    result = {
        "images": len(images),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": common.own_cpu_s() - cpu,
        "peak_rss_mb": common.own_peak_rss_mb(),
    }
    np.save(args.out_file, depth)
    print(json.dumps(result), flush=True)


def startup_worker(args) -> None:
    """Child: a TensorFlow depth process's start-up, CPU s per phase, as JSON."""
    phases: Dict[str, float] = {}
    last = common.own_cpu_s()

    def done(phase: str) -> None:
        nonlocal last
        now = common.own_cpu_s()
        phases[phase], last = now - last, now

    import tensorflow  # noqa: F401
    import tf_keras  # noqa: F401

    done("import tensorflow, tf_keras")
    from transforms.depth import DepthModelHandler

    done("import the depth stage (RunInference; Beam loaded before)")
    from fgbg.depth import keras_densedepth, tensorflow_runtime
    from pipeline.options import parse_size

    model = keras_densedepth.build_densedepth()
    done("build the Keras model")
    keras_densedepth.fill_seeded_weights(model, DEFAULTS.seed)
    done("seeded weights: draw, set")
    depth_model = tensorflow_runtime.DepthModel(model, low_resolution_decoder=True)
    done("the low-resolution decoder's mixes")
    config = workload.depth_config(parse_size(args.size), args.batch_size)
    handler = DepthModelHandler(config)
    batch = list(np.load(args.images_file)[: args.batch_size])
    for phase in ("first batch", "second batch"):
        handler.run_inference(batch, depth_model)
        done(phase)
    print(json.dumps(phases), flush=True)


def startup_rows(runs: List[Dict[str, float]], batch_size: int) -> List[List[str]]:
    """Median CPU s per phase over the runs, the first batch's excess over
    the second, and the start-up before the second batch in all."""
    median = {phase: float(np.median([run[phase] for run in runs])) for phase in runs[0]}
    steady = median["second batch"]
    rows = [[phase, f"{cpu:.2f}"] for phase, cpu in median.items()]
    excess = median["first batch"] - steady
    rows.append(["first batch's excess over the second (trace, first call)", f"{excess:.2f}"])
    start = sum(median.values()) - median["first batch"] - steady + excess
    rows.append(
        ["**start-up in all** (every phase but the batches, plus the excess)", f"{start:.2f}"]
    )
    rows.append([f"a batch of {batch_size}, per image (the second)", f"{steady / batch_size:.3f}"])
    return rows


def run_startup(images_file: str, args) -> List[Dict[str, float]]:
    """--startup fresh processes, one after another."""
    runs = []
    for _ in range(args.startup):
        common.say("startup")
        common.wait_for_quiet_cpu(args.max_busy)
        command = [sys.executable, __file__, "--startup_worker", "--images_file", images_file]
        command += ["--size", args.size, "--batch_size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(f"startup failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def run_path(path: str, images_file: str, folder: str, args) -> Dict:
    """One path in its own process; skipped when its runtime is not installed."""
    common.say(path)
    if path.startswith("openvino"):
        check = subprocess.run([sys.executable, "-c", "import openvino"], capture_output=True)
        if check.returncode:
            return {"path": path, "skipped": "openvino is not installed"}
    out_file = os.path.join(folder, f"{path}.npy")
    command = [sys.executable, __file__, "--worker", path, "--images_file", images_file]
    command += ["--out_file", out_file, "--size", args.size, "--batch_size", str(args.batch_size)]
    command += ["--checkpoint", os.path.join(folder, "da-small")]
    common.wait_for_quiet_cpu(args.max_busy)
    busy, own = common.machine_busy_s(), common.children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{path} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(path=path, depth_file=out_file)
    result["others_cpu_s"] = (common.machine_busy_s() - busy) - (common.children_cpu_s() - own)
    return result


def run_build(kind: str, config: str, globs: Dict[str, str], folder: Path, args) -> Dict:
    """One whole build of `kind` run as `config` (a serving configuration's
    name and build flags), in a fresh process tree: its wall and CPU seconds,
    samples and maps, the thread budget it recorded, the 1-minute load."""
    name, *flags = config.split()
    depth, _ = BUILDS[kind]
    extra = [*BUILD_FLAGS, *depth.format(da=folder.parent / "da-small").split()]
    output = folder / "output"
    shutil.rmtree(output, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    common.say(f"build {kind} {config}")
    extra += [*serving_configs.runner_flags(name), *flags]
    command = common.pipeline_command(globs, output, extra=extra)
    load = os.getloadavg()[0]
    measured = common.run_measured(command, folder / "build.log", timeout_s=args.timeout_s)
    manifest = json.loads((output / "manifest.json").read_text())
    samples = manifest["counts"]["samples"]
    maps = samples if kind != "none" else 0
    threads = manifest["depth"].get("threads")
    common.say(f"  {measured['wall_s']:.1f} s wall, {measured['cpu_s']:.1f} CPU s, load {load:.1f}")
    record = dict(kind=kind, config=config, samples=samples, maps=maps, threads=threads)
    return {**record, "load_1min": load, **measured}


def build_rows(builds: List[Dict], results: List[Dict]) -> List[List[str]]:
    """Per kind and configuration: median wall and CPU per sample, the
    wall against the kind's first configuration, and CPU per map against
    the model-alone path's CPU per image."""
    alone = {r["path"]: r["cpu_s"] / r["images"] for r in results if "cpu_s" in r}
    median = lambda runs, key: float(np.median([run[key] for run in runs]))  # noqa: E731
    rows, first = [], {}
    for kind, config in dict.fromkeys((b["kind"], b["config"]) for b in builds):
        runs = [b for b in builds if (b["kind"], b["config"]) == (kind, config)]
        wall, cpu = median(runs, "wall_s"), median(runs, "cpu_s")
        first.setdefault(kind, wall)
        path, maps = BUILDS[kind][1], runs[0]["maps"]
        per_map = (
            f"{cpu / maps:.3f} / {alone[path]:.3f} = {cpu / maps / alone[path]:.2f}x"
            if maps and path in alone
            else "-"
        )
        threads = runs[0]["threads"]
        rows.append(
            [
                kind,
                config,
                len(runs),
                runs[0]["samples"],
                f"{wall:.1f}",
                f"{wall / first[kind]:.2f}x",
            ]
            + [
                f"{cpu / runs[0]['samples']:.3f}",
                per_map,
                threads["per_process"] if threads else "-",
            ]
            + [" ".join(f"{run['load_1min']:.1f}" for run in runs)]
            + [f"{median(runs, 'others_cpu_s'):.0f}"]
        )
    return rows


def report(results: List[Dict], argv: List[str], load: float) -> str:
    baseline = next(r for r in results if r["path"] == BASELINE)
    rows = []
    for result in results:
        if "skipped" in result:
            rows.append([result["path"], "-", "-", "-", "-", "-", "-", result["skipped"]])
            continue
        cpu = result["cpu_s"] / result["images"]
        error = result.get("error")
        rows.append(
            [
                result["path"],
                f"{cpu:.3f}",
                f"{cpu / (baseline['cpu_s'] / baseline['images']):.2f}x",
                f"{result['images'] / result['wall_s']:.2f}",
                f"{result['peak_rss_mb']:.0f}",
                f"{error['max_m']:.4f} / {error['mean_m']:.5f}" if error else "-",
                f"{100 * error['within_1_level']:.2f}% / {error['max_levels']}" if error else "-",
                f"{result['others_cpu_s']:.1f}",
            ]
        )
    headers = f"path | CPU s per image | vs {BASELINE} | images/s (wall) | peak RSS MB | "
    headers += "error vs fp32, m (max / mean) | min-max grey within 1 level / max levels | "
    headers += "other CPU s meanwhile"
    return (
        common.header(argv, load)
        + f"\n\n{baseline['images']} composites of the demo inputs, network input "
        + f"{baseline.get('size', '')}, batches of the pipeline's default size; "
        + "seeded untrained weights (the real architecture).\n\n"
        + common.table(headers, rows)
        + "".join(f"\n{line}" for result in results for line in result.get("notes", ()))
    )


def onnx_notes(results: List[Dict], maps: Dict[str, np.ndarray]) -> None:
    """Each ONNX path's largest difference from the torch path's maps at its
    side (relative to their largest value), and for int8 the precision
    rule against the fp32 export's maps, as notes under the table."""
    from fgbg.depth import precision_rule

    for result in results:
        kind, _, side = result["path"].rpartition("-")
        torch_maps, fp32_maps = maps.get(f"da-small-{side}"), maps.get(f"da-onnx-{side}")
        if kind not in ("da-onnx", "da-int8") or torch_maps is None:
            continue
        ours = maps[result["path"]]
        largest = float(np.abs(ours - torch_maps).max() / np.abs(torch_maps).max())
        notes = [f"{result['path']}: largest difference from da-small-{side}: {largest:.2e}"]
        if kind == "da-int8" and fp32_maps is not None:
            out = (DEFAULTS.size, DEFAULTS.size)
            verdict = precision_rule.judge(
                list(fp32_maps), list(ours), "minmax", out, DEFAULTS.depth_quality
            )
            difference, budget = verdict.difference, verdict.budget
            notes.append(
                f"{result['path']} against da-onnx-{side}, precision rule (minmax, "
                f"{out[0]}, q{DEFAULTS.depth_quality}): grey levels mean {difference.mean:.3f} / "
                f"p99 {difference.p99:.2f}, budget {budget.mean:.3f} / {budget.p99:.2f}: "
                + ("passes" if verdict.passes else "fails")
            )
        result["notes"] = notes


def main(argv=None) -> int:
    parser = common.doc_parser(__doc__)
    add = parser.add_argument
    add("--size", default=DEFAULTS.depth_input_size, help="network input WxH")
    add("--batch_size", type=int, default=DEFAULTS.depth_batch_size)
    add("--images", type=int, default=8, help="timed images per path (after a warm-up batch)")
    add("--paths", default=",".join(PATHS), help="comma-separated paths")
    add("--builds", default="", help=f"comma-separated kinds of whole build: {', '.join(BUILDS)}")
    add("--configs", default="default,in_process", help="comma-separated ways to run each build")
    add("--rounds", type=int, default=2, help="rounds of builds, each configuration once a round")
    add("--timeout_s", type=float, default=1800.0, help="a build's limit")
    add("--startup", type=int, default=0, help="fresh processes timing TensorFlow's start-up")
    common.add_output_options(parser, "depth_cpu")
    common.add_quiet_options(parser, retries=False)
    add("--worker", default=None, help=argparse.SUPPRESS)
    add("--startup_worker", action="store_true", help=argparse.SUPPRESS)
    add("--images_file", default=None, help=argparse.SUPPRESS)
    add("--out_file", default=None, help=argparse.SUPPRESS)
    add("--checkpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.startup_worker:
        startup_worker(args)
        return 0
    paths = [path for path in args.paths.split(",") if path]
    if paths and BASELINE not in paths:
        parser.error(f"--paths must include {BASELINE}, the reference")
    if not paths and not args.builds and not args.startup:
        parser.error("nothing to measure: give --paths, --builds or --startup")
    with tempfile.TemporaryDirectory(prefix="fgbg-depth-cpu-") as folder:
        images_file = os.path.join(folder, "composites.npy")
        np.save(images_file, workload.demo_composites(args.images))
        if any(path.startswith(DEPTH_ANYTHING) for path in paths):
            small = workload.depth_anything_small(Path(folder))
            exported = {p.rsplit("-", 1)[1] for p in paths if ONNX_FILES.get(p.rsplit("-", 1)[0])}
            for side in sorted(exported):
                workload.onnx_export(small, int(side))
        load = common.wait_for_quiet_cpu(args.max_busy)
        results = [run_path(path, images_file, folder, args) for path in paths]
        made = {r["path"]: np.load(r["depth_file"]) for r in results if "depth_file" in r}
        onnx_notes(results, made)
        builds = run_builds(args, Path(folder))
        startup = run_startup(images_file, args) if args.startup else []
        for result in results:
            depth_file = result.pop("depth_file", None)
            if depth_file and not result["path"].startswith(DEPTH_ANYTHING):
                reference = np.load(os.path.join(folder, f"{BASELINE}.npy"))
                result["error"] = common.depth_errors(np.load(depth_file), reference)
                result["size"] = args.size
    argv_used = sys.argv if argv is None else [__file__, *argv]
    markdown = report(results, argv_used, load) if results else common.header(argv_used, load)
    if builds:
        headers = "build | run as | rounds | samples | wall s (median) | wall vs first | "
        headers += "CPU s per sample | CPU s per map: build / model alone | threads per process | "
        headers += "load (1 min) before each | other jobs' CPU s (median)"
        markdown += "\n\n" + common.table(headers, build_rows(builds, results))
    if startup:
        headers = (
            f"a TensorFlow depth process's start-up, {len(startup)} processes | CPU s (median)"
        )
        markdown += "\n\n" + common.table(headers, startup_rows(startup, args.batch_size))
    data = {"paths": results, "builds": builds, "startup": startup}
    common.save(args.name, markdown, data, args.results)
    return 0


def run_builds(args, folder: Path) -> List[Dict]:
    """--builds x --configs, round by round (A B A B), on the issue's inputs."""
    kinds = [kind for kind in args.builds.split(",") if kind]
    if not kinds:
        return []
    globs = workload.make_inputs(folder / "inputs", 1, 4)
    if any(kind.startswith(DEPTH_ANYTHING) for kind in kinds):
        small = str(folder / "da-small")
        if not (folder / "da-small").exists():
            small = workload.depth_anything_small(folder)
        if "da-onnx-224" in kinds and not Path(f"{small}-onnx-224").exists():
            workload.onnx_export(small, 224)
    configs = [config.strip() for config in args.configs.split(",")]
    return [
        run_build(kind, config, globs, folder / "build", args)
        for _ in range(args.rounds)
        for kind in kinds
        for config in configs
    ]


if __name__ == "__main__":
    sys.exit(main())
