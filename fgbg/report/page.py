"""report.html: one self-contained page (inline CSS, images as data: URIs).

The page's markup is the Jinja template templates/report.html, so it reads
as HTML, and autoescaping escapes every value it shows unless a template
marks it as markup: file names, paths and option values come from users'
buckets and must never become tags. This module gathers and formats the
values the template shows.
"""

from __future__ import annotations

import base64
import html
import json
import posixpath
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import jinja2
from markupsafe import Markup

from fgbg import layout
from fgbg.documents import ChannelStats, Stats, Timings
from fgbg.images import CHANNELS
from fgbg.records import MOMENT_KINDS
from fgbg.report.charts import histograms
from fgbg.report.dataset import Dataset, ordered_modes
from fgbg.report.grid import blend_grid_size, grid_size
from fgbg.report.palette import ACCENT_RGB, BANNER_RGB, INK_RGB, hex_color
from fgbg.report.placement import placement_section

MAX_REJECT_ROWS = 200
# Horizontal space around the samples image: section padding and border,
# image border (templates/report.css).
SECTION_PADDING = 2 * 22 + 2 * 1 + 2 * 1
STAGE_ORDER = ("backgrounds", "compositing", "depth", "writing", "tables", "tfrecords")
SPLIT_ORDER = ("train", "val", "test")
# A line break and the indentation after it, in an .html template: layout
# for its reader, not part of the page.
INDENTED_LINE_BREAK = re.compile(r"\n[ \t]+")


