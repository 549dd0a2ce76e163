"""The dataset report: `report.html` (one self-contained page) and `samples.png`.

People judge a dataset by looking at it, so every build ends with a page that
shows it: a grid of samples (background | overlay | mask outlined on the
overlay | colour-mapped depth with its scale bar), histograms of per-sample
brightness, foreground coverage and depth, the per-channel mean/std table,
counts per split, rejected inputs, the depth model (a red banner when its
maps are not real depth), options, versions and time per stage.

Everything is read back from the written dataset (manifest.json, stats.json,
timings.json, samples.csv and the images) through Beam's FileSystems
(fgbg/storage.py), so the same code reports on a fresh build and
rebuilds the report of any existing dataset, local or gs://. Nothing here
reads a clock or an unseeded random source: a rebuild of the same dataset
writes the same bytes.
"""

from __future__ import annotations

import array
import base64
import csv
import dataclasses
import heapq
import html
import io
import json
import posixpath
import string
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from fgbg import layout
from fgbg.documents import (
    ChannelStats,
    Manifest,
    Stats,
    Timings,
    read_manifest,
    read_stats,
    read_timings,
)
from fgbg.hashing import stable_hash
from fgbg.images import CHANNELS, encode_image
from fgbg.layout import natural_key
from fgbg.records import MOMENT_KINDS
from fgbg.storage import exists, read_file, write_file

DEFAULT_ROWS = 8

# Sample grid geometry, in pixels of samples.png.
TILE = 144
GAP = 6
MARGIN = 10
HEADER_HEIGHT = 24
CAPTION_HEIGHT = 20
BAR_WIDTH = 12
BAR_LABEL_WIDTH = 64
GRID_COLUMNS = ("background", "overlay", "mask outline", "depth")

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

# A metric depth PNG stores millimetres (see transforms/densedepth.encode_metric).
MILLIMETRES_PER_METRE = 1000.0
HISTOGRAM_BINS = 24
MAX_REJECT_ROWS = 200
# Horizontal space around the samples image: section padding and border, image border (STYLE).
SECTION_PADDING = 2 * 22 + 2 * 1 + 2 * 1
STAGE_ORDER = ("backgrounds", "compositing", "depth", "writing", "tables", "tfrecords")
SPLIT_ORDER = ("train", "val", "test")


class ReportError(ValueError):
    """The dataset cannot be reported on; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """What the report takes from samples.csv, gathered in one streaming pass:
    per-sample values as float arrays (8 bytes each, not a dict per row),
    background counts per split and the rows chosen for the grid."""

    count: int
    overlay_mean: np.ndarray
    mask_coverage: np.ndarray
    depth_mean: np.ndarray  # empty when the build has no depth
    backgrounds_per_split: Dict[str, int]
    chosen: List[Dict[str, str]]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the report is made from: a built dataset's documents and table."""

    root: str
    manifest: Manifest
    stats: Stats
    timings: Optional[Timings]  # datasets built before timings.json lack it
    table: SampleTable

    @property
    def has_depth(self) -> bool:
        return len(self.table.depth_mean) > 0

    @property
    def depth_encoding(self) -> str:
        """'minmax' (per-image grey JPEG) or 'metric' (16-bit millimetre PNG)."""
        return self.manifest.depth.encoding or "minmax"


# --------------------------------------------------------------------------- reading


def check_exists(root: str, relative: str) -> None:
    path = layout.resolve(root, relative)
    if not exists(path):
        raise ReportError(f"{path} not found: is {root} a finished fgbg build?")


def summarize_samples(rows: Iterable[Dict[str, str]], seed: int, count: int) -> SampleTable:
    """One pass over samples.csv rows; keeps nothing per row but three floats."""
    values: Dict[str, array.array] = {
        column: array.array("d") for column in ("overlay_mean", "mask_coverage", "depth_mean")
    }
    backgrounds: Dict[str, set] = {}
    total = 0

    def counted(rows: Iterable[Dict[str, str]]) -> Iterator[Dict[str, str]]:
        nonlocal total
        for row in rows:
            total += 1
            for column, column_values in values.items():
                if row[column]:
                    column_values.append(float(row[column]))
            backgrounds.setdefault(row["split"], set()).add(row["bg"])
            yield row

    chosen = choose_samples(counted(rows), seed, count)
    return SampleTable(
        count=total,
        chosen=chosen,
        backgrounds_per_split={split: len(names) for split, names in backgrounds.items()},
        **{
            column: np.frombuffer(column_values, dtype=np.float64)
            for column, column_values in values.items()
        },
    )


