"""The generation options: the samples each pair makes (size, scales,
placements, mirroring, the run seed), where in its scene a cut-out stands
and what its depth label is (placement by depth), how a cut-out meets its
background (blending), and the splits."""

from __future__ import annotations

import argparse
import fractions
from typing import Any, Optional, Tuple

from fgbg.blend_modes import MIXED, MODES, NONE, parse_blend
from fgbg.depth import models
from fgbg.depth.checkpoints import Checkpoint
from pipeline.options.rules import FRACTION, POSITIVE, Range, UsageError, at_least, check_ranges
from transforms.placements import parse_scales
from transforms.scene_placement import (
    COMPOSED,
    DEPTH,
    LABEL_SOURCES,
    MODEL,
    PLACEMENTS,
    RANDOM,
)

RANGES: Tuple[Range, ...] = (
    ("size", *at_least(8)),
    ("placements_per_scale", *at_least(1)),
    ("blend_sigma", *POSITIVE),
    ("blend_motion_length", (lambda value: value >= 3 and value % 2 == 1), "odd and >= 3"),
    ("val_fraction", *FRACTION),
    ("test_fraction", *FRACTION),
    ("test_foreground_fraction", *FRACTION),
    ("camera_fov", (lambda value: 0 < value < 180), "in (0, 180) degrees"),
    ("bg_depth_scale", *POSITIVE),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    generation = parser.add_argument_group("generation")
    generation.add_argument(
        "--size",
        type=int,
        default=224,
        help="Side of the square dataset images, in pixels. Default: %(default)s.",
    )
    generation.add_argument(
        "--scales",
        default="1.0,0.8,0.6,0.4",
        help="Foreground scale factors, in order. Default: %(default)s.",
    )
    generation.add_argument(
        "--placements_per_scale",
        type=int,
        default=5,
        help="Random placements per (flip, scale). Default: %(default)s.",
    )
    generation.add_argument(
        "--no_mirror",
        dest="mirror",
        action="store_false",
        default=True,
        help="Do not add the horizontally mirrored foreground (default: add it, "
        "numbers after the original's).",
    )
    generation.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Run seed: with the sample's identity it fixes every random draw. "
        "Default: %(default)s.",
    )
    scene = parser.add_argument_group(
        "scene (placement by depth and depth labels by construction: docs/scene-placement.md)"
    )
    scene.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=RANDOM,
        help="random: each cut-out anywhere in the image at its --scales (the original's). "
        "depth: standing on a floor or other upward surface of the background's depth, "
        "scaled by depth (--scales hold at the floor's median depth) and hidden behind "
        "what is nearer; needs depth in metres (--bg_depth, DenseDepth or a metric "
        "checkpoint). Cost: BENCHMARKS.md, 'Placement by depth'. Default: %(default)s.",
    )
    scene.add_argument(
        "--depth_labels",
        choices=LABEL_SOURCES,
        default=MODEL,
        help="model: the depth model runs on every composite (the original's). composed: "
        "the background's depth with the object's foot depth where it is seen, by "
        "construction, so the model runs once per background, or never with --bg_depth; "
        "needs depth in metres. Default: %(default)s.",
    )
    scene.add_argument(
        "--camera_fov",
        type=float,
        default=60.0,
        help="Horizontal field of view of the backgrounds' cameras, in degrees, for "
        "finding floors in their depth (--placement depth). Default: %(default)s.",
    )
    scene.add_argument(
        "--bg_depth",
        default=None,
        help="Glob (local or gs://) of the backgrounds' own depth maps, matched by file "
        "name without suffix: 16-bit PNGs, 0 for no measurement (NYU Depth V2, ScanNet). "
        "With them no depth model runs for placement or composed labels; a background "
        "whose map is missing or unusable is rejected.",
    )
    scene.add_argument(
        "--bg_depth_scale",
        type=float,
        default=1000.0,
        help="Stored units per metre of --bg_depth maps (1000: millimetres). Default: %(default)s.",
    )
    generation.add_argument(
        "--blend",
        default=NONE,
        help=f"How each cut-out meets its background: {', '.join(MODES)}, or {MIXED} "
        "(each sample draws one of them from the run seed), or a comma list to draw "
        "among, e.g. gaussian,poisson. none is the hard alpha paste; gaussian "
        "feathers the alpha (--blend_sigma); poisson clones the object seamlessly "
        "(OpenCV, normal gradients); motion smears it along a line "
        "(--blend_motion_length). The mask stays the cut-out's. Cost per mode: "
        "BENCHMARKS.md, 'Blending'. Default: %(default)s.",
    )
    generation.add_argument(
        "--blend_sigma",
        type=float,
        default=2.0,
        help="Standard deviation in pixels of --blend gaussian's feather. Default: %(default)s.",
    )
    generation.add_argument(
        "--blend_motion_length",
        type=int,
        default=7,
        help="Length in pixels (odd) of --blend motion's blur line; each sample "
        "draws its direction. Default: %(default)s.",
    )
    generation.add_argument(
        "--val_fraction",
        type=float,
        default=0.1,
        help="Fraction of backgrounds (with all their samples) in the val split: "
        "exactly round(fraction x backgrounds), at least one when positive "
        "(docs/dataset.md, 'What a build writes'). Default: %(default)s.",
    )
    generation.add_argument(
        "--test_fraction",
        type=float,
        default=0.1,
        help="Fraction of backgrounds in the test split, counted the same way; "
        "val and test together must leave train some. Default: %(default)s.",
    )
    generation.add_argument(
        "--test_foreground_fraction",
        type=float,
        default=0.0,
        help="Fraction of foregrounds held out for the test split: test backgrounds "
        "get only these, train and val never see them, and pairs that would mix "
        "them are not made, so a model is tested on unseen objects. 0 pairs every "
        "background with every foreground. Default: %(default)s.",
    )


