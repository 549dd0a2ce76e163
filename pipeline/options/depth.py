"""The depth options: which model makes the maps, on which runtime and
device, in which precision and batches, and how its maps are stored."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any, Optional, Tuple

from apache_beam.options.pipeline_options import StandardOptions

from fgbg.depth import checkpoints, maps, models
from fgbg.depth.checkpoints import Checkpoint
from pipeline.dataflow import is_dataflow
from pipeline.options.rules import (
    POSITIVE,
    QUALITY,
    Range,
    UsageError,
    at_least,
    check_ranges,
    parse_size,
)

DEPTH_MODELS_HELP = (
    "'densedepth' (the published NYU weights, from --depth_weights), 'untrained' "
    "(the real architecture with seeded random weights: NOT real depth), 'none' "
    "(no depth stage), a path (local or gs://) to a Keras model file or "
    "SavedModel mapping RGB in [0,1] to depth, or a transformers depth-estimation "
    "checkpoint: a folder (local or gs://) with config.json, model.safetensors and "
    "preprocessor_config.json, or a Hugging Face Hub id such as "
    f"{checkpoints.SMALL} (docs/depth.md, 'A current depth model'; runs on PyTorch), or "
    f"its ONNX export (the same with {checkpoints.ONNX_WEIGHTS} in place of "
    "model.safetensors, such as onnx-community/depth-anything-v2-small; runs on "
    "ONNX Runtime: docs/onnx-runtime.md)"
)
# DenseDepth's network input, as the original ran it.
DENSEDEPTH_INPUT_SIZE = "640x480"
AUTO_THREADS = "auto"  # --depth_threads: the worker's share of the cores

RANGES: Tuple[Range, ...] = (
    ("depth_quality", *QUALITY),
    ("depth_batch_size", *at_least(1)),
    ("depth_gpu_batch_size", *at_least(1)),
    ("depth_min_batch_size", *at_least(1)),
    ("depth_target_batch_duration_s", *POSITIVE),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "on one fixed scale for all images (see docs/depth.md). Default: %(default)s.",
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
        "(pip install -e .[torch]). A transformers checkpoint runs on torch, or on onnx "
        "(ONNX Runtime on the CPU, no PyTorch needed) when it has only an ONNX export "
        "or this says onnx: its --depth_onnx_file (BENCHMARKS.md, 'ONNX Runtime'). "
        "Default: %(default)s.",
    )
    depth.add_argument(
        "--depth_onnx_file",
        default=checkpoints.ONNX_WEIGHTS,
        help="--depth_runtime onnx: the checkpoint's ONNX export to run, a path inside it "
        "as the Hub lays exports out: onnx/model.onnx (fp32), onnx/model_quantized.onnx "
        "(int8 weights, which failed the precision rule and ran slower than fp32: "
        "BENCHMARKS.md, 'ONNX Runtime'); naming one runs the onnx runtime. "
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
    depth.add_argument(
        "--depth_threads",
        default=AUTO_THREADS,
        help="CPU threads of the depth runtime in each worker process that runs the "
        "model: auto is its share of the machine's cores (cores / worker processes; "
        "with --depth_share_model the model's process gets the cores the others "
        "leave it), so processes do not fight over cores (docs/thread-budgets.md; "
        "BENCHMARKS.md, 'Every core by default'). Default: %(default)s.",
    )


def named_threads(opts: Any) -> Optional[int]:
    """The thread count --depth_threads names, or None for auto."""
    return None if opts.depth_threads == AUTO_THREADS else int(opts.depth_threads)


def depth_batch_size_option(opts: Any) -> str:
    """The batch-size option in effect: a GPU's batches are larger (a batch
    is one kernel launch per layer, and a GPU idles between small ones)."""
    on_gpu = opts.depth_device == models.CUDA
    return "depth_gpu_batch_size" if on_gpu else "depth_batch_size"


def depth_batch_size(opts: Any) -> int:
    """Largest batch per model call, for the device --depth_device names."""
    return getattr(opts, depth_batch_size_option(opts))


def check(opts: Any) -> Optional[Checkpoint]:
    """The depth options' rules, with a message naming the option; returns
    the transformers checkpoint --depth_model names, as described for the
    check (`checked_checkpoint`), or None."""
    check_ranges(opts, RANGES)
    if opts.depth_threads != AUTO_THREADS and not (
        opts.depth_threads.isdigit() and int(opts.depth_threads) >= 1
    ):
        raise UsageError(f"--depth_threads must be auto or at least 1, not {opts.depth_threads!r}")
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
    _check_depth_runtime(opts, checkpoint)
    if opts.depth_model != models.PUBLISHED and opts.depth_weights:
        raise UsageError(
            f"--depth_weights is for --depth_model densedepth only; "
            f"--depth_model {opts.depth_model} would ignore it"
        )
    return checkpoint


def model_input_size(opts: Any, checkpoint: Optional[Checkpoint] = None) -> str:
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


def checked_checkpoint(opts: Any) -> Optional[Checkpoint]:
    """The transformers checkpoint --depth_model names (None for DenseDepth),
    described and checked against the options, which it completes: the
    processor's input size unless one is given, and the torch runtime."""
    if not checkpoints.is_checkpoint(opts.depth_model):
        return None
    try:
        checkpoint = checkpoints.describe(
            opts.depth_model, asked_runtime(opts), opts.depth_onnx_file
        )
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
    if checkpoint.runtime == models.ONNX:
        _check_export(checkpoint, (opts.size, opts.size), (width, height))
    opts.depth_runtime = checkpoint.runtime
    return checkpoint


