"""A background's scene from its depth map: the map read and resized, its
pixels back-projected through a pinhole camera, and the surfaces an object
can stand on.

numpy only; the placement that uses it is transforms/scene_placement.py,
and docs/scene-placement.md says how the two fit together.

Depth here is z-depth in metres (the distance along the optical axis, what
NYU Depth V2, ScanNet and DenseDepth store), 0 where nothing was measured.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Tuple

import numpy as np
from PIL import Image

# A pixel is support (an object can stand on it) when the surface around it
# faces up: its normal within this angle of the scene's up axis. 20 degrees
# takes floors, table tops and gentle ramps, and leaves walls and the fronts
# of furniture (90 degrees off) far out.
SUPPORT_TILT_DEGREES = 20.0
# The scene's up axis is found among normals within this angle of the
# camera's own up (image up): a camera pitched or rolled by less than this
# still finds its floor (docs/scene-placement.md, "Support surfaces").
UP_SEARCH_DEGREES = 45.0
UP_REFINEMENTS = 3
# Normals are taken over this many pixels, so that one pixel's sensor noise
# (a Kinect's depth steps) does not tip them.
NORMAL_STEP = 2
# A map is usable when at least this fraction of its pixels has depth.
MIN_VALID_FRACTION = 0.5
# Aspects (width / height) that differ by less than this fraction are one.
ASPECT_TOLERANCE = 0.01


class DepthMapError(ValueError):
    """A background's depth map that cannot be used; the message is why."""


def decode_depth_png(data: bytes, units_per_metre: float) -> np.ndarray:
    """A depth map file as float32 metres (0: no measurement).

    Single-channel images only: 16-bit PNGs (NYU Depth V2 and ScanNet store
    millimetres, units_per_metre 1000) or 8-bit ones; a colour image is not a
    depth map."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
                raise DepthMapError(
                    f"depth map is a {image.mode} image; expected one channel of depth "
                    "(a 16-bit PNG)"
                )
            values = np.asarray(image, dtype=np.float32)
    except DepthMapError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise DepthMapError(f"not a readable depth map: {error}") from None
    return values / np.float32(units_per_metre)


def aspect(width: int, height: int) -> float:
    return width / height


def check_depth_map(depth: np.ndarray, background_aspect: float) -> None:
    """Refuse a map of another aspect than its background's, or one with too
    few measured pixels (MIN_VALID_FRACTION)."""
    height, width = depth.shape
    if abs(aspect(width, height) / background_aspect - 1) > ASPECT_TOLERANCE:
        raise DepthMapError(
            f"depth map is {width}x{height} (aspect {aspect(width, height):.3f}); its "
            f"background's aspect is {background_aspect:.3f}"
        )
    valid = float(np.count_nonzero(depth > 0)) / depth.size
    if valid < MIN_VALID_FRACTION:
        raise DepthMapError(
            f"depth map has depth at {valid:.0%} of its pixels; at least "
            f"{MIN_VALID_FRACTION:.0%} is needed"
        )


def resize_nearest(depth: np.ndarray, size: int) -> np.ndarray:
    """The map at size x size, each pixel the source pixel under its centre.

    Nearest, not a filter: averaging across a depth edge invents a surface
    halfway between the near object and the far wall, and averaging with an
    unmeasured 0 invents a near one. (The background image is stretched to
    size x size the same way, aspect not kept, so pixels stay aligned.)"""
    height, width = depth.shape
    rows = ((np.arange(size) + 0.5) * height / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * width / size).astype(np.int64)
    return depth[np.ix_(np.minimum(rows, height - 1), np.minimum(cols, width - 1))]


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera over the square stored image.

    fov_degrees: the horizontal field of view of the photograph.
    aspect: the photograph's width / height before it was stretched to a
        square, so that the vertical focal length is right too.
    """

    fov_degrees: float
    aspect: float = 1.0

    def focal_lengths(self, size: int) -> Tuple[float, float]:
        """(fx, fy) in pixels of the size x size image."""
        fx = size / 2 / math.tan(math.radians(self.fov_degrees) / 2)
        return fx, fx * self.aspect


def back_project(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W, 3) camera coordinates of every pixel's centre: X right, Y down
    (image rows), Z along the optical axis (the depth itself)."""
    size = depth.shape[0]
    fx, fy = camera.focal_lengths(size)
    centre = size / 2
    rows, cols = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float32)
    x = (cols + 0.5 - centre) * depth / fx
    y = (rows + 0.5 - centre) * depth / fy
    return np.stack([x, y, depth], axis=-1).astype(np.float32)


def quadrant_normals(points: np.ndarray, step: int = NORMAL_STEP) -> np.ndarray:
    """(4, H, W, 3) unit normals of each pixel's four neighbourhoods (right
    or left, down or up, `step` pixels away), turned to face the camera; NaN
    where a neighbour is outside the image.

    Four, not one: at a depth edge at least one neighbourhood reaches across
    it and gives a normal unlike the surface's, so a pixel whose four agree
    lies inside a surface (`support_mask`)."""
    height, width = points.shape[:2]
    padded = np.full((height + 2 * step, width + 2 * step, 3), np.nan, np.float32)
    padded[step : step + height, step : step + width] = points

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[step + dy : step + dy + height, step + dx : step + dx + width]

    normals = []
    for dx in (step, -step):
        for dy in (step, -step):
            normal = np.cross(shifted(0, dx) - points, shifted(dy, 0) - points)
            facing = np.sign(np.sum(normal * -points, axis=-1, keepdims=True))
            normal = normal * np.where(facing == 0, 1, facing)
            length = np.linalg.norm(normal, axis=-1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                normals.append(normal / length)
    return np.stack(normals)


def _within(normals: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """Pixels whose four neighbourhood normals are all within `degrees` of `axis`."""
    with np.errstate(invalid="ignore"):
        cosines = normals @ axis
        return np.all(cosines >= math.cos(math.radians(degrees)), axis=0)


def up_axis(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The scene's up axis in camera coordinates: the mean of the normals
    near the camera's own up (0, -1, 0), refined UP_REFINEMENTS times, each
    time among the normals near the last estimate.

    A mean of normals rather than one fitted floor plane: the box's top and
    the table's are support too, parallel to the floor but at other heights,
    and the mean needs no random restarts (so no seed) and no plane
    threshold in metres. A camera pitched by 15 degrees sees its floor's
    normals 15 degrees off its own up, inside UP_SEARCH_DEGREES; the first
    mean lands near them and the refinements narrow onto them. Returns the
    camera's up when no normal is near it."""
    axis = np.array([0.0, -1.0, 0.0], np.float32)
    mean_normals = normals.mean(axis=0)
    for degrees in np.linspace(UP_SEARCH_DEGREES, SUPPORT_TILT_DEGREES, UP_REFINEMENTS):
        near = _within(normals, axis, degrees) & valid
        if not near.any():
            break
        mean = mean_normals[near].mean(axis=0)
        axis = (mean / np.linalg.norm(mean)).astype(np.float32)
    return axis


def support_mask(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) bool: the pixels an object can stand on, upward-facing
    surfaces with depth, away from depth edges (`quadrant_normals`)."""
    points = back_project(depth, camera)
    points[depth <= 0] = np.nan
    normals = quadrant_normals(points)
    valid = depth > 0
    return _within(normals, up_axis(normals, valid), SUPPORT_TILT_DEGREES) & valid
