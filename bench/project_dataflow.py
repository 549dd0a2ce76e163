"""Projection: the full 400K build on Dataflow, from CPU seconds measured here.

Reads bench_compositing.py's result (c: the composites-only build's marginal
CPU s per sample, whole process tree; t: TFT's extra CPU s per sample) and
turns them into vCPU-hours, worker-hours and a cost at Dataflow list prices,
with the arithmetic shown; the model (k: a worker vCPU's CPU time against
this machine's cores, assumed; e: the share of worker time on samples) is
docs/running-on-gcp.md's "Cost and time for the full 400K build". Depth:
--depth_cpu_s_per_image for CPU workers, or for a GPU per worker the model's
--depth_images_per_s and the serving CPU per image (bench_serving.py): a
worker's hours are then the larger of its GPU's and its vCPUs'. --pricing
flexrs takes FLEXRS_DISCOUNT off vCPU and memory. Check the prices at
https://cloud.google.com/dataflow/pricing before quoting.

    python bench/project_dataflow.py --samples 400000
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from pipeline.dataflow import DEFAULT_MACHINE_TYPE, DEFAULT_MAX_NUM_WORKERS  # noqa: E402

# Dataflow batch list prices, us-central1, $ per hour: the figures Beam's own
# load tests use (apache_beam/testing/load_tests/dataflow_cost_consts.py).
BATCH_VCPU_HOUR = 0.056
BATCH_GB_HOUR = 0.003557
# FlexRS bills worker vCPU and memory 40% below batch. Source: a third-party
# guide (help.nops.io, "Use FlexRS for delay-tolerant Dataflow batch jobs");
# the FlexRS rows of https://cloud.google.com/dataflow/pricing could not be
# read from here: check them before quoting.
FLEXRS_DISCOUNT = 0.40

MACHINES = {  # vCPUs, GB
    "n1-standard-1": (1, 3.75),
    "n1-standard-4": (4, 15.0),
    "n1-standard-8": (8, 30.0),
    "c3d-standard-8": (8, 32.0),  # AMD Genoa: avx512_bf16 units
    "g2-standard-8": (8, 32.0),  # one L4
}


def main(argv=None) -> int:
    parser = common.doc_parser(__doc__)
    add = parser.add_argument
    add("--samples", type=int, default=400_000)
    add("--results", default=str(common.RESULTS / "compositing_pairs.json"))
    add(
        "--machine",
        default=DEFAULT_MACHINE_TYPE,
        choices=sorted(MACHINES),
        help="worker type (default: the pipeline's Dataflow default)",
    )
    add(
        "--k",
        type=float,
        default=1.5,
        help="a worker vCPU's CPU time relative to this machine's cores (1.5: N1)",
    )
    add("--e", type=float, default=0.8, help="fraction of worker time spent on samples")
    add(
        "--pricing",
        choices=("batch", "flexrs"),
        default="batch",
        help="batch workers, or a FlexRS job's discounted vCPU and memory",
    )
    add("--vcpu_hour", type=float, default=None, help="$ per vCPU-hour (default: --pricing's)")
    add("--gb_hour", type=float, default=None, help="$ per GB-hour (default: --pricing's)")
    add("--disk_gb", type=float, default=25, help="disk GB per worker")
    add(
        "--disk_gb_hour",
        type=float,
        default=0.000054,
        help="$ per GB-hour of standard persistent disk",
    )
    add(
        "--workers",
        type=int,
        default=DEFAULT_MAX_NUM_WORKERS,
        help="for the wall-time line (default: the pipeline's worker cap)",
    )
    add(
        "--depth_cpu_s_per_image",
        type=float,
        default=None,
        help="DenseDepth CPU s per image: a whole build's (BENCHMARKS.md, 'Every core by default')",
    )
    add("--depth_images_per_s", type=float, help="measured DenseDepth images/s on one GPU")
    add(
        "--serving_cpu_s_per_image",
        type=float,
        default=0.0,
        help="the workers' CPU s per image to serve a shared GPU model (bench_serving.py)",
    )
    add("--gpu_hour", type=float, default=None, help="$ per GPU-hour (none: cost without it)")
    add("--name", default="projection")
    args = parser.parse_args(argv)
    factor = 1 - FLEXRS_DISCOUNT if args.pricing == "flexrs" else 1.0
    if args.vcpu_hour is None:
        args.vcpu_hour = round(BATCH_VCPU_HOUR * factor, 6)
    if args.gb_hour is None:
        args.gb_hour = round(BATCH_GB_HOUR * factor, 7)

    data = json.loads(Path(args.results).read_text())
    result = data["result"]
    n = args.samples
    c = result["pipeline_variable_cpu_ms"] / 1000
    t = result["tft"]["extra_cpu_ms"] / 1000 if "tft" in result else 0.0
    vcpus, gb = MACHINES[args.machine]
    worker_hour = vcpus * args.vcpu_hour + gb * args.gb_hour + args.disk_gb * args.disk_gb_hour
    lines: List[str] = [
        common.header(["bench/project_dataflow.py", *(argv or sys.argv[1:])]),
        "",
        f"Measured inputs (`{Path(args.results).resolve().relative_to(ROOT)}`, {result['samples']} "
        f"samples on this machine):",
        "",
        f"- c = {c:.5f} CPU s/sample: composites-only build (compose, encode, write, exact "
        "stats, TFRecords, CSVs, resume records, Beam overhead), whole process tree, fixed "
        "start-up removed",
        f"- t = {t:.5f} CPU s/sample: TFT analysis (whole-build difference, TFT's own start-up "
        "included)"
        if t
        else "- t = not measured (bench_compositing.py --tft)",
        f"- assumed: k = {args.k} ({args.machine} vCPU vs this machine), e = {args.e} "
        "(worker time on samples), as in docs/running-on-gcp.md",
        "",
        f"Prices: {args.pricing}"
        + (
            f" (vCPU and memory {FLEXRS_DISCOUNT:.0%} below batch; source in "
            "bench/project_dataflow.py, not checked against the live price list)"
            if args.pricing == "flexrs"
            else ""
        )
        + ".",
        "",
        f"$ per {args.machine} worker-hour = {vcpus} x ${args.vcpu_hour} + {gb} GB x "
        f"${args.gb_hour} + {args.disk_gb:.0f} GB x ${args.disk_gb_hour} = **${worker_hour:.3f}**",
        "",
    ]
    rows = []
    total_cost = total_hours = 0.0

    def add(label: str, cpu_s: float) -> None:
        nonlocal total_cost, total_hours
        vcpu_h = n * cpu_s * args.k / 3600 / args.e
        worker_h = vcpu_h / vcpus
        cost = worker_h * worker_hour
        total_cost += cost
        total_hours += worker_h
        rows.append(
            [
                label,
                f"{n:,} x {cpu_s:.5f} x {args.k} / 3600 / {args.e} = {vcpu_h:.2f}",
                f"{worker_h:.2f}",
                f"${cost:.2f}",
            ]
        )

    if not args.depth_images_per_s:
        add("composites, masks, stats, TFRecords, CSVs (c)", c)
        if t:
            add("TFT analysis (t)", t)
        if args.depth_cpu_s_per_image:
            add("depth on CPU (d)", args.depth_cpu_s_per_image)
        lines.append(
            common.table(("part", "vCPU-hours", f"worker-hours ({args.machine})", "cost"), rows)
        )
        lines.append("")
    if args.depth_images_per_s:
        total_cost, total_hours = gpu_workers(args, n, c + t, worker_hour, lines)
    elif not args.depth_cpu_s_per_image:
        lines.append(
            "Depth: **not included: fill from bench/results/depth_cores.md** "
            "(`--depth_cpu_s_per_image` for CPU workers, `--depth_images_per_s` for "
            "a GPU worker)."
        )
    lines += [
        "",
        f"Total: **${total_cost:.2f}**"
        + (" plus the GPUs" if args.depth_images_per_s and args.gpu_hour is None else "")
        + f"; {total_hours:.2f} worker-hours, about "
        f"{60 * total_hours / args.workers:.0f} min on {args.workers} workers plus "
        "start-up. Not included: Cloud Storage operations and storage, Dataflow "
        "Shuffle (one handle of about 1 KB per pair of 40 samples), worker start-up.",
    ]
    common.save(
        args.name,
        "\n".join(lines),
        {"c": c, "t": t, "rows": rows, "total_cost": total_cost, "args": vars(args)},
    )
    return 0


def gpu_workers(args, n: int, cpu_s: float, worker_hour: float, lines: List[str]):
    """Cost and worker-hours of GPU workers, whose GPU (depth) and vCPUs
    (everything else, and serving the model) work at once: the slower sets
    the hours. Appends the arithmetic to `lines`."""
    vcpus, _ = MACHINES[args.machine]
    gpu_h = n / args.depth_images_per_s / 3600
    per_sample = cpu_s + args.serving_cpu_s_per_image
    cpu_h = n * per_sample * args.k / 3600 / args.e / vcpus
    hours = max(gpu_h, cpu_h)
    gpu_price = args.gpu_hour or 0.0
    cost = hours * (worker_hour + gpu_price)
    lines += [
        f"GPU workers ({args.machine}, one GPU each): the GPU makes depth while the "
        "vCPUs do the rest, so a worker's hours are the larger of",
        "",
        f"- GPU: {n:,} / {args.depth_images_per_s} images/s / 3600 = {gpu_h:.2f} h",
        f"- vCPUs: {n:,} x ({cpu_s:.5f} + {args.serving_cpu_s_per_image:.5f} serving) x "
        f"{args.k} / 3600 / {args.e} / {vcpus} = {cpu_h:.2f} h",
        "",
        f"= {hours:.2f} worker-hours x (${worker_hour:.3f} worker"
        + (f" + ${args.gpu_hour} GPU" if args.gpu_hour is not None else ", GPU not priced")
        + f") = ${cost:.2f}.",
    ]
    return cost, hours


if __name__ == "__main__":
    sys.exit(main())
