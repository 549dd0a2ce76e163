"""The build's options: every count, size and quality has one definition
here, and every rule about their values is checked here, once, before any
work.

Options are grouped by stage so `python -m pipeline.build --help` reads like
the pipeline. Beam's own options (runner, workers, Dataflow settings) are
accepted alongside.
"""

from __future__ import annotations

import argparse
import fractions
import importlib.util
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from fgbg.beam_compat import declared_options, options_parser
from fgbg.blend_modes import MIXED, MODES, NONE, parse_blend
from fgbg.depth import checkpoints, maps, models
from fgbg.depth.checkpoints import Checkpoint
from fgbg.images import JPEG_QUALITY
from pipeline.dataflow import is_dataflow
from transforms.placements import parse_scales


class UsageError(ValueError):
    """A bad option: the message says which and how to fix it."""


DEPTH_MODELS_HELP = (
    "'densedepth' (the published NYU weights, from --depth_weights), 'untrained' "
    "(the real architecture with seeded random weights: NOT real depth), 'none' "
    "(no depth stage), a path (local or gs://) to a Keras model file or "
    "SavedModel mapping RGB in [0,1] to depth, or a transformers depth-estimation "
    "checkpoint: a folder (local or gs://) with config.json, model.safetensors and "
    "preprocessor_config.json, or a Hugging Face Hub id such as "
    f"{checkpoints.SMALL} (README, 'A current depth model'; runs on PyTorch)"
)
# DenseDepth's network input, as the original ran it.
DENSEDEPTH_INPUT_SIZE = "640x480"


