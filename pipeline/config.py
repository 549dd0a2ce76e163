"""The build's configuration: every choice the graph makes, derived once from
the checked options (pipeline/options.py) into typed records. The graph
(pipeline/build.py) reads this and nothing else.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Dict, Optional, Tuple

from fgbg.depth import maps, models
from fgbg.depth.config import DepthConfig
from fgbg.documents import DepthInfo
from fgbg.pair_records import options_fingerprint
from pipeline.options import FgbgOptions, depth_batch_size, option_values, parse_size
from transforms.compositing import EncodingConfig
from transforms.inputs import InputConfig
from transforms.placements import PlacementConfig, parse_scales
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

    @property
    def depth_encoding(self) -> str:
        """'minmax', 'metric', or 'none' for a composites-only build."""
        return self.depth.encoding if self.depth else "none"

    @property
    def depth_extension(self) -> str:
        return maps.FILE_EXTENSION[self.depth.encoding] if self.depth else ""


def build_config(opts: FgbgOptions, run: RunContext) -> BuildConfig:
    """The configuration of options that check_options accepted."""
    output = opts.output.rstrip("/")
    depth = depth_config(opts)
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
        bg_quality=opts.bg_quality,
        depth=depth,
        depth_info=depth_info(opts),
        depth_scale=depth_scale(depth),
        records_per_shard=opts.records_per_shard,
        tft=opts.tft,
        tft_batch_size=opts.tft_batch_size,
        resume=opts.resume,
        fingerprint=options_fingerprint(sample_shaping_values(opts)),
        options=option_values(opts),
        run=run,
    )


def sample_shaping_values(opts: FgbgOptions) -> Dict[str, object]:
    """The values a pair's key is made from (see SAMPLE_SHAPING_UNLESS_DEFAULT)."""
    values = {name: getattr(opts, name) for name in SAMPLE_SHAPING_OPTIONS}
    values.update(
        (name, getattr(opts, name))
        for name, default in SAMPLE_SHAPING_UNLESS_DEFAULT.items()
        if getattr(opts, name) != default
    )
    return values


def depth_config(opts: FgbgOptions) -> Optional[DepthConfig]:
    if opts.depth_model == models.NONE:
        return None
    return DepthConfig(
        model=opts.depth_model,
        weights=opts.depth_weights,
        seed=opts.seed,
        batch_size=depth_batch_size(opts),
        min_batch_size=opts.depth_min_batch_size,
        target_batch_duration_s=opts.depth_target_batch_duration_s,
        input_size=parse_size(opts.depth_input_size),
        encoding=opts.depth_encoding,
        jpeg_quality=opts.depth_quality,
        out_size=(opts.size, opts.size),
        precision=opts.depth_precision,
        runtime=opts.depth_runtime,
        device=opts.depth_device,
        compile_model=opts.depth_compile,
        resize_on_device=opts.depth_resize_on_device,
        share_model=opts.depth_share_model,
    )


def depth_info(opts: FgbgOptions) -> DepthInfo:
    """What the manifest says about depth; loud when it is not real depth."""
    if opts.depth_model == models.NONE:
        return DepthInfo(model=models.NONE, note="composites-only build: no depth maps were made")
    return DepthInfo(
        model=opts.depth_model,
        weights=opts.depth_weights,
        encoding=opts.depth_encoding,
        input_size=opts.depth_input_size,
        precision=opts.depth_precision,
        runtime=opts.depth_runtime,
        input_resize=(
            models.BICUBIC_ON_DEVICE if opts.depth_resize_on_device else models.LANCZOS_ON_CPU
        ),
        warning=models.UNTRAINED_WARNING if opts.depth_model == models.UNTRAINED else None,
    )


def depth_scale(depth: Optional[DepthConfig]) -> Tuple[float, str]:
    """(stored value that means 1.0, what it means), for stats.json."""
    if depth is None:
        return 255.0, "no depth"
    if depth.encoding == "metric":
        return maps.METRIC_DEPTH_SCALE, maps.METRIC_DEPTH_UNIT
    return 255.0, "per-image min-max: 0 nearest, 255 farthest in that image"
