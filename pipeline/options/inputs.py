"""The inputs' options: where backgrounds and foregrounds are, and what
makes an input file one to reject."""

from __future__ import annotations

import argparse
from typing import Any, Tuple

from pipeline.options.rules import FRACTION, Range, at_least, check_ranges

RANGES: Tuple[Range, ...] = (
    ("mask_threshold", (lambda value: 0 <= value < 255), "in 0..254"),
    ("max_input_pixels", *at_least(1)),
    ("min_background_side", *at_least(1)),
    ("max_reject_fraction", *FRACTION),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("inputs (globs, local or gs://)")
    inputs.add_argument("--bg", help="Glob of background images, e.g. 'inputs/bg/*.jpg'.")
    inputs.add_argument("--fg", help="Glob of transparent foreground PNGs.")
    inputs.add_argument(
        "--fg_mask",
        default=None,
        help="Glob of foreground masks named mask_<fg name>.png|.jpg. Optional: "
        "without a mask file a foreground's alpha channel is its mask.",
    )
    inputs.add_argument(
        "--mask_threshold",
        type=int,
        default=0,
        help="Mask (or alpha) values above this are foreground (0..254; default: "
        "%(default)s, every non-zero value, as the original binarised by hand).",
    )
    inputs.add_argument(
        "--max_input_pixels",
        type=int,
        default=64_000_000,
        help="Reject inputs declaring more pixels than this (decompression bombs). "
        "Default: %(default)s.",
    )
    inputs.add_argument(
        "--min_background_side",
        type=int,
        default=32,
        help="Reject backgrounds whose shorter side is below this, in pixels. "
        "Default: %(default)s.",
    )
    inputs.add_argument(
        "--max_reject_fraction",
        type=float,
        default=0.5,
        help="Fail the run (exit status 3) when more than this fraction of input "
        "files is rejected. Default: %(default)s.",
    )


def check(opts: Any) -> None:
    """The inputs' rules, with a message naming the option."""
    check_ranges(opts, RANGES)