class FgbgOptions(PipelineOptions):
    """Options of `python -m pipeline.build`."""

    @classmethod
    def _add_argparse_args(cls, parser):
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
            help="Standard deviation in pixels of --blend gaussian's feather. "
            "Default: %(default)s.",
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
            "(README, 'What a build writes'). Default: %(default)s.",
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

        depth = parser.add_argument_group(
            "depth (DenseDepth or a transformers checkpoint, through RunInference)"
        )
        depth.add_argument(
            "--depth_model",
            default="densedepth",
            help=DEPTH_MODELS_HELP + ". Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_weights",
            default=None,
            help="The published DenseDepth nyu.h5 (local or gs://), for --depth_model densedepth.",
        )
        depth.add_argument(
            "--depth_batch_size",
            type=int,
            default=4,
            help="Largest batch of images per model call on a CPU: past a few images a "
            "batch adds memory, not speed (BENCHMARKS.md, 'Depth on CPU'). "
            "Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_gpu_batch_size",
            type=int,
            default=32,
            help="Largest batch per model call with --depth_device cuda (auto keeps "
            "--depth_batch_size: the device is not known when the graph is built). The "
            "default is an estimate that fits an L4's 24 GB, and a T4's 16 GB, in fp32 "
            "(BENCHMARKS.md, 'Depth on a GPU'). Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_min_batch_size",
            type=int,
            default=4,
            help="Smallest batch BatchElements forms. Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_target_batch_duration_s",
            type=float,
            default=10.0,
            help="BatchElements grows batches (between the min and max sizes) towards "
            "this many seconds per model call. Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_input_size",
            default=None,
            help="WxH (or N for NxN) the composite is resized to for the model: multiples "
            f"of 32 for DenseDepth, of the patch size (14) for Depth Anything V2, where "
            "224 (16 patches) is faster than its own 518 (BENCHMARKS.md, 'Depth on CPU'). "
            f"Default: the model's own ({DENSEDEPTH_INPUT_SIZE} for DenseDepth, the "
            "checkpoint processor's size for a transformers checkpoint).",
        )
        depth.add_argument(
            "--depth_encoding",
            choices=("minmax", "metric"),
            default="minmax",
            help="minmax: the original's per-image 0..255 grey JPEG. metric: 16-bit PNG "
            "on one fixed scale for all images (see README). Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_quality",
            type=int,
            default=85,
            help="JPEG quality of minmax depth maps. Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_precision",
            choices=models.PRECISIONS,
            default=models.AUTO,
            help="The arithmetic depth runs in. auto: on each worker, the fastest precision "
            "its CPU or GPU runs natively whose written maps met the accuracy rule against "
            "fp32 for this --depth_encoding, --size and --depth_quality, else fp32 "
            "(BENCHMARKS.md, 'Depth precision'); the manifest and each pair's record say "
            "which ran. fp32: full single precision, the reference. bf16, fp16, tf32: that "
            "precision, which the "
            "worker's hardware must run natively (fp16 and tf32: --depth_runtime torch on a "
            "GPU). Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_runtime",
            choices=models.RUNTIMES,
            default=models.TENSORFLOW,
            help="What runs DenseDepth. tensorflow: any DenseDepth or Keras --depth_model. "
            "torch: the published weights or untrained only, on a GPU when one is present "
            "(pip install -e .[torch]). A transformers checkpoint always runs on torch. "
            "Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_device",
            choices=models.DEVICES,
            default=models.AUTO,
            help="Where --depth_runtime torch runs the network: auto is the GPU when the "
            "worker sees one, else the CPU. Default: %(default)s.",
        )
        depth.add_argument(
            "--depth_compile",
            action="store_true",
            help="--depth_runtime torch: compile the network with torch.compile (a compile "
            "per input shape at start-up, for faster batches on a GPU: BENCHMARKS.md, "
            "'Depth on a GPU').",
        )
        depth.add_argument(
            "--depth_resize_on_device",
            action="store_true",
            help="--depth_runtime torch: resize each composite to the network size on the "
            "model's device (bicubic) instead of with PIL's Lanczos on the CPU, and send "
            "it there as uint8: less CPU work, slightly different depth maps "
            "(BENCHMARKS.md, 'Depth on CPU').",
        )
        depth.add_argument(
            "--depth_share_model",
            action="store_true",
            help="Load one depth model per machine and let every worker process call it "
            "(Beam's share_model_across_processes), instead of one model per process: "
            "for a GPU that cannot hold a model per worker.",
        )

        outputs = parser.add_argument_group("outputs")
        outputs.add_argument("--output", help="Dataset root folder, local or gs://.")
        outputs.add_argument(
            "--records_per_shard",
            type=int,
            default=2000,
            help="Samples per TFRecord shard, about: shards hold whole pairs. "
            "Default: %(default)s.",
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
            "build that held it stopped renewing it (README 'Faults tried'). A lease "
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


def help_parser() -> argparse.ArgumentParser:
    """The --help text: our options by stage, then a pointer to Beam's."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build",
        description="Build a foreground/background composite dataset with masks, depth "
        "maps, CSVs, TFRecords and statistics.",
        epilog="Any Apache Beam option is accepted too, e.g. --runner DataflowRunner, "
        "--project/--region/--temp_location for Dataflow. Local runs default to the "
        "FnApiRunner (the DirectRunner's engine) with one worker process per core; "
        "--direct_num_workers N or --direct_running_mode in_memory overrides that.",
    )
    FgbgOptions._add_argparse_args(parser)
    return parser


def option_values(opts: FgbgOptions) -> Dict[str, object]:
    """Our own options (not Beam's), as given or defaulted, by name."""
    values = opts.get_all_options()
    return {name: values.get(name) for name in declared_options(FgbgOptions)}


def unknown_arguments(argv: Sequence[str]) -> List[str]:
    """Arguments that no options class declares, ours or Beam's.

    Beam only logs and drops them, so a typo such as --placement_per_scale=1
    would quietly build with the default. This parses the way Beam does (its
    parser, every options class imported so far) and returns what is left.
    """
    parser = options_parser()
    # One class per name, as Beam does: a module loaded twice defines its
    # options class twice, and argparse refuses a repeated option.
    by_name: dict = {}
    for options_class in PipelineOptions.__subclasses__():
        by_name.setdefault(str(options_class), options_class)
    for options_class in by_name.values():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    return unknown


def parse_size(text: str) -> Tuple[int, int]:
    """'640x480' -> (640, 480); '224' -> (224, 224)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(part) for part in (parts * 2 if len(parts) == 1 else parts))
    except ValueError:
        raise UsageError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


Rule = Tuple[Callable[[float], bool], str]  # a test, and what the error says it wants


def depth_batch_size_option(opts: FgbgOptions) -> str:
    """The batch-size option in effect: a GPU's batches are larger (a batch
    is one kernel launch per layer, and a GPU idles between small ones)."""
    on_gpu = opts.depth_device == models.CUDA
    return "depth_gpu_batch_size" if on_gpu else "depth_batch_size"


def depth_batch_size(opts: FgbgOptions) -> int:
    """Largest batch per model call, for the device --depth_device names."""
    return getattr(opts, depth_batch_size_option(opts))


def _at_least(low: int) -> Rule:
    return (lambda value: value >= low), f">= {low}"


_POSITIVE: Rule = ((lambda value: value > 0), "> 0")
_FRACTION: Rule = ((lambda value: 0 <= value <= 1), "in 0..1")
_QUALITY: Rule = (JPEG_QUALITY.__contains__, f"in {JPEG_QUALITY.start}..{JPEG_QUALITY.stop - 1}")
# Each numeric option's valid values.
OPTION_RANGES: Tuple[Tuple[str, Callable[[float], bool], str], ...] = (
    ("mask_threshold", (lambda value: 0 <= value < 255), "in 0..254"),
    ("max_input_pixels", *_at_least(1)),
    ("min_background_side", *_at_least(1)),
    ("max_reject_fraction", *_FRACTION),
    ("size", *_at_least(8)),
    ("placements_per_scale", *_at_least(1)),
    ("blend_sigma", *_POSITIVE),
    ("blend_motion_length", (lambda value: value >= 3 and value % 2 == 1), "odd and >= 3"),
    ("val_fraction", *_FRACTION),
    ("test_fraction", *_FRACTION),
    ("test_foreground_fraction", *_FRACTION),
    ("bg_quality", *_QUALITY),
    ("overlay_quality", *_QUALITY),
    ("mask_quality", *_QUALITY),
    ("depth_quality", *_QUALITY),
    ("depth_batch_size", *_at_least(1)),
    ("depth_gpu_batch_size", *_at_least(1)),
    ("depth_min_batch_size", *_at_least(1)),
    ("depth_target_batch_duration_s", *_POSITIVE),
    ("records_per_shard", *_at_least(1)),
    ("tft_batch_size", *_at_least(1)),
    ("progress_interval_s", *_POSITIVE),
    ("lease_stale_after_s", *_POSITIVE),
)


def check_options(opts: FgbgOptions) -> Optional[Checkpoint]:
    """Every rule about the options' values, with a message naming the
    option; returns the transformers checkpoint --depth_model names, as
    described for the check (`checked_checkpoint`), or None."""
    for name in ("bg", "fg", "output"):
        if not getattr(opts, name):
            raise UsageError(f"--{name} is required (see --help)")
    for name, valid, expected in OPTION_RANGES:
        if not valid(getattr(opts, name)):
            raise UsageError(f"--{name} must be {expected}, got {getattr(opts, name)}")
    _check_split_options(opts)
    try:
        parse_scales(opts.scales)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        parse_blend(opts.blend)
    except ValueError as error:
        raise UsageError(f"--blend {opts.blend}: {error}") from None
    return _check_depth_options(opts)


def _check_split_options(opts: FgbgOptions) -> None:
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


def _check_depth_options(opts: FgbgOptions) -> Optional[Checkpoint]:
    checkpoint = checked_checkpoint(opts)
    if checkpoint is None:
        opts.depth_input_size = model_input_size(opts)
        try:
            maps.check_input_size(parse_size(opts.depth_input_size))
        except ValueError as error:
            raise UsageError(f"--depth_input_size {opts.depth_input_size}: {error}") from None
    if opts.depth_model == models.NONE:
        return None
    if opts.depth_min_batch_size > depth_batch_size(opts):
        raise UsageError(
            f"--depth_min_batch_size must be at most --{depth_batch_size_option(opts)}"
        )
    if opts.depth_model == models.PUBLISHED and not opts.depth_weights:
        raise UsageError(models.MISSING_WEIGHTS_MESSAGE)
    _check_depth_runtime(opts, checkpoint is not None)
    if opts.depth_model != models.PUBLISHED and opts.depth_weights:
        raise UsageError(
            f"--depth_weights is for --depth_model densedepth only; "
            f"--depth_model {opts.depth_model} would ignore it"
        )
    return checkpoint


def model_input_size(opts: FgbgOptions, checkpoint: Optional[Checkpoint] = None) -> str:
    """--depth_input_size as WxH, or the model's own: the checkpoint
    processor's size, else DenseDepth's. check_options writes it back into
    the options, so the manifest and the pair keys hold what ran."""
    if opts.depth_input_size:
        wanted = opts.depth_input_size
    elif checkpoint:
        wanted = str(checkpoint.default_input_size)
    else:
        wanted = DENSEDEPTH_INPUT_SIZE
    width, height = parse_size(wanted)
    return f"{width}x{height}"


def checked_checkpoint(opts: FgbgOptions) -> Optional[Checkpoint]:
    """The transformers checkpoint --depth_model names (None for DenseDepth),
    described and checked against the options, which it completes: the
    processor's input size unless one is given, and the torch runtime."""
    if not checkpoints.is_checkpoint(opts.depth_model):
        return None
    try:
        checkpoint = checkpoints.describe(opts.depth_model)
    except models.ModelLoadError as error:
        raise UsageError(str(error)) from None
    if opts.depth_encoding == "metric" and not checkpoint.content.metric:
        raise UsageError(
            f"--depth_encoding metric needs a metric checkpoint; {opts.depth_model} predicts "
            f"{checkpoint.content.description} (up to scale and shift). Use --depth_encoding "
            "minmax, or a metric checkpoint such as "
            "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
        )
    opts.depth_input_size = model_input_size(opts, checkpoint)
    width, height = parse_size(opts.depth_input_size)
    patch = checkpoint.patch_size
    if any(n <= 0 or n % patch for n in (width, height)):
        raise UsageError(
            f"--depth_input_size {opts.depth_input_size}: {opts.depth_model} needs positive "
            f"multiples of its patch size, {patch} (e.g. {16 * patch} = 16 patches)"
        )
    opts.depth_runtime = models.TORCH
    return checkpoint


def _check_depth_runtime(opts: FgbgOptions, checkpoint: bool) -> None:
    """The torch runtime's needs, told before a worker starts; `checkpoint`:
    --depth_model names a transformers checkpoint."""
    if opts.depth_runtime != models.TORCH:
        if opts.depth_device != models.AUTO or opts.depth_compile or opts.depth_resize_on_device:
            raise UsageError(
                "--depth_device, --depth_compile and --depth_resize_on_device are for "
                "--depth_runtime torch"
            )
        if opts.depth_precision in models.GPU_PRECISIONS:
            raise UsageError(
                f"--depth_precision {opts.depth_precision} is for --depth_runtime torch on a "
                f"GPU; the tensorflow runtime runs auto, {', '.join(models.TENSORFLOW_PRECISIONS)}"
            )
        return
    if opts.depth_precision in models.GPU_PRECISIONS and opts.depth_device == models.CPU:
        raise UsageError(
            f"--depth_precision {opts.depth_precision} needs a GPU; --depth_device cpu "
            "runs auto, fp32 or bf16"
        )
    if opts.depth_model not in (models.PUBLISHED, models.UNTRAINED) and not checkpoint:
        raise UsageError(models.TORCH_KERAS_FILE_MESSAGE)
    runner = opts.view_as(StandardOptions).runner or ""
    # A Dataflow launcher only builds the graph; its workers' container has PyTorch.
    needed = ("torch", "transformers") if checkpoint else ("torch",)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not is_dataflow(runner) and missing:
        raise UsageError(
            f"--depth_model {opts.depth_model} runs on PyTorch and needs {', '.join(missing)}, "
            "which is not installed: pip install -e '.[torch]'"
        )
