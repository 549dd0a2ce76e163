"""samples.png: one row per chosen sample (background | overlay | mask
outlined on the overlay | colour-mapped depth with its scale bar).

Drawn with Pillow's bundled font and no clock or random source, so the same
dataset gives the same bytes on every machine.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from fgbg.images import encode_image
from fgbg.report.dataset import MILLIMETRES_PER_METRE, Dataset, read_image
from fgbg.report.palette import INK_RGB, OUTLINE_RGB, PLACEHOLDER_RGB, colormap

# Sample grid geometry, in pixels of samples.png.
TILE = 144
GAP = 6
MARGIN = 10
HEADER_HEIGHT = 24
CAPTION_HEIGHT = 20
BAR_WIDTH = 12
BAR_LABEL_WIDTH = 64
GRID_COLUMNS = ("background", "overlay", "mask outline", "depth")


def depth_levels(depth: np.ndarray, encoding: str) -> Tuple[np.ndarray, str, str]:
    """(levels in [0, 1] for the colour map, label of level 0, label of level 1).

    A min-max map is already 0 nearest .. 255 farthest within its image, so it
    maps directly; a metric map is stretched to its own range, which the
    labels give in metres so rows stay comparable by number.
    """
    values = np.asarray(depth, dtype=np.float64)
    if encoding == "metric":
        metres = values / MILLIMETRES_PER_METRE
        low, high = float(metres.min()), float(metres.max())
        span = high - low
        levels = (metres - low) / span if span > 0 else np.zeros_like(metres)
        return levels, f"{low:.2f} m", f"{high:.2f} m"
    return values / 255.0, "near", "far"


def font(size: int = 12) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: the same glyphs on every machine."""
    return ImageFont.load_default(size=size)


def fit_tile(image: Image.Image, tile: int = TILE) -> Image.Image:
    return image.convert("RGB").resize((tile, tile), Image.LANCZOS)


def outline_mask(overlay: Image.Image, mask: Image.Image, tile: int = TILE) -> Image.Image:
    """The overlay with the mask's boundary drawn on it and its inside tinted.

    The boundary is taken at tile resolution (dilated minus eroded mask), so
    the line is two pixels wide whatever the dataset's image size.
    """
    base = fit_tile(overlay, tile)
    inside = (
        mask.convert("L")
        .resize((tile, tile), Image.BILINEAR)
        .point(lambda value: 255 if value >= 128 else 0)
    )
    edge = ImageChops.subtract(
        inside.filter(ImageFilter.MaxFilter(3)), inside.filter(ImageFilter.MinFilter(3))
    )
    tinted = Image.blend(base, Image.new("RGB", base.size, OUTLINE_RGB), 0.15)
    base.paste(tinted, mask=inside)
    base.paste(OUTLINE_RGB, mask=edge)
    return base


def depth_tile(depth: Image.Image, encoding: str, tile: int = TILE) -> Tuple[Image.Image, str, str]:
    """(colour-mapped depth tile, label of its colour bar's bottom, of its top)."""
    levels, low_label, high_label = depth_levels(np.asarray(depth), encoding)
    colored = Image.fromarray(colormap(levels), "RGB").resize((tile, tile), Image.LANCZOS)
    return colored, low_label, high_label


