"""The build's configuration: every choice the graph makes, derived once from
the checked options (pipeline/options/) into typed records. The graph
(pipeline/build.py) reads this and nothing else.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Dict, Optional, Tuple

from fgbg.blend_modes import GAUSSIAN, MOTION, NONE, parse_blend
from fgbg.depth import families, maps, models
from fgbg.depth.checkpoints import Checkpoint
from fgbg.depth.config import DepthConfig
from fgbg.depth.thread_budget import ThreadBudget
from fgbg.documents import DepthInfo
from fgbg.pair_records import options_fingerprint
from pipeline.options import (
    FgbgOptions,
    depth_batch_size,
    model_input_size,
    option_values,
    parse_size,
)
from pipeline.options.generation import needs_scene_depth
from transforms.blending import BlendConfig
from transforms.compositing import EncodingConfig
from transforms.inputs import InputConfig
from transforms.placements import PlacementConfig, parse_scales
from transforms.scene_placement import MODEL, RANDOM, SceneConfig
from transforms.splits import SplitConfig

# The options that decide what a sample's files contain. A finished pair is
# reused by a rerun only when these (and its input files) are unchanged.
# The split options are not among them: a pair's key holds its background's
# split (fgbg/pair_records.py), so other fractions remake only the pairs
# whose split changed, and pairs the plan no longer makes are removed
# (transforms/splits.py).
SAMPLE_SHAPING_OPTIONS = (
    "seed",
    "size",
    "scales",
    "placements_per_scale",
    "mirror",
    "mask_threshold",
    "overlay_quality",
    "mask_format",
    "mask_quality",
    "depth_model",
    "depth_weights",
    "depth_input_size",
    "depth_encoding",
    "depth_quality",
)
# Options added later that shape samples only away from their default: the
# default leaves them out of the fingerprint, so outputs built before they
# existed stay valid.
# --depth_precision is not one of them: what decides is the precision that
# ran, which each pair's record holds (transforms/pairs.py).
SAMPLE_SHAPING_UNLESS_DEFAULT = {
    "depth_runtime": models.TENSORFLOW,
    "depth_resize_on_device": False,
}


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a run knows before the graph is built, beyond the options."""

    started_at: str  # UTC, ISO 8601
    input_files: Dict[str, int]  # files matched by --bg, --fg and --fg_mask
    tft_temp_dir: str  # scratch space of the tensorflow-transform analysis
    progress_dir: Optional[str]  # local runs: where workers count finished samples
    # The depth runtime's threads per worker process (fgbg/depth/thread_budget.py);
    # None: its default (composites-only builds, builds on a test's pipeline).
    threads: Optional[ThreadBudget] = None
    # Local builds with --depth_share_model: the tag of the shared model's
    # files in the temporary folder (fgbg/depth/shared_model_files.py).
    shared_model_tag: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything the graph needs."""

    bg: str  # input globs
    fg: str
    fg_mask: Optional[str]
    output: str  # dataset root, without a trailing '/'
    csv_prefix: str  # prefix of label_data.csv's paths
    seed: int
    inputs: InputConfig
    splits: SplitConfig
    placements: PlacementConfig
    encoding: EncodingConfig
    blending: BlendConfig
    bg_quality: int
    depth: Optional[DepthConfig]  # None: a composites-only build
    depth_info: DepthInfo  # what the manifest says about depth
    depth_scale: Tuple[float, str]  # stored depth value meaning 1.0, and what it means
    records_per_shard: int
    tft: bool
    tft_batch_size: int
    resume: bool
    fingerprint: str  # of the sample-shaping options
    options: Dict[str, object]  # fgbg's own options, for the manifest
    run: RunContext
    # --placement depth or --depth_labels composed; None: neither
    scene: Optional[SceneConfig] = None

    @property
    def composed_labels(self) -> bool:
        return self.scene is not None and self.scene.composed

    @property
    def placed_by_depth(self) -> bool:
        return self.scene is not None and self.scene.by_depth

    @property
    def depth_per_composite(self) -> bool:
        """Whether the depth model runs on every composite (labels by model)."""
        return self.depth is not None and not self.composed_labels

    @property
    def depth_encoding(self) -> str:
        """'minmax', 'metric', or 'none' for a composites-only build."""
        if self.composed_labels:
            return self.scene.label_encoding
        return self.depth.encoding if self.depth else "none"

    @property
    def depth_extension(self) -> str:
        encoding = self.depth_encoding
        return maps.FILE_EXTENSION[encoding] if encoding != "none" else ""


def build_config(
    opts: FgbgOptions, run: RunContext, checkpoint: Optional[Checkpoint] = None
) -> BuildConfig:
    """The configuration of options that check_options accepted, with the
    transformers checkpoint it described (None for DenseDepth)."""
    output = opts.output.rstrip("/")
    depth = with_threads(depth_config(opts, checkpoint), run.threads)
    if depth is not None and run.shared_model_tag:
        depth = dataclasses.replace(depth, model_tag=run.shared_model_tag)
    return BuildConfig(
        bg=opts.bg,
        fg=opts.fg,
        fg_mask=opts.fg_mask,
        output=output,
        csv_prefix=opts.csv_prefix if opts.csv_prefix is not None else posixpath.basename(output),
        seed=opts.seed,
        inputs=InputConfig(
            size=opts.size,
            max_input_pixels=opts.max_input_pixels,
            min_background_side=opts.min_background_side,
            mask_threshold=opts.mask_threshold,
        ),
        splits=SplitConfig(
            seed=opts.seed,
            val_fraction=opts.val_fraction,
            test_fraction=opts.test_fraction,
            test_foreground_fraction=opts.test_foreground_fraction,
        ),
        placements=PlacementConfig(
            seed=opts.seed,
            size=opts.size,
            scales=parse_scales(opts.scales),
            placements_per_scale=opts.placements_per_scale,
            mirror=opts.mirror,
        ),
        encoding=EncodingConfig(
            overlay_quality=opts.overlay_quality,
            mask_format=opts.mask_format,
            mask_quality=opts.mask_quality,
        ),
        blending=blend_config(opts),
        bg_quality=opts.bg_quality,
        depth=depth,
        depth_info=with_budget(depth_info(opts, checkpoint), run.threads),
        depth_scale=depth_scale(depth, scene_config(opts, depth)),
        records_per_shard=opts.records_per_shard,
        tft=opts.tft,
        tft_batch_size=opts.tft_batch_size,
        resume=opts.resume,
        fingerprint=options_fingerprint(sample_shaping_values(opts, checkpoint)),
        options=option_values(opts),
        run=run,
        scene=scene_config(opts, depth),
    )


def sample_shaping_values(
    opts: FgbgOptions, checkpoint: Optional[Checkpoint] = None
) -> Dict[str, object]:
    """The values a pair's key is made from (see SAMPLE_SHAPING_UNLESS_DEFAULT);
    a transformers checkpoint adds its weights' digest, so new weights in the
    same folder remake the pairs."""
    values = {name: getattr(opts, name) for name in SAMPLE_SHAPING_OPTIONS}
    values.update(
        (name, getattr(opts, name))
        for name, default in SAMPLE_SHAPING_UNLESS_DEFAULT.items()
        if getattr(opts, name) != default
    )
    if checkpoint:
        values["depth_weights_sha256"] = checkpoint.weights_sha256
    values.update(blend_shaping_values(blend_config(opts)))
    values.update(scene_shaping_values(opts))
    return values


def scene_shaping_values(opts: FgbgOptions) -> Dict[str, object]:
    """The scene settings that shape samples, each only away from its
    default, so outputs built before them stay valid; a --bg_depth map's
    bytes are in its background's digest (transforms/background_depth.py)."""
    values: Dict[str, object] = {}
    if opts.placement != RANDOM:
        values.update(placement=opts.placement, camera_fov=opts.camera_fov)
    if opts.depth_labels != MODEL:
        values["depth_labels"] = opts.depth_labels
    if opts.bg_depth and needs_scene_depth(opts):
        values["bg_depth_scale"] = opts.bg_depth_scale
    return values


