"""The inputs' options: where backgrounds and foregrounds are, and what
makes an input file one to reject."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Tuple

from fgbg.storage import match_files
from pipeline.options.rules import FRACTION, Range, UsageError, at_least, check_ranges

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


def input_file_counts(opts: Any) -> Dict[str, int]:
    """How many files --bg, --fg and --fg_mask match (the manifest's
    input_files); a build with no background or no foreground is a usage
    error naming the globs."""
    counts = {
        "backgrounds": _count_matches(opts.bg),
        "foregrounds": _count_matches(opts.fg),
        "masks": _count_matches(opts.fg_mask),
    }
    if not counts["backgrounds"] or not counts["foregrounds"]:
        raise UsageError(
            f"no input files: --bg {opts.bg!r} matched {counts['backgrounds']}, "
            f"--fg {opts.fg!r} matched {counts['foregrounds']}"
        )
    return counts


def _count_matches(pattern: Optional[str]) -> int:
    return len(match_files(pattern)) if pattern else 0
