"""Placement by depth (`--placement depth`) and depth labels by
construction (`--depth_labels composed`): where a cut-out stands, how large
it is there, what of it is hidden, and the depth label that follows.

The model of the object: an upright plane facing the camera, standing at
its foot depth Z (the depth of the background pixel under the bottom centre
of its mask). So every visible pixel of the object is at depth Z; the
background stays in front where it is nearer than Z by more than
OCCLUSION_MARGIN; and the label is the background's depth with Z where the
object is seen. docs/scene-placement.md says what this gets wrong.

A sample keeps its number and its drawn scale (`--scales`, the numbering's
flip x scale x placement is unchanged); the drawn scale is the scale at the
reference depth Z_ref, the median depth of the background's support pixels,
and the applied one is drawn x Z_ref / Z, so farther is smaller. Every draw
comes from the run seed and the sample's identity.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Dict, Iterator, Optional, Tuple

import apache_beam as beam
import numpy as np

from fgbg import layout
from fgbg.blend_modes import NONE
from fgbg.depth import maps, precision
from fgbg.depth.config import DepthConfig
from fgbg.hashing import rng_for
from fgbg.images import encode_png_fast
from fgbg.moments import pixel_moments
from fgbg.scene import Camera, support_mask
from fgbg.storage import read_file
from fgbg.timing import timed_items
from fgbg.types import (
    Background,
    Composite,
    Foreground,
    Moments,
    Pair,
    Placement,
    ScenePoint,
)
from transforms.blending import Blend, BlendConfig, draw_blend
from transforms.compositing import (
    EncodingConfig,
    _ComposePair,
    blend_composite,
    cached,
    flip_cutouts,
    place_mask,
    resize_cutout,
    resize_mask,
    resize_rgba,
    resized_placements,
    sample_composite,
)
from transforms.inputs import InputConfig
from transforms.placements import (
    PlacementConfig,
    draw_position,
    sample_number,
    scaled_size,
)

RANDOM = "random"
DEPTH = "depth"
PLACEMENTS = (RANDOM, DEPTH)
MODEL = "model"
COMPOSED = "composed"
LABEL_SOURCES = (MODEL, COMPOSED)

# The background hides the object where it is nearer than the object by
# more than this fraction of the object's depth: a depth sensor's error, and
# a model's, grow with depth, and the floor beside the foot is at the foot's
# own depth, which must not hide the object's lowest row.
OCCLUSION_MARGIN = 0.03
# A draw that leaves less than this fraction of the object visible is drawn
# again, as is one that does not fit in the image.
MIN_VISIBLE_FRACTION = 0.5
# A draw whose box, placed by the full-size mask's bottom centre scaled
# (`estimated_foot_offset`), reaches past the image's edge by more than
# this many pixels is drawn again before the mask is resized. The resized
# mask's own bottom centre, which decides, was within 1 pixel of that
# estimate for every demo cut-out at every scale from 0.05 to 2.5, so this
# refuses only draws the resized mask would (a mask whose thin lowest parts
# vanish when it shrinks is the exception).
ESTIMATE_MARGIN = 2
# Draws per sample before it falls back (`fallback_placement`).
MAX_TRIES = 20
# A background with fewer support pixels than this fraction of its pixels
# has no floor to stand on: its samples fall back.
MIN_SUPPORT_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class BackgroundScene:
    """What placement needs of one background: its depth (metres, 0 where
    unmeasured, size x size), the pixels an object can stand on, and the
    reference depth the drawn scales hold at."""

    depth: np.ndarray
    support: np.ndarray  # flat indices of the support pixels, ascending
    reference_depth: float

    @property
    def has_floor(self) -> bool:
        return self.support.size >= MIN_SUPPORT_FRACTION * self.depth.size


def background_scene(depth: np.ndarray, camera: Camera) -> BackgroundScene:
    """The scene of a background's depth map: its support pixels
    (fgbg/scene.support_mask) and Z_ref, their median depth, or the median
    of all measured depth when there is no floor."""
    support = np.flatnonzero(support_mask(depth, camera))
    scene = BackgroundScene(depth=depth, support=support, reference_depth=0.0)
    measured = depth.ravel()[support] if scene.has_floor else depth[depth > 0]
    return dataclasses.replace(scene, reference_depth=float(np.median(measured)))


def occlusion_margin(depth: float) -> float:
    return OCCLUSION_MARGIN * depth


def nearer_than(scene_depth: np.ndarray, depth: float) -> np.ndarray:
    """Where the background is in front of an object at `depth`."""
    return (scene_depth > 0) & (scene_depth < depth - occlusion_margin(depth))


def foot_extent(mask: np.ndarray) -> Tuple[int, int, int]:
    """(first column, last column, last row) of a mask within its own image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(cols[-1]), int(rows[-1])


