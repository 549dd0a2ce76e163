"""Per-sample cost of each step of the build, timed on the pure functions.

Runs the pipeline's own functions (transforms.*, fgbg.*) in one process, in the order
the pipeline runs them for a pair, on real inputs, and charges each step's
time to it: no Beam at all. Comparing the sum with the pipeline's measured
CPU per sample gives Beam's own per-element overhead (bench_compositing.py
does that).

Steps (per sample unless noted; per-pair steps are divided by 40):
  placements        seeded positions of the pair's samples (SHA-256 + numpy RNG)
  background        read, decode and Lanczos-resize the pair's background (per pair)
  resize_cutout     Lanczos resize of fg + mask per (flip, scale) (8 per pair)
  alpha_composite   integer alpha blend of the cut-out onto the background
  place_mask        the 224x224 mask canvas
  encode_overlay    JPEG q50 of the overlay
  encode_mask       PNG of the mask
  write_files       overlay + mask to disk (temporary name + rename)
  stats_overlay     decode the written overlay JPEG again + its exact pixel moments
                    (stats are those of the written file: fgbg.moments.encoded_moments)
  stats_mask        the mask's moments: counted from the 0/255 array, as the
                    pipeline does for PNG masks (trees before that decode the PNG)
  stats_merge       adding the sample's moments into the totals
  pair_record       the resume record .pair.json (per pair)
  tfrecord          read bg/overlay/mask back + tf.train.Example + framing
  tables            label_data.csv + samples.csv rows
  (decode_overlay_only) the JPEG decode inside stats_overlay, shown apart, not summed

    python bench/profile_sample.py --backgrounds 2 --foregrounds 5
"""

from __future__ import annotations

import argparse
import collections
import glob
import inspect
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _tree_argument():
    """--tree must act before `transforms` is imported, so it is read here."""
    for index, arg in enumerate(sys.argv):
        if arg == "--tree" and index + 1 < len(sys.argv):
            return sys.argv[index + 1]
        if arg.startswith("--tree="):
            return arg.split("=", 1)[1]
    return None


TREE = _tree_argument() if Path(sys.argv[0]).resolve() == Path(__file__).resolve() else None
sys.path.insert(0, str(ROOT))
from bench import common, workload  # noqa: E402

if TREE:
    sys.path.insert(0, str(Path(TREE).resolve()))  # its transforms/ and pipeline/ shadow ours

from fgbg import layout  # noqa: E402
from fgbg.images import encode_jpeg  # noqa: E402
from fgbg.moments import add_moments, binary_moments, encoded_moments  # noqa: E402
from fgbg.pair_records import write_pair_record  # noqa: E402
from fgbg.records import frame_record, sample_example  # noqa: E402
from fgbg.storage import read_file, write_file  # noqa: E402
from fgbg.types import SampleRow  # noqa: E402
from transforms.compositing import (
    alpha_composite,
    encode_mask,  # noqa: E402
    mirror,
    place_mask,
    resize_cutout,
)
from transforms.inputs import build_foreground, file_stem, load_background  # noqa: E402
from transforms.placements import (
    pair_placements,
    scaled_size,
)
from transforms.tables import label_rows, render_csv, sample_table_rows  # noqa: E402

STEPS = (
    "placements",
    "background",
    "resize_cutout",
    "alpha_composite",
    "place_mask",
    "encode_overlay",
    "encode_mask",
    "write_files",
    "stats_overlay",
    "stats_mask",
    "stats_merge",
    "pair_record",
    "tfrecord",
    "tables",
)
INFO_STEPS = ("(decode_overlay_only)",)
GROUPS = {
    "compositing (resize, blend, mask canvas, placements, background)": (
        "placements",
        "background",
        "resize_cutout",
        "alpha_composite",
        "place_mask",
    ),
    "encoding (overlay JPEG + mask PNG)": ("encode_overlay", "encode_mask"),
    "file writes": ("write_files", "pair_record"),
    "stats (decode written overlay + mask, moments)": (
        "stats_overlay",
        "stats_mask",
        "stats_merge",
    ),
    "TFRecords": ("tfrecord",),
    "CSV tables": ("tables",),
}


class Clock:
    """Process CPU time per step (so other jobs on the machine do not inflate it)."""

    def __init__(self):
        self.seconds: Dict[str, float] = collections.defaultdict(float)

    def time(self, step: str, function, *args):
        start = time.process_time()
        result = function(*args)
        self.seconds[step] += time.process_time() - start
        return result


def mask_moments(mask, full_mask):
    """The mask's moments the way the pipeline gets them for a PNG mask."""
    return binary_moments(int(np.count_nonzero(mask)), full_mask.size)


