"""Placements: which samples a (background, foreground) pair makes, and where.

The numbering reproduces the original dataset: for each flip (original first,
then mirrored), for each scale in order, `placements_per_scale` consecutive
numbers, starting at 1. With the defaults that is 1-20 original and 21-40
mirrored, five numbers per scale.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Tuple

from fgbg.hashing import rng_for
from fgbg.types import Placement


@dataclasses.dataclass(frozen=True)
class PlacementConfig:
    """The counts and factors that define a pair's samples."""

    seed: int
    size: int  # backgrounds are size x size
    scales: Tuple[float, ...]
    placements_per_scale: int
    mirror: bool

    @property
    def flips(self) -> Tuple[bool, ...]:
        return (False, True) if self.mirror else (False,)

    @property
    def samples_per_pair(self) -> int:
        return len(self.flips) * len(self.scales) * self.placements_per_scale


def scaled_size(width: int, height: int, scale: float) -> Tuple[int, int]:
    """The original's `(int(w*r), int(h*r))`, never below one pixel."""
    return max(1, int(width * scale)), max(1, int(height * scale))


def sample_number(
    flip_index: int, scale_index: int, placement_index: int, n_scales: int, per_scale: int
) -> int:
    """The 1-based file number of a sample, as the original numbered them."""
    return 1 + (flip_index * n_scales + scale_index) * per_scale + placement_index


def draw_position(
    seed: int, bg_stem: str, fg_stem: str, number: int, space: Tuple[int, int]
) -> Tuple[int, int]:
    """Top-left corner with x in [0, space_x] and y in [0, space_y], inclusive.

    The generator is seeded by the run seed and the sample's identity only, so
    a sample lands in the same place whatever else is in the build and however
    the runner splits the work.
    """
    rng = rng_for("placement", seed, bg_stem, fg_stem, number)
    x = int(rng.integers(0, space[0], endpoint=True))
    y = int(rng.integers(0, space[1], endpoint=True))
    return x, y


def pair_placements(
    config: PlacementConfig, bg_stem: str, fg_stem: str, fg_size: Tuple[int, int]
) -> Iterator[Placement]:
    """Every placement of one foreground on one background, in number order."""
    for flip_index, flip in enumerate(config.flips):
        for scale_index, scale in enumerate(config.scales):
            w, h = scaled_size(fg_size[0], fg_size[1], scale)
            if w > config.size or h > config.size:
                raise ValueError(
                    f"foreground {fg_stem} at scale {scale} is {w}x{h}, larger than "
                    f"the {config.size}x{config.size} background"
                )
            for index in range(config.placements_per_scale):
                number = sample_number(
                    flip_index, scale_index, index, len(config.scales), config.placements_per_scale
                )
                x, y = draw_position(
                    config.seed, bg_stem, fg_stem, number, (config.size - w, config.size - h)
                )
                yield Placement(
                    bg_stem=bg_stem,
                    fg_stem=fg_stem,
                    number=number,
                    flip=flip,
                    scale=scale,
                    x=x,
                    y=y,
                    w=w,
                    h=h,
                )


def parse_scales(text: str) -> Tuple[float, ...]:
    """'1.0,0.8' -> (1.0, 0.8); each scale in (0, 1], none repeated."""
    scales = tuple(float(part) for part in text.split(",") if part.strip())
    if not scales or any(not 0 < scale <= 1 for scale in scales):
        raise ValueError(f"--scales must be a comma-separated list in (0, 1], got {text!r}")
    if len(set(scales)) != len(scales):
        raise ValueError(f"--scales repeats a scale: {text!r}")
    return scales