def asked_runtime(opts: Any) -> Optional[str]:
    """The runtime a checkpoint must run on: onnx when --depth_runtime or
    --depth_onnx_file says so, torch when --depth_runtime does, else None
    (its own: its safetensors on torch, or its only ONNX export on onnx)."""
    if opts.depth_runtime == models.ONNX or opts.depth_onnx_file != checkpoints.ONNX_WEIGHTS:
        return models.ONNX
    return models.TORCH if opts.depth_runtime == models.TORCH else None


def _check_export(
    checkpoint: Checkpoint, image_size: Tuple[int, int], input_size: Tuple[int, int]
) -> None:
    """UsageError unless the ONNX runtime can prepare the checkpoint's
    images and ONNX Runtime reads its export (both without PyTorch), at the
    size the processor makes of the dataset's images (W, H)."""
    from fgbg.depth import image_processor, onnx_runtime

    try:
        image_processor.check_supported(checkpoint.processor)
    except ValueError as error:
        raise UsageError(f"--depth_model {checkpoint.source}: {error}") from None
    try:
        fixed = onnx_runtime.check_loads(checkpoint)
    except models.ModelLoadError as error:
        raise UsageError(str(error)) from None
    size = image_processor.network_size(checkpoint.processor, image_size, input_size)
    if fixed not in (None, size):
        name = f"{checkpoint.source}: {checkpoint.onnx_file}"
        raise UsageError(onnx_runtime.size_message(name, fixed, size))


def _check_onnx_runtime(opts: Any, checkpoint: Optional[Checkpoint]) -> None:
    """--depth_runtime onnx runs a checkpoint's export, in the precision
    its file holds."""
    if checkpoint is None:
        raise UsageError(
            "--depth_runtime onnx and --depth_onnx_file run a checkpoint's ONNX export: "
            f"--depth_model a folder or Hub id with {checkpoints.ONNX_WEIGHTS} beside its "
            "config.json and preprocessor_config.json"
        )
    held = checkpoint.onnx_precision
    if opts.depth_precision not in (models.AUTO, held):
        raise UsageError(
            f"--depth_precision {opts.depth_precision}: {checkpoint.onnx_file} holds {held} "
            "weights and runs in that; pass auto (the manifest records it), or choose "
            "another --depth_onnx_file"
        )


def _check_depth_runtime(opts: Any, checkpoint: Optional[Checkpoint]) -> None:
    """The torch and onnx runtimes' needs, told before a worker starts;
    `checkpoint`: the transformers checkpoint --depth_model names."""
    if asked_runtime(opts) == models.ONNX:
        _check_onnx_runtime(opts, checkpoint)
    if opts.depth_runtime != models.TORCH:
        if opts.depth_device != models.AUTO or opts.depth_compile or opts.depth_resize_on_device:
            raise UsageError(
                "--depth_device, --depth_compile and --depth_resize_on_device are for "
                "--depth_runtime torch"
            )
        if (
            opts.depth_runtime == models.TENSORFLOW
            and opts.depth_precision in models.GPU_PRECISIONS
        ):
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