def profile(globs: Dict[str, str], out_dir: Path, repeats: int = 1) -> Dict[str, object]:
    """ms per sample of every step, over every pair of the inputs."""
    defaults = workload.build_defaults()  # the profiled tree's, as it is first on the path
    config = workload.default_build_config()
    input_config, placement_config, encoding = config.inputs, config.placements, config.encoding
    backgrounds = [Path(path) for path in sorted(glob.glob(globs["bg"]))]
    fg_paths = [Path(path) for path in sorted(glob.glob(globs["fg"]))]
    mask_dir = Path(globs["fg_mask"]).parent
    foregrounds = []
    for path in fg_paths:
        mask = mask_dir / f"mask_{path.name}"
        foregrounds.append(
            build_foreground(
                path.stem,
                str(path),
                path.read_bytes(),
                str(mask) if mask.exists() else None,
                mask.read_bytes() if mask.exists() else None,
                input_config,
            )
        )
    takes_moments = "background_moments" in inspect.signature(sample_example).parameters
    # Warm-up: TensorFlow's protobuf import and first-call costs are not per sample.
    sample_example(
        _dummy_row(),
        {k: b"" for k in ("background", "overlay", "mask", "depth")},
        "none",
        *(((1, (0, 0, 0), (0, 0, 0)),) if takes_moments else ()),
    )
    clock = Clock()
    totals: Dict[str, object] = {}
    samples = 0
    for _ in range(repeats):
        for bg_path in backgrounds:
            bg_stem = file_stem(str(bg_path))
            bg_relative = layout.background_path(bg_stem)
            image = load_background(bg_path.read_bytes(), input_config)
            bg_bytes = encode_jpeg(image, defaults.bg_quality)
            write_file(str(out_dir / bg_relative), bg_bytes)
            # Newer records carry the background's moments (computed once per
            # background by the pipeline, so not charged per sample here).
            example_extra = (encoded_moments(bg_bytes),) if takes_moments else ()
            for foreground in foregrounds:
                data = clock.time(
                    "background", lambda: load_background(read_file(str(bg_path)), input_config)
                )
                height, width = foreground.mask.shape
                placements = clock.time(
                    "placements",
                    lambda: list(
                        pair_placements(placement_config, bg_stem, foreground.stem, (width, height))
                    ),
                )
                mirrored = clock.time("resize_cutout", mirror, foreground)
                cutouts = {}
                rows = []
                for placement in placements:
                    variant = (placement.flip, placement.scale)
                    if variant not in cutouts:
                        rgba, mask = (
                            mirrored if placement.flip else (foreground.rgba, foreground.mask)
                        )
                        cutouts[variant] = clock.time(
                            "resize_cutout",
                            resize_cutout,
                            rgba,
                            mask,
                            scaled_size(width, height, placement.scale),
                        )
                    rgba, mask = cutouts[variant]
                    overlay = clock.time(
                        "alpha_composite", alpha_composite, data, rgba, placement.x, placement.y
                    )
                    full_mask = clock.time(
                        "place_mask", place_mask, mask, placement.x, placement.y, defaults.size
                    )
                    overlay_bytes = clock.time(
                        "encode_overlay", encode_jpeg, overlay, defaults.overlay_quality
                    )
                    mask_bytes = clock.time("encode_mask", encode_mask, full_mask, encoding)
                    overlay_path = layout.sample_path(placement, "overlay", "jpg")
                    mask_path = layout.sample_path(placement, "mask", defaults.mask_format)

                    def write_both():
                        write_file(layout.resolve(str(out_dir), overlay_path), overlay_bytes)
                        write_file(layout.resolve(str(out_dir), mask_path), mask_bytes)

                    clock.time("write_files", write_both)
                    moments = {
                        "mask": clock.time("stats_mask", mask_moments, mask, full_mask),
                        "overlay": clock.time("stats_overlay", encoded_moments, overlay_bytes),
                    }
                    # For the breakdown only (not in the sum): the decode alone.
                    clock.time(
                        "(decode_overlay_only)",
                        lambda: Image.open(io.BytesIO(overlay_bytes)).load(),
                    )
                    row = SampleRow(
                        placement=placement,
                        split="train",
                        bg_path=bg_relative,
                        overlay_path=overlay_path,
                        mask_path=mask_path,
                        depth_path="",
                        moments=moments,
                    )
                    rows.append(row)

                    def merge():
                        for kind, value in row.moments.items():
                            totals[kind] = (
                                add_moments(totals[kind], value) if kind in totals else value
                            )

                    clock.time("stats_merge", merge)

                    def record():
                        payload = {
                            kind: read_file(layout.resolve(str(out_dir), path))
                            for kind, path in (
                                ("background", bg_relative),
                                ("overlay", overlay_path),
                                ("mask", mask_path),
                            )
                        }
                        payload["depth"] = b""
                        return frame_record(sample_example(row, payload, "none", *example_extra))

                    clock.time("tfrecord", record)
                    samples += 1
                clock.time("pair_record", write_pair_record, str(out_dir), "key", rows)
                clock.time(
                    "tables",
                    lambda: (
                        render_csv(label_rows(rows, "prefix"), delimiter=";", quote_all=True),
                        render_csv(sample_table_rows(rows)),
                    ),
                )
    per_sample_ms = {step: 1000 * clock.seconds[step] / samples for step in STEPS}
    info_ms = {step: 1000 * clock.seconds[step] / samples for step in INFO_STEPS}
    return {
        "samples": samples,
        "per_sample_ms": per_sample_ms,
        "info_ms": info_ms,
        "total_ms": sum(per_sample_ms.values()),
        "groups_ms": {name: sum(per_sample_ms[s] for s in steps) for name, steps in GROUPS.items()},
    }


