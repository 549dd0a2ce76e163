"""The records that flow between stages.

Images travel as numpy arrays inside one fused stage and as encoded bytes when
they are written; the dataclasses are plain and picklable so Beam can move them
between workers.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from fgbg.blend_modes import NONE

# (pixel count, per-channel sums, per-channel sums of squares), as Python ints
# so that merging is exact and independent of order.
Moments = Tuple[int, Tuple[int, ...], Tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class Reject:
    """An input file left out of the build, and why."""

    path: str
    reason: str


UNASSIGNED = ""  # a background's split until every background is known


@dataclasses.dataclass(frozen=True)
class Background:
    """A checked background. Its pixels are not carried: each stage that needs
    them reloads them, so no collection holds every background image."""

    stem: str
    source: str
    split: str  # UNASSIGNED until transforms/splits.py assigns it
    digest: str  # of the file's bytes: a changed file invalidates its samples
    aspect: float = 1.0  # width / height before it was resized to a square


@dataclasses.dataclass(frozen=True)
class Foreground:
    """A validated transparent cut-out and its binary mask."""

    stem: str
    source: str
    mask_source: Optional[str]
    rgba: np.ndarray  # (h, w, 4) uint8; alpha is what the overlay composites with
    mask: np.ndarray  # (h, w) uint8, strictly 0/255
    digest: str  # of the foreground's and mask's bytes


@dataclasses.dataclass(frozen=True)
class Pair:
    """A (background, foreground) pair whose samples are to be made; `key`
    identifies its inputs and the options that shape its samples
    (fgbg/pair_records.py)."""

    background: Background
    fg_stem: str
    key: str


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where and how one foreground is pasted: everything random about a sample."""

    bg_stem: str
    fg_stem: str
    number: int  # 1-based, the original's file number
    flip: bool
    scale: float
    x: int
    y: int
    w: int
    h: int

    @property
    def sample_id(self) -> str:
        return f"{self.bg_stem}/{self.fg_stem}/{self.number}"


@dataclasses.dataclass(frozen=True)
class ScenePoint:
    """Where a sample placed by depth stands (--placement depth,
    transforms/scene_placement.py): its foot point (the bottom centre of its
    mask, in image pixels), the background's depth there in metres, the
    scale applied (the drawn scale x Z_ref / foot depth), the fraction of
    the object seen, the foot points drawn, and whether it fell back to
    random placement (no floor, or no draw that fitted)."""

    foot_x: int
    foot_y: int
    foot_depth: float
    applied_scale: float
    visible_fraction: float
    tries: int
    fallback: bool


@dataclasses.dataclass(frozen=True)
class Composite:
    """One generated sample before it is written.

    `depth` is filled by the depth stage (encoded image bytes) and stays None
    for composites-only builds. `pair_key` identifies the pair's inputs and
    options, so a rerun can tell whether finished samples are still valid.
    """

    placement: Placement
    split: str
    overlay: np.ndarray  # (H, W, 3) uint8, the composite before JPEG encoding
    overlay_encoded: bytes
    mask_encoded: bytes
    pair_key: str = ""
    depth: Optional[bytes] = None
    depth_precision: Optional[str] = None  # what the depth stage ran in
    blend: str = NONE  # how the cut-out was blended in (fgbg/blend_modes.py)
    # Set when the mask is stored losslessly: its moments follow from the
    # array, so the writer need not decode the PNG again.
    mask_moments: Optional[Moments] = None
    scene: Optional[ScenePoint] = None  # --placement depth only
    # Set when a composed label is stored losslessly (metric), for the same
    # reason as mask_moments.
    depth_moments: Optional[Moments] = None


@dataclasses.dataclass(frozen=True)
class SampleRow:
    """A written sample: its metadata, relative paths and pixel moments."""

    placement: Placement
    split: str
    bg_path: str
    overlay_path: str
    mask_path: str
    depth_path: str  # '' when the build has no depth stage
    moments: Dict[str, Moments]
    depth_precision: Optional[str] = None  # what its depth map was made in
    blend: str = NONE  # how its cut-out was blended in (fgbg/blend_modes.py)
    scene: Optional[ScenePoint] = None  # --placement depth only


@dataclasses.dataclass(frozen=True)
class WrittenPair:
    """A pair whose samples are all written and recorded in its `.pair.json`
    (fgbg/pair_records.py).

    The stages after writing pass this handle, not the pair's rows: they read
    the rows back from the record when they need them, so no shuffle or
    in-memory collection holds anything per sample and the runner's memory
    does not grow with the dataset.
    """

    bg_stem: str
    fg_stem: str
    split: str
    samples: int
    moments: Dict[str, Moments]  # per image kind, summed over the pair's samples
    depth_precisions: Tuple[str, ...] = ()  # what its depth maps were made in
    blends: Tuple[Tuple[str, int], ...] = ()  # (blend mode, its samples), by mode
    redraws: int = 0  # --placement depth: foot points drawn again, over the pair
    fallbacks: int = 0  # --placement depth: samples that fell back to random placement
