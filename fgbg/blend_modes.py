"""The names of the blending modes (`--blend`) and how a list of them is read.

A library of names, not the blending itself (transforms/blending.py), so the
options, the records, the tables and the report agree on one spelling.
"""

from __future__ import annotations

from typing import Tuple

NONE = "none"  # today's hard alpha paste, the default
GAUSSIAN = "gaussian"  # the cut-out's alpha feathered by a Gaussian blur
POISSON = "poisson"  # seamless cloning (OpenCV's seamlessClone)
MOTION = "motion"  # a small linear motion blur of the pasted object
MIXED = "mixed"  # each sample draws one of MODES
MODES = (NONE, GAUSSIAN, POISSON, MOTION)  # in this order wherever listed or drawn


def parse_blend(text: str) -> Tuple[str, ...]:
    """'mixed', one mode or a comma list -> the modes a sample draws among,
    in MODES order (so 'poisson,gaussian' draws as 'gaussian,poisson' does);
    ValueError naming the unknown or repeated name."""
    names = [name.strip() for name in text.split(",")]
    if names == [MIXED]:
        return MODES
    unknown = [name for name in names if name not in MODES]
    if unknown:
        raise ValueError(
            f"unknown blend mode {unknown[0]!r}: expected {MIXED}, or one or a comma list "
            f"of {', '.join(MODES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"a blend mode is listed twice in {text!r}")
    return tuple(mode for mode in MODES if mode in names)
