"""The CSV tables: label_data.csv (the original's format) and samples.csv,
streamed a pair at a time in table order from the pairs' records, so memory
holds the list of pair handles and one pair's rows.
"""

from __future__ import annotations

import csv
import io
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import apache_beam as beam

from fgbg import layout
from fgbg.layout import natural_key
from fgbg.pair_records import pair_rows
from fgbg.storage import streamed_file
from fgbg.timing import stage_timer, timed
from fgbg.types import SampleRow, WrittenPair


def pair_order(pair: WrittenPair) -> Tuple:
    """The tables' order: backgrounds, then foregrounds, in natural order
    (the stems themselves break ties such as 'bg01' and 'bg1')."""
    return (natural_key(pair.bg_stem), natural_key(pair.fg_stem), pair.bg_stem, pair.fg_stem)


def label_rows(rows: Sequence[SampleRow], prefix: str) -> List[List[str]]:
    """The original's label_data.csv rows: bg;overlay;mask;depth, paths
    relative to the dataset's parent folder."""

    def full(path: str) -> str:
        return f"{prefix}/{path}" if path else ""

    return [
        [full(row.bg_path), full(row.overlay_path), full(row.mask_path), full(row.depth_path)]
        for row in rows
    ]


SAMPLE_COLUMNS = (
    "id",
    "bg",
    "fg",
    "number",
    "flip",
    "scale",
    "x",
    "y",
    "w",
    "h",
    "split",
    "bg_path",
    "overlay_path",
    "mask_path",
    "depth_path",
    "overlay_mean",
    "mask_coverage",
    "depth_mean",
)
# Last, and only in builds with a --blend other than none, so that builds
# with --blend none write exactly the table they wrote before it.
BLEND_COLUMN = "blend"


# After it, and only in builds with --placement depth: where each sample
# stands (transforms/scene_placement.py, fgbg.types.ScenePoint).
SCENE_COLUMNS = (
    "foot_x",
    "foot_y",
    "foot_depth_m",
    "applied_scale",
    "visible_fraction",
    "tries",
    "fallback",
)


def sample_columns(with_blend: bool, with_scene: bool = False) -> Tuple[str, ...]:
    return (
        SAMPLE_COLUMNS
        + ((BLEND_COLUMN,) if with_blend else ())
        + (SCENE_COLUMNS if with_scene else ())
    )


def scene_cells(row: SampleRow) -> List[object]:
    """A sample's SCENE_COLUMNS."""
    point = row.scene
    return [
        point.foot_x,
        point.foot_y,
        f"{point.foot_depth:.4f}",
        f"{point.applied_scale:.6f}",
        f"{point.visible_fraction:.6f}",
        point.tries,
        int(point.fallback),
    ]


def image_mean(row: SampleRow, kind: str) -> str:
    """Mean stored value over an image's pixels and channels, '' if absent."""
    if kind not in row.moments:
        return ""
    count, sums, _ = row.moments[kind]
    return f"{sum(sums) / (count * len(sums)):.4f}"


def mask_coverage(row: SampleRow) -> str:
    """Fraction of the image that is foreground."""
    count, sums, _ = row.moments["mask"]
    return f"{sums[0] / 255 / count:.6f}"


def sample_table_rows(
    rows: Sequence[SampleRow], with_blend: bool = False, with_scene: bool = False
) -> List[List[object]]:
    """samples.csv rows; the per-image means let reports plot histograms
    without reopening every image; `with_blend` adds each sample's mode,
    `with_scene` where it stands."""
    table: List[List[object]] = []
    for row in rows:
        p = row.placement
        table.append(
            [
                p.sample_id,
                p.bg_stem,
                p.fg_stem,
                p.number,
                int(p.flip),
                p.scale,
                p.x,
                p.y,
                p.w,
                p.h,
                row.split,
                row.bg_path,
                row.overlay_path,
                row.mask_path,
                row.depth_path,
                image_mean(row, "overlay"),
                mask_coverage(row),
                image_mean(row, "depth"),
                *((row.blend,) if with_blend else ()),
                *(scene_cells(row) if with_scene else ()),
            ]
        )
    return table


def render_csv(
    rows: Iterable[Sequence[object]],
    header: Sequence[str] = (),
    delimiter: str = ",",
    quote_all: bool = False,
) -> bytes:
    """CSV bytes as every table of the dataset has them: UTF-8, '\\n' line ends."""
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        lineterminator="\n",
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
    )
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def split_counts(pairs: Iterable[WrittenPair]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for pair in pairs:
        counts[pair.split] = counts.get(pair.split, 0) + pair.samples
    return dict(sorted(counts.items()))


class _WriteTables(beam.DoFn):
    """Streams both CSVs, a pair at a time in table order, from the pairs'
    records: memory holds the list of pair handles and one pair's rows."""

    def __init__(self, root: str, prefix: str, with_blend: bool, with_scene: bool):
        self._root = root
        self._prefix = prefix
        self._with_blend = with_blend
        self._with_scene = with_scene
        self._timer = stage_timer("tables")

    def process(self, pairs: List[WrittenPair]) -> Iterator[Dict[str, int]]:
        ordered = sorted(pairs, key=pair_order)
        with (
            timed(self._timer),
            streamed_file(layout.resolve(self._root, layout.LABEL_CSV)) as label,
            streamed_file(layout.resolve(self._root, layout.SAMPLES_CSV)) as samples,
        ):
            samples.write(render_csv((), header=sample_columns(self._with_blend, self._with_scene)))
            for rows in pair_rows(self._root, ordered):
                label.write(
                    render_csv(label_rows(rows, self._prefix), delimiter=";", quote_all=True)
                )
                samples.write(
                    render_csv(sample_table_rows(rows, self._with_blend, self._with_scene))
                )
        yield split_counts(ordered)


class WriteTables(beam.PTransform):
    """WrittenPair -> label_data.csv (the original's format) and samples.csv,
    sorted by background, foreground and number; outputs the sample count per
    split. With `with_blend` samples.csv says each sample's blending mode,
    with `with_scene` (--placement depth) where each sample stands."""

    def __init__(self, root: str, prefix: str, with_blend: bool = False, with_scene: bool = False):
        super().__init__()
        self._root = root
        self._prefix = prefix
        self._with_blend = with_blend
        self._with_scene = with_scene

    def expand(self, pairs):
        return (
            pairs
            | "GatherPairs" >> beam.combiners.ToList()
            | "WriteCsvs"
            >> beam.ParDo(
                _WriteTables(self._root, self._prefix, self._with_blend, self._with_scene)
            )
        )