def color_bar(height: int, low_label: str, high_label: str) -> Image.Image:
    """A vertical viridis scale bar, level 1 at the top, labelled at both ends."""
    bar = Image.new("RGB", (BAR_WIDTH + BAR_LABEL_WIDTH, height), "white")
    levels = np.linspace(1.0, 0.0, height)[:, None].repeat(BAR_WIDTH, axis=1)
    bar.paste(Image.fromarray(colormap(levels), "RGB"), (0, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((BAR_WIDTH + 4, 0), high_label, fill=INK_RGB, font=font(11))
    draw.text((BAR_WIDTH + 4, height), low_label, fill=INK_RGB, font=font(11), anchor="ls")
    return bar


def placeholder_tile(text: str, tile: int = TILE) -> Image.Image:
    image = Image.new("RGB", (tile, tile), PLACEHOLDER_RGB)
    ImageDraw.Draw(image).text(
        (tile // 2, tile // 2), text, fill=(110, 116, 128), font=font(13), anchor="mm"
    )
    return image


def caption(row: Dict[str, str]) -> str:
    flip = " · mirrored" if row["flip"] == "1" else ""
    blend = f" · {row['blend']}" if row.get("blend") else ""
    return f"{row['id']} · {row['split']} · scale {row['scale']}{flip}{blend}"


def grid_size(rows: int, depth: bool) -> Tuple[int, int]:
    """(width, height) of samples.png; the colour bars' column only with depth."""
    width = 2 * MARGIN + 4 * TILE + 3 * GAP + (GAP + BAR_WIDTH + BAR_LABEL_WIDTH if depth else 0)
    height = 2 * MARGIN + HEADER_HEIGHT + rows * (TILE + CAPTION_HEIGHT + GAP)
    return width, height


def render_grid(dataset: Dataset, chosen: Sequence[Dict[str, str]]) -> Image.Image:
    """samples.png: one row per chosen sample, columns as GRID_COLUMNS."""
    return render_rows(
        grid_size(len(chosen), dataset.has_depth),
        GRID_COLUMNS,
        [(row_tiles(dataset, row), caption(row)) for row in chosen],
    )


def render_rows(
    size: Tuple[int, int], titles: Sequence[str], rows: Sequence[Tuple[List[Image.Image], str]]
) -> Image.Image:
    """A white canvas of `size`: a title over each column, then one row of
    tiles per sample with its caption under it."""
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        draw.text(
            (MARGIN + column * (TILE + GAP) + TILE // 2, MARGIN + HEADER_HEIGHT // 2),
            title,
            fill=INK_RGB,
            font=font(14),
            anchor="mm",
        )
    for index, (tiles, text) in enumerate(rows):
        top = MARGIN + HEADER_HEIGHT + index * (TILE + CAPTION_HEIGHT + GAP)
        for column, tile in enumerate(tiles):
            canvas.paste(tile, (MARGIN + column * (TILE + GAP), top))
        draw.text((MARGIN, top + TILE + 4), text, fill=(91, 100, 117), font=font(12))
    return canvas


def row_tiles(dataset: Dataset, row: Dict[str, str]) -> List[Image.Image]:
    """The four tiles of one sample; the depth tile carries its colour bar."""
    overlay = read_image(dataset.root, row["overlay_path"])
    tiles = [
        fit_tile(read_image(dataset.root, row["bg_path"])),
        fit_tile(overlay),
        outline_mask(overlay, read_image(dataset.root, row["mask_path"])),
    ]
    if not row["depth_path"]:
        tiles.append(placeholder_tile("no depth"))
        return tiles
    colored, low_label, high_label = depth_tile(
        read_image(dataset.root, row["depth_path"]), dataset.depth_encoding
    )
    with_bar = Image.new("RGB", (TILE + GAP + BAR_WIDTH + BAR_LABEL_WIDTH, TILE), "white")
    with_bar.paste(colored, (0, 0))
    with_bar.paste(color_bar(TILE, low_label, high_label), (TILE + GAP, 0))
    tiles.append(with_bar)
    return tiles


# The blending comparison: each close-up is a ZOOM_SIDE-pixel square of the
# overlay around a point of the object's edge, enlarged to a tile.
ZOOM_SIDE = TILE // 3
BLEND_ROWS = ("overlay", "edge close-up")


def edge_point(mask: np.ndarray, row: Dict[str, str]) -> Tuple[int, int]:
    """(x, y) of a point on the object's outline: the first mask pixel from
    the left on the middle row of its placed box (the box's centre when that
    row holds none)."""
    x, y, w, h = (int(row[key]) for key in ("x", "y", "w", "h"))
    middle = min(y + h // 2, mask.shape[0] - 1)
    inside = np.flatnonzero(mask[middle, x : x + w] >= 128)
    return (x + int(inside[0]) if inside.size else x + w // 2), middle


def edge_close_up(overlay: Image.Image, mask: Image.Image, row: Dict[str, str]) -> Image.Image:
    """The overlay around a point of the object's edge, enlarged without
    smoothing (each pixel a block), so a seam or a feather is visible."""
    x, y = edge_point(np.asarray(mask.convert("L")), row)
    width, height = overlay.size
    left = min(max(x - ZOOM_SIDE // 2, 0), max(width - ZOOM_SIDE, 0))
    top = min(max(y - ZOOM_SIDE // 2, 0), max(height - ZOOM_SIDE, 0))
    window = overlay.convert("RGB").crop((left, top, left + ZOOM_SIDE, top + ZOOM_SIDE))
    return window.resize((TILE, TILE), Image.NEAREST)


def blend_grid_size(modes: int) -> Tuple[int, int]:
    """(width, height) of the blending comparison: a column per mode."""
    width = 2 * MARGIN + modes * TILE + (modes - 1) * GAP
    height = 2 * MARGIN + HEADER_HEIGHT + len(BLEND_ROWS) * (TILE + GAP) + CAPTION_HEIGHT
    return width, height


def render_blends(dataset: Dataset, examples: Dict[str, Dict[str, str]]) -> Image.Image:
    """One example per blending mode side by side: its overlay above, a
    close-up of the object's edge below, its sample id under them."""
    canvas = Image.new("RGB", blend_grid_size(len(examples)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, (mode, row) in enumerate(examples.items()):
        left = MARGIN + column * (TILE + GAP)
        draw.text(
            (left + TILE // 2, MARGIN + HEADER_HEIGHT // 2),
            mode,
            fill=INK_RGB,
            font=font(14),
            anchor="mm",
        )
        overlay = read_image(dataset.root, row["overlay_path"])
        mask = read_image(dataset.root, row["mask_path"])
        top = MARGIN + HEADER_HEIGHT
        canvas.paste(fit_tile(overlay), (left, top))
        canvas.paste(edge_close_up(overlay, mask, row), (left, top + TILE + GAP))
        draw.text(
            (left, top + len(BLEND_ROWS) * (TILE + GAP)),
            row["id"],
            fill=(91, 100, 117),
            font=font(11),
        )
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    return encode_image(image, "PNG", optimize=True)
