"""Placement by depth: a --placement depth --depth_labels composed build
(--bg_depth maps of a floor and a wall, camera pitched 5-25 degrees) against
a depth-off build of the same inputs (workload.make_inputs), alternating
--rounds times (default runner, --no_tft unless --tft), medians reported
with what each build wrote (all its files, and bytes per depth label) and
the load average at the start and the end; with --model_backgrounds N,
the forward passes of composed labels with the untrained DenseDepth.
Saves CPU per sample as bench/project_dataflow.py reads it.

    python bench/bench_scene.py --backgrounds 20 --foregrounds 20 --rounds 3 --model_backgrounds 4
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

SCENE = ("--placement", "depth", "--depth_labels", "composed", "--depth_encoding", "metric")


def room_depth(width: int, height: int, pitch_degrees: float, fov_degrees: float = 60.0):
    """z-depth in millimetres of a floor 1.5 m below the camera and a wall 6 m ahead."""
    focal = width / 2 / math.tan(math.radians(fov_degrees) / 2)
    rows = (np.arange(height)[:, None] + 0.5 - height / 2) / focal + np.zeros((1, width))
    pitch = math.radians(pitch_degrees)
    down = rows * math.cos(pitch) + math.sin(pitch)  # per unit z, world drop
    ahead = math.cos(pitch) - rows * math.sin(pitch)  # per unit z, world forward
    with np.errstate(divide="ignore"):
        floor = np.where(down > 0, 1.5 / down, np.inf)
    depth = np.minimum(floor, 6.0 / ahead)
    return np.rint(depth * 1000).astype(np.uint16)


def with_depth_maps(globs, folder: Path):
    (folder / "depth").mkdir()
    for index, path in enumerate(sorted(Path(globs["bg"]).parent.glob("*.jpg"))):
        width, height = Image.open(path).size
        depth = room_depth(width, height, 5 + 20 * (index % 5) / 4)
        Image.fromarray(depth).save(folder / "depth" / f"{path.stem}.png")
    return str(folder / "depth" / "*.png")


def output_bytes(out: Path) -> dict:
    """What a build wrote: all its files, and its depth labels (count, bytes)."""
    labels = [path.stat().st_size for path in out.glob("*/*/depth/*")]
    return {
        "output_bytes": sum(path.stat().st_size for path in out.rglob("*") if path.is_file()),
        "labels": len(labels),
        "label_bytes": sum(labels),
    }


def counter(run, suffix: str) -> int:
    return sum(v for k, v in run["timings"]["counters"].items() if k.endswith(suffix))


def main(argv=None) -> int:
    parser = common.doc_parser(__doc__)
    parser.add_argument("--backgrounds", type=int, default=20)
    parser.add_argument("--foregrounds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tft", action="store_true", help="TFT on in both builds")
    parser.add_argument("--model_backgrounds", type=int, default=0)
    common.add_output_options(parser, "scene")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fgbg-bench-scene-") as temp:
        folder = Path(temp)
        globs = workload.make_inputs(folder / "in", args.backgrounds, args.foregrounds)
        scene = (*SCENE, "--bg_depth", with_depth_maps(globs, folder / "in"))
        runs = {"depth off": [], "scene": []}
        for round_index in range(args.rounds):
            for name, extra in (("depth off", ()), ("scene", scene)):
                common.say(f"round {round_index + 1}: {name}")
                out = folder / "out" / name.replace(" ", "_")
                run = common.run_pipeline(globs, out, args.tft, extra)
                runs[name].append({**run, **output_bytes(out)})
        medians = {n: sorted(m, key=lambda r: r["wall_s"])[len(m) // 2] for n, m in runs.items()}
        rows = [
            [n, f"{r['wall_s']:.1f}", f"{r['samples'] / r['wall_s']:.0f}"]
            + [f"{common.per_sample_ms(r['cpu_s'], r['samples']):.2f}"]
            + [counter(r, "num_inferences"), f"{r['peak_rss_mb']:.0f}"]
            + [f"{r['output_bytes'] / 2**20:.0f}", f"{r['label_bytes'] / max(r['labels'], 1):.0f}"]
            for n, r in medians.items()
        ]
        ratio = medians["scene"]["wall_s"] / medians["depth off"]["wall_s"]
        fastest = {n: min(r["wall_s"] for r in m) for n, m in runs.items()}
        cpu_ratio = medians["scene"]["cpu_s"] / medians["depth off"]["cpu_s"]
        scene_run = medians["scene"]
        lines = [
            common.header(sys.argv if argv is None else ["bench/bench_scene.py", *argv]),
            "",
            common.table(
                "build | wall s | samples/s | CPU ms/sample | forward passes | peak RSS MB "
                "| output MB | bytes per depth label",
                rows,
            ),
            "",
            f"Scene build / depth-off build, wall (medians of {args.rounds}): **{ratio:.2f}x** "
            f"({fastest['scene'] / fastest['depth off']:.2f}x by each build's fastest run; "
            f"CPU {cpu_ratio:.2f}x); load average {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end; "
            f"redraws {counter(scene_run, 'scene.redraws')}, fallbacks "
            f"{counter(scene_run, 'scene.fallbacks')}; all walls "
            + "; ".join(f"{n}: {[round(r['wall_s'], 1) for r in m]}" for n, m in runs.items()),
        ]
        if args.model_backgrounds:
            small = workload.make_inputs(folder / "model_in", args.model_backgrounds, 2)
            flags = ("--depth_model", "untrained", "--depth_labels", "composed")
            model_run = common.run_pipeline(small, folder / "model_out", False, flags)
            lines.append(
                f"\nComposed labels with a model ({args.model_backgrounds} backgrounds x 2 "
                f"foregrounds, {model_run['samples']} samples): "
                f"**{counter(model_run, 'num_inferences')} forward passes**, "
                f"wall {model_run['wall_s']:.1f} s."
            )
    variable_ms = common.per_sample_ms(scene_run["cpu_s"], scene_run["samples"])
    data = {
        "result": {"samples": scene_run["samples"], "pipeline_variable_cpu_ms": variable_ms},
        "runs": runs,
        "ratio": ratio,
    }
    common.save(args.name, "\n".join(lines), data, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
