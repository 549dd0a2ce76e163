"""Blending: how a cut-out meets its background (`--blend`).

A hard alpha paste leaves an edge no photograph has, and a network can learn
that seam instead of the object; Dwibedi et al. ("Cut, Paste and Learn",
ICCV 2017) got their largest single gain from rendering the same composites
with several blending modes. The modes (fgbg/blend_modes.py):

- none: the hard paste every build made before --blend
  (transforms/compositing.alpha_composite);
- gaussian: the cut-out's alpha feathered by a Gaussian blur of
  --blend_sigma pixels, so the edge fades over about three sigmas on either
  side while the object's own pixels stay sharp;
- poisson: OpenCV's seamlessClone of the pasted object (normal gradients,
  see `poisson_clone`) into the background;
- motion: the pasted object, alpha included, smeared along a line of
  --blend_motion_length pixels at an angle each sample draws.

Which mode a sample gets (and the motion angle) is drawn from the run seed
and the sample's identity (`draw_blend`), so a rebuild gives the same bytes.
Whatever the mode, the sample's mask stays the cut-out's binarised alpha:
blending changes what the object looks like, not where it is.

OpenCV is imported by the functions that blend, not with the module: a
build with --blend none never loads it, so its workers stay as small as
before (about 36 MB each; BENCHMARKS.md, "Blending").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import numpy as np

from fgbg.blend_modes import MOTION, NONE
from fgbg.hashing import rng_for
from fgbg.types import Placement

# How far (pixels) poisson's cloned region reaches past the object: the
# boundary it solves from is background just outside the cut-out's edge, so
# the object's soft alpha edge is blended too, and nothing further out moves.
POISSON_MARGIN = 3


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    """The modes a sample draws among and each mode's setting."""

    modes: Tuple[str, ...]  # in fgbg.blend_modes.MODES order
    seed: int
    sigma: float  # gaussian: the feather's standard deviation, pixels
    motion_length: int  # motion: the blur line's length, pixels (odd)

    @property
    def recorded(self) -> bool:
        """Whether samples say their mode: a build with --blend none writes
        exactly the tables and records it wrote before --blend existed."""
        return self.modes != (NONE,)


@dataclasses.dataclass(frozen=True)
class Blend:
    """One sample's draw: its mode and, for motion, the blur's direction."""

    mode: str
    angle: float = 0.0  # degrees, motion only


def draw_blend(config: BlendConfig, placement: Placement) -> Blend:
    """The sample's mode (and motion angle), from the run seed and the
    sample's identity only, never from what else is in the build."""
    if config.modes == (NONE,):
        return Blend(NONE)
    rng = rng_for("blend", config.seed, placement.bg_stem, placement.fg_stem, placement.number)
    mode = config.modes[int(rng.integers(len(config.modes)))]
    if mode != MOTION:
        return Blend(mode)
    return Blend(mode, float(rng.uniform(0.0, 180.0)))


def padded(rgba: np.ndarray, pad: int) -> np.ndarray:
    """The cut-out with `pad` fully transparent pixels around it."""
    import cv2

    return cv2.copyMakeBorder(rgba, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)


