"""The report's placement section: how a build placed its samples
(manifest.json's `scene`), and, given a second build of the same inputs
(`python -m pipeline.report OUTPUT --compare OTHER`), the same samples of
both side by side with their depth labels, e.g. placed at random and by
depth (docs/scene-placement.md).

Both builds choose their grid's samples by a stable hash of the run seed
and the sample id (dataset.choose_samples), so builds of one seed and the
same inputs show the same ids.

A build placed by depth needs no second build to show what it changed: for
a handful of its grid's samples the page remakes where --placement random
puts the same sample (placements are drawn from the run seed and the
sample's identity alone, transforms/placements.py) and shows that paste
beside the build's own overlay and label (`render_beside_random`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from fgbg.report.dataset import Dataset, read_image
from fgbg.report.grid import (
    CAPTION_HEIGHT,
    GAP,
    HEADER_HEIGHT,
    INK_RGB,
    MARGIN,
    TILE,
    depth_tile,
    font,
    outline_mask,
    placeholder_tile,
    render_rows,
)
from fgbg.storage import StorageError, match_files, read_file
from fgbg.types import Foreground
from transforms.compositing import alpha_composite, mirror, place_mask, resize_cutout
from transforms.inputs import (
    InputConfig,
    InputError,
    build_foreground,
    file_stem,
    mask_key,
    mask_preference,
)
from transforms.placements import draw_position, scaled_size

ComparedRow = Tuple[Dict[str, str], Dict[str, str]]  # (this build's row, the other's)
# Samples remade at random beside a build placed by depth: a handful, since
# each one reads its foreground file and resizes and pastes it again.
BESIDE_RANDOM_SAMPLES = 4
BESIDE_RANDOM_COLUMNS = ("placed at random", "placed by depth", "depth label")


def placement_name(dataset: Dataset) -> str:
    scene = dataset.manifest.scene
    placed_at_random = scene is None or scene.placement == "random"
    return "placed at random" if placed_at_random else f"placed by {scene.placement}"


def compared_rows(dataset: Dataset, other: Dataset) -> List[ComparedRow]:
    """This build's grid samples that the other build's grid shows too."""
    theirs = {row["id"]: row for row in other.table.chosen}
    return [(row, theirs[row["id"]]) for row in dataset.table.chosen if row["id"] in theirs]


def sample_tiles(dataset: Dataset, row: Dict[str, str]) -> List[Image.Image]:
    """The overlay with its mask outlined, and its colour-mapped depth label."""
    overlay = read_image(dataset.root, row["overlay_path"])
    tiles = [outline_mask(overlay, read_image(dataset.root, row["mask_path"]))]
    if not row["depth_path"]:
        return tiles + [placeholder_tile("no depth")]
    depth = read_image(dataset.root, row["depth_path"])
    return tiles + [depth_tile(depth, dataset.depth_encoding)[0]]


def comparison_size(rows: int) -> Tuple[int, int]:
    width = 2 * MARGIN + 4 * TILE + 3 * GAP
    return width, 2 * MARGIN + HEADER_HEIGHT + rows * (TILE + CAPTION_HEIGHT + GAP)


def render_comparison(other: Dataset, dataset: Dataset, rows: Sequence[ComparedRow]) -> Image.Image:
    """One row per sample: the other build's overlay and label, then this
    build's, under a header naming how each placed its samples."""
    canvas = Image.new("RGB", comparison_size(len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for index, name in enumerate((placement_name(other), placement_name(dataset))):
        centre = MARGIN + index * 2 * (TILE + GAP) + TILE + GAP // 2
        draw.text(
            (centre, MARGIN + HEADER_HEIGHT // 2), name, fill=INK_RGB, font=font(14), anchor="mm"
        )
    for index, (mine, theirs) in enumerate(rows):
        top = MARGIN + HEADER_HEIGHT + index * (TILE + CAPTION_HEIGHT + GAP)
        tiles = sample_tiles(other, theirs) + sample_tiles(dataset, mine)
        for column, tile in enumerate(tiles):
            canvas.paste(tile, (MARGIN + column * (TILE + GAP), top))
        draw.text((MARGIN, top + TILE + 4), mine["id"], fill=(91, 100, 117), font=font(12))
    return canvas


def placed_by_depth(dataset: Dataset) -> bool:
    scene = dataset.manifest.scene
    return scene is not None and scene.placement == "depth"


def beside_random_rows(dataset: Dataset) -> List[Dict[str, str]]:
    """The grid samples remade at random beside a build placed by depth
    (the first BESIDE_RANDOM_SAMPLES); none for any other build."""
    return dataset.table.chosen[:BESIDE_RANDOM_SAMPLES] if placed_by_depth(dataset) else []


def build_foregrounds(dataset: Dataset, stems: Sequence[str]) -> Dict[str, Foreground]:
    """The build's foregrounds of these stems, read again from --fg (and
    --fg_mask) as the build read them; a stem whose files are gone or
    unreadable is left out (the page shows a placeholder)."""
    options = dataset.manifest.options
    config = InputConfig(
        size=int(options["size"]),
        max_input_pixels=int(options["max_input_pixels"]),
        min_background_side=int(options["min_background_side"]),
        mask_threshold=int(options["mask_threshold"]),
    )
    try:
        paths = match_files(options["fg"])
        masks = match_files(options["fg_mask"]) if options.get("fg_mask") else paths
    except StorageError:
        return {}
    found: Dict[str, Foreground] = {}
    for stem in sorted(set(stems)):
        sources = [path for path in paths if file_stem(path) == stem]
        mask_paths = sorted((m for m in masks if mask_key(m) == stem), key=mask_preference)
        if not sources:
            continue
        mask_path = mask_paths[0] if mask_paths else None
        try:
            found[stem] = build_foreground(
                stem,
                sources[0],
                read_file(sources[0]),
                mask_path,
                read_file(mask_path) if mask_path else None,
                config,
            )
        except (InputError, StorageError, OSError):
            continue
    return found


def placed_at_random(
    dataset: Dataset, row: Dict[str, str], foreground: Foreground
) -> Tuple[Image.Image, Image.Image]:
    """(overlay, mask) of the sample `row` as --placement random makes it:
    the same flip and drawn scale, the position drawn from the run seed and
    the sample's identity, a hard paste (whatever --blend drew) on the
    build's stored background."""
    size = int(dataset.manifest.options["size"])
    rgba, mask = mirror(foreground) if row["flip"] == "1" else (foreground.rgba, foreground.mask)
    height, width = mask.shape
    w, h = scaled_size(width, height, float(row["scale"]))
    seed = int(dataset.manifest.seed)
    x, y = draw_position(seed, row["bg"], row["fg"], int(row["number"]), (size - w, size - h))
    small_rgba, small_mask = resize_cutout(rgba, mask, (w, h))
    background = np.asarray(read_image(dataset.root, row["bg_path"]).convert("RGB"))
    overlay = alpha_composite(background, small_rgba, x, y)
    return Image.fromarray(overlay), Image.fromarray(place_mask(small_mask, x, y, size))


def beside_random_size(rows: int) -> Tuple[int, int]:
    width = 2 * MARGIN + 3 * TILE + 2 * GAP
    return width, 2 * MARGIN + HEADER_HEIGHT + rows * (TILE + CAPTION_HEIGHT + GAP)


def render_beside_random(dataset: Dataset, rows: Sequence[Dict[str, str]]) -> Image.Image:
    """One row per sample, columns BESIDE_RANDOM_COLUMNS: the sample
    remade at random with its mask outlined, the build's overlay with its
    mask outlined, and the build's depth label."""
    foregrounds = build_foregrounds(dataset, [row["fg"] for row in rows])

    def at_random(row: Dict[str, str]) -> Image.Image:
        foreground = foregrounds.get(row["fg"])
        if foreground is None:
            return placeholder_tile("foreground not found")
        return outline_mask(*placed_at_random(dataset, row, foreground))

    return render_rows(
        beside_random_size(len(rows)),
        BESIDE_RANDOM_COLUMNS,
        [([at_random(row)] + sample_tiles(dataset, row), row["id"]) for row in rows],
    )


def placement_section(
    dataset: Dataset,
    other: Optional[Dataset],
    comparison_png: Optional[bytes],
    uri,
    beside_random_png: Optional[bytes] = None,
) -> Optional[Dict[str, object]]:
    """The page's placement section: the manifest's `scene` as rows, the
    comparison image (`uri` makes its data URI), and a build placed by
    depth's samples beside their random placement (`beside_random_png`);
    None for a build placed at random with nothing to compare."""
    scene = dataset.manifest.scene
    if scene is None and comparison_png is None:
        return None
    section: Dict[str, object] = {"rows": [], "image": None, "beside_random": None}
    if scene:
        section["rows"] = [
            ["placement", scene.placement],
            ["camera field of view", f"{scene.camera_fov:g} degrees"],
            ["depth labels", scene.labels],
            ["background depth", scene.background_depth],
            ["foot points drawn again", f"{scene.redraws:,}"],
            ["samples fallen back to random placement", f"{scene.fallbacks:,}"],
        ]
    if comparison_png is not None and other is not None:
        width, height = comparison_size(len(compared_rows(dataset, other)))
        section["image"] = {
            "uri": uri("image/png", comparison_png),
            "width": width,
            "height": height,
            "other": other.root,
        }
    if beside_random_png is not None:
        width, height = beside_random_size(len(beside_random_rows(dataset)))
        section["beside_random"] = {
            "uri": uri("image/png", beside_random_png),
            "width": width,
            "height": height,
        }
    return section
