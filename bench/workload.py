"""What benchmarks run on: the pipeline's defaults, photo-like inputs of the
original's shape, and demo composites made by the pipeline's own functions."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from pipeline.options import FgbgOptions

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "inputs"
BG_SIZE = (640, 480)  # the original's photos were ordinary camera-sized JPEGs
BG_QUALITY = 90
# The benchmarks' --model: each network's architecture with seeded weights.
DENSEDEPTH, DEPTH_ANYTHING = "untrained", "da-small"
MODELS = {DENSEDEPTH: "DenseDepth", DEPTH_ANYTHING: "Depth Anything V2 Small"}
# Written in a child, so that the benchmark's own process never imports PyTorch.
_WRITE_SMALL = (
    "import sys; from fgbg.depth import seeded_checkpoints as s; s.write(sys.argv[1], 'small')"
)
_EXPORT = (
    "import sys; from fgbg.depth import seeded_checkpoints as s; "
    "s.quantize(s.export_onnx(sys.argv[1], sys.argv[2], int(sys.argv[3])))"
)


def build_defaults() -> "FgbgOptions":
    """The pipeline's options with nothing given: what a default build does."""
    from pipeline.options import FgbgOptions, model_input_size

    options = FgbgOptions([])
    options.depth_input_size = model_input_size(options)
    return options


def default_build_config():
    """The configuration a default build derives from its options, for
    benchmarks that call the stages' functions directly."""
    from pipeline.config import RunContext, build_config
    from pipeline.options import FgbgOptions

    options = FgbgOptions(["--bg=unused", "--fg=unused", "--output=unused"])
    return build_config(
        options, RunContext(started_at="", input_files={}, tft_temp_dir="", progress_dir=None)
    )


def depth_config(
    size: Tuple[int, int],
    batch_size: int,
    precision: str = "fp32",
    runtime: str = "tensorflow",
    device: str = "auto",
):
    """The depth stage's configuration as a default build has it, with the
    seeded untrained model, at network input `size` and fixed batches."""
    from fgbg.depth.config import DepthConfig

    defaults = build_defaults()
    return DepthConfig(
        model="untrained",
        weights=None,
        seed=defaults.seed,
        batch_size=batch_size,
        min_batch_size=batch_size,
        target_batch_duration_s=defaults.depth_target_batch_duration_s,
        input_size=size,
        encoding=defaults.depth_encoding,
        jpeg_quality=defaults.depth_quality,
        out_size=(defaults.size, defaults.size),
        precision=precision,
        runtime=runtime,
        device=device,
    )


def depth_anything_small(folder: Path) -> str:
    """Depth Anything V2 Small's full architecture with seeded weights (the
    cost does not depend on them), written as a checkpoint folder under
    `folder` (fgbg/depth/seeded_checkpoints.py); its path."""
    path = str(Path(folder) / "da-small")
    subprocess.run([sys.executable, "-c", _WRITE_SMALL, path], check=True, cwd=ROOT)
    return path


def onnx_export(checkpoint: str, side: int) -> str:
    """The checkpoint exported to ONNX for `side` x `side` inputs, with its
    int8 sibling (onnx/model_quantized.onnx), beside it; the export's path."""
    path = f"{checkpoint}-onnx-{side}"
    subprocess.run(
        [sys.executable, "-c", _EXPORT, checkpoint, path, str(side)], check=True, cwd=ROOT
    )
    return path


def depth_model(model: str, checkpoint: str) -> str:
    """A build's --depth_model for a benchmark's --model: DenseDepth's name,
    or the folder `depth_anything_small` wrote (`checkpoint`)."""
    return checkpoint if model == DEPTH_ANYTHING else model


def with_checkpoint(config, folder: str, onnx_file: str = ""):
    """`config` (a DepthConfig) running the transformers checkpoint in
    `folder`, or its ONNX export `onnx_file` on the onnx runtime."""
    from fgbg.depth import checkpoints, models

    if onnx_file:
        checkpoint = checkpoints.describe(folder, models.ONNX, onnx_file)
    else:
        checkpoint = checkpoints.describe(folder)
    return dataclasses.replace(
        config, model=folder, checkpoint=checkpoint, runtime=checkpoint.runtime
    )


