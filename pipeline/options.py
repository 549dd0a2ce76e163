"""The build's options: every count, size and quality has one definition here.

Options are grouped by stage so `python -m pipeline.build --help` reads like
the pipeline. Beam's own options (runner, workers, Dataflow settings) are
accepted alongside.
"""
from __future__ import annotations

from typing import List, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

DEPTH_MODELS_HELP = (
    "'densedepth' (the published NYU weights, from --depth_weights), 'untrained' "
    "(the real architecture with seeded random weights: NOT real depth), 'none' "
    "(no depth stage), or a path (local or gs://) to a Keras model file or "
    "SavedModel mapping RGB in [0,1] to depth")


# The options that decide what a sample's files contain. A finished pair is
# reused by a rerun only when these (and its input files) are unchanged.
SAMPLE_SHAPING_OPTIONS = (
    "seed", "size", "scales", "placements_per_scale", "mirror", "mask_threshold",
    "val_fraction", "test_fraction", "overlay_quality", "mask_format", "mask_quality",
    "depth_model", "depth_weights", "depth_input_size", "depth_encoding", "depth_quality")


class FgbgOptions(PipelineOptions):
    """Options of `python -m pipeline.build`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        inputs = parser.add_argument_group("inputs (globs, local or gs://)")
        inputs.add_argument("--bg", help="Glob of background images, e.g. 'inputs/bg/*.jpg'.")
        inputs.add_argument("--fg", help="Glob of transparent foreground PNGs.")
        inputs.add_argument(
            "--fg_mask", default=None,
            help="Glob of foreground masks named mask_<fg name>.png|.jpg. Optional: "
                 "without a mask file a foreground's alpha channel is its mask.")
        inputs.add_argument(
            "--mask_threshold", type=int, default=0,
            help="Mask (or alpha) values above this are foreground (0..254; default: "
                 "%(default)s, every non-zero value, as the original binarised by hand).")
        inputs.add_argument(
            "--max_input_pixels", type=int, default=64_000_000,
            help="Reject inputs declaring more pixels than this (decompression bombs). "
                 "Default: %(default)s.")
        inputs.add_argument(
            "--min_background_side", type=int, default=32,
            help="Reject backgrounds whose shorter side is below this, in pixels. "
                 "Default: %(default)s.")
        inputs.add_argument(
            "--max_reject_fraction", type=float, default=0.5,
            help="Fail the run (exit status 3) when more than this fraction of input "
                 "files is rejected. Default: %(default)s.")

        generation = parser.add_argument_group("generation")
        generation.add_argument(
            "--size", type=int, default=224,
            help="Side of the square dataset images, in pixels. Default: %(default)s.")
        generation.add_argument(
            "--scales", default="1.0,0.8,0.6,0.4",
            help="Foreground scale factors, in order. Default: %(default)s.")
        generation.add_argument(
            "--placements_per_scale", type=int, default=5,
            help="Random placements per (flip, scale). Default: %(default)s.")
        generation.add_argument(
            "--no_mirror", dest="mirror", action="store_false", default=True,
            help="Do not add the horizontally mirrored foreground (default: add it, "
                 "numbers after the original's).")
        generation.add_argument(
            "--seed", type=int, default=0,
            help="Run seed: with the sample's identity it fixes every random draw. "
                 "Default: %(default)s.")
        generation.add_argument(
            "--val_fraction", type=float, default=0.1,
            help="Fraction of backgrounds (with all their samples) in the val split. "
                 "Default: %(default)s.")
        generation.add_argument(
            "--test_fraction", type=float, default=0.1,
            help="Fraction of backgrounds in the test split. Default: %(default)s.")

        encoding = parser.add_argument_group("encoding")
        encoding.add_argument(
            "--bg_quality", type=int, default=60,
            help="JPEG quality of bg/*.jpg (the original's). Default: %(default)s.")
        encoding.add_argument(
            "--overlay_quality", type=int, default=50,
            help="JPEG quality of overlays (the original's). Default: %(default)s.")
        encoding.add_argument(
            "--mask_format", choices=("png", "jpg"), default="png",
            help="png: lossless, strictly 0/255 (default). jpg: the original's lossy masks.")
        encoding.add_argument(
            "--mask_quality", type=int, default=50,
            help="JPEG quality of masks with --mask_format jpg. Default: %(default)s.")

        depth = parser.add_argument_group("depth (DenseDepth through RunInference)")
        depth.add_argument("--depth_model", default="densedepth", help=DEPTH_MODELS_HELP
                           + ". Default: %(default)s.")
        depth.add_argument(
            "--depth_weights", default=None,
            help="The published DenseDepth nyu.h5 (local or gs://), for --depth_model "
                 "densedepth.")
        depth.add_argument(
            "--depth_batch_size", type=int, default=4,
            help="Largest batch of images per model call (measured: throughput flat from 2 "
                 "to 8 at 640x480, ~250 MiB per image). Default: %(default)s.")
        depth.add_argument(
            "--depth_min_batch_size", type=int, default=4,
            help="Smallest batch BatchElements forms. Default: %(default)s.")
        depth.add_argument(
            "--depth_target_batch_duration_s", type=float, default=10.0,
            help="BatchElements grows batches (between the min and max sizes) towards "
                 "this many seconds per model call. Default: %(default)s.")
        depth.add_argument(
            "--depth_input_size", default="640x480",
            help="WxH the composite is resized to for the model (multiples of 32). "
                 "Default: %(default)s.")
        depth.add_argument(
            "--depth_encoding", choices=("minmax", "metric"), default="minmax",
            help="minmax: the original's per-image 0..255 grey JPEG. metric: 16-bit PNG "
                 "on one fixed scale for all images (see README). Default: %(default)s.")
        depth.add_argument(
            "--depth_quality", type=int, default=85,
            help="JPEG quality of minmax depth maps. Default: %(default)s.")

        outputs = parser.add_argument_group("outputs")
        outputs.add_argument("--output", help="Dataset root folder, local or gs://.")
        outputs.add_argument(
            "--records_per_shard", type=int, default=2000,
            help="Samples per TFRecord shard, about: shards hold whole pairs. "
                 "Default: %(default)s.")
        outputs.add_argument(
            "--csv_prefix", default=None,
            help="Prefix of the paths in label_data.csv (default: the output folder's "
                 "name, so paths are relative to its parent, as in the original).")
        outputs.add_argument(
            "--no_tft", dest="tft", action="store_false", default=True,
            help="Skip the tensorflow-transform analysis that writes transform/ (the "
                 "normalisation graph training code applies).")
        outputs.add_argument(
            "--tft_batch_size", type=int, default=16,
            help="Records per TFT analysis batch (it reads one moments-only record per "
                 "TFRecord shard). Default: %(default)s.")
        outputs.add_argument(
            "--no_resume", dest="resume", action="store_false", default=True,
            help="Remake every sample. By default a rerun into the same output reuses "
                 "pairs that an earlier run finished with the same inputs and options.")
        outputs.add_argument(
            "--progress_interval_s", type=float, default=10.0,
            help="Seconds between progress lines on local runs. Default: %(default)s.")


def unknown_arguments(argv: Sequence[str]) -> List[str]:
    """Arguments that no options class declares, ours or Beam's.

    Beam only logs and drops them, so a typo such as --placement_per_scale=1
    would quietly build with the default. This parses the way Beam does (its
    parser, every options class imported so far) and returns what is left.
    """
    parser = _BeamArgumentParser(allow_abbrev=False)
    # One class per name, as Beam does: a module loaded twice defines its
    # options class twice, and argparse refuses a repeated option.
    by_name: dict = {}
    for options_class in PipelineOptions.__subclasses__():
        by_name.setdefault(str(options_class), options_class)
    for options_class in by_name.values():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    return unknown
