"""Compositing: every (background, foreground) pair -> its overlays and masks.

`CrossPairs` makes the pairs the split plan (transforms/splits.py, a side
input) asks for: every background with every foreground, or with the
foregrounds of its split when some are held out for test; it then
reshuffles the pairs so that a runner can spread them over all workers.
`ComposeSamples` makes each pair's samples in one call, resizing the
foreground once per (flip, scale); the pairs it gets are those still to
make (transforms/pairs.py skips the rest).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Dict, Iterator, Tuple

import apache_beam as beam
import numpy as np
from PIL import Image

from fgbg.images import encode_jpeg, encode_png
from fgbg.moments import binary_moments
from fgbg.storage import read_file
from fgbg.timing import stage_timer, timed_items
from fgbg.types import Background, Composite, Foreground, Pair
from transforms.inputs import InputConfig, load_background
from transforms.placements import PlacementConfig, pair_placements, scaled_size
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
    """Lanczos-resize the cut-out and its mask with the same geometry.

    Pillow resizes RGBA with premultiplied alpha, so transparent pixels do not
    bleed colour into the edge. The mask is re-binarised at half intensity so
    it stays strictly 0/255 and follows the resized outline.
    """
    small_rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.LANCZOS))
    small_mask = np.asarray(Image.fromarray(mask, "L").resize(size, Image.LANCZOS))
    return small_rgba, np.where(small_mask >= 128, 255, 0).astype(np.uint8)


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
) -> Iterator[Composite]:
    """All samples of one pair, in number order."""
    cutouts: Dict[Tuple[bool, float], Tuple[np.ndarray, np.ndarray]] = {}
    mirrored = mirror(foreground) if placement_config.mirror else None
    height, width = foreground.mask.shape
    for placement in pair_placements(
        placement_config, background.stem, foreground.stem, (width, height)
    ):
        variant = (placement.flip, placement.scale)
        if variant not in cutouts:
            rgba, mask = mirrored if placement.flip else (foreground.rgba, foreground.mask)
            cutouts[variant] = resize_cutout(
                rgba, mask, scaled_size(width, height, placement.scale)
            )
        rgba, mask = cutouts[variant]
        overlay = alpha_composite(image, rgba, placement.x, placement.y)
        full_mask = place_mask(mask, placement.x, placement.y, placement_config.size)
        lossless = encoding.mask_format == "png"
        yield Composite(
            placement=placement,
            split=background.split,
            overlay=overlay,
            overlay_encoded=encode_jpeg(overlay, encoding.overlay_quality),
            mask_encoded=encode_mask(full_mask, encoding),
            pair_key=key,
            mask_moments=binary_moments(int(np.count_nonzero(mask)), full_mask.size)
            if lossless
            else None,
        )


class _ComposePair(beam.DoFn):
    """Makes a pair's samples; keeps recently used backgrounds decoded and
    resized, up to a fixed memory budget (not a count that grows with the
    dataset): pairs arrive in shuffled order, and decoding and resizing a
    background photo costs more than a pair's compositing when it is large."""

    _CACHE_BYTES = 64 * 2**20
    _MIN_CACHED_BACKGROUNDS = 4

    def __init__(
        self, input_config: InputConfig, placement_config: PlacementConfig, encoding: EncodingConfig
    ):
        self._input_config = input_config
        self._placement_config = placement_config
        self._encoding = encoding
        self._samples = beam.metrics.Metrics.counter("compositing", "samples")
        self._timer = stage_timer("compositing")

    def setup(self) -> None:
        self._backgrounds: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
        size = self._input_config.size
        self._cached_backgrounds = max(
            self._MIN_CACHED_BACKGROUNDS, self._CACHE_BYTES // (size * size * 3)
        )

    def _background_image(self, background: Background) -> np.ndarray:
        image = self._backgrounds.pop(background.source, None)
        if image is None:
            image = load_background(read_file(background.source), self._input_config)
        self._backgrounds[background.source] = image
        while len(self._backgrounds) > self._cached_backgrounds:
            self._backgrounds.popitem(last=False)
        return image

    def process(self, pair: Pair, foregrounds: Dict[str, Foreground]) -> Iterator[Composite]:
        made = compose_pair(
            pair.background,
            self._background_image(pair.background),
            foregrounds[pair.fg_stem],
            self._placement_config,
            self._encoding,
            pair.key,
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
    """`Pair`s -> every `Composite` of every pair, in number order per pair."""

    def __init__(
        self,
        foregrounds,
        input_config: InputConfig,
        placement_config: PlacementConfig,
        encoding: EncodingConfig,
    ):
        super().__init__()
        self._foregrounds = foregrounds
        self._input_config = input_config
        self._placement_config = placement_config
        self._encoding = encoding

    def expand(self, pairs):
        by_stem = self._foregrounds | "KeyForegrounds" >> beam.Map(lambda fg: (fg.stem, fg))
        return pairs | "Compose" >> beam.ParDo(
            _ComposePair(self._input_config, self._placement_config, self._encoding),
            beam.pvalue.AsDict(by_stem),
        )