# Composed labels and background maps without a model (--bg_depth) are
# stored as DenseDepth's metric maps are: millimetres.
GIVEN_MAPS_PER_METRE = maps.DENSEDEPTH_CONTENT.stored_per_metre
GIVEN_MAPS = "given maps (--bg_depth)"


def scene_config(opts: FgbgOptions, depth: Optional[DepthConfig]) -> Optional[SceneConfig]:
    """Placement by depth and composed labels, or None for neither."""
    if not needs_scene_depth(opts):
        return None
    by_model = depth is not None and not opts.bg_depth
    return SceneConfig(
        placement=opts.placement,
        labels=opts.depth_labels,
        camera_fov=opts.camera_fov,
        bg_depth=opts.bg_depth,
        bg_depth_scale=opts.bg_depth_scale,
        stored_per_metre=families.family(depth).content.stored_per_metre
        if by_model
        else GIVEN_MAPS_PER_METRE,
        label_encoding=opts.depth_encoding,
        label_quality=opts.depth_quality,
    )


def blend_config(opts: FgbgOptions) -> BlendConfig:
    return BlendConfig(
        modes=parse_blend(opts.blend),
        seed=opts.seed,
        sigma=opts.blend_sigma,
        motion_length=opts.blend_motion_length,
    )


def blend_shaping_values(config: BlendConfig) -> Dict[str, object]:
    """The blending settings that shape samples: none with --blend none, so
    outputs built before --blend stay valid; each mode's setting only when
    that mode is drawn, so changing an unused one remakes nothing."""
    if config.modes == (NONE,):
        return {}
    values: Dict[str, object] = {"blend": ",".join(config.modes)}
    if GAUSSIAN in config.modes:
        values["blend_sigma"] = config.sigma
    if MOTION in config.modes:
        values["blend_motion_length"] = config.motion_length
    return values


