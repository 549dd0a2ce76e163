"""Compositing throughput: the pipeline on all cores against the original's loop.

In one invocation, on the same generated inputs (640x480 JPEG backgrounds,
the demo's RGBA cut-outs, longest side 150; defaults: size 224, 4 scales x 5
placements x mirror = 40 samples per pair, depth off):

1. baseline: bench/baseline_notebook.py, the original notebook's single-process
   PIL loop (resize, paste, overlay + mask JPEG q50 written), in a subprocess;
2. pipeline: `python -m pipeline.build --depth_model none --no_tft` on the
   FnApiRunner with every core (multi_processing), in a subprocess;
3. fixed cost: the same pipeline on one pair (40 samples): start-up, graph
   construction, worker launch and TensorFlow import, paid once per build;
4. with --tft: the pipeline again with tensorflow-transform on (the default
   build), to price TFT separately;
5. the per-step profile of the pure functions (bench/profile_sample.py);
6. blending (--blend): compose_pair, the compositing stage's function
   (resize, blend, overlay JPEG + mask PNG), on the profile's pairs once per
   mode, the modes alternating over --blend_rounds rounds, in this process:
   CPU ms per sample of each mode against none's in the same run.

With --rounds N, steps 1 and 2 alternate N times and the tables use each
one's median run (file-system write-back makes single runs noisy).

Throughput is samples (overlay + mask encoded and written) per second of the
whole command's wall time, start-up included. CPU is summed over the whole
process tree; peak RSS is the peak of the tree's summed RSS (polled /proc).

    python bench/bench_compositing.py --backgrounds 10 --foregrounds 10 --tft
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

STAGES = ("backgrounds", "compositing", "writing", "tables", "tfrecords")


def blend_costs(globs: Dict[str, str], rounds: int) -> Dict[str, Dict[str, float]]:
    """Per --blend mode (and mixed): CPU and wall ms per sample of
    compose_pair over every pair of `globs`, each mode's median round; the
    modes alternate within each round so drifting load hits them alike.
    Each mode runs with its options' defaults (pipeline/options.py)."""
    import statistics
    import time

    from fgbg.blend_modes import MIXED, MODES
    from fgbg.types import Background
    from pipeline.config import blend_config
    from pipeline.options import FgbgOptions
    from transforms.compositing import compose_pair
    from transforms.inputs import build_foreground, file_stem, load_background

    config = workload.default_build_config()
    backgrounds = [
        (file_stem(path), load_background(Path(path).read_bytes(), config.inputs))
        for path in sorted(glob.glob(globs["bg"]))
    ]
    mask_dir = Path(globs["fg_mask"]).parent
    foregrounds = []
    for path in sorted(Path(p) for p in glob.glob(globs["fg"])):
        mask = mask_dir / f"mask_{path.name}"
        foregrounds.append(
            build_foreground(
                path.stem,
                str(path),
                path.read_bytes(),
                str(mask) if mask.exists() else None,
                mask.read_bytes() if mask.exists() else None,
                config.inputs,
            )
        )
    modes = (*MODES, MIXED)
    blendings = {mode: blend_config(FgbgOptions([f"--blend={mode}", "--seed=0"])) for mode in modes}
    runs: Dict[str, List[Tuple[float, float, int]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            samples = 0
            cpu, wall = time.process_time(), time.perf_counter()
            for stem, image in backgrounds:
                background = Background(stem, stem, "train", "")
                for foreground in foregrounds:
                    samples += sum(
                        1
                        for _ in compose_pair(
                            background,
                            image,
                            foreground,
                            config.placements,
                            config.encoding,
                            "",
                            blendings[mode],
                        )
                    )
            runs[mode].append((time.process_time() - cpu, time.perf_counter() - wall, samples))
    costs = {}
    for mode, measured in runs.items():
        samples = measured[0][2]
        cpu_ms = statistics.median(common.per_sample_ms(c, samples) for c, _, _ in measured)
        wall_ms = statistics.median(common.per_sample_ms(w, samples) for _, w, _ in measured)
        costs[mode] = {"samples": samples, "cpu_ms": cpu_ms, "wall_ms": wall_ms}
    return costs


def blend_markdown(costs: Dict[str, Dict[str, float]], rounds: int) -> str:
    none = costs["none"]["cpu_ms"]
    rows = [
        [
            mode,
            cost["samples"],
            f"{cost['cpu_ms']:.3f}",
            f"{cost['wall_ms']:.3f}",
            f"{cost['cpu_ms'] - none:+.3f}",
            f"{cost['cpu_ms'] / none:.2f}",
        ]
        for mode, cost in costs.items()
    ]
    return (
        f"Blending (--blend): compose_pair per mode, in this process, median of {rounds} "
        "alternating rounds (resize, blend, overlay JPEG + mask PNG; no writes):\n\n"
        + common.table(
            (
                "--blend",
                "samples",
                "CPU ms/sample",
                "wall ms/sample",
                "CPU vs none, ms",
                "CPU / none",
            ),
            rows,
        )
    )


def run_baseline(globs: Dict[str, str], output: Path, stats_pass: bool = False) -> Dict:
    if output.exists():
        shutil.rmtree(output)
    mask_dir = str(Path(globs["fg_mask"]).parent)
    command = [
        sys.executable,
        "bench/baseline_notebook.py",
        "--bg",
        globs["bg"],
        "--fg",
        globs["fg"],
        "--fg_mask",
        mask_dir,
        "--output",
        str(output),
    ]
    if stats_pass:
        command.append("--stats_pass")
    measured = common.run_measured(command, output.parent / f"{output.name}.log")
    measured["samples"] = sum(1 for _ in output.glob("*/*/overlay/*.jpg"))
    return measured


def median_run(runs: Sequence[Dict]) -> Dict:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2]


def rounds_markdown(rounds: Sequence[Dict[str, Dict]]) -> str:
    rows = [
        [
            number,
            f"{r['baseline']['wall_s']:.1f}",
            f"{common.per_sample_ms(r['baseline']['cpu_s'], r['baseline']['samples']):.2f}",
            f"{r['pipeline']['wall_s']:.1f}",
            f"{common.per_sample_ms(r['pipeline']['cpu_s'], r['pipeline']['samples']):.2f}",
            f"{r['baseline']['wall_s'] / r['pipeline']['wall_s']:.2f}",
        ]
        for number, r in enumerate(rounds, 1)
    ]
    return "Every round (baseline, then pipeline --no_tft):\n\n" + common.table(
        (
            "round",
            "baseline wall s",
            "baseline CPU ms/sample",
            "pipeline wall s",
            "pipeline CPU ms/sample",
            "pipeline / baseline",
        ),
        rows,
    )


def analyse(baseline, pipeline, fixed, tft, profile, baseline_stats=None) -> Dict[str, object]:
    samples, n_one = pipeline["samples"], fixed["samples"]
    stage_cpu = pipeline["timings"]["cpu_s_by_stage"]
    fixed_stage_cpu = fixed["timings"]["cpu_s_by_stage"]
    marginal_cpu_ms = common.marginal_ms(pipeline["cpu_s"], fixed["cpu_s"], samples, n_one)
    marginal_wall_ms = common.marginal_ms(pipeline["wall_s"], fixed["wall_s"], samples, n_one)
    stages_ms = {
        stage: common.marginal_ms(
            stage_cpu.get(stage, 0.0), fixed_stage_cpu.get(stage, 0.0), samples, n_one
        )
        for stage in STAGES
    }
    result = {
        "samples": samples,
        "baseline_per_s": baseline["samples"] / baseline["wall_s"],
        "pipeline_per_s": samples / pipeline["wall_s"],
        "pipeline_marginal_per_s": 1000 / marginal_wall_ms,
        "baseline_cpu_ms": common.per_sample_ms(baseline["cpu_s"], baseline["samples"]),
        "pipeline_cpu_ms": common.per_sample_ms(pipeline["cpu_s"], samples),
        "pipeline_variable_cpu_ms": marginal_cpu_ms,
        "fixed_wall_s": fixed["wall_s"],
        "fixed_cpu_s": fixed["cpu_s"],
        "stages_ms": stages_ms,
        "pure_ms": profile["total_ms"],
        "beam_overhead_ms": marginal_cpu_ms - profile["total_ms"],
    }
    result["ratio"] = result["pipeline_per_s"] / result["baseline_per_s"]
    if baseline_stats:
        result["baseline_stats_per_s"] = baseline_stats["samples"] / baseline_stats["wall_s"]
        result["ratio_vs_baseline_stats"] = (
            result["pipeline_per_s"] / result["baseline_stats_per_s"]
        )
    result["marginal_ratio"] = result["pipeline_marginal_per_s"] / result["baseline_per_s"]
    groups = profile["groups_ms"]
    stats_ms = groups["stats (decode written overlay + mask, moments)"]
    result["shares"] = {
        "TFRecords (stage timer)": stages_ms["tfrecords"] / marginal_cpu_ms,
        "stats (profiled moments cost)": stats_ms / marginal_cpu_ms,
    }
    if tft:
        tft_cpu_ms = common.per_sample_ms(tft["cpu_s"] - pipeline["cpu_s"], samples)
        result["tft"] = {
            "per_s": samples / tft["wall_s"],
            "wall_s": tft["wall_s"],
            "extra_wall_s": tft["wall_s"] - pipeline["wall_s"],
            "extra_cpu_ms": tft_cpu_ms,
            "peak_rss_mb": tft["peak_rss_mb"],
            "share_of_build_cpu": tft_cpu_ms / (marginal_cpu_ms + tft_cpu_ms),
            "ratio": samples / tft["wall_s"] / result["baseline_per_s"],
        }
        if baseline_stats:
            result["tft"]["ratio_vs_baseline_stats"] = (
                samples / tft["wall_s"] / result["baseline_stats_per_s"]
            )
    return result


def markdown(runs: Dict[str, Dict], result: Dict[str, object], profile_md: str) -> str:
    samples = result["samples"]
    rows = []
    for name, label in (
        ("baseline", "baseline: notebook loop, 1 process"),
        ("baseline_stats", "baseline + the original's mean/std pass, 1 process"),
        ("before", "pipeline --no_tft, all cores, code before (--before)"),
        ("pipeline", "pipeline --no_tft, all cores"),
        ("tft", "pipeline with TFT (default build), all cores"),
        ("fixed", "pipeline, 1 pair (fixed cost)"),
    ):
        run = runs.get(name)
        if not run:
            continue
        count = run["samples"]
        rows.append(
            [
                label,
                count,
                f"{run['wall_s']:.1f}",
                f"{count / run['wall_s']:.0f}",
                f"{common.per_sample_ms(run['cpu_s'], count):.2f}",
                f"{run['peak_rss_mb']:.0f}",
                f"{run['others_cpu_s']:.1f}",
            ]
        )
    text = [
        common.table(
            (
                "run",
                "samples",
                "wall s",
                "samples/s",
                "CPU ms/sample",
                "peak RSS MB (tree)",
                "other jobs' CPU s meanwhile",
            ),
            rows,
        ),
        "",
    ]
    if "before" in runs:
        before = runs["before"]
        text.append(
            f"Before -> after (same inputs, this invocation): "
            f"{samples / before['wall_s']:.0f} -> {result['pipeline_per_s']:.0f} "
            f"samples/s ({before['wall_s'] / runs['pipeline']['wall_s']:.2f}x), CPU "
            f"{common.per_sample_ms(before['cpu_s'], samples):.2f} -> "
            f"{result['pipeline_cpu_ms']:.2f} ms/sample; pipeline / baseline before: "
            f"{samples / before['wall_s'] / result['baseline_per_s']:.2f}x."
        )
        text.append("")
    text.append(
        f"**pipeline --no_tft / baseline = {result['ratio']:.2f}x** (whole command, "
        f"start-up included); marginal rate (full build minus the one-pair build: "
        f"{result['pipeline_marginal_per_s']:.0f} samples/s) / baseline = "
        f"**{result['marginal_ratio']:.2f}x**."
    )
    if "tft" in result:
        text.append("")
        text.append(
            f"**default build (TFT on) / baseline = {result['tft']['ratio']:.2f}x** "
            f"(whole command)."
        )
    if "ratio_vs_baseline_stats" in result:
        text.append("")
        default = (
            f"; default build: **{result['tft']['ratio_vs_baseline_stats']:.2f}x**"
            if "tft" in result
            else ""
        )
        text.append(
            f"Against the baseline plus the original's separate mean/std pass (the "
            f"pipeline makes exact stats in the same pass): --no_tft "
            f"**{result['ratio_vs_baseline_stats']:.2f}x**{default}."
        )
    text.append("")
    stage_rows = [
        [stage, f"{ms:.3f}", f"{100 * ms / result['pipeline_variable_cpu_ms']:.1f}%"]
        for stage, ms in result["stages_ms"].items()
    ]
    accounted = sum(result["stages_ms"].values())
    stage_rows.append(
        [
            "not in a stage timer (Beam runner + workers, shuffles, CSVs, stats combine)",
            f"{result['pipeline_variable_cpu_ms'] - accounted:.3f}",
            f"{100 * (1 - accounted / result['pipeline_variable_cpu_ms']):.1f}%",
        ]
    )
    stage_rows.append(
        [
            "**pipeline CPU per sample** (tree, marginal: fixed cost removed)",
            f"**{result['pipeline_variable_cpu_ms']:.3f}**",
            "100%",
        ]
    )
    text.append(
        common.table(
            ("stage (timings.json, Beam metrics; marginal)", "CPU ms/sample", "share"), stage_rows
        )
    )
    text.append("")
    text.append(
        f"Pure functions (profile below) sum to {result['pure_ms']:.3f} ms/sample; "
        f"Beam's own per-element overhead ~= {result['pipeline_variable_cpu_ms']:.3f} - "
        f"{result['pure_ms']:.3f} = **{result['beam_overhead_ms']:.3f} ms/sample**. "
        f"Fixed cost per build: {result['fixed_wall_s']:.1f} s wall, "
        f"{result['fixed_cpu_s']:.1f} CPU s."
    )
    text.append("")
    shares = ", ".join(f"{name}: {100 * value:.1f}%" for name, value in result["shares"].items())
    text.append(f"Shares of the pipeline's CPU per sample: {shares}.")
    if "tft" in result:
        tft = result["tft"]
        text.append(
            f"TFT: +{tft['extra_wall_s']:.1f} s wall, +{tft['extra_cpu_ms']:.3f} CPU "
            f"ms/sample = {100 * tft['share_of_build_cpu']:.1f}% of the default "
            f"build's CPU; peak RSS {tft['peak_rss_mb']:.0f} MB."
        )
    text += ["", profile_md]
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--backgrounds", type=int, default=10)
    parser.add_argument("--foregrounds", type=int, default=10)
    parser.add_argument(
        "--tft", action="store_true", help="also run the default build (TFT on) to price TFT"
    )
    parser.add_argument(
        "--before",
        default=None,
        metavar="GIT_REF",
        help="also run the pipeline from this commit (e.g. HEAD) on the same "
        "inputs, for a before/after row",
    )
    parser.add_argument(
        "--profile_backgrounds",
        type=int,
        default=2,
        help="backgrounds for the pure-function profile (all foregrounds)",
    )
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    common.add_quiet_options(parser)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the baseline and the pipeline this often, alternately; "
        "the tables use each one's median run",
    )
    parser.add_argument(
        "--blend_rounds",
        type=int,
        default=3,
        help="rounds of the per --blend mode measurement (each mode once per round)",
    )
    parser.add_argument("--name", default="compositing", help="bench/results/<name>.md|json")
    args = parser.parse_args(argv)

    from bench import profile_sample  # imports TensorFlow's protobufs: after arg parsing

    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="fgbg-bench-"))
    try:
        globs = workload.make_inputs(scratch / "inputs", args.backgrounds, args.foregrounds)
        one = workload.make_inputs(scratch / "one", 1, 1)
        load = common.wait_for_quiet_cpu(args.max_busy)
        runs: Dict[str, Dict] = {}
        quiet = dict(max_busy=args.max_busy, retries=args.retries)
        rounds = []
        for number in range(1, args.rounds + 1):
            print(
                f"[bench] round {number}: baseline, then pipeline --no_tft",
                file=sys.stderr,
                flush=True,
            )
            rounds.append(
                {
                    "baseline": common.quietly(
                        lambda: run_baseline(globs, scratch / "baseline"), **quiet
                    ),
                    "pipeline": common.quietly(
                        lambda: common.run_pipeline(globs, scratch / "pipeline"), **quiet
                    ),
                }
            )
        runs["baseline"] = median_run([r["baseline"] for r in rounds])
        runs["pipeline"] = median_run([r["pipeline"] for r in rounds])
        print("[bench] baseline + the original's stats pass", file=sys.stderr, flush=True)
        runs["baseline_stats"] = common.quietly(
            lambda: run_baseline(globs, scratch / "baseline_stats", stats_pass=True), **quiet
        )
        if args.before:
            print(f"[bench] pipeline --no_tft from {args.before}", file=sys.stderr, flush=True)
            tree = common.export_tree(args.before, scratch / "before_tree")
            runs["before"] = common.quietly(
                lambda: common.run_pipeline(globs, scratch / "before", tree=tree), **quiet
            )
        print("[bench] pipeline, one pair", file=sys.stderr, flush=True)
        runs["fixed"] = common.quietly(lambda: common.run_pipeline(one, scratch / "fixed"), **quiet)
        if args.tft:
            print("[bench] pipeline with TFT", file=sys.stderr, flush=True)
            runs["tft"] = common.quietly(
                lambda: common.run_pipeline(globs, scratch / "tft", tft=True), **quiet
            )
        print("[bench] pure-function profile", file=sys.stderr, flush=True)
        common.wait_for_quiet_cpu(args.max_busy)
        profile_globs = workload.make_inputs(
            scratch / "profile_inputs", args.profile_backgrounds, args.foregrounds
        )
        profile = profile_sample.profile(profile_globs, scratch / "profile_out")
        print("[bench] blending modes", file=sys.stderr, flush=True)
        common.wait_for_quiet_cpu(args.max_busy)
        blends = blend_costs(profile_globs, args.blend_rounds)
        assert runs["baseline"]["samples"] == runs["pipeline"]["samples"], runs
        result = analyse(
            runs["baseline"],
            runs["pipeline"],
            runs["fixed"],
            runs.get("tft"),
            profile,
            runs.get("baseline_stats"),
        )
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    text = (
        common.header(["bench/bench_compositing.py", *(argv or sys.argv[1:])], load)
        + f"\n\nInputs: {args.backgrounds} backgrounds (640x480 JPEG) x "
        f"{args.foregrounds} foregrounds (RGBA, longest side 150) x 40 = "
        f"{result['samples']} samples; size 224, depth off.\n\n"
        + markdown(runs, result, profile_sample.markdown(profile))
        + "\n\n"
        + blend_markdown(blends, args.blend_rounds)
    )
    if len(rounds) > 1:
        text += "\n\n" + rounds_markdown(rounds)
    common.save(
        args.name,
        text,
        {
            "runs": runs,
            "rounds": rounds,
            "result": result,
            "profile": profile,
            "blends": blends,
            "args": vars(args),
            "load_at_start": load,
            "cores": os.cpu_count(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