def make_inputs(folder: Path, backgrounds: int, foregrounds: int) -> Dict[str, str]:
    """Photo-like inputs of the original's shape, under `folder`: distinct
    640x480 JPEG backgrounds (q90) from the painted demo scenes (resized,
    shifted and mirrored per index), the demo cut-outs (RGBA, longest side
    150) under new names with their masks. The globs pipeline.build takes."""
    patterns = {"bg": "*.jpg", "fg": "*.png", "fg_mask": "*.png"}  # the returned globs'
    bg_dir, fg_dir, mask_dir = (folder / kind for kind in patterns)
    for directory in (bg_dir, fg_dir, mask_dir):
        directory.mkdir(parents=True, exist_ok=True)
    scenes = [
        np.asarray(Image.open(path).convert("RGB").resize(BG_SIZE, Image.BICUBIC))
        for path in sorted((DEMO / "bg").glob("*.jpg"))
    ]
    for index in range(backgrounds):
        scene = scenes[index % len(scenes)]
        shifted = np.roll(scene, shift=(7 * (index // len(scenes))) % BG_SIZE[0], axis=1)
        if (index // len(scenes)) % 2:
            shifted = shifted[:, ::-1]
        Image.fromarray(np.ascontiguousarray(shifted)).save(
            bg_dir / f"bg{index + 1}.jpg", quality=BG_QUALITY
        )
    cutouts = sorted((DEMO / "fg").glob("*.png"))
    for index in range(foregrounds):
        source = cutouts[index % len(cutouts)]
        name = f"fg_{index + 1}.png"
        shutil.copyfile(source, fg_dir / name)
        mask = DEMO / "fg_mask" / f"mask_{source.name}"
        if mask.exists():
            shutil.copyfile(mask, mask_dir / f"mask_{name}")
    return {kind: str(folder / kind / pattern) for kind, pattern in patterns.items()}


def demo_composites(count: int) -> np.ndarray:
    """`count` composites of the demo inputs, made by the pipeline's functions."""
    return composites(
        sorted((DEMO / "bg").glob("*.jpg")), sorted((DEMO / "fg").glob("*.png")), count
    )


def composites(backgrounds: Sequence[Path], foregrounds: Sequence[Path], count: int) -> np.ndarray:
    """`count` composites of these background and cut-out files (taken in
    turn), made by the pipeline's functions."""
    from fgbg.types import Background
    from transforms.compositing import compose_pair
    from transforms.inputs import build_foreground, file_stem, load_background

    config = default_build_config()
    inputs, encoding = config.inputs, config.encoding
    placements = dataclasses.replace(config.placements, placements_per_scale=1)
    overlays: List[np.ndarray] = []
    for index in range(count):
        bg_path = backgrounds[index % len(backgrounds)]
        fg_path = foregrounds[index % len(foregrounds)]
        image = load_background(bg_path.read_bytes(), inputs)
        foreground = build_foreground(
            file_stem(str(fg_path)), str(fg_path), fg_path.read_bytes(), None, None, inputs
        )
        background = Background(file_stem(str(bg_path)), str(bg_path), "train", "")
        made = list(compose_pair(background, image, foreground, placements, encoding, ""))
        overlays.append(made[index % len(made)].overlay)
    return np.stack(overlays)


def as_composites(overlays: Sequence[np.ndarray], first_number: int = 0) -> list:
    """Each overlay as a Composite of its own sample (placement numbers from
    `first_number`), for benchmarks that feed the depth stage directly."""
    from fgbg.types import Composite, Placement

    return [
        Composite(
            placement=Placement("bg", "fg", number, False, 1.0, 0, 0, 1, 1),
            split="train",
            overlay=overlay,
            overlay_encoded=b"",
            mask_encoded=b"",
        )
        for number, overlay in enumerate(overlays, start=first_number)
    ]