def check(opts: Any) -> None:
    """The generation options' rules, with a message naming the option."""
    check_ranges(opts, RANGES)
    _check_split_options(opts)
    try:
        parse_scales(opts.scales)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        parse_blend(opts.blend)
    except ValueError as error:
        raise UsageError(f"--blend {opts.blend}: {error}") from None


def _check_split_options(opts: Any) -> None:
    """Fractions that leave train backgrounds and foregrounds, and held-out
    foregrounds only with a test split to show them in; summed exactly, as
    the splits are counted (transforms/splits.py), so 0.7 + 0.3 is 1."""
    held_back = fractions.Fraction(str(opts.val_fraction)) + fractions.Fraction(
        str(opts.test_fraction)
    )
    if held_back >= 1:
        raise UsageError(
            f"--val_fraction {opts.val_fraction} and --test_fraction {opts.test_fraction} "
            "must sum to less than 1: they would leave the train split empty"
        )
    if opts.test_foreground_fraction >= 1:
        raise UsageError(
            "--test_foreground_fraction must be less than 1: it would leave train and val "
            "no foreground"
        )
    if opts.test_foreground_fraction > 0 and opts.test_fraction == 0:
        raise UsageError(
            "--test_foreground_fraction holds foregrounds out for the test split, "
            "and --test_fraction 0 makes none"
        )


def needs_scene_depth(opts: Any) -> bool:
    """Whether the build needs each background's depth in metres."""
    return opts.placement == DEPTH or opts.depth_labels == COMPOSED


def check_scene(opts: Any, checkpoint: Optional[Checkpoint]) -> None:
    """Placement by depth and composed labels need depth in metres: the
    user's maps (--bg_depth), DenseDepth, or a metric checkpoint (`checkpoint`,
    as the depth options described it). A relative one predicts disparity up
    to an unknown scale and shift, in which no floor has a height and no
    object a size."""
    if not needs_scene_depth(opts):
        if opts.bg_depth:
            raise UsageError(
                "--bg_depth is for --placement depth or --depth_labels composed; this "
                "build would not read it"
            )
        return
    wanted = f"--placement {opts.placement} --depth_labels {opts.depth_labels}"
    if opts.bg_depth:
        return
    if opts.depth_model == models.NONE:
        raise UsageError(
            f"{wanted} needs each background's depth in metres: give --bg_depth, or a "
            "metric --depth_model (densedepth, or a metric checkpoint)"
        )
    if checkpoint is not None and not checkpoint.content.metric:
        raise UsageError(
            f"{wanted} needs depth in metres; {opts.depth_model} predicts "
            f"{checkpoint.content.description}, up to an unknown scale and shift, in which "
            "a floor has no height and an object no size. Use --bg_depth, DenseDepth, or a "
            "metric checkpoint such as depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
        )


def without_unused_model(opts: Any) -> None:
    """With --bg_depth and --depth_labels composed no depth model runs: the
    default --depth_model (densedepth, given no weights) stands down to none,
    and a model named outright is refused, since it would not run."""
    if not (opts.bg_depth and opts.depth_labels == COMPOSED):
        return
    if opts.depth_model == models.PUBLISHED and not opts.depth_weights:
        opts.depth_model = models.NONE
    elif opts.depth_model != models.NONE:
        raise UsageError(
            f"--depth_model {opts.depth_model} would not run: with --bg_depth and "
            "--depth_labels composed the labels come from the given depth maps"
        )
