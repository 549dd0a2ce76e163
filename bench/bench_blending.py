"""Blending: what each --blend mode costs per sample against none, in one run.

compose_pair, the compositing stage's function (resize, blend, overlay
JPEG + mask PNG; no writes), runs every pair of generated inputs once per
mode (each with its options' defaults, pipeline/options/), the modes
alternating within each of --rounds rounds so drifting load hits them
alike; each mode's median round is reported, in CPU and wall ms per sample.

    python bench/bench_blending.py --rounds 5 --name compositing_blend
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402


def blend_costs(globs: Dict[str, str], rounds: int) -> Dict[str, Dict[str, float]]:
    """Per --blend mode (and mixed): CPU and wall ms per sample of
    compose_pair over every pair of `globs`, each mode's median round; the
    modes alternate within each round so drifting load hits them alike.
    Each mode runs with its options' defaults (pipeline/options/)."""
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
        found = (str(mask), mask.read_bytes()) if mask.exists() else (None, None)
        foregrounds.append(
            build_foreground(path.stem, str(path), path.read_bytes(), *found, config.inputs)
        )
    modes = (*MODES, MIXED)
    blendings = {mode: blend_config(FgbgOptions([f"--blend={mode}", "--seed=0"])) for mode in modes}
    pair_config = (config.placements, config.encoding, "")  # compose_pair's, less the blend
    runs: Dict[str, List[Tuple[float, float, int]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            samples = 0
            cpu, wall = time.process_time(), time.perf_counter()
            for stem, image in backgrounds:
                background = Background(stem, stem, "train", "")
                for foreground in foregrounds:
                    made = compose_pair(
                        background, image, foreground, *pair_config, blendings[mode]
                    )
                    samples += sum(1 for _ in made)
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
        [mode, cost["samples"], f"{cost['cpu_ms']:.3f}", f"{cost['wall_ms']:.3f}"]
        + [f"{cost['cpu_ms'] - none:+.3f}", f"{cost['cpu_ms'] / none:.2f}"]
        for mode, cost in costs.items()
    ]
    return (
        f"Blending (--blend): compose_pair per mode, in this process, median of {rounds} "
        "alternating rounds (resize, blend, overlay JPEG + mask PNG; no writes):\n\n"
        + common.table(
            "--blend | samples | CPU ms/sample | wall ms/sample | CPU vs none, ms | CPU / none",
            rows,
        )
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backgrounds", type=int, default=2)
    parser.add_argument("--foregrounds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="each mode once per round")
    common.add_output_options(parser, "compositing_blend")
    common.add_quiet_options(parser, retries=False)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fgbg-blend-") as scratch:
        globs = workload.make_inputs(Path(scratch), args.backgrounds, args.foregrounds)
        load = common.wait_for_quiet_cpu(args.max_busy)
        costs = blend_costs(globs, args.rounds)
    argv_used = sys.argv if argv is None else [__file__, *argv]
    text = common.header(argv_used, load) + "\n\n" + blend_markdown(costs, args.rounds)
    data = {"blends": costs, "load_at_start": load, "cores": os.cpu_count()}
    common.save(args.name, text, data, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
