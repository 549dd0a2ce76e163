"""Scaling: the same build at 1x, 4x and 16x the pairs; time and memory per sample.

Each factor k multiplies both the backgrounds and the foregrounds by sqrt(k)
(1x: B x F pairs, 4x: 2B x 2F, 16x: 4B x 4F), so both the main input and the
foreground side input grow. Every build is the composites-only pipeline
(`--depth_model none`, `--no_tft` unless --tft) on all cores, from a fresh
output folder, in a subprocess; the 1x build runs again at the end to show
the spread between identical runs.

Reported per build: wall s per sample (whole command: the build's fixed
start-up cost is in it, so small builds look slower), wall s per sample with
the fixed cost of a one-pair build taken off, CPU per sample of the whole
process tree, the pipeline's stage CPU per sample (timings.json), and the
peak of the process tree's summed RSS; each against the 1x build.

    python bench/bench_scaling.py --backgrounds 3 --foregrounds 5 --factors 1,4,16
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--backgrounds", type=int, default=3, help="backgrounds at 1x")
    parser.add_argument("--foregrounds", type=int, default=5, help="foregrounds at 1x")
    parser.add_argument(
        "--factors",
        default="1,4,16",
        help="pair multipliers, perfect squares (each side grows by the root)",
    )
    parser.add_argument("--tft", action="store_true", help="the default build, TFT on")
    parser.add_argument(
        "--pipeline_args",
        default="",
        help="extra pipeline options for every build, e.g. '--records_per_shard 500'",
    )
    parser.add_argument("--no_repeat", action="store_true", help="skip the second 1x build")
    common.add_quiet_options(parser)
    parser.add_argument("--name", default="scaling")
    args = parser.parse_args(argv)
    factors = [int(f) for f in args.factors.split(",")]
    extra = args.pipeline_args.split()
    for factor in factors:
        if math.isqrt(factor) ** 2 != factor:
            parser.error(f"--factors: {factor} is not a perfect square")

    scratch = Path(tempfile.mkdtemp(prefix="fgbg-scaling-"))
    runs: List[Dict[str, object]] = []
    try:
        one = workload.make_inputs(scratch / "one", 1, 1)
        inputs = {}
        for factor in factors:
            root = math.isqrt(factor)
            inputs[factor] = workload.make_inputs(
                scratch / f"inputs_{factor}", args.backgrounds * root, args.foregrounds * root
            )
        load = common.wait_for_quiet_cpu(args.max_busy)
        print("[bench] one pair (fixed cost)", file=sys.stderr, flush=True)
        quiet = dict(max_busy=args.max_busy, retries=args.retries)
        fixed = common.quietly(
            lambda: common.run_pipeline(one, scratch / "out", tft=args.tft, extra=extra), **quiet
        )
        order = list(factors) + ([] if args.no_repeat else [factors[0]])
        for factor in order:
            root = math.isqrt(factor)
            print(f"[bench] {factor}x", file=sys.stderr, flush=True)
            run = common.quietly(
                lambda: common.run_pipeline(
                    inputs[factor], scratch / "out", tft=args.tft, extra=extra
                ),
                **quiet,
            )
            run.update(
                factor=factor,
                backgrounds=args.backgrounds * root,
                foregrounds=args.foregrounds * root,
            )
            runs.append(run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = runs[0]

    def metrics(run):
        n = run["samples"]
        return {
            "wall_ms": common.per_sample_ms(run["wall_s"], n),
            "steady_ms": common.per_sample_ms(run["wall_s"] - fixed["wall_s"], n),
            "cpu_ms": common.per_sample_ms(run["cpu_s"], n),
            "stage_ms": common.per_sample_ms(sum(run["timings"]["cpu_s_by_stage"].values()), n),
            "rss": run["peak_rss_mb"],
        }

    base_m = metrics(base)
    rows = []
    for index, run in enumerate(runs):
        m = metrics(run)
        label = f"{run['factor']}x" + (" (again)" if index == len(factors) else "")
        rows.append(
            [
                label,
                f"{run['backgrounds']} x {run['foregrounds']}",
                run["samples"],
                f"{run['wall_s']:.1f}",
                f"{m['wall_ms']:.3f} ({m['wall_ms'] / base_m['wall_ms']:.2f})",
                f"{m['steady_ms']:.3f} ({m['steady_ms'] / base_m['steady_ms']:.2f})",
                f"{m['cpu_ms']:.3f} ({m['cpu_ms'] / base_m['cpu_ms']:.2f})",
                f"{m['stage_ms']:.3f} ({m['stage_ms'] / base_m['stage_ms']:.2f})",
                f"{m['rss']:.0f} ({m['rss'] / base_m['rss']:.2f})",
                f"{run['peak_root_rss_mb']:.0f}",
                f"{run['peak_single_rss_mb']:.0f}",
                f"{run['others_cpu_s']:.1f}",
            ]
        )
    # Wall time per sample added over the 1x build: needs no estimate of the
    # fixed cost, whose noise dominates the small build's "fixed cost off".
    extra_ms = {
        run["factor"]: common.marginal_ms(
            run["wall_s"], base["wall_s"], run["samples"], base["samples"]
        )
        for run in runs[1 : len(factors)]
        if run["samples"] > base["samples"]
    }
    build = "default build (TFT on)" if args.tft else "`--no_tft`"
    if extra:
        build += " `" + " ".join(extra) + "`"
    text = [
        common.header(["bench/bench_scaling.py", *(argv or sys.argv[1:])], load),
        "",
        f"{build}, `--depth_model none`, all cores; 40 samples per pair. In brackets: "
        f"the ratio to the first 1x build. Fixed cost (one-pair build): "
        f"{fixed['wall_s']:.1f} s wall, {fixed['cpu_s']:.1f} CPU s, peak RSS "
        f"{fixed['peak_rss_mb']:.0f} MB.",
        "",
        common.table(
            (
                "build",
                "bg x fg",
                "samples",
                "wall s",
                "wall ms/sample",
                "wall ms/sample, fixed cost off",
                "CPU ms/sample (tree)",
                "stage CPU ms/sample",
                "peak RSS MB (tree)",
                "runner process peak MB",
                "largest process peak MB",
                "other jobs' CPU s",
            ),
            rows,
        ),
    ]
    if len(extra_ms) > 1:
        first, last = min(extra_ms), max(extra_ms)
        text += [
            "",
            "Wall ms per sample added over the 1x build: "
            + ", ".join(f"{factor}x {ms:.3f}" for factor, ms in sorted(extra_ms.items()))
            + f" ({last}x / {first}x = {extra_ms[last] / extra_ms[first]:.2f}).",
        ]
    common.save(
        args.name,
        "\n".join(text),
        {
            "fixed": fixed,
            "runs": runs,
            "extra_ms": extra_ms,
            "args": vars(args),
            "load_at_start": load,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
