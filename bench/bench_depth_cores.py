"""Depth CPU cost per image with every core busy: what a worker VM pays.

bench_depth_cpu.py compares paths one process at a time. A build runs one
worker process per core (the local runner with --direct_num_workers 0,
Dataflow one SDK process per vCPU), each with its own model. This script
measures the machine's depth throughput that way, in one invocation:

1. one process alone (the baseline);
2. one process per core, all at once, each starting its timed batches only
   when every process has loaded its model and traced the graph.

Each process runs the pipeline's own batch step (`DepthModelHandler.
run_inference`: Lanczos resize to the network size, DenseDepth, the
authors' post-processing) on warm batches of seeded 224x224 composites, and
reports images and its own CPU seconds. CPU s per image is the figure the
Dataflow projection (bench/project_dataflow.py --depth_cpu_s_per_image)
needs.

    python bench/bench_depth_cores.py --size 640x480 --batches 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

DEFAULTS = workload.build_defaults()
DATASET_SIZE = (DEFAULTS.size, DEFAULTS.size)


def worker(size: str, batch_size: int, batches: int, ready_dir: str, processes: int) -> None:
    """Child: load, trace, wait for every sibling, then time `batches` batches."""
    import numpy as np

    from pipeline.options import parse_size
    from transforms.depth import DepthModelHandler

    handler = DepthModelHandler(workload.depth_config(parse_size(size), batch_size))
    model = handler.load_model()
    rng = np.random.default_rng(os.getpid())
    batch = [rng.integers(0, 256, (*DATASET_SIZE, 3), dtype=np.uint8) for _ in range(batch_size)]
    handler.run_inference(batch, model)  # traces the graph
    Path(ready_dir, str(os.getpid())).touch()
    while len(os.listdir(ready_dir)) < processes:
        time.sleep(0.05)
    wall, cpu = time.perf_counter(), common.own_cpu_s()
    for _ in range(batches):
        assert len(handler.run_inference(batch, model)) == batch_size
    print(
        json.dumps(
            {
                "images": batches * batch_size,
                "wall_s": time.perf_counter() - wall,
                "cpu_s": common.own_cpu_s() - cpu,
            }
        ),
        flush=True,
    )


def run_processes(args, processes: int) -> Dict[str, float]:
    """`processes` children at once; the machine's images/s over the window
    in which all of them were timing, and CPU s per image."""
    ready = tempfile.mkdtemp(prefix="fgbg-depth-ready-")
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--size",
        args.size,
        "--batch_size",
        str(args.batch_size),
        "--batches",
        str(args.batches),
        "--ready_dir",
        ready,
        "--processes",
        str(processes),
    ]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
        for _ in range(processes)
    ]
    results: List[Dict[str, float]] = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"depth worker exited {child.returncode}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    images = sum(r["images"] for r in results)
    return {
        "processes": processes,
        "images": images,
        "images_per_s": sum(r["images"] / r["wall_s"] for r in results),
        "cpu_s_per_image": sum(r["cpu_s"] for r in results) / images,
        "slowest_wall_s": max(r["wall_s"] for r in results),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--size", default=DEFAULTS.depth_input_size, help="network input size WxH")
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.depth_batch_size)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per process")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count(),
        help="processes in the all-cores run (default: one per core)",
    )
    common.add_quiet_options(parser, retries=False)
    parser.add_argument("--name", default="depth_cores")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.size, args.batch_size, args.batches, args.ready_dir, args.processes)
        return 0

    load = common.wait_for_quiet_cpu(args.max_busy)
    print("[bench] one process", file=sys.stderr, flush=True)
    alone = run_processes(args, 1)
    common.wait_for_quiet_cpu(args.max_busy)
    print(f"[bench] {args.processes} processes at once", file=sys.stderr, flush=True)
    together = run_processes(args, args.processes)
    rows = [
        [
            f"{run['processes']} process(es)",
            run["images"],
            f"{run['images_per_s']:.3f}",
            f"{run['cpu_s_per_image']:.2f}",
        ]
        for run in (alone, together)
    ]
    text = "\n".join(
        [
            common.header(["bench/bench_depth_cores.py", *(argv or sys.argv[1:])], load),
            "",
            f"DenseDepth (seeded weights) at {args.size}, warm batches of {args.batch_size}, "
            "the pipeline's run_inference (resize, network, post-processing).",
            "",
            common.table(("run", "images", "images/s (machine)", "CPU s per image"), rows),
            "",
            f"All cores / one process: **{together['images_per_s'] / alone['images_per_s']:.2f}x** "
            "the images per second.",
        ]
    )
    common.save(
        args.name,
        text,
        {"alone": alone, "together": together, "args": vars(args), "load_at_start": load},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
