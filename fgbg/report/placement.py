"""The report's placement section: how a build placed its samples
(manifest.json's `scene`), and, given a second build of the same inputs
(`python -m pipeline.report OUTPUT --compare OTHER`), the same samples of
both side by side with their depth labels, e.g. placed at random and by
depth (docs/scene-placement.md).

Both builds choose their grid's samples by a stable hash of the run seed
and the sample id (dataset.choose_samples), so builds of one seed and the
same inputs show the same ids.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

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
)

ComparedRow = Tuple[Dict[str, str], Dict[str, str]]  # (this build's row, the other's)


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


def placement_section(
    dataset: Dataset, other: Optional[Dataset], comparison_png: Optional[bytes], uri
) -> Optional[Dict[str, object]]:
    """The page's placement section: the manifest's `scene` as rows, and the
    comparison image (`uri` makes its data URI); None for a build placed at
    random with nothing to compare."""
    scene = dataset.manifest.scene
    if scene is None and comparison_png is None:
        return None
    section: Dict[str, object] = {"rows": [], "image": None}
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
    return section
