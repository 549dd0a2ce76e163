"""Depth precision: the rule (fgbg/depth/precision_rule.py) for each
precision this machine runs, on several weight seeds and input sets, both
encodings, two dataset sizes: the evidence behind MEETS_RULE in
fgbg/depth/precision.py.

Each (runtime, precision, seed) runs in a process of its own (TensorFlow's
bf16 is process-wide) and makes every set's depth through the stage's
handler; each candidate is judged against its runtime's fp32 maps. Sets,
composited by the pipeline's functions with the demo cut-outs: demo (the
painted scenes), tests (the test suite's synthetic backgrounds), photos
(scikit-image's astronaut, coffee, chelsea, rocket; skipped without it).
Weights: seeded DenseDepth, the last layer scaled so depth spans a room's
range (--depth_range_m), or the published nyu.h5 (--depth_weights).

    python bench/bench_precision.py --images 3 --name precision
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

DEFAULTS = workload.build_defaults()
CANDIDATES = ("tensorflow-bf16", "torch-bf16", "torch-fp16")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
ENCODINGS = ("minmax", "metric")


def input_sets(folder: Path, count: int, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Composites of each input set named (see the module's doc)."""
    from tests.helpers import make_inputs

    demo_fg = sorted((workload.DEMO / "fg").glob("*.png"))
    sets = {"demo": workload.demo_composites(count)}
    made = make_inputs(folder / "tests", backgrounds=count, foregrounds=2)
    bg, fg = (sorted(Path(made[kind]).parent.glob("*")) for kind in ("bg", "fg"))
    sets["tests"] = workload.composites(bg, fg, count)
    if "photos" in names and importlib.util.find_spec("skimage") is not None:
        import skimage.data

        photos = []
        for name in PHOTOS:
            path = folder / f"{name}.jpg"
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path, quality=95)
            photos.append(path)
        sets["photos"] = workload.composites(photos, demo_fg, count)
    return {name: images for name, images in sets.items() if name in names}


def worker(args) -> None:
    """Child: one runtime-precision at one weight seed, every input set. The
    fp32 child finds the scale and shift of the last layer that give its
    maps --depth_range_m and saves them; the others are given them."""
    from pipeline.options import parse_size
    from transforms.depth import DepthModelHandler

    runtime, precision = args.worker.split("-")
    device = args.device if runtime == "torch" else "auto"
    config = workload.depth_config(
        parse_size(args.input_size), args.batch_size, precision, runtime, device
    )
    # The runtime's own loader with the precision named: the rule is computed
    # for precisions this CPU only emulates too (fp16), which the stage's
    # resolution (fgbg/depth/precision.py) would refuse.
    model = "densedepth" if args.depth_weights else "untrained"
    weights, seed = args.depth_weights, args.seed_of_worker
    config = dataclasses.replace(
        config, model=model, weights=weights, seed=seed, loader=runtime_model(precision)
    )
    handler = DepthModelHandler(config)
    model = handler.load_model()
    sets = np.load(args.sets_file)
    affine = args.affine or output_affine(model, sets, config.input_size, args.depth_range_m)
    rescale_last_layer(model, *affine)
    depth = {"_affine": np.array(affine, np.float64)}
    for name in sets.files:
        batches = common.batches(sets[name], args.batch_size)
        depth[name] = np.concatenate([handler.run_inference(list(b), model) for b in batches])
    np.savez(args.out_file, **depth)


def output_affine(model, sets, input_size, depth_range_m: str) -> Tuple[float, float]:
    """(scale, shift) of the network's output that puts the 5th and 95th
    percentiles of its depth over every set at --depth_range_m's LOW and
    HIGH metres (depth in metres is 10 / output); (1, 0) for "none"."""
    from fgbg.depth import maps

    if depth_range_m == "none":
        return 1.0, 0.0
    low, high = (float(side) for side in depth_range_m.split(","))
    raw = np.concatenate(
        [model.predict(maps.preprocess(sets[name], input_size)).ravel() for name in sets.files]
    )
    r5, r95 = np.percentile(raw, [5, 95])
    near, far = maps.METRES_PER_DEPTH_UNIT / low, maps.METRES_PER_DEPTH_UNIT / high
    scale = (near - far) / float(r95 - r5)
    return scale, far - scale * float(r5)