def read_samples(root: str, seed: int, count: int) -> SampleTable:
    path = layout.resolve(root, layout.SAMPLES_CSV)
    if not exists(path):
        raise ReportError(f"{path} not found: is {root} a finished fgbg build?")
    with FileSystems.open(path) as handle:
        return summarize_samples(
            csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")), seed, count
        )


def load_dataset(root: str, rows: int = DEFAULT_ROWS) -> Dataset:
    """Read a built dataset's documents and its table, choosing `rows` samples
    for the grid; raises ReportError if it is not a finished build."""
    root = root.rstrip("/")
    for relative in (layout.MANIFEST_JSON, layout.STATS_JSON):
        check_exists(root, relative)
    manifest = read_manifest(root)
    has_timings = exists(layout.resolve(root, layout.TIMINGS_JSON))
    return Dataset(
        root=root,
        manifest=manifest,
        stats=read_stats(root),
        timings=read_timings(root) if has_timings else None,
        table=read_samples(root, int(manifest.seed), rows),
    )


def read_image(root: str, relative: str) -> Image.Image:
    image = Image.open(io.BytesIO(read_file(layout.resolve(root, relative))))
    image.load()
    return image


# --------------------------------------------------------------------------- choosing


def choose_samples(
    samples: Iterable[Dict[str, str]], seed: int, count: int
) -> List[Dict[str, str]]:
    """`count` samples ranked by a stable hash of (seed, id), shown in id order.

    A hash rather than the first rows spreads the pick over backgrounds,
    foregrounds and splits; keying it on the run seed makes every rebuild
    show the same samples, and another seed's build show others. Only the
    `count` best-ranked rows are held while `samples` streams past.
    """
    ranked = heapq.nsmallest(
        max(count, 0), samples, key=lambda row: (stable_hash("report", seed, row["id"]), row["id"])
    )
    return sorted(ranked, key=lambda row: natural_key(row["id"]))


# --------------------------------------------------------------------------- colour