class PageLoader(jinja2.PackageLoader):
    """Loads this package's templates, dropping the .html ones' indented line breaks."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> Tuple[str, str, Optional[Callable[[], bool]]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html"):
            source = INDENTED_LINE_BREAK.sub("", source)
        return source, filename, uptodate


def escaped(value: object) -> Markup:
    """A value as the page shows it: escaped by html.escape (quotes as &quot;
    and &#x27;, as the page has always written them; MarkupSafe would write
    &#34; and &#39;), markup from the template itself passed through."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


ENVIRONMENT = jinja2.Environment(
    loader=PageLoader("fgbg.report", "templates"),
    autoescape=True,
    finalize=escaped,
    # The page ends with a line break; report.css and image_check.js keep
    # their last one, which report.html places before </style> and </script>.
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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


def normalization(stats: Stats) -> Optional[Dict[str, object]]:
    """The numbers the transform graph standardizes with: the train split's
    (stats.json `splits`), or every split's when a build has no train split.
    None for datasets built before stats had splits."""
    splits = stats.notes.normalization_splits
    if not splits or not stats.splits:
        return None
    source = stats.splits[splits[0]] if len(splits) == 1 else stats.kinds
    return {
        "splits": ", ".join(splits),
        "rows": [row for row in stats_rows(source) if row[0] in MOMENT_KINDS],
        "note": stats.notes.normalization,
    }


def ordered(keys: Iterable[str], order: Sequence[str]) -> List[str]:
    """Known keys in pipeline order, then any others alphabetically."""
    keys = list(keys)
    return [k for k in order if k in keys] + sorted(k for k in keys if k not in order)


def split_rows(dataset: Dataset) -> List[List[object]]:
    """Samples, backgrounds and foregrounds per split, from samples.csv; the
    total's foregrounds are the build's (a foreground held out for test is
    in one split only)."""
    per_split = dataset.manifest.counts.samples_per_split
    backgrounds = dataset.table.backgrounds_per_split
    foregrounds = dataset.table.foregrounds_per_split
    rows: List[List[object]] = [
        [split, f"{per_split[split]:,}", backgrounds.get(split, 0), foregrounds.get(split, 0)]
        for split in ordered(per_split, SPLIT_ORDER)
    ]
    rows.append(
        [
            "total",
            f"{sum(per_split.values()):,}",
            sum(backgrounds.values()),
            dataset.manifest.counts.foregrounds,
        ]
    )
    return rows


def split_note(dataset: Dataset) -> str:
    """How the splits were drawn and, with held-out foregrounds, why the
    samples are fewer than backgrounds x foregrounds x samples per pair
    (the manifest's note; '' for datasets built before it was recorded)."""
    splits = dataset.manifest.splits
    return splits.note if splits else ""


def stage_rows(timings: Timings) -> List[Tuple[str, str, str]]:
    """(stage, CPU seconds, its bar's width in % of the longest stage's)."""
    stages = timings.cpu_s_by_stage
    longest = max(list(stages.values()) + [1e-9])
    return [
        (stage, f"{stages[stage]:.2f}", f"{100 * stages[stage] / longest:.1f}")
        for stage in ordered(stages, STAGE_ORDER)
    ]


def dataset_name(root: str) -> str:
    return posixpath.basename(root.rstrip("/")) or root


def cards(dataset: Dataset) -> List[Tuple[str, str]]:
    """(label, value) of the figures at the top of the page."""
    counts = dataset.manifest.counts
    wall = f"{dataset.timings.wall_s:.1f} s" if dataset.timings else "n/a"
    return [
        ("samples", f"{counts.samples:,}"),
        ("backgrounds", f"{counts.backgrounds:,}"),
        ("foregrounds", f"{counts.foregrounds:,}"),
        ("rejected inputs", f"{counts.rejected:,}"),
        ("image size", f"{dataset.manifest.options['size']} px"),
        ("wall time", wall),
    ]


def grid(dataset: Dataset, chosen: Sequence[Dict[str, str]], grid_png: bytes) -> Dict[str, object]:
    """The samples image and what the note under it says."""
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
    return {
        "width": width,
        "height": height,
        "uri": data_uri("image/png", grid_png),
        "shown": len(chosen),
        "total": f"{dataset.table.count:,}",
        "depth_note": depth_note,
        "file": layout.SAMPLES_PNG,
    }


def blending(dataset: Dataset, blends_png: Optional[bytes]) -> Optional[Dict[str, object]]:
    """The blending section: samples per mode (manifest.json) and the image
    of one example per mode; None for builds that did not blend (--blend
    none, or built before --blend)."""
    counts = dataset.manifest.counts.samples_per_blend
    examples = dataset.table.blend_examples
    if not examples or not counts or blends_png is None:
        return None
    total = sum(counts.values())
    width, height = blend_grid_size(len(examples))
    return {
        "rows": [
            [mode, f"{counts[mode]:,}", f"{100 * counts[mode] / total:.1f}%"]
            for mode in ordered_modes(counts)
        ],
        "width": width,
        "height": height,
        "uri": data_uri("image/png", blends_png),
        "option": display_value(dataset.manifest.options.get("blend")),
    }


def rejects(dataset: Dataset) -> Dict[str, object]:
    """The first MAX_REJECT_ROWS rejected inputs; rejects.csv lists them all."""
    listed = dataset.manifest.rejects
    shown = listed[:MAX_REJECT_ROWS]
    return {
        "count": f"{len(listed):,}",
        "rows": [[reject.path, reject.reason] for reject in shown],
        "more": f"{len(listed) - len(shown):,}" if len(listed) > len(shown) else "",
    }


def report_html(
    dataset: Dataset,
    chosen: Sequence[Dict[str, str]],
    grid_png: bytes,
    blends_png: Optional[bytes] = None,
    other: Optional[Dataset] = None,
    comparison_png: Optional[bytes] = None,
    beside_random_png: Optional[bytes] = None,
) -> str:
    """The whole page, every value escaped; `blends_png` is the blending
    comparison (grid.render_blends) of a build that blended,
    `comparison_png` the same samples of `other` and of this build
    (placement.render_comparison), `beside_random_png` a build placed by
    depth's samples beside their random placement
    (placement.render_beside_random)."""
    manifest = dataset.manifest
    notes = dataset.stats.notes
    depth = manifest.depth.to_json()
    counters = dataset.timings.counters if dataset.timings else {}
    return ENVIRONMENT.get_template("report.html").render(
        ink=hex_color(INK_RGB),
        accent=hex_color(ACCENT_RGB),
        banner=hex_color(BANNER_RGB),
        name=dataset_name(dataset.root),
        root=dataset.root,
        seed=manifest.seed,
        started_at=manifest.started_at,
        finished_at=manifest.finished_at,
        warning=manifest.depth.warning,
        cards=cards(dataset),
        samples_width=grid_size(len(chosen), dataset.has_depth)[0] + SECTION_PADDING,
        grid=grid(dataset, chosen, grid_png),
        histograms=[
            (title, data_uri("image/svg+xml", svg.encode()) if svg else None)
            for title, svg in histograms(dataset)
        ],
        split_rows=split_rows(dataset),
        split_note=split_note(dataset),
        depth_rows=[[key, display_value(depth[key])] for key in sorted(depth)],
        timings={"wall": f"{dataset.timings.wall_s:.2f}", "stages": stage_rows(dataset.timings)}
        if dataset.timings
        else None,
        stats={
            "rows": stats_rows(dataset.stats.kinds),
            "method": notes.method,
            "depth_scale": f" ({notes.depth_scale:g} for depth: {notes.depth_unit})"
            if "depth" in dataset.stats.kinds
            else "",
            "normalization": normalization(dataset.stats),
        },
        rejects=rejects(dataset),
        blending=blending(dataset, blends_png),
        placement=placement_section(dataset, other, comparison_png, data_uri, beside_random_png),
        option_rows=[
            [f"--{name}", display_value(manifest.options[name])]
            for name in sorted(manifest.options)
        ],
        version_rows=[[name, manifest.versions[name]] for name in sorted(manifest.versions)],
        counter_rows=[[name, f"{counters[name]:,}"] for name in sorted(counters)],
        samples_csv=layout.SAMPLES_CSV,
        timings_json=layout.TIMINGS_JSON,
        rejects_csv=layout.REJECTS_CSV,
    )