def foot_offset(mask: np.ndarray) -> Tuple[int, int]:
    """(column, row) of the bottom centre of a mask within its own image:
    the middle of its columns' extent, on its lowest row."""
    first, last, bottom = foot_extent(mask)
    return (first + last) // 2, bottom


def estimated_foot_offset(
    extent: Tuple[int, int, int], full: Tuple[int, int], size: Tuple[int, int]
) -> Tuple[float, float]:
    """`foot_offset` of the mask resized from `full` to `size` (both (width,
    height)), estimated from the full-size mask's `foot_extent` scaled,
    without resizing it."""
    first, last, bottom = extent
    return (first + last + 1) / 2 * size[0] / full[0] - 0.5, (bottom + 1) * size[1] / full[1] - 1


def misses_image(x: float, y: float, size: Tuple[int, int], image_size: int, margin: float) -> bool:
    """Whether a (w, h) `size` box at (x, y) reaches past the image's edge
    by more than `margin` pixels."""
    w, h = size
    return not (-margin <= x <= image_size - w + margin and -margin <= y <= image_size - h + margin)


@dataclasses.dataclass(frozen=True)
class ScenedCutout:
    """A sample placed in its scene: where (`placement`, its w and h the
    applied size), what of it is seen (`rgba`'s alpha and `mask` zero where
    hidden), where the background is in front of it (`in_front`, the whole
    image), and the record (`point`)."""

    placement: Placement
    rgba: np.ndarray
    mask: np.ndarray
    in_front: np.ndarray
    point: ScenePoint


def visible_mask(mask: np.ndarray, hidden: np.ndarray) -> Tuple[np.ndarray, float]:
    """The mask with what `hidden` (the background in front, under the
    mask's box) covers cut away, and the fraction of the mask still seen."""
    seen = np.where(hidden, 0, mask).astype(np.uint8)
    total = int(np.count_nonzero(mask))
    return seen, (np.count_nonzero(seen) / total if total else 0.0)