def depth_config(
    opts: FgbgOptions, checkpoint: Optional[Checkpoint] = None
) -> Optional[DepthConfig]:
    if opts.depth_model == models.NONE:
        return None
    return DepthConfig(
        model=opts.depth_model,
        weights=opts.depth_weights,
        seed=opts.seed,
        batch_size=depth_batch_size(opts),
        min_batch_size=opts.depth_min_batch_size,
        target_batch_duration_s=opts.depth_target_batch_duration_s,
        input_size=parse_size(model_input_size(opts, checkpoint)),
        encoding=opts.depth_encoding,
        jpeg_quality=opts.depth_quality,
        out_size=(opts.size, opts.size),
        precision=opts.depth_precision,
        runtime=opts.depth_runtime,
        device=opts.depth_device,
        compile_model=opts.depth_compile,
        resize_on_device=opts.depth_resize_on_device,
        share_model=opts.depth_share_model,
        checkpoint=checkpoint,
    )


def with_threads(
    depth: Optional[DepthConfig], threads: Optional[ThreadBudget]
) -> Optional[DepthConfig]:
    """`depth` running on the threads its budget sets in each worker."""
    if depth is None or threads is None:
        return depth
    return dataclasses.replace(depth, threads=threads.threads_to_set)


def with_budget(info: DepthInfo, threads: Optional[ThreadBudget]) -> DepthInfo:
    """`info` recording the thread budget (none for composites-only builds)."""
    if threads is None or info.model == models.NONE:
        return info
    return dataclasses.replace(info, threads=threads.to_json())


def depth_info(opts: FgbgOptions, checkpoint: Optional[Checkpoint] = None) -> DepthInfo:
    """What the manifest says about depth; loud when it is not real depth,
    or when a checkpoint's licence forbids commercial use."""
    if opts.depth_model == models.NONE and opts.bg_depth and opts.depth_labels != MODEL:
        return DepthInfo(
            model=GIVEN_MAPS,
            encoding=opts.depth_encoding,
            holds="metric depth",
            stored_per_metre=GIVEN_MAPS_PER_METRE if opts.depth_encoding == "metric" else None,
        )
    if opts.depth_model == models.NONE:
        return DepthInfo(model=models.NONE, note="composites-only build: no depth maps were made")
    info = DepthInfo(
        model=opts.depth_model,
        weights=opts.depth_weights,
        encoding=opts.depth_encoding,
        input_size=model_input_size(opts, checkpoint),
        precision=opts.depth_precision,
        runtime=opts.depth_runtime,
        input_resize=(
            models.BICUBIC_ON_DEVICE if opts.depth_resize_on_device else models.LANCZOS_ON_CPU
        ),
        warning=models.UNTRAINED_WARNING if opts.depth_model == models.UNTRAINED else None,
    )
    if checkpoint is None:
        return info
    content = checkpoint.content
    return dataclasses.replace(
        info,
        input_resize=info.input_resize if opts.depth_resize_on_device else models.BICUBIC_ON_CPU,
        weights_sha256=checkpoint.weights_sha256,
        holds=content.description,
        licence=checkpoint.licence,
        onnx_file=checkpoint.onnx_file,
        stored_per_metre=content.stored_per_metre if opts.depth_encoding == "metric" else None,
        warning=models.non_commercial_warning(checkpoint.source, checkpoint.licence)
        if checkpoint.non_commercial
        else None,
    )


def depth_scale(
    depth: Optional[DepthConfig], scene: Optional[SceneConfig] = None
) -> Tuple[float, str]:
    """(stored value that means 1.0, what it means), for stats.json: by
    what the model's maps hold (`maps.MapContent`), or for labels composed
    from given maps, by their encoding."""
    if depth is None and scene is not None and scene.composed:
        if scene.label_encoding == "metric":
            return float(scene.stored_per_metre), (
                f"metres: stored value / {scene.stored_per_metre} (16-bit PNG; 0 is no "
                "measurement in the given maps)"
            )
        return 255.0, maps.DENSEDEPTH_CONTENT.minmax_unit
    if depth is None:
        return 255.0, "no depth"
    content = families.family(depth).content
    if depth.encoding == "metric":
        return float(content.stored_per_metre), content.metric_unit
    return 255.0, content.minmax_unit
