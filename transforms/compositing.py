"""Compositing: every (background, foreground) pair -> its overlays and masks.

`CrossPairs` makes the pairs the split plan (transforms/splits.py, a side
input) asks for: every background with every foreground, or with the
foregrounds of its split when some are held out for test; it then
reshuffles the pairs so that a runner can spread them over all workers.
`ComposeSamples` makes each pair's samples in one call, resizing the
foreground once per (flip, scale) and blending each sample as its draw says
(transforms/blending.py); the pairs it gets are those still to make
(transforms/pairs.py skips the rest).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Dict, Iterator, Optional, Tuple

import apache_beam as beam
import numpy as np
from PIL import Image

from fgbg.blend_modes import GAUSSIAN, MOTION, NONE, POISSON
from fgbg.images import encode_jpeg, encode_png
from fgbg.moments import binary_moments
from fgbg.storage import read_file
from fgbg.timing import stage_timer, timed_items
from fgbg.types import Background, Composite, Foreground, Pair, Placement
from transforms.blending import (
    Blend,
    BlendConfig,
    draw_blend,
    feathered,
    motion_blurred,
    poisson_clone,
)
from transforms.inputs import InputConfig, load_background
from transforms.placements import PlacementConfig, pair_placements
from transforms.splits import EXCLUDED, SplitPlan, plan_pairs


@dataclasses.dataclass(frozen=True)
class EncodingConfig:
    """How overlays and masks are stored."""

    overlay_quality: int
    mask_format: str  # 'png' (lossless, default) or 'jpg' (the original's)
    mask_quality: int


def mirror(foreground: Foreground) -> Tuple[np.ndarray, np.ndarray]:
    """The horizontally flipped RGBA and mask."""
    return foreground.rgba[:, ::-1].copy(), foreground.mask[:, ::-1].copy()


def resize_cutout(
    rgba: np.ndarray, mask: np.ndarray, size: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """Lanczos-resize the cut-out and its mask with the same geometry
    (`resize_rgba`, `resize_mask`)."""
    return resize_rgba(rgba, size), resize_mask(mask, size)


def resize_rgba(rgba: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The cut-out Lanczos-resized. Pillow resizes RGBA with premultiplied
    alpha, so transparent pixels do not bleed colour into the edge."""
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.LANCZOS))