def rescale_last_layer(model, scale: float, shift: float) -> None:
    """Scale the network's last convolution (conv3, which both decoders
    share) and shift its bias, before its first forward pass, so its output
    is scale x output + shift in every precision."""
    if (scale, shift) == (1.0, 0.0):
        return
    if hasattr(model, "model"):  # the TensorFlow runtime's DepthModel
        conv3 = model.model.get_layer("conv3")
        conv3.kernel.assign(conv3.kernel * scale)
        conv3.bias.assign(conv3.bias * scale + shift)
        return
    import torch

    network = getattr(model.network, "network", model.network)  # LowResolutionDecoder's
    conv3 = network.layers["conv3"]  # Keras's layer name, as DenseDepth keys it
    with torch.no_grad():
        conv3.weight.mul_(scale)
        conv3.bias.mul_(scale).add_(shift)


def runtime_model(precision: str):
    """A DepthConfig loader: its runtime's model in `precision`."""

    def load(config):
        model = (config.model, config.weights, config.seed, precision)
        if config.runtime == "torch":
            from fgbg.depth import torch_runtime

            return torch_runtime.load_depth_model(*model, config.device)
        from fgbg.depth import tensorflow_runtime

        return tensorflow_runtime.load_depth_model(*model)

    return load


def maps_of(path: str, seed: int, sets_file: str, folder: str, args, affine=None):
    """A worker's maps per input set, and the (scale, shift) they were made with."""
    out_file = os.path.join(folder, f"{path}-{seed}.npz")
    command = [sys.executable, __file__, "--worker", path, "--seed_of_worker", str(seed)]
    command += ["--sets_file", sets_file, "--out_file", out_file, "--device", args.device]
    command += ["--input_size", args.input_size, "--batch_size", str(args.batch_size)]
    command += [f"--depth_range_m={args.depth_range_m}"]
    command += [f"--depth_weights={args.depth_weights}"] if args.depth_weights else []
    command += [] if affine is None else [f"--affine={affine[0]!r},{affine[1]!r}"]
    common.say(f"{path} seed {seed}")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{path} seed {seed} failed:\n{done.stderr[-3000:]}")
    loaded = np.load(out_file)
    maps = {name: loaded[name] for name in loaded.files if name != "_affine"}
    return maps, tuple(float(value) for value in loaded["_affine"])


def judge_all(
    reference: Dict[str, np.ndarray],
    candidate: Dict[str, np.ndarray],
    sides: Sequence[int],
    seed: int,
) -> List[Dict]:
    """The rule per input set, encoding and dataset side."""
    from fgbg.depth import precision_rule

    verdicts = []
    for name, encoding, side in itertools.product(reference, ENCODINGS, sides):
        fp32, maps = list(reference[name]), list(candidate[name])
        verdict = precision_rule.judge(fp32, maps, encoding, (side, side), DEFAULTS.depth_quality)
        where = {"set": name, "encoding": encoding, "side": side, "seed": seed}
        found = {key: dataclasses.asdict(getattr(verdict, key)) for key in ("difference", "budget")}
        verdicts.append({**where, **found, "passes": verdict.passes})
    return verdicts