def hide(rgba: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The cut-out, transparent where `hidden`."""
    cut = rgba.copy()
    cut[..., 3] = np.where(hidden, 0, rgba[..., 3])
    return cut


def place_on_floor(
    scene: BackgroundScene,
    rng: np.random.Generator,
    placement: Placement,
    cutout: Tuple[np.ndarray, np.ndarray],
    extent: Tuple[int, int, int],
) -> Optional[ScenedCutout]:
    """Draw a foot point among the support pixels until the object fits in
    the image and enough of it is seen (MAX_TRIES draws at most); the first
    draw that does, or None. `cutout` is the full-size (flipped) RGBA and
    mask, `extent` its mask's `foot_extent`, `placement` the sample with its
    drawn scale.

    A draw is first tried on its box as the full-size mask gives it
    (`estimated_foot_offset`, ESTIMATE_MARGIN), then on the resized mask
    alone, with the occlusion under its box only; the cut-out is resized,
    and the whole image's occlusion made, once, for the draw that is kept
    (redraws were most of a build's cost)."""
    size = scene.depth.shape[0]
    rgba, mask = cutout
    height, width = mask.shape
    for tries in range(1, MAX_TRIES + 1):
        foot_y, foot_x = divmod(int(scene.support[rng.integers(scene.support.size)]), size)
        depth = float(scene.depth[foot_y, foot_x])
        scale = placement.scale * scene.reference_depth / depth
        w, h = scaled_size(width, height, scale)
        if w > size or h > size:
            continue
        guess_x, guess_y = estimated_foot_offset(extent, (width, height), (w, h))
        if misses_image(foot_x - guess_x, foot_y - guess_y, (w, h), size, ESTIMATE_MARGIN):
            continue
        small_mask = resize_mask(mask, (w, h))
        if not small_mask.any():
            continue
        offset_x, offset_y = foot_offset(small_mask)
        x, y = foot_x - offset_x, foot_y - offset_y
        if misses_image(x, y, (w, h), size, 0):
            continue
        hidden = nearer_than(scene.depth[y : y + h, x : x + w], depth)
        seen, fraction = visible_mask(small_mask, hidden)
        if fraction < MIN_VISIBLE_FRACTION:
            continue
        return ScenedCutout(
            placement=dataclasses.replace(placement, x=x, y=y, w=w, h=h),
            rgba=hide(resize_rgba(rgba, (w, h)), hidden),
            mask=seen,
            in_front=nearer_than(scene.depth, depth),
            point=ScenePoint(
                foot_x=foot_x,
                foot_y=foot_y,
                foot_depth=depth,
                applied_scale=scale,
                visible_fraction=fraction,
                tries=tries,
                fallback=False,
            ),
        )
    return None


def fallback_placement(
    scene: BackgroundScene,
    config: PlacementConfig,
    placement: Placement,
    small: Tuple[np.ndarray, np.ndarray],
    tries: int,
) -> ScenedCutout:
    """A sample with no floor to stand on (none found, or MAX_TRIES draws
    that did not fit): where and how large --placement random puts it, in
    front of everything under it: its depth is the nearest measured depth
    under its mask (the reference depth when none is measured there), so
    nothing hides it and its label agrees with what is seen."""
    rgba, mask = small
    x, y = draw_position(
        config.seed,
        placement.bg_stem,
        placement.fg_stem,
        placement.number,
        (config.size - placement.w, config.size - placement.h),
    )
    under = scene.depth[y : y + placement.h, x : x + placement.w][mask > 0]
    measured = under[under > 0]
    depth = float(measured.min()) if measured.size else scene.reference_depth
    offset_x, offset_y = foot_offset(mask)
    return ScenedCutout(
        placement=dataclasses.replace(placement, x=x, y=y),
        rgba=rgba,
        mask=mask,
        in_front=np.zeros(scene.depth.shape, bool),
        point=ScenePoint(
            foot_x=x + offset_x,
            foot_y=y + offset_y,
            foot_depth=depth,
            applied_scale=placement.scale,
            visible_fraction=1.0,
            tries=tries,
            fallback=True,
        ),
    )


def scene_cutouts(
    config: PlacementConfig,
    scene: BackgroundScene,
    bg_stem: str,
    cutouts: Tuple[Tuple[np.ndarray, np.ndarray], ...],
    fg_stem: str,
) -> Iterator[ScenedCutout]:
    """Every sample of one pair placed by depth, in number order (the
    numbering of transforms/placements.py). `cutouts`: the full-size RGBA
    and mask of each flip in `config.flips`."""
    height, width = cutouts[0][1].shape
    for flip_index, (flip, cutout) in enumerate(zip(config.flips, cutouts)):
        extent = foot_extent(cutout[1])
        for scale_index, scale in enumerate(config.scales):
            w, h = scaled_size(width, height, scale)
            at_drawn_scale = None
            for index in range(config.placements_per_scale):
                number = sample_number(
                    flip_index, scale_index, index, len(config.scales), config.placements_per_scale
                )
                placement = Placement(bg_stem, fg_stem, number, flip, scale, 0, 0, w, h)
                placed = None
                if scene.has_floor:
                    rng = rng_for("scene", config.seed, bg_stem, fg_stem, number)
                    placed = place_on_floor(scene, rng, placement, cutout, extent)
                if placed is None:
                    at_drawn_scale = at_drawn_scale or resize_cutout(*cutout, (w, h))
                    tries = MAX_TRIES if scene.has_floor else 0
                    placed = fallback_placement(scene, config, placement, at_drawn_scale, tries)
                yield placed


def composed_label(scene_depth: np.ndarray, visible: np.ndarray, depth: float) -> np.ndarray:
    """The depth label by construction, in metres: the background's depth,
    and the object's `depth` wherever it is seen (`visible`, the sample's
    whole-image mask). Never blended: each pixel is one or the other."""
    return np.where(visible > 0, np.float32(depth), scene_depth).astype(np.float32)


def stored_map(depth: np.ndarray, stored_per_metre: int) -> np.ndarray:
    """Metres as the build stores them: round(metres x stored_per_metre) in
    16 bits, 0 still 'no measurement'."""
    return np.clip(np.rint(depth * stored_per_metre), 0, maps.UINT16_MAX).astype(np.uint16)


@dataclasses.dataclass(frozen=True)
class StoredLabelBase:
    """A background's depth as its composed metric labels store it
    (`stored_map`) and its pixel moments: a sample's label is this with the
    object's value under its visible mask, so the label and its moments are
    made from the object's box alone (`stored_label`)."""

    values: np.ndarray
    moments: Moments


def stored_label_base(scene_depth: np.ndarray, stored_per_metre: int) -> StoredLabelBase:
    values = stored_map(scene_depth, stored_per_metre)
    return StoredLabelBase(values, pixel_moments(values))


def stored_label(
    base: StoredLabelBase, seen: np.ndarray, x: int, y: int, value: int
) -> Tuple[np.ndarray, Moments]:
    """`composed_label` as stored, and its moments: the background's stored
    depth with `value` (the object's) wherever `seen` (the visible mask, at
    (x, y)) is set. The same pixels as `stored_map(composed_label(...))`;
    only the box's pixels are touched, and the moments are the background's
    less those the object covers plus its own, in exact integers."""
    label = base.values.copy()
    region = label[y : y + seen.shape[0], x : x + seen.shape[1]]
    covered = seen > 0
    under = region[covered].astype(np.int64)
    region[covered] = value
    count, (total,), (squares,) = base.moments
    n = int(under.size)
    total += n * value - int(under.sum())
    squares += n * value * value - int(under @ under)
    return label, (count, (total,), (squares,))


def stored_value(depth: float, stored_per_metre: int) -> int:
    """The object's depth as `stored_map` stores it, from its float32 metres
    as `composed_label` holds them."""
    return int(stored_map(np.full(1, depth, np.float32), stored_per_metre)[0])


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """--placement, --depth_labels and what they need.

    placement: RANDOM or DEPTH; labels: MODEL or COMPOSED.
    camera_fov: --camera_fov, the photographs' horizontal field of view.
    bg_depth: --bg_depth's glob, or None for the build's depth model.
    bg_depth_scale: --bg_depth_scale, stored units per metre of those maps.
    stored_per_metre: the build's metric step, of bg_depth/<name>.png and of
        composed metric labels.
    label_encoding: 'metric' or 'minmax' (--depth_encoding), composed labels.
    label_quality: JPEG quality of composed min-max labels.
    """

    placement: str
    labels: str
    camera_fov: float
    bg_depth: Optional[str]
    bg_depth_scale: float
    stored_per_metre: int
    label_encoding: str
    label_quality: int

    @property
    def by_depth(self) -> bool:
        return self.placement == DEPTH

    @property
    def composed(self) -> bool:
        return self.labels == COMPOSED


def all_in_front(
    config: PlacementConfig,
    scene: BackgroundScene,
    bg_stem: str,
    cutouts: Tuple[Tuple[np.ndarray, np.ndarray], ...],
    fg_stem: str,
) -> Iterator[ScenedCutout]:
    """Every sample of one pair placed at random (transforms/placements.py),
    each in front of everything under it (`fallback_placement`'s depth): the
    overlays and masks of --placement random, with labels composed."""
    for placement, small in resized_placements(config, bg_stem, fg_stem, cutouts):
        yield fallback_placement(scene, config, placement, small, 0)


def encode_label(label: np.ndarray, config: SceneConfig) -> bytes:
    """A composed label as the build stores depth. Metric (`label` the
    stored uint16 values, `stored_label`): a 16-bit PNG by
    `fgbg.images.encode_png_fast`, lossless, so the object's depth, read
    from a stored map, is stored exactly. Min-max (`label` in metres,
    `composed_label`): the original's per-image JPEG of the composed map."""
    if config.label_encoding == "minmax":
        return maps.encode_minmax(label, label.shape[::-1], config.label_quality)
    return encode_png_fast(label)


def decode_scene_depth(data: bytes, config: SceneConfig) -> np.ndarray:
    """A background's bg_depth/<name>.png, as metres."""
    return maps.decode_metric(data, config.stored_per_metre)


def compose_scene_pair(
    background: Background,
    image: np.ndarray,
    scene: BackgroundScene,
    foreground: Foreground,
    placement_config: PlacementConfig,
    encoding: EncodingConfig,
    key: str,
    blending: Optional[BlendConfig],
    scene_config: SceneConfig,
    depth_precision: Optional[str] = None,
) -> Iterator[Composite]:
    """All samples of one pair placed in its scene, in number order.

    The cut-out's visible part is blended as its draw says, then the
    background is put back wherever it is in front of the object, so a
    feathered or smeared edge never reaches over a nearer thing. With
    composed labels each sample's depth is made here (`composed_label`, its
    mask the visible part) and `depth_precision` says what made the
    background's map (None for --bg_depth)."""
    cutouts = flip_cutouts(foreground, placement_config)
    place = scene_cutouts if scene_config.by_depth else all_in_front
    metric = scene_config.composed and scene_config.label_encoding == "metric"
    base = stored_label_base(scene.depth, scene_config.stored_per_metre) if metric else None
    for placed in place(placement_config, scene, background.stem, cutouts, foreground.stem):
        p = placed.placement
        blend = draw_blend(blending, p) if blending else Blend(NONE)
        overlay = blend_composite(image, placed.rgba, placed.mask, p.x, p.y, blend, blending)
        # A hard paste is already the background where it is in front (the
        # cut-out is transparent there, `hide`); a blend reaches past that.
        if blend.mode != NONE and placed.in_front.any():
            overlay = np.where(placed.in_front[..., None], image, overlay)
        full_mask = place_mask(placed.mask, p.x, p.y, placement_config.size)
        made = sample_composite(background, p, overlay, full_mask, encoding, key, blend)
        if scene_config.composed:
            depth = placed.point.foot_depth
            if base is None:
                label = composed_label(scene.depth, full_mask, depth)
                moments = None  # lossy: the writer decodes what it wrote
            else:
                value = stored_value(depth, scene_config.stored_per_metre)
                label, moments = stored_label(base, placed.mask, p.x, p.y, value)
            made = dataclasses.replace(
                made,
                depth=encode_label(label, scene_config),
                depth_moments=moments,
                depth_precision=depth_precision,
            )
        yield dataclasses.replace(made, scene=placed.point if scene_config.by_depth else None)


class ComposeSceneFn(_ComposePair):
    """Makes a pair's samples in its scene (ComposeSamples with a
    SceneConfig): the background's depth is read from bg_depth/<name>.png,
    which the background depth stage wrote (transforms/background_depth.py),
    and its scene kept, like its image, while memory allows."""

    def __init__(
        self,
        input_config: InputConfig,
        placement_config: PlacementConfig,
        encoding: EncodingConfig,
        blending: Optional[BlendConfig],
        scene_config: SceneConfig,
        root: str,
        depth: Optional[DepthConfig],
    ):
        super().__init__(input_config, placement_config, encoding, blending)
        self._scene_config = scene_config
        self._root = root
        self._depth = depth
        self._redraws = beam.metrics.Metrics.counter("scene", "redraws")
        self._fallbacks = beam.metrics.Metrics.counter("scene", "fallbacks")

    def setup(self) -> None:
        super().setup()
        self._scenes: "collections.OrderedDict[str, BackgroundScene]" = collections.OrderedDict()
        made_by_model = self._depth is not None and self._scene_config.bg_depth is None
        self._precision = precision.resolve(self._depth) if made_by_model else None

    def _scene(self, background: Background) -> BackgroundScene:
        def load() -> BackgroundScene:
            path = layout.resolve(self._root, layout.background_depth_path(background.stem))
            depth = decode_scene_depth(read_file(path), self._scene_config)
            return background_scene(depth, Camera(self._scene_config.camera_fov, background.aspect))

        return cached(self._scenes, background.stem, load, self._cached_backgrounds)

    def process(self, pair: Pair, foregrounds: Dict[str, Foreground]) -> Iterator[Composite]:
        made = compose_scene_pair(
            pair.background,
            self._background_image(pair.background),
            self._scene(pair.background),
            foregrounds[pair.fg_stem],
            self._placement_config,
            self._encoding,
            pair.key,
            self._blending,
            self._scene_config,
            self._precision,
        )
        for composite in timed_items(made, self._timer):
            self._samples.inc()
            if composite.scene:
                self._redraws.inc(max(0, composite.scene.tries - 1))
                self._fallbacks.inc(int(composite.scene.fallback))
            yield composite


class SceneCounts(beam.PTransform):
    """`WrittenPair`s -> one (redraws, fallbacks) over the build, for the
    manifest."""

    def expand(self, pairs):
        return (
            pairs
            | "PairSceneCounts" >> beam.Map(lambda pair: (pair.redraws, pair.fallbacks))
            | "SumSceneCounts"
            >> beam.CombineGlobally(lambda counts: tuple(map(sum, zip((0, 0), *counts))))
        )