def hex_color(rgb: Tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def colormap(levels: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] (any shape) -> uint8 RGB (shape + (3,)), viridis."""
    position = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0) * (len(VIRIDIS_ANCHORS) - 1)
    below = np.minimum(position.astype(np.int64), len(VIRIDIS_ANCHORS) - 2)
    fraction = (position - below)[..., None]
    rgb = VIRIDIS_ANCHORS[below] * (1 - fraction) + VIRIDIS_ANCHORS[below + 1] * fraction
    return np.rint(rgb).astype(np.uint8)


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


# --------------------------------------------------------------------------- tiles


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
    return f"{row['id']} · {row['split']} · scale {row['scale']}{flip}"


# --------------------------------------------------------------------------- grid


def grid_size(rows: int, depth: bool) -> Tuple[int, int]:
    """(width, height) of samples.png; the colour bars' column only with depth."""
    width = 2 * MARGIN + 4 * TILE + 3 * GAP + (GAP + BAR_WIDTH + BAR_LABEL_WIDTH if depth else 0)
    height = 2 * MARGIN + HEADER_HEIGHT + rows * (TILE + CAPTION_HEIGHT + GAP)
    return width, height


def render_grid(dataset: Dataset, chosen: Sequence[Dict[str, str]]) -> Image.Image:
    """samples.png: one row per chosen sample, columns as GRID_COLUMNS."""
    canvas = Image.new("RGB", grid_size(len(chosen), dataset.has_depth), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(GRID_COLUMNS):
        draw.text(
            (MARGIN + column * (TILE + GAP) + TILE // 2, MARGIN + HEADER_HEIGHT // 2),
            title,
            fill=INK_RGB,
            font=font(14),
            anchor="mm",
        )
    for index, row in enumerate(chosen):
        top = MARGIN + HEADER_HEIGHT + index * (TILE + CAPTION_HEIGHT + GAP)
        for column, tile in enumerate(row_tiles(dataset, row)):
            canvas.paste(tile, (MARGIN + column * (TILE + GAP), top))
        draw.text((MARGIN, top + TILE + 4), caption(row), fill=(91, 100, 117), font=font(12))
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


def png_bytes(image: Image.Image) -> bytes:
    return encode_image(image, "PNG", optimize=True)


# --------------------------------------------------------------------------- histograms


def tick(value: float) -> str:
    return f"{value:.3g}"


def histogram_svg(
    values: Sequence[float],
    low: float,
    high: float,
    x_label: str,
    bins: int = HISTOGRAM_BINS,
    width: int = 340,
    height: int = 200,
) -> str:
    """A standalone SVG histogram of `values` over [low, high]."""
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=(low, high))
    left, right, top, bottom = 40, width - 12, 12, height - 40
    tallest = max(int(counts.max()), 1)
    step = (right - left) / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="11" fill="#5b6475">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for index, count in enumerate(counts):
        bar = (bottom - top) * int(count) / tallest
        parts.append(
            f'<rect x="{left + index * step + 1:.2f}" y="{bottom - bar:.2f}" '
            f'width="{step - 2:.2f}" height="{bar:.2f}" fill="{hex_color(ACCENT_RGB)}"/>'
        )
    parts += [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#1d2330"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#1d2330"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{tallest}</text>',
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{bottom + 14}" text-anchor="start">{tick(low)}</text>',
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 14}" text-anchor="middle">'
        f"{tick((low + high) / 2)}</text>",
        f'<text x="{right}" y="{bottom + 14}" text-anchor="end">{tick(high)}</text>',
        f'<text x="{(left + right) / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'fill="#1d2330">{html.escape(x_label)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def histograms(dataset: Dataset) -> List[Tuple[str, Optional[str]]]:
    """(title, SVG or None when the build has no such values), per histogram."""
    brightness = dataset.table.overlay_mean.tolist()
    coverage = dataset.table.mask_coverage.tolist()
    result: List[Tuple[str, Optional[str]]] = [
        (
            "Mean brightness per overlay",
            histogram_svg(brightness, 0, 255, "mean pixel value (0-255)"),
        ),
        ("Mask coverage per sample", histogram_svg(coverage, 0, 1, "foreground fraction")),
    ]
    depth = dataset.table.depth_mean.tolist()
    if not depth:
        result.append(("Mean depth per sample", None))
    elif dataset.depth_encoding == "metric":
        metres = [value / MILLIMETRES_PER_METRE for value in depth]
        result.append(
            (
                "Mean depth per sample",
                histogram_svg(metres, min(metres), max(metres), "mean depth (m)"),
            )
        )
    else:
        result.append(
            (
                "Mean depth per sample",
                histogram_svg(depth, 0, 255, "mean grey level (per-image min-max: 0 near)"),
            )
        )
    return result


# --------------------------------------------------------------------------- html pieces


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    table_id: str,
    numeric: Sequence[int] = (),
) -> str:
    """An escaped HTML table; columns whose index is in `numeric` align right."""
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(cell)}</td>' if i in numeric else f"<td>{esc(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def display_value(value: object) -> str:
    """Option and manifest values as a reader expects them, not as Python prints them."""
    if value is None:
        return "(not set)"
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def channel_names(count: int) -> List[str]:
    return ["R", "G", "B"] if count == 3 else ["value"] * count


def stats_rows(kinds: Dict[str, ChannelStats]) -> List[List[str]]:
    rows = []
    for kind in CHANNELS:
        if kind not in kinds:
            continue
        summary = kinds[kind]
        for index, name in enumerate(channel_names(len(summary.mean))):
            rows.append(
                [
                    kind,
                    name,
                    f"{summary.mean[index]:.2f}",
                    f"{summary.std[index]:.2f}",
                    f"{summary.mean_unit[index]:.4f}",
                    f"{summary.std_unit[index]:.4f}",
                    f"{summary.pixels:,}",
                ]
            )
    return rows


def ordered(keys: Iterable[str], order: Sequence[str]) -> List[str]:
    """Known keys in pipeline order, then any others alphabetically."""
    keys = list(keys)
    return [k for k in order if k in keys] + sorted(k for k in keys if k not in order)


def split_rows(dataset: Dataset) -> List[List[object]]:
    per_split = dataset.manifest.counts.samples_per_split
    backgrounds = dataset.table.backgrounds_per_split
    rows: List[List[object]] = [
        [split, f"{per_split[split]:,}", backgrounds.get(split, 0)]
        for split in ordered(per_split, SPLIT_ORDER)
    ]
    rows.append(["total", f"{sum(per_split.values()):,}", sum(backgrounds.values())])
    return rows


def stage_table(timings: Timings) -> str:
    """CPU seconds per stage, each with a bar scaled to the longest stage."""
    stages = timings.cpu_s_by_stage
    longest = max(list(stages.values()) + [1e-9])
    rows = "".join(
        f'<tr><td>{esc(stage)}</td><td class="num">{stages[stage]:.2f}</td>'
        f'<td class="bar-cell"><div class="bar" style="width:{100 * stages[stage] / longest:.1f}%">'
        "</div></td></tr>"
        for stage in ordered(stages, STAGE_ORDER)
    )
    return (
        '<table id="timings-table"><thead><tr><th>stage</th><th class="num">CPU s</th>'
        f"<th>share</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def card(label: str, value: object) -> str:
    return (
        f'<div class="card"><div class="value">{esc(value)}</div>'
        f'<div class="label">{esc(label)}</div></div>'
    )


def section(title: str, body: str, section_id: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{body}</section>'


def dataset_name(root: str) -> str:
    return posixpath.basename(root.rstrip("/")) or root


# --------------------------------------------------------------------------- page

STYLE = string.Template("""
:root{--ink:$ink;--muted:#5b6475;--line:#e3e6ec;--accent:$accent;--page:#f4f5f8}
*{box-sizing:border-box}
body{margin:0;background:var(--page);color:var(--ink);
 font:15px/1.5 "DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 32px 56px}
header h1{font-size:26px;margin:0 0 2px;letter-spacing:-.01em}
header .sub{color:var(--muted);font-size:13px;margin:0;word-break:break-all}
.banner{background:$banner;color:#fff;font-weight:700;padding:14px 18px;border-radius:8px;
 margin:18px 0 0}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:18px 0 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px;
 border-top:4px solid var(--accent)}
.card .value{font-size:22px;font-weight:700;font-variant-numeric:tabular-nums}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;
 margin:18px 0}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:14px;margin:0 0 6px;color:var(--muted);font-weight:600}
p.note{color:var(--muted);font-size:13px;margin:8px 0 0}
.grid-image{display:block;max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
.top{display:grid;gap:18px;align-items:start;margin:18px 0}
.top section{margin:0 0 18px}
.top>section{margin:0}
figure{margin:0 0 14px}
figure img{display:block;max-width:100%;height:auto}
.empty{display:flex;align-items:center;justify-content:center;height:120px;background:#eef0f3;
 color:var(--muted);border-radius:6px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:18px;align-items:start}
.pair section{margin:0 0 18px}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums;width:100%}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);
 padding:6px 10px}
td{border-bottom:1px solid var(--line);padding:5px 10px;vertical-align:top;overflow-wrap:anywhere}
td:first-child{white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
.num{text-align:right;white-space:nowrap}
.bar-cell{width:55%}
.bar{height:12px;background:var(--accent);border-radius:3px;min-width:2px}
""").substitute(ink=hex_color(INK_RGB), accent=hex_color(ACCENT_RGB), banner=hex_color(BANNER_RGB))

# Records how many <img> decoded, for the browser test to read from the DOM.
IMAGE_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesOk = String(images.filter(function (image) {
    return image.complete && image.naturalWidth > 0;
  }).length);
});
</script>"""


def header_html(dataset: Dataset) -> str:
    manifest = dataset.manifest
    counts = manifest.counts
    warning = manifest.depth.warning
    banner = (
        f'<div class="banner" id="depth-warning" role="alert">{esc(warning)}</div>'
        if warning
        else ""
    )
    wall = f"{dataset.timings.wall_s:.1f} s" if dataset.timings else "n/a"
    cards = "".join(
        [
            card("samples", f"{counts.samples:,}"),
            card("backgrounds", f"{counts.backgrounds:,}"),
            card("foregrounds", f"{counts.foregrounds:,}"),
            card("rejected inputs", f"{counts.rejected:,}"),
            card("image size", f"{manifest.options['size']} px"),
            card("wall time", wall),
        ]
    )
    return (
        f"<header><h1>fgbg dataset: {esc(dataset_name(dataset.root))}</h1>"
        f'<p class="sub">{esc(dataset.root)} · seed {esc(manifest.seed)} · '
        f"started {esc(manifest.started_at)} · finished {esc(manifest.finished_at)}</p>"
        f'{banner}<div class="cards">{cards}</div></header>'
    )


def samples_html(dataset: Dataset, chosen: Sequence[Dict[str, str]], grid_png: bytes) -> str:
    width, height = grid_size(len(chosen), dataset.has_depth)
    depth_note = (
        "Depth uses the viridis colour map (dark = near, yellow = far); "
        + (
            "the scale bar gives each map's range in metres."
            if dataset.depth_encoding == "metric"
            else "each min-max map spans its own nearest to farthest point."
        )
        if dataset.has_depth
        else "This build has no depth maps."
    )
    return section(
        "Samples",
        (
            f'<img class="grid-image" id="samples-grid" alt="sample grid" width="{width}" '
            f'height="{height}" src="{data_uri("image/png", grid_png)}">'
            f'<p class="note">{len(chosen)} of {dataset.table.count:,} samples, picked by a stable '
            f"hash of the run seed ({esc(dataset.manifest.seed)}); the mask outline is drawn in "
            f"magenta on the overlay. {esc(depth_note)} Also in {esc(layout.SAMPLES_PNG)}.</p>"
        ),
        "samples",
    )


def histograms_html(dataset: Dataset) -> str:
    figures = []
    for title, svg in histograms(dataset):
        body = (
            f'<img alt="{esc(title)}" src="{data_uri("image/svg+xml", svg.encode())}">'
            if svg
            else '<div class="empty">no depth in this build</div>'
        )
        figures.append(f"<figure><h3>{esc(title)}</h3>{body}</figure>")
    return section(
        "Distributions",
        "".join(figures)
        + f'<p class="note">One value per sample, from {esc(layout.SAMPLES_CSV)}.</p>',
        "distributions",
    )


STATS_COLUMNS = ["kind", "channel", "mean", "std", "mean / scale", "std / scale", "pixels"]


def normalization_html(stats: Stats) -> str:
    """The numbers the transform graph standardizes with: the train split's
    (stats.json `splits`), or every split's when a build has no train split.
    Datasets built before stats had splits show nothing here."""
    splits = stats.notes.normalization_splits
    if not splits or not stats.splits:
        return ""
    source = stats.splits[splits[0]] if len(splits) == 1 else stats.kinds
    rows = [row for row in stats_rows(source) if row[0] in MOMENT_KINDS]
    return (
        f"<h3>What transform/ standardises with: {esc(', '.join(splits))}</h3>"
        + table(STATS_COLUMNS, rows, "normalisation-table", numeric=(2, 3, 4, 5, 6))
        + f'<p class="note">{esc(stats.notes.normalization)}.</p>'
    )


def stats_html(dataset: Dataset) -> str:
    notes = dataset.stats.notes
    depth_scale = (
        f" ({notes.depth_scale:g} for depth: {notes.depth_unit})"
        if "depth" in dataset.stats.kinds
        else ""
    )
    return section(
        "Per-channel mean and std",
        table(
            STATS_COLUMNS, stats_rows(dataset.stats.kinds), "stats-table", numeric=(2, 3, 4, 5, 6)
        )
        + f'<p class="note">{esc(notes.method)}; scale is 255{esc(depth_scale)}.</p>'
        + normalization_html(dataset.stats),
        "stats",
    )


def splits_html(dataset: Dataset) -> str:
    return section(
        "Samples per split",
        table(
            ["split", "samples", "backgrounds"], split_rows(dataset), "splits-table", numeric=(1, 2)
        ),
        "splits",
    )


def depth_html(dataset: Dataset) -> str:
    depth = dataset.manifest.depth.to_json()
    return section(
        "Depth model",
        table(
            ["field", "value"],
            [[key, display_value(depth[key])] for key in sorted(depth)],
            "depth-table",
        ),
        "depth",
    )


def timings_html(dataset: Dataset) -> str:
    if not dataset.timings:
        return section(
            "Time per stage",
            f'<p class="note">No {esc(layout.TIMINGS_JSON)} in this dataset.</p>',
            "timings",
        )
    return section(
        "Time per stage",
        (
            f"<p>Wall time <strong>{dataset.timings.wall_s:.2f} s</strong>.</p>"
            + stage_table(dataset.timings)
            + '<p class="note">CPU seconds add up over all workers, so on N cores a stage can '
            "exceed the wall time up to N times.</p>"
        ),
        "timings",
    )


def counters_html(dataset: Dataset) -> str:
    counters = dataset.timings.counters if dataset.timings else {}
    return section(
        "Counters",
        table(
            ["counter", "value"],
            [[name, f"{counters[name]:,}"] for name in sorted(counters)],
            "counters-table",
            numeric=(1,),
        ),
        "counters",
    )


def rejects_html(dataset: Dataset) -> str:
    rejects = dataset.manifest.rejects
    if not rejects:
        return section(
            "Rejected inputs",
            '<p class="note" id="no-rejects">No input file was rejected.</p>',
            "rejects",
        )
    shown = rejects[:MAX_REJECT_ROWS]
    more = (
        f'<p class="note">and {len(rejects) - len(shown):,} more: see '
        f"{esc(layout.REJECTS_CSV)}.</p>"
        if len(rejects) > len(shown)
        else ""
    )
    return section(
        f"Rejected inputs ({len(rejects):,})",
        table(["path", "reason"], [[r.path, r.reason] for r in shown], "rejects-table") + more,
        "rejects",
    )


def options_html(dataset: Dataset) -> str:
    options = dataset.manifest.options
    return section(
        "Options",
        table(
            ["option", "value"],
            [[f"--{name}", display_value(options[name])] for name in sorted(options)],
            "options-table",
        ),
        "options",
    )


def versions_html(dataset: Dataset) -> str:
    versions = dataset.manifest.versions
    return section(
        "Versions",
        table(
            ["package", "version"],
            [[name, versions[name]] for name in sorted(versions)],
            "versions-table",
        ),
        "versions",
    )


def report_html(dataset: Dataset, chosen: Sequence[Dict[str, str]], grid_png: bytes) -> str:
    """The whole page: inline CSS, images as data: URIs, every text escaped."""
    side = "".join(
        [histograms_html(dataset), splits_html(dataset), depth_html(dataset), timings_html(dataset)]
    )
    samples_width = grid_size(len(chosen), dataset.has_depth)[0] + SECTION_PADDING
    body = "".join(
        [
            header_html(dataset),
            # The samples column is exactly as wide as its image, the side column takes the rest.
            f'<div class="top" style="grid-template-columns:{samples_width}px minmax(0,1fr)">'
            f'{samples_html(dataset, chosen, grid_png)}<div class="side">{side}</div></div>',
            stats_html(dataset),
            rejects_html(dataset),
            f'<div class="pair">{options_html(dataset)}'
            f"<div>{versions_html(dataset)}{counters_html(dataset)}</div></div>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fgbg report: {esc(dataset_name(dataset.root))}</title>"
        f"<style>{STYLE}</style></head><body><main>{body}</main>{IMAGE_CHECK_SCRIPT}"
        "</body></html>\n"
    )


def write_report(output: str, rows: int = DEFAULT_ROWS) -> None:
    """Write samples.png and report.html at the root of the dataset `output`.

    Raises ReportError when `output` is not a finished build.
    """
    dataset = load_dataset(output, rows)
    chosen = dataset.table.chosen
    grid_png = png_bytes(render_grid(dataset, chosen))
    write_file(layout.resolve(dataset.root, layout.SAMPLES_PNG), grid_png)
    write_file(
        layout.resolve(dataset.root, layout.REPORT_HTML),
        report_html(dataset, chosen, grid_png).encode("utf-8"),
    )
