"""Depth models on CPU: Depth Anything V2 Small against DenseDepth's default, in one run.

Each model runs in a process of its own, through the depth stage's handler
(transforms/depth.py: the family's pre-processing, the network, its
post-processing to the dataset size), on the same demo composites, in
batches of the pipeline's default size, fp32:

- densedepth: today's default (TensorFlow, the low-resolution decoder,
  Lanczos to 640x480), seeded weights (`--depth_model untrained`);
- da-small-SIDE: Depth Anything V2 Small's full architecture with seeded
  weights (fgbg/depth/seeded_checkpoints.py; the published weights cost
  the same), on PyTorch, at a SIDE x SIDE network input: 518 is its
  processor's default, 224 = 16 patches of 14.

Reported per model: CPU seconds per image (the process's own, over the
timed batches after a warm-up batch), the ratio to densedepth, wall
images/s and the process's peak RSS. Seeded weights make cost, not
accuracy, comparable.

    python bench/bench_depth_models.py --images 8 --name depth_models
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

DEFAULTS = workload.build_defaults()
BASELINE = "densedepth"
MODELS = (BASELINE, "da-small-224", "da-small-518")


def handler_for(model: str, checkpoint_folder: str):
    """The depth stage's handler for `model`, fp32 on this CPU."""
    from fgbg.depth import checkpoints
    from pipeline.options import parse_size
    from transforms.depth import DepthModelHandler

    batch = DEFAULTS.depth_batch_size
    if model == BASELINE:
        config = workload.depth_config(parse_size(DEFAULTS.depth_input_size), batch)
        return DepthModelHandler(config)
    side = int(model.rsplit("-", 1)[1])
    config = dataclasses.replace(
        workload.depth_config((side, side), batch, runtime="torch", device="cpu"),
        model=checkpoint_folder,
        checkpoint=checkpoints.describe(checkpoint_folder),
    )
    return DepthModelHandler(config)


def worker(model: str, images_file: str, checkpoint_folder: str) -> None:
    """Child: load the model, warm it up on one batch, time the rest."""
    images = np.load(images_file)
    handler = handler_for(model, checkpoint_folder)
    network = handler.load_model()
    batch = DEFAULTS.depth_batch_size
    handler.run_inference(list(images[:batch]), network)
    wall, cpu = time.perf_counter(), common.own_cpu_s()
    for start in range(0, len(images), batch):
        handler.run_inference(list(images[start : start + batch]), network)
    result = {
        "model": model,
        "images": len(images),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": common.own_cpu_s() - cpu,
        "peak_rss_mb": common.own_peak_rss_mb(),
    }
    print(json.dumps(result), flush=True)


def run_model(model: str, images_file: str, checkpoint_folder: str, max_busy: float) -> Dict:
    command = [sys.executable, __file__, "--worker", model, "--images_file", images_file]
    command += ["--checkpoint", checkpoint_folder]
    common.wait_for_quiet_cpu(max_busy)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: List[Dict], argv: List[str], load: float) -> str:
    baseline = next(r for r in results if r["model"] == BASELINE)
    base_cpu = baseline["cpu_s"] / baseline["images"]
    rows = [
        [
            r["model"],
            f"{r['cpu_s'] / r['images']:.3f}",
            f"{r['cpu_s'] / r['images'] / base_cpu:.2f}x",
            f"{r['images'] / r['wall_s']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        for r in results
    ]
    headers = ["model", "CPU s per image", f"vs {BASELINE}", "images/s (wall)", "peak RSS MB"]
    return (
        common.header(argv, load)
        + f"\n\n{baseline['images']} demo composites per model, batches of "
        + f"{DEFAULTS.depth_batch_size}, fp32, seeded weights.\n\n"
        + common.table(headers, rows)
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--images", type=int, default=8, help="timed images per model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--name", default="depth_models")
    common.add_quiet_options(parser, retries=False)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--images_file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.images_file, args.checkpoint)
        return 0
    models = args.models.split(",")
    if BASELINE not in models:
        parser.error(f"--models must include {BASELINE}, the reference")
    with tempfile.TemporaryDirectory(prefix="fgbg-depth-models-") as folder:
        images_file = os.path.join(folder, "composites.npy")
        np.save(images_file, workload.demo_composites(args.images))
        checkpoint = os.path.join(folder, "da-small")
        subprocess.run([sys.executable, "-c", WRITE_SMALL, checkpoint], check=True, cwd=ROOT)
        load = common.wait_for_quiet_cpu(args.max_busy)
        results = []
        for model in models:
            print(f"[bench] {model}", file=sys.stderr, flush=True)
            results.append(run_model(model, images_file, checkpoint, args.max_busy))
    argv_used = sys.argv if argv is None else [__file__, *argv]
    common.save(args.name, report(results, argv_used, load), results)
    return 0


# In a child, so this process never imports PyTorch next to the models it times.
WRITE_SMALL = (
    "import sys; from fgbg.depth import seeded_checkpoints; "
    "seeded_checkpoints.write(sys.argv[1], size='small')"
)

if __name__ == "__main__":
    sys.exit(main())
