"""The report's colours: the page's, the sample grid's and the depth colour map."""

from __future__ import annotations

from typing import Tuple

import numpy as np

# Colours chosen to be rare in photographs, so the browser test can find them.
OUTLINE_RGB = (255, 0, 170)
BANNER_RGB = (198, 40, 40)
ACCENT_RGB = (59, 82, 139)
INK_RGB = (29, 35, 48)
PLACEHOLDER_RGB = (232, 234, 238)

# Viridis at nine evenly spaced points: perceptually uniform, readable in
# grey and by colour-blind readers; linear interpolation between anchors is
# indistinguishable from the full table at thumbnail size.
VIRIDIS_ANCHORS = np.array(
    [
        (68, 1, 84),
        (71, 45, 123),
        (59, 82, 139),
        (44, 114, 142),
        (33, 145, 140),
        (40, 174, 128),
        (94, 201, 98),
        (173, 220, 48),
        (253, 231, 37),
    ],
    dtype=np.float64,
)


def hex_color(rgb: Tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def colormap(levels: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] (any shape) -> uint8 RGB (shape + (3,)), viridis."""
    position = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0) * (len(VIRIDIS_ANCHORS) - 1)
    below = np.minimum(position.astype(np.int64), len(VIRIDIS_ANCHORS) - 2)
    fraction = (position - below)[..., None]
    rgb = VIRIDIS_ANCHORS[below] * (1 - fraction) + VIRIDIS_ANCHORS[below + 1] * fraction
    return np.rint(rgb).astype(np.uint8)