def from_premultiplied(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8 from float premultiplied colour (0..255 * alpha/255) and
    float alpha (0..255): colour divided back out wherever alpha is not zero."""
    safe = np.maximum(alpha, 1e-6)[..., None]
    rgb = np.clip(np.rint(colour * 255.0 / safe), 0, 255)
    out_alpha = np.clip(np.rint(alpha), 0, 255)
    return np.dstack([rgb, out_alpha]).astype(np.uint8)


def feathered(rgba: np.ndarray, sigma: float) -> Tuple[np.ndarray, int]:
    """(the cut-out with its alpha Gaussian-blurred, how far it grew on each side).

    Only the alpha is blurred: colour stays the object's wherever the object
    was, and the new transparent-to-opaque band outside it takes the nearby
    object colour (a normalised blur of the premultiplied colour), not the
    black that transparent pixels hold. Alpha is blurred in OpenCV's exact
    fixed-point uint8 arithmetic, so a pixel whose whole neighbourhood is
    opaque stays 255 and one with none of the object in reach stays 0: the
    object's inside and the far background are untouched.
    """
    import cv2

    pad = math.ceil(3 * sigma)
    kernel = (2 * pad + 1, 2 * pad + 1)
    grown = padded(rgba, pad)
    alpha = grown[..., 3]
    blurred_alpha = cv2.GaussianBlur(alpha, kernel, sigma, borderType=cv2.BORDER_CONSTANT)
    weight = alpha.astype(np.float32)
    spread_weight = cv2.GaussianBlur(weight, kernel, sigma, borderType=cv2.BORDER_CONSTANT)
    spread_colour = (
        cv2.GaussianBlur(
            grown[..., :3].astype(np.float32) * weight[..., None],
            kernel,
            sigma,
            borderType=cv2.BORDER_CONSTANT,
        )
        / np.maximum(spread_weight, 1e-6)[..., None]
    )
    colour = np.where(
        (alpha > 0)[..., None], grown[..., :3], np.clip(np.rint(spread_colour), 0, 255)
    )
    return np.dstack([colour.astype(np.uint8), blurred_alpha]), pad


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A length x length kernel: a line through its centre at `angle`
    degrees, anti-aliased by the rotation, summing to 1."""
    import cv2

    line = np.zeros((length, length), np.float32)
    line[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
    kernel = cv2.warpAffine(line, rotation, (length, length), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def motion_blurred(rgba: np.ndarray, length: int, angle: float) -> Tuple[np.ndarray, int]:
    """(the cut-out smeared along a line, how far it grew on each side).

    The premultiplied colour and the alpha are blurred alike, so the object
    streaks over the background the way a moving object's exposure does,
    and transparent pixels lend it no colour.
    """
    import cv2

    pad = length // 2
    grown = padded(rgba, pad)
    kernel = motion_kernel(length, angle)
    alpha = grown[..., 3].astype(np.float32)
    colour = grown[..., :3].astype(np.float32) * (alpha / 255.0)[..., None]
    border = cv2.BORDER_CONSTANT
    blurred_colour = cv2.filter2D(colour, -1, kernel, borderType=border)
    blurred_alpha = cv2.filter2D(alpha, -1, kernel, borderType=border)
    return from_premultiplied(blurred_colour, blurred_alpha), pad


def poisson_clone(
    pasted: np.ndarray, background: np.ndarray, mask: np.ndarray, x: int, y: int
) -> np.ndarray:
    """The pasted object seamlessly cloned into the background.

    Normal gradients (cv2.NORMAL_CLONE), not mixed: inside the object the
    gradients are all the object's, so it keeps its texture and stays
    opaque, as its mask says, while its colours shift to meet the
    background at the edge. Mixed gradients keep whichever gradient is
    stronger, so a textured background would show through the object and
    the mask would no longer describe what the image shows.

    The source is `pasted`, the hard paste of the object whose binary
    `mask` lies at (x, y); the region is that mask grown by POISSON_MARGIN.
    Both images are padded by reflection first, since seamlessClone shrinks
    a region that touches the image's border.
    """
    import cv2

    height, width = background.shape[:2]
    pad = POISSON_MARGIN + 1
    region = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    region[pad + y : pad + y + mask.shape[0], pad + x : pad + x + mask.shape[1]] = mask
    if not region.any():
        return pasted
    reach = 2 * POISSON_MARGIN + 1
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))
    region = cv2.dilate(region, grow)
    left, top, region_width, region_height = cv2.boundingRect(region)
    # seamlessClone places the region's bounding box centred here, rounding
    # as this does, so the clone lands exactly where the object was pasted.
    centre = (left + region_width // 2, top + region_height // 2)
    cloned = cv2.seamlessClone(
        cv2.copyMakeBorder(pasted, pad, pad, pad, pad, cv2.BORDER_REFLECT),
        cv2.copyMakeBorder(background, pad, pad, pad, pad, cv2.BORDER_REFLECT),
        region.copy(),  # seamlessClone writes into the mask it is given
        centre,
        cv2.NORMAL_CLONE,
    )[pad : pad + height, pad : pad + width]
    # OpenCV solves over the region's whole bounding box, which moves the
    # box's corners outside the region by a few levels; only the region is
    # taken, so everything outside it stays the background's exactly.
    inside = region[pad : pad + height, pad : pad + width, None] > 0
    return np.where(inside, cloned, background)