def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The mask Lanczos-resized and re-binarised at half intensity, so it
    stays strictly 0/255 and follows the resized outline. Apart from the
    cut-out, so that placement by depth can try a size on the mask alone
    (a quarter of the RGBA's cost) before it resizes the cut-out."""
    small_mask = np.asarray(Image.fromarray(mask, "L").resize(size, Image.LANCZOS))
    return np.where(small_mask >= 128, 255, 0).astype(np.uint8)


def alpha_composite(background: np.ndarray, rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """`rgba` over `background` at (x, y): out = fg*a + bg*(1-a), rounded.

    Integer arithmetic, so the result is exact and identical everywhere:
    (fg*a + bg*(255-a) + 127) // 255. The numerator n = fg*a + bg*(255-a) is
    at most 65025, so uint16 holds it, and (n + 128 + ((n + 128) >> 8)) >> 8
    equals (n + 127) // 255 for every reachable n (checked exhaustively over
    all fg, bg and alpha values) without numpy's slow integer division. Alpha
    is repeated over the colour channels so every operation runs on plain
    (h, w, 3) arrays instead of broadcasting a size-1 axis.
    """
    height, width = rgba.shape[:2]
    out = background.copy()
    region = out[y : y + height, x : x + width]
    alpha = np.repeat(rgba[..., 3:4], 3, axis=2).astype(np.uint16)
    blended = rgba[..., :3].astype(np.uint16) * alpha
    blended += region * (255 - alpha)
    blended += 128
    blended += blended >> 8
    blended >>= 8
    region[...] = blended
    return out


def composite_clipped(background: np.ndarray, rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """`alpha_composite` of a cut-out that may reach past the background's
    edges (a blurred one grows by its blur's reach); what lies outside is cut."""
    height, width = background.shape[:2]
    left, top = max(x, 0), max(y, 0)
    right = min(x + rgba.shape[1], width)
    bottom = min(y + rgba.shape[0], height)
    inside = rgba[top - y : bottom - y, left - x : right - x]
    return alpha_composite(background, inside, left, top)


def blend_composite(
    background: np.ndarray,
    rgba: np.ndarray,
    mask: np.ndarray,
    x: int,
    y: int,
    blend: Blend,
    config: Optional[BlendConfig],
) -> np.ndarray:
    """The cut-out (`rgba`, its binary `mask`) over `background` at (x, y),
    blended as `blend` says with `config`'s settings (none needs none);
    mode none is `alpha_composite` itself."""
    if blend.mode == GAUSSIAN:
        grown, pad = feathered(rgba, config.sigma)
        return composite_clipped(background, grown, x - pad, y - pad)
    if blend.mode == MOTION:
        grown, pad = motion_blurred(rgba, config.motion_length, blend.angle)
        return composite_clipped(background, grown, x - pad, y - pad)
    pasted = alpha_composite(background, rgba, x, y)
    if blend.mode == POISSON:
        return poisson_clone(pasted, background, mask, x, y)
    return pasted


def place_mask(mask: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """A size x size 0/255 image with the mask at (x, y)."""
    canvas = np.zeros((size, size), np.uint8)
    canvas[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    return canvas


def encode_mask(mask: np.ndarray, config: EncodingConfig) -> bytes:
    if config.mask_format == "jpg":
        return encode_jpeg(mask, config.mask_quality)
    return encode_png(mask)


def compose_pair(
    background: Background,
    image: np.ndarray,
    foreground: Foreground,
    placement_config: PlacementConfig,
    encoding: EncodingConfig,
    key: str,
    blending: Optional[BlendConfig] = None,
) -> Iterator[Composite]:
    """All samples of one pair, in number order; without `blending`, every
    sample is a hard paste (mode none)."""
    cutouts = flip_cutouts(foreground, placement_config)
    placed = resized_placements(placement_config, background.stem, foreground.stem, cutouts)
    for placement, (rgba, mask) in placed:
        blend = draw_blend(blending, placement) if blending else Blend(NONE)
        overlay = blend_composite(image, rgba, mask, placement.x, placement.y, blend, blending)
        full_mask = place_mask(mask, placement.x, placement.y, placement_config.size)
        yield sample_composite(background, placement, overlay, full_mask, encoding, key, blend)


def flip_cutouts(
    foreground: Foreground, config: PlacementConfig
) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
    """The full-size RGBA and mask of each flip in `config.flips`."""
    unflipped = (foreground.rgba, foreground.mask)
    return (unflipped, mirror(foreground)) if config.mirror else (unflipped,)


def resized_placements(
    config: PlacementConfig,
    bg_stem: str,
    fg_stem: str,
    cutouts: Tuple[Tuple[np.ndarray, np.ndarray], ...],
) -> Iterator[Tuple[Placement, Tuple[np.ndarray, np.ndarray]]]:
    """Every placement of one pair (transforms/placements.py) with its
    cut-out resized to the placement's size, each flip and scale resized
    once. `cutouts`: `flip_cutouts`."""
    resized: Dict[Tuple[bool, float], Tuple[np.ndarray, np.ndarray]] = {}
    height, width = cutouts[0][1].shape
    for placement in pair_placements(config, bg_stem, fg_stem, (width, height)):
        variant = (placement.flip, placement.scale)
        if variant not in resized:
            full = cutouts[config.flips.index(placement.flip)]
            resized[variant] = resize_cutout(*full, (placement.w, placement.h))
        yield placement, resized[variant]


def sample_composite(
    background: Background,
    placement: Placement,
    overlay: np.ndarray,
    full_mask: np.ndarray,
    encoding: EncodingConfig,
    key: str,
    blend: Blend,
) -> Composite:
    """A sample made: its overlay and whole-image mask encoded as stored."""
    lossless = encoding.mask_format == "png"
    return Composite(
        placement=placement,
        split=background.split,
        overlay=overlay,
        overlay_encoded=encode_jpeg(overlay, encoding.overlay_quality),
        mask_encoded=encode_mask(full_mask, encoding),
        pair_key=key,
        blend=blend.mode,
        mask_moments=binary_moments(int(np.count_nonzero(full_mask)), full_mask.size)
        if lossless
        else None,
    )


def cached(cache: "collections.OrderedDict", key, make: Callable[[], object], limit: int):
    """cache[key], made by `make()` when absent; the cache keeps the `limit`
    most recently used entries."""
    value = cache.pop(key, None)
    if value is None:
        value = make()
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)
    return value


class _ComposePair(beam.DoFn):
    """Makes a pair's samples; keeps recently used backgrounds decoded and
    resized, up to a fixed memory budget (not a count that grows with the
    dataset): pairs arrive in shuffled order, and decoding and resizing a
    background photo costs more than a pair's compositing when it is large."""

    _CACHE_BYTES = 64 * 2**20
    _MIN_CACHED_BACKGROUNDS = 4

    def __init__(
        self,
        input_config: InputConfig,
        placement_config: PlacementConfig,
        encoding: EncodingConfig,
        blending: Optional[BlendConfig],
    ):
        self._input_config = input_config
        self._placement_config = placement_config
        self._encoding = encoding
        self._blending = blending
        self._samples = beam.metrics.Metrics.counter("compositing", "samples")
        self._timer = stage_timer("compositing")

    def setup(self) -> None:
        self._backgrounds: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
        size = self._input_config.size
        self._cached_backgrounds = max(
            self._MIN_CACHED_BACKGROUNDS, self._CACHE_BYTES // (size * size * 3)
        )

    def _background_image(self, background: Background) -> np.ndarray:
        return cached(
            self._backgrounds,
            background.source,
            lambda: load_background(read_file(background.source), self._input_config),
            self._cached_backgrounds,
        )

    def process(self, pair: Pair, foregrounds: Dict[str, Foreground]) -> Iterator[Composite]:
        made = compose_pair(
            pair.background,
            self._background_image(pair.background),
            foregrounds[pair.fg_stem],
            self._placement_config,
            self._encoding,
            pair.key,
            self._blending,
        )
        for composite in timed_items(made, self._timer):
            self._samples.inc()
            yield composite


class CrossPairs(beam.PTransform):
    """Backgrounds (split not yet assigned) x the `SplitPlan` -> (pairs,
    excluded): (Background with its split, foreground stem) for every pair
    the plan makes, reshuffled so that a runner spreads the pairs over its
    workers, and (background stem, foreground stem) for every pair it does
    not (a foreground held out of the background's split,
    transforms/splits.py)."""

    def __init__(self, plan):
        super().__init__()
        self._plan = plan

    def expand(self, backgrounds):
        def cross(background: Background, plan: SplitPlan) -> Iterator:
            return plan_pairs(
                dataclasses.replace(background, split=plan.split_of(background.stem)), plan
            )

        crossed = backgrounds | "Cross" >> beam.FlatMap(
            cross, beam.pvalue.AsSingleton(self._plan)
        ).with_outputs(EXCLUDED, main="pairs")
        return crossed.pairs | "SpreadPairs" >> beam.Reshuffle(), crossed[EXCLUDED]


class ComposeSamples(beam.PTransform):
    """`Pair`s -> every `Composite` of every pair, in number order per pair,
    each blended as `blending` draws (None: every one a hard paste).

    `scene` (--placement depth or --depth_labels composed: a
    `transforms.scene_placement.SceneConfig`, with the output `root` its
    background depth maps are in and the build's `depth` configuration)
    places the samples in their backgrounds' scenes instead."""

    def __init__(
        self,
        foregrounds,
        input_config: InputConfig,
        placement_config: PlacementConfig,
        encoding: EncodingConfig,
        blending: Optional[BlendConfig] = None,
        scene=None,
        root: str = "",
        depth=None,
    ):
        super().__init__()
        self._foregrounds = foregrounds
        self._input_config = input_config
        self._placement_config = placement_config
        self._encoding = encoding
        self._blending = blending
        self._scene = scene
        self._root = root
        self._depth = depth

    def expand(self, pairs):
        by_stem = self._foregrounds | "KeyForegrounds" >> beam.Map(lambda fg: (fg.stem, fg))
        settings = (self._input_config, self._placement_config, self._encoding, self._blending)
        if self._scene is None:
            compose = _ComposePair(*settings)
        else:
            # Imported here: scene_placement builds on this module.
            from transforms.scene_placement import ComposeSceneFn

            compose = ComposeSceneFn(*settings, self._scene, self._root, self._depth)
        return pairs | "Compose" >> beam.ParDo(compose, beam.pvalue.AsDict(by_stem))