def _dummy_row() -> SampleRow:
    from fgbg.types import Placement

    return SampleRow(
        placement=Placement("b", "f", 1, False, 1.0, 0, 0, 1, 1),
        split="train",
        bg_path="",
        overlay_path="",
        mask_path="",
        depth_path="",
        moments={"overlay": (1, (0, 0, 0), (0, 0, 0)), "mask": (1, (0,), (0,))},
    )


def markdown(result: Dict[str, object]) -> str:
    per = result["per_sample_ms"]
    total = result["total_ms"]
    rows = [[step, f"{per[step]:.3f}", f"{100 * per[step] / total:.1f}%"] for step in STEPS]
    rows.append(["**sum**", f"**{total:.3f}**", "100%"])
    rows += [
        [step, f"{ms:.3f}", f"{100 * ms / total:.1f}%"]
        for step, ms in result.get("info_ms", {}).items()
    ]
    groups = [
        [name, f"{ms:.3f}", f"{100 * ms / total:.1f}%"] for name, ms in result["groups_ms"].items()
    ]
    return (
        common.table(("step (pure function, one process)", "ms/sample", "share"), rows)
        + "\n\n"
        + common.table(("group", "ms/sample", "share"), groups)
    )


def side_by_side(before: Dict[str, object], after: Dict[str, object]) -> str:
    rows = []
    for step in STEPS:
        b, a = before["per_sample_ms"].get(step, 0.0), after["per_sample_ms"][step]
        rows.append([step, f"{b:.3f}", f"{a:.3f}", f"{a - b:+.3f}"])
    rows.append(
        [
            "**sum**",
            f"**{before['total_ms']:.3f}**",
            f"**{after['total_ms']:.3f}**",
            f"**{after['total_ms'] - before['total_ms']:+.3f}**",
        ]
    )
    return common.table(("step", "before ms/sample", "after ms/sample", "change"), rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--backgrounds", type=int, default=2)
    parser.add_argument("--name", default="profile_sample", help="bench/results/<name>.md|json")
    parser.add_argument("--foregrounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--tree",
        default=None,
        help="profile the transforms/ of another copy of the code (e.g. "
        "an export of the previous commit) instead of this one's",
    )
    common.add_quiet_options(parser, retries=False)
    parser.add_argument(
        "--before_tree",
        default=None,
        help="also profile this copy of the code (in a subprocess, first) "
        "and show both side by side",
    )
    args = parser.parse_args(argv)
    before = None
    if args.before_tree:
        import json
        import subprocess

        subprocess.run(
            [
                sys.executable,
                __file__,
                "--tree",
                args.before_tree,
                "--backgrounds",
                str(args.backgrounds),
                "--foregrounds",
                str(args.foregrounds),
                "--repeats",
                str(args.repeats),
                "--max_busy",
                str(args.max_busy),
                "--name",
                f"{args.name}_before",
            ],
            check=True,
        )
        before = json.loads((common.RESULTS / f"{args.name}_before.json").read_text())
    with tempfile.TemporaryDirectory(prefix="fgbg-profile-") as scratch:
        globs = workload.make_inputs(Path(scratch) / "inputs", args.backgrounds, args.foregrounds)
        load = common.wait_for_quiet_cpu(args.max_busy)
        result = profile(globs, Path(scratch) / "out", args.repeats)
    text = (
        common.header(["bench/profile_sample.py", *(argv or sys.argv[1:])], load)
        + f"\n\n{result['samples']} samples\n\n"
        + (side_by_side(before, result) if before else markdown(result))
    )
    import fgbg.moments

    text += f"\n\nCode profiled: `{Path(fgbg.moments.__file__).parent.parent}`"
    common.save(args.name, text, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
