"""Before/after: the same build from two versions of the code, same inputs, one run.

The "before" tree is `git archive <ref>` (default HEAD: the last commit) in a
temporary folder, run with this checkout's virtualenv; "after" is the
working tree. For each round both builds run back to back (order alternating),
composites only (`--depth_model none --no_tft`), on all cores; the table shows
each round and the best. `--verify` first builds a small default dataset
(TFT on) with both trees and compares every output file byte for byte, except
the ones that carry times or run ids (manifest.json, timings.json,
report.html, transform/transform_fn/*.pb).

    python bench/bench_before_after.py --backgrounds 10 --foregrounds 10 --rounds 2 --verify
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

SKIP = ("manifest.json", "timings.json", "report.html")


def skipped(relative: str) -> bool:
    parts = relative.split("/")
    return parts[-1] in SKIP or (
        relative.startswith("transform/transform_fn/") and relative.endswith(".pb")
    )


def compare_outputs(a: Path, b: Path) -> Dict[str, object]:
    files_a = {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
    files_b = {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()}
    compared = sorted(f for f in files_a & files_b if not skipped(f))
    different = [f for f in compared if not filecmp.cmp(a / f, b / f, shallow=False)]
    return {
        "compared": len(compared),
        "different": different,
        "only_before": sorted(files_a - files_b),
        "only_after": sorted(files_b - files_a),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--before", default="HEAD", help="git ref of the 'before' code")
    parser.add_argument(
        "--after_tree",
        default=None,
        help="folder holding the 'after' code (default: this working tree)",
    )
    parser.add_argument("--backgrounds", type=int, default=10)
    parser.add_argument("--foregrounds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="byte-compare a small default build (TFT on) of both trees",
    )
    parser.add_argument("--verify_backgrounds", type=int, default=3)
    parser.add_argument("--verify_foregrounds", type=int, default=5)
    common.add_quiet_options(parser)
    parser.add_argument("--name", default="before_after")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="fgbg-before-after-"))
    try:
        before = common.export_tree(args.before, scratch / "before_tree")
        after = Path(args.after_tree).resolve() if args.after_tree else ROOT
        trees = {"before": before, "after": after}
        verification = None
        if args.verify:
            small = workload.make_inputs(
                scratch / "verify_inputs", args.verify_backgrounds, args.verify_foregrounds
            )
            for name, tree in trees.items():
                print(f"[bench] verify build: {name}", file=sys.stderr, flush=True)
                common.run_pipeline(
                    small, scratch / f"verify_{name}" / "dataset", tft=True, tree=tree
                )
            verification = compare_outputs(
                scratch / "verify_before" / "dataset", scratch / "verify_after" / "dataset"
            )
        globs = workload.make_inputs(scratch / "inputs", args.backgrounds, args.foregrounds)
        load = common.wait_for_quiet_cpu(args.max_busy)
        rounds: List[Dict[str, Dict]] = []
        for index in range(args.rounds):
            order = ("before", "after") if index % 2 == 0 else ("after", "before")
            results = {}
            for name in order:
                print(f"[bench] round {index + 1}: {name}", file=sys.stderr, flush=True)
                results[name] = common.quietly(
                    lambda: common.run_pipeline(globs, scratch / f"run_{name}", tree=trees[name]),
                    max_busy=args.max_busy,
                    retries=args.retries,
                )
            rounds.append(results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = []
    stages = ("compositing", "writing", "tfrecords")
    for index, results in enumerate(rounds):
        for name in ("before", "after"):
            run = results[name]
            n = run["samples"]
            stage_ms = [
                f"{common.per_sample_ms(run['timings']['cpu_s_by_stage'].get(s, 0), n):.3f}"
                for s in stages
            ]
            rows.append(
                [
                    index + 1,
                    name,
                    n,
                    f"{run['wall_s']:.1f}",
                    f"{n / run['wall_s']:.0f}",
                    f"{common.per_sample_ms(run['cpu_s'], n):.3f}",
                    *stage_ms,
                    f"{run['peak_rss_mb']:.0f}",
                    f"{run['others_cpu_s']:.1f}",
                ]
            )
    best = {name: min(r[name]["wall_s"] for r in rounds) for name in ("before", "after")}
    cpu = {name: min(r[name]["cpu_s"] for r in rounds) for name in ("before", "after")}
    text = [
        common.header(["bench/bench_before_after.py", *(argv or sys.argv[1:])], load),
        "",
        f"Before: `git archive {args.before}`; after: "
        f"{'`' + args.after_tree + '`' if args.after_tree else 'the working tree'}. Inputs: "
        f"{args.backgrounds} x {args.foregrounds} pairs x 40 = {rounds[0]['after']['samples']} "
        "samples, `--depth_model none --no_tft`, all cores.",
        "",
        common.table(
            (
                "round",
                "code",
                "samples",
                "wall s",
                "samples/s",
                "CPU ms/sample (tree)",
                "compositing ms",
                "writing ms",
                "tfrecords ms",
                "peak RSS MB",
                "other jobs' CPU s",
            ),
            rows,
        ),
        "",
        f"Best wall: before {best['before']:.1f} s, after {best['after']:.1f} s: "
        f"**{best['before'] / best['after']:.2f}x** faster; best tree CPU: "
        f"{cpu['before'] / cpu['after']:.2f}x less.",
    ]
    if verification is not None:
        ok = not (
            verification["different"] or verification["only_before"] or verification["only_after"]
        )
        text += [
            "",
            f"Byte identity ({args.verify_backgrounds} x {args.verify_foregrounds} pairs, "
            f"default build with TFT): {verification['compared']} files compared, "
            f"{'all identical' if ok else 'DIFFERENCES: ' + str(verification)}.",
        ]
    common.save(
        args.name,
        "\n".join(text),
        {"rounds": rounds, "verification": verification, "args": vars(args), "load_at_start": load},
    )
    return 0 if verification is None or not verification["different"] else 1


if __name__ == "__main__":
    sys.exit(main())