def report(results: List[Dict], argv: List[str], sets: Dict[str, int], args) -> str:
    """Per candidate, encoding and side: the worst difference over seeds and
    sets (by its share of the budget) and how many of them passed."""
    rows = []
    groups: Dict[tuple, List[Dict]] = {}
    for result in results:
        for verdict in result["verdicts"]:
            key = (result["path"], verdict["encoding"], verdict["side"])
            groups.setdefault(key, []).append(verdict)
    for (path, encoding, side), verdicts in groups.items():
        worst = max(
            verdicts,
            key=lambda v: max(
                v["difference"][k] / v["budget"][k] if v["budget"][k] else np.inf
                for k in ("mean", "p99")
            ),
        )
        cell, where = _cell(encoding), f"{worst['set']}, seed {worst['seed']}"
        passing = f"{sum(v['passes'] for v in verdicts)}/{len(verdicts)}"
        row = [path, encoding, f"{side}x{side}", cell(worst["difference"]), cell(worst["budget"])]
        rows.append([*row, where, passing])
    headers = "candidate | encoding | dataset size | worst difference from fp32's written "
    headers += "maps | its budget | worst at | seeds x sets passing"
    described = ", ".join(f"{name} ({count} composites)" for name, count in sets.items())
    return (
        common.header(argv)
        + f"\n\nInput sets: {described}; network input {args.input_size}; "
        + f"min-max JPEG quality {DEFAULTS.depth_quality}; {weights(args)}. "
        + "minmax: grey levels, budget = fp32's written maps against their unencoded maps; "
        + "metric: |difference| / depth, budget fixed.\n\n"
        + common.table(headers, rows)
    )


def weights(args) -> str:
    """What the maps were made with, for the report."""
    if args.depth_weights:
        return f"the published weights from {args.depth_weights}"
    if args.depth_range_m == "none":
        return "seeded untrained weights as built (the published nyu.h5 was not checked)"
    return (
        f"seeded untrained weights, last layer scaled so depth's 5th-95th percentile "
        f"spans {args.depth_range_m} m (the published nyu.h5 was not checked)"
    )


def _cell(encoding: str):
    if encoding == "minmax":
        return lambda d: f"mean {d['mean']:.2f} / p99 {d['p99']:.1f} levels"
    return lambda d: f"mean {100 * d['mean']:.3f}% / p99 {100 * d['p99']:.2f}%"


def main(argv=None) -> int:
    parser = common.doc_parser(__doc__)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated weight seeds")
    parser.add_argument("--images", type=int, default=4, help="composites per input set")
    parser.add_argument("--sides", default=f"{DEFAULTS.size},448", help="dataset sizes to judge")
    parser.add_argument("--input_size", default=DEFAULTS.depth_input_size)
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.depth_batch_size)
    parser.add_argument("--device", default="cpu", help="the torch runtime's device")
    parser.add_argument("--sets", default="demo,tests,photos", help="input sets to judge")
    parser.add_argument(
        "--depth_weights",
        default=None,
        help="the published nyu.h5 (local or gs://) instead of seeded weights: pass "
        "--seeds 0 --depth_range_m none with it",
    )
    parser.add_argument(
        "--depth_range_m",
        default="1.5,8",
        help="LOW,HIGH: scale and shift the last layer so the 5th-95th percentile of "
        "depth spans this many metres, as a trained network's maps of rooms do; none: "
        "the seeded weights as built, whose outputs are far from any trained range",
    )
    parser.add_argument(
        "--affine", type=lambda text: tuple(map(float, text.split(","))), help=argparse.SUPPRESS
    )
    common.add_output_options(parser, "precision")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed_of_worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sets_file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out_file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    candidates = args.candidates.split(",")
    sides = [int(side) for side in args.sides.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="fgbg-precision-") as folder:
        sets = input_sets(Path(folder), args.images, args.sets.split(","))
        sets_file = os.path.join(folder, "sets.npz")
        np.savez(sets_file, **sets)
        for seed in (int(s) for s in args.seeds.split(",")):
            references = {}
            for path in candidates:
                runtime = path.split("-")[0]
                if runtime not in references:
                    references[runtime] = maps_of(f"{runtime}-fp32", seed, sets_file, folder, args)
                reference, affine = references[runtime]
                candidate, _ = maps_of(path, seed, sets_file, folder, args, affine)
                verdicts = judge_all(reference, candidate, sides, seed)
                results.append({"path": path, "seed": seed, "affine": affine, "verdicts": verdicts})
    argv_used = sys.argv if argv is None else [__file__, *argv]
    counts = {name: len(images) for name, images in sets.items()}
    markdown = report(results, argv_used, counts, args)
    common.save(args.name, markdown, results, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
