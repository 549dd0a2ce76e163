"""Depth throughput: the pipeline's RunInference path against the original's.

For each input size, both paths process the same composites (seeded 224x224
images) end to end: resize to the network size (Lanczos), /255, DenseDepth,
the authors' post-processing, per-image min-max, resize to 224 and JPEG 85.

- baseline: what the original notebook did: Keras `model.predict` on batches
  of 60 (`--baseline_batch`), in a plain loop.
- pipeline: `EstimateDepth` (RunInference, KeyedModelHandler, BatchElements)
  in a Beam pipeline on the in-process FnApiRunner.

Each path runs in its own child process, one after the other, so its peak
RSS is its own and the two never share the CPU. Images/s exclude the
one-time model build/load (reported separately). "Cold" is one pass over
the images, graph tracing included; "warm" leaves the tracing out (the
baseline's second pass; the pipeline's batches after its first). The model
is the real architecture with seeded random weights unless --weights points
at nyu.h5: the cost does not depend on the weight values.

    python bench/bench_depth.py --sizes 640x480,224x224 --images 16 --repeat 2
    python bench/bench_depth.py --sizes 640x480 --images 16 --sweep 1,2,4,8 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import as_composites, build_defaults  # noqa: E402
from pipeline.options import parse_size  # noqa: E402

DEFAULTS = build_defaults()
DATASET_SIZE = (DEFAULTS.size, DEFAULTS.size)


def make_overlays(count: int, seed: int) -> List[np.ndarray]:
    """Deterministic 224x224 RGB composites stand-ins (smooth, with noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, DATASET_SIZE[0], dtype=np.float32)
    images = []
    for _ in range(count):
        base = rng.uniform(0, 255) * ramp[None, :, None] + rng.uniform(0, 128, (1, 1, 3))
        noise = rng.normal(0, 12, (DATASET_SIZE[1], DATASET_SIZE[0], 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_model(args):
    """The Keras model itself: the baseline calls Keras `predict` as the original did."""
    from fgbg.depth.tensorflow_runtime import load_keras_model

    if args.weights:
        return load_keras_model("densedepth", args.weights, args.seed)
    return load_keras_model("untrained", None, args.seed)


def run_baseline(args, size: Tuple[int, int], overlays: Sequence[np.ndarray]) -> Dict:
    """The original: batches of 60, Keras predict, then encode each map.

    Timed twice over the same images: cold (the first pass, which traces
    the graph) and warm (a second pass).
    """
    from fgbg.depth import maps

    def one_pass(model) -> float:
        started = time.perf_counter()
        encoded = 0
        for start in range(0, len(overlays), args.baseline_batch):
            batch = overlays[start : start + args.baseline_batch]
            inputs = maps.preprocess(np.stack(batch), size)
            raw = model.predict(inputs, batch_size=args.baseline_batch, verbose=0)
            for depth in maps.postprocess(raw)[..., 0]:
                encoded += bool(maps.encode_minmax(depth, DATASET_SIZE, DEFAULTS.depth_quality))
        assert encoded == len(overlays)
        return time.perf_counter() - started

    started = time.perf_counter()
    model = load_model(args)
    load_s = time.perf_counter() - started
    cold_s = one_pass(model)
    warm_s = one_pass(model)
    return {"load_s": load_s, "cold_s": cold_s, "warm_images_per_s": len(overlays) / warm_s}


def run_pipeline(
    args, size: Tuple[int, int], overlays: Sequence[np.ndarray], batch_size: int
) -> Dict:
    """EstimateDepth on the in-process FnApiRunner.

    Cold: the whole run less the model load (from RunInference's metric).
    Warm: from the per-batch inference latencies, leaving out the slowest
    batch (the first, which traces the graph).
    """
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from fgbg.depth.config import DepthConfig
    from transforms.depth import (
        DEPTH_METRICS_NAMESPACE,
        ENCODED_COUNTER,
        EstimateDepth,
    )

    composites = as_composites(overlays)
    config = DepthConfig(
        model="densedepth" if args.weights else "untrained",
        weights=args.weights,
        seed=args.seed,
        batch_size=batch_size,
        min_batch_size=batch_size,
        target_batch_duration_s=args.target_batch_duration_s,
        input_size=size,
        encoding="minmax",
        jpeg_quality=DEFAULTS.depth_quality,
        out_size=DATASET_SIZE,
    )
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(runner="FnApiRunner"))
    _ = pipeline | beam.Create(composites, reshuffle=False) | EstimateDepth(config)
    result = pipeline.run()
    result.wait_until_finish()
    total = time.perf_counter() - started

    def metric(name):
        query = result.metrics().query(
            MetricsFilter().with_namespace(DEPTH_METRICS_NAMESPACE).with_name(name)
        )
        return (query["counters"] + query["distributions"])[0].committed

    assert metric(ENCODED_COUNTER) == len(overlays)
    load_s = metric("load_model_latency_milli_secs").sum / 1000.0
    latency = metric("inference_batch_latency_micro_secs")
    measured = {"load_s": load_s, "cold_s": total - load_s, "batches": latency.count}
    if latency.count < 2:
        raise ValueError("--images must exceed the batch size to measure warm batches")
    measured["warm_images_per_s"] = (len(overlays) - batch_size) / (
        (latency.sum - latency.max) / 1e6
    )
    return measured


def child_main(args) -> None:
    """Run one path for one size and print its measurements as JSON."""
    size = parse_size(args.child_size)
    overlays = make_overlays(args.images, args.seed)
    if args.child_path == "baseline":
        measured = run_baseline(args, size, overlays)
    else:
        measured = run_pipeline(args, size, overlays, args.child_batch)
    measured["images_per_s"] = args.images / measured["cold_s"]
    measured["peak_rss_mib"] = peak_rss_mib()
    measured["load_average"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(measured), flush=True)


def run_child(args, path: str, size: str, batch_size: int) -> Dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--images",
        str(args.images),
        "--seed",
        str(args.seed),
        "--baseline_batch",
        str(args.baseline_batch),
        "--target_batch_duration_s",
        str(args.target_batch_duration_s),
        "--child_path",
        path,
        "--child_size",
        size,
        "--child_batch",
        str(batch_size),
    ] + (["--weights", args.weights] if args.weights else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{path} at {size} failed:\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


HEADER = (
    "| path | images/s cold | images/s warm | warm, best run | model load s "
    "| peak RSS MiB | load avg |\n|---|---|---|---|---|---|---|"
)


def row(label: str, m: Dict) -> str:
    return (
        f"| {label} | {m['images_per_s']:.3f} | {m['warm_images_per_s']:.3f} "
        f"| {m['best_warm_images_per_s']:.3f} | {m['load_s']:.1f} "
        f"| {m['peak_rss_mib']:.0f} | {m['load_average']:.1f} |"
    )


def mean_of(measured: List[Dict]) -> Dict:
    """Mean of each number over repeats, plus the best warm images/s (the
    least disturbed run, as the CPU is shared); peak RSS is the highest seen."""
    keys = [k for k in measured[0] if k != "peak_rss_mib"]
    mean = {k: float(np.mean([m[k] for m in measured])) for k in keys}
    mean["best_warm_images_per_s"] = max(m["warm_images_per_s"] for m in measured)
    mean["peak_rss_mib"] = max(m["peak_rss_mib"] for m in measured)
    return mean


def compare(args) -> None:
    """Baseline and pipeline alternately (A B B A ...), so a change in
    background load hits both; means over --repeat rounds."""
    for size in args.sizes.split(","):
        runs = {"baseline": [], "pipeline": []}
        for repeat in range(args.repeat):
            order = ("baseline", "pipeline") if repeat % 2 == 0 else ("pipeline", "baseline")
            for path in order:
                runs[path].append(run_child(args, path, size, args.batch_size))
        baseline, pipeline = mean_of(runs["baseline"]), mean_of(runs["pipeline"])
        print(f"\n### {size}, {args.images} images, mean of {args.repeat}\n{HEADER}")
        print(row(f"baseline: Keras predict, batches of {args.baseline_batch}", baseline))
        print(
            row(
                f"pipeline: RunInference, batch {args.batch_size} "
                f"({pipeline['batches']:.0f} batches)",
                pipeline,
            )
        )
        cold = pipeline["images_per_s"] / baseline["images_per_s"]
        warm = pipeline["warm_images_per_s"] / baseline["warm_images_per_s"]
        best = pipeline["best_warm_images_per_s"] / baseline["best_warm_images_per_s"]
        print(
            f"\nratio pipeline/baseline images/s: warm {warm:.2f} (best runs {best:.2f}), "
            f"cold {cold:.2f}",
            flush=True,
        )


def sweep(args) -> None:
    """The pipeline path at several batch sizes, run in alternating order
    (1,2,4,8,8,4,2,1, ...) so a change in background load hits every size."""
    sizes = [int(b) for b in args.sweep.split(",")]
    for size in args.sizes.split(","):
        runs = {b: [] for b in sizes}
        for repeat in range(args.repeat):
            for batch_size in sizes if repeat % 2 == 0 else sizes[::-1]:
                runs[batch_size].append(run_child(args, "pipeline", size, batch_size))
        print(f"\n### {size}, {args.images} images, pipeline path, mean of {args.repeat}\n{HEADER}")
        for batch_size, measured in runs.items():
            print(row(f"batch {batch_size}", mean_of(measured)), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="640x480,224x224", help="network input sizes, WxH, comma-separated"
    )
    parser.add_argument("--images", type=int, default=12, help="images per path and size")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=DEFAULTS.depth_batch_size,
        help="pipeline batch size (min = max)",
    )
    parser.add_argument("--baseline_batch", type=int, default=60, help="the original's batch size")
    parser.add_argument(
        "--target_batch_duration_s", type=float, default=DEFAULTS.depth_target_batch_duration_s
    )
    parser.add_argument(
        "--sweep", default=None, help="pipeline batch sizes to compare instead, e.g. 1,2,4,8"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds of each measurement (alternating order)"
    )
    parser.add_argument("--weights", default=None, help="nyu.h5 (default: seeded random weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child_path", choices=("baseline", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--child_size", help=argparse.SUPPRESS)
    parser.add_argument("--child_batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_path:
        child_main(args)
    elif args.sweep:
        sweep(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
