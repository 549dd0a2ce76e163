"""Scenes whose geometry is known, rendered in the test: a floor seen by a
pinhole camera pitched down, a back wall, and a box standing nearer on the
floor. Each pixel's ray is intersected with the surfaces analytically, so
its z-depth and which surface it shows are exact.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

FLOOR, WALL, BOX_FRONT, BOX_TOP, BOX_SIDE = range(5)
UPWARD = (FLOOR, BOX_TOP)
SURFACE_COLOURS = {
    FLOOR: (150, 120, 90),
    WALL: (200, 200, 185),
    BOX_FRONT: (60, 90, 160),
    BOX_TOP: (90, 130, 200),
    BOX_SIDE: (40, 60, 120),
}


@dataclasses.dataclass(frozen=True)
class Room:
    """World coordinates: X right, Y up, Z forward; the camera at (0,
    camera_height, 0), pitched down by `pitch_degrees`."""

    size: int = 64
    fov_degrees: float = 60.0
    pitch_degrees: float = 15.0
    camera_height: float = 1.5
    wall_z: float = 6.0
    box: Tuple[Tuple[float, float], ...] = ((-0.5, 0.5), (0.0, 0.6), (2.2, 2.8))  # x, y, z
    with_box: bool = True


def render(room: Room) -> Tuple[np.ndarray, np.ndarray]:
    """(z-depth in metres, surface id) of every pixel, (size, size) each."""
    size = room.size
    focal = size / 2 / math.tan(math.radians(room.fov_degrees) / 2)
    pitch = math.radians(room.pitch_degrees)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    a = (cols + 0.5 - size / 2) / focal  # camera x per unit z
    b = (rows + 0.5 - size / 2) / focal  # camera y (down) per unit z
    # The ray for unit z-depth in world coordinates: x + b * down + forward.
    forward = np.array([0.0, -math.sin(pitch), math.cos(pitch)])
    down = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])
    direction = (
        a[..., None] * np.array([1.0, 0.0, 0.0]) + b[..., None] * down + forward
    )  # (size, size, 3)
    origin = np.array([0.0, room.camera_height, 0.0])
    depth = np.full((size, size), np.inf)
    surface = np.full((size, size), -1)

    def hit(t: np.ndarray, which: np.ndarray) -> None:
        nearer = (t > 0) & (t < depth) & np.isfinite(t)
        depth[nearer] = t[nearer]
        surface[nearer] = which[nearer] if isinstance(which, np.ndarray) else which

    with np.errstate(divide="ignore", invalid="ignore"):
        dy = direction[..., 1]
        hit(np.where(dy < 0, -origin[1] / dy, np.inf), FLOOR)
        hit((room.wall_z - origin[2]) / direction[..., 2], WALL)
        if room.with_box:
            t, face = _box_hit(origin, direction, room.box)
            hit(t, face)
    assert np.isfinite(depth).all() and (surface >= 0).all()
    return depth.astype(np.float32), surface


def _box_hit(origin, direction, box) -> Tuple[np.ndarray, np.ndarray]:
    """Slab intersection: the entry distance and the face entered."""
    entries, exits, faces = [], [], []
    for axis, (low, high) in enumerate(box):
        d = direction[..., axis]
        t1, t2 = (low - origin[axis]) / d, (high - origin[axis]) / d
        entries.append(np.minimum(t1, t2))
        exits.append(np.maximum(t1, t2))
        faces.append({0: BOX_SIDE, 1: BOX_TOP, 2: BOX_FRONT}[axis])
    entry = np.max(entries, axis=0)
    face = np.choose(np.argmax(entries, axis=0), faces)
    inside = entry < np.min(exits, axis=0)
    return np.where(inside, entry, np.inf), face


def scene_image(surface: np.ndarray, seed: int = 0) -> np.ndarray:
    """An RGB photo of the scene: each surface its colour, lightly textured."""
    rng = np.random.default_rng(seed)
    colours = np.array([SURFACE_COLOURS[index] for index in range(5)], np.int16)
    noise = rng.integers(-12, 13, size=surface.shape + (3,))
    return np.clip(colours[surface] + noise, 0, 255).astype(np.uint8)


def millimetres(depth: np.ndarray) -> np.ndarray:
    return np.rint(depth * 1000).astype(np.uint16)


def write_scene(folder: Path, name: str, room: Room, seed: int = 0) -> np.ndarray:
    """bg/<name>.png and depth/<name>.png (16-bit millimetres) of a room;
    returns its surface ids."""
    depth, surface = render(room)
    (folder / "bg").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene_image(surface, seed)).save(folder / "bg" / f"{name}.png")
    Image.fromarray(millimetres(depth)).save(folder / "depth" / f"{name}.png")
    return surface


def scene_build_args(inputs: str, output: str, *extra: str) -> List[str]:
    """A build placing by depth with composed metric labels from the
    backgrounds' own maps under `inputs` (bg/, depth/, fg/), at 64 px, every
    sample in train; `extra` flags after these."""
    return [
        f"--bg={inputs}/bg/*",
        f"--fg={inputs}/fg/*",
        f"--bg_depth={inputs}/depth/*.png",
        "--placement=depth",
        "--depth_labels=composed",
        "--depth_encoding=metric",
        f"--output={output}",
        "--size=64",
        "--val_fraction=0",
        "--test_fraction=0",
        *extra,
    ]
