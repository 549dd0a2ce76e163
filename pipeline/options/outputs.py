"""The outputs' options: how files are encoded, where the dataset goes,
what is written beside it, and how a run reports and resumes."""

from __future__ import annotations

import argparse
from typing import Any, Tuple

from pipeline.options.rules import POSITIVE, QUALITY, Range, UsageError, at_least, check_ranges

ENCODING_RANGES: Tuple[Range, ...] = (
    ("bg_quality", *QUALITY),
    ("overlay_quality", *QUALITY),
    ("mask_quality", *QUALITY),
)
RANGES: Tuple[Range, ...] = (
    ("records_per_shard", *at_least(1)),
    ("tft_batch_size", *at_least(1)),
    ("progress_interval_s", *POSITIVE),
    ("lease_stale_after_s", *POSITIVE),
)


def add_encoding_arguments(parser: argparse.ArgumentParser) -> None:
    encoding = parser.add_argument_group("encoding")
    encoding.add_argument(
        "--bg_quality",
        type=int,
        default=60,
        help="JPEG quality of bg/*.jpg (the original's). Default: %(default)s.",
    )
    encoding.add_argument(
        "--overlay_quality",
        type=int,
        default=50,
        help="JPEG quality of overlays (the original's). Default: %(default)s.",
    )
    encoding.add_argument(
        "--mask_format",
        choices=("png", "jpg"),
        default="png",
        help="png: lossless, strictly 0/255 (default). jpg: the original's lossy masks.",
    )
    encoding.add_argument(
        "--mask_quality",
        type=int,
        default=50,
        help="JPEG quality of masks with --mask_format jpg. Default: %(default)s.",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--output", help="Dataset root folder, local or gs://.")
    outputs.add_argument(
        "--records_per_shard",
        type=int,
        default=2000,
        help="Samples per TFRecord shard, about: shards hold whole pairs. Default: %(default)s.",
    )
    outputs.add_argument(
        "--csv_prefix",
        default=None,
        help="Prefix of the paths in label_data.csv (default: the output folder's "
        "name, so paths are relative to its parent, as in the original).",
    )
    outputs.add_argument(
        "--no_tft",
        dest="tft",
        action="store_false",
        default=True,
        help="Skip the tensorflow-transform analysis that writes transform/ (the "
        "normalisation graph training code applies).",
    )
    outputs.add_argument(
        "--tft_batch_size",
        type=int,
        default=16,
        help="Records per TFT analysis batch (it reads one moments-only record per "
        "TFRecord shard). Default: %(default)s.",
    )
    outputs.add_argument(
        "--no_resume",
        dest="resume",
        action="store_false",
        default=True,
        help="Remake every sample. By default a rerun into the same output reuses "
        "pairs that an earlier run finished with the same inputs and options.",
    )
    outputs.add_argument(
        "--verbose",
        action="store_true",
        default=False,
        help="Also show other libraries' INFO logging: TensorFlow's start-up lines, "
        "Beam's worker records, tfx-bsl. By default a run prints fgbg's progress, "
        "warnings and errors, and its summary.",
    )
    outputs.add_argument(
        "--force",
        action="store_true",
        default=False,
        help="Take over the output's lease (.lease.json) when it is stale: the "
        "build that held it stopped renewing it (docs/guarantees.md, 'Faults tried'). A lease "
        "that is still renewed is never taken.",
    )
    outputs.add_argument(
        "--lease_stale_after_s",
        type=float,
        default=600.0,
        help="Seconds without renewal after which this build's lease counts as "
        "stale; it is renewed five times as often. Default: %(default)s.",
    )
    outputs.add_argument(
        "--progress_interval_s",
        type=float,
        default=10.0,
        help="Seconds between progress lines on local runs. Default: %(default)s.",
    )


def check(opts: Any) -> None:
    """The outputs' rules, with a message naming the option."""
    if not opts.output:
        raise UsageError("--output is required (see --help)")
    check_ranges(opts, ENCODING_RANGES + RANGES)
