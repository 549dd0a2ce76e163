"""Writers: images, tables, TFRecord shards, rejects and JSON documents.

Every file goes through `transforms.storage.write_file`, so a crash never
leaves a half-written file under its final name.
"""
from __future__ import annotations

import csv
import io
import math
import re
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from transforms import layout
from transforms.compositing import encode_jpeg
from transforms.progress import ProgressFile
from transforms.resume import write_pair_record
from transforms.storage import read_file, write_file
from transforms.records import frame_record, match_files, sample_example
from transforms.seeding import stable_hash
from transforms.stats import encoded_moments
from transforms.timing import stage_timer, timed
from transforms.types import Background, Composite, Moments, Reject, SampleRow

MOMENTS = "moments"
EXAMPLES = "examples"


def natural_key(text: str) -> Tuple:
    """'bg10' after 'bg9': digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r"(\d+)", text))


def row_order(row: SampleRow) -> Tuple:
    placement = row.placement
    return natural_key(placement.bg_stem), natural_key(placement.fg_stem), placement.number


class WriteBackgrounds(beam.PTransform):
    """(Background, image) -> Background, after writing bg/<stem>.jpg; the
    written image's moments go to the MOMENTS output."""

    def __init__(self, root: str, quality: int):
        super().__init__()
        self._root = root
        self._quality = quality

    def expand(self, prepared):
        return prepared | "WriteBackground" >> beam.ParDo(
            _WriteBackground(self._root, self._quality)).with_outputs(MOMENTS, main="backgrounds")


class _WriteBackground(beam.DoFn):
    def __init__(self, root: str, quality: int):
        self._root = root
        self._quality = quality
        self._timer = stage_timer("backgrounds")

    def process(self, prepared: Tuple[Background, np.ndarray]) -> Iterator:
        background, image = prepared
        with timed(self._timer):
            encoded = encode_jpeg(image, self._quality)
            write_file(layout.resolve(self._root, layout.background_path(background.stem)),
                       encoded)
        yield beam.pvalue.TaggedOutput(MOMENTS, ("background", encoded_moments(encoded)))
        yield background


class _WriteSample(beam.DoFn):
    """Writes a composite's files and describes them in a SampleRow; once all
    of a pair's samples are written, records the pair (transforms/resume.py).

    A pair's samples come from one input element, so they arrive in one
    bundle; a pair left incomplete by a failed bundle gets no record and is
    made again on the next run.
    """

    def __init__(self, root: str, mask_extension: str, depth_extension: str,
                 samples_per_pair: int, progress_dir: Optional[str]):
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._samples_per_pair = samples_per_pair
        self._progress_dir = progress_dir
        self._written = beam.metrics.Metrics.counter("writers", "samples_written")
        self._timer = stage_timer("writing")

    def setup(self) -> None:
        self._progress = ProgressFile(self._progress_dir)

    def start_bundle(self) -> None:
        self._pending: Dict[Tuple[str, str], List[SampleRow]] = {}

    def finish_bundle(self) -> None:
        self._progress.flush()

    def process(self, composite: Composite) -> Iterator[SampleRow]:
        with timed(self._timer):
            row = self._write(composite)
            self._note_pair_progress(composite.pair_key, row)
        self._written.inc()
        self._progress.add()
        yield row

    def _note_pair_progress(self, key: str, row: SampleRow) -> None:
        pair = (row.placement.bg_stem, row.placement.fg_stem)
        rows = self._pending.setdefault(pair, [])
        rows.append(row)
        if len(rows) == self._samples_per_pair:
            write_pair_record(self._root, key, rows)
            del self._pending[pair]

    def _write(self, composite: Composite) -> SampleRow:
        placement = composite.placement
        files = {
            "overlay": (layout.sample_path(placement, "overlay", "jpg"),
                        composite.overlay_encoded),
            "mask": (layout.sample_path(placement, "mask", self._mask_extension),
                     composite.mask_encoded),
        }
        if composite.depth is not None:
            files["depth"] = (layout.sample_path(placement, "depth", self._depth_extension),
                              composite.depth)
        for relative, data in files.values():
            write_file(layout.resolve(self._root, relative), data)
        # Lossy files (JPEG overlays, depth, JPEG masks) get the statistics of
        # the written file; a PNG mask's come with the composite.
        known = {"mask": composite.mask_moments} if composite.mask_moments else {}
        moments = {kind: known.get(kind) or encoded_moments(data)
                   for kind, (_, data) in files.items()}
        return SampleRow(
            placement=placement, split=composite.split,
            bg_path=layout.background_path(placement.bg_stem),
            overlay_path=files["overlay"][0], mask_path=files["mask"][0],
            depth_path=files["depth"][0] if "depth" in files else "",
            moments=moments)


class WriteSamples(beam.PTransform):
    """Composite -> SampleRow, after writing its overlay, mask and depth.

    `progress_dir` (local runs) receives per-worker counts for progress lines.
    """

    def __init__(self, root: str, mask_extension: str, depth_extension: str,
                 samples_per_pair: int, progress_dir: Optional[str] = None):
        super().__init__()
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._samples_per_pair = samples_per_pair
        self._progress_dir = progress_dir

    def expand(self, composites):
        return composites | "WriteSampleFiles" >> beam.ParDo(_WriteSample(
            self._root, self._mask_extension, self._depth_extension, self._samples_per_pair,
            self._progress_dir))


def label_rows(rows: Sequence[SampleRow], prefix: str) -> List[List[str]]:
    """The original's label_data.csv rows: bg;overlay;mask;depth, paths
    relative to the dataset's parent folder."""
    def full(path: str) -> str:
        return f"{prefix}/{path}" if path else ""

    return [[full(row.bg_path), full(row.overlay_path), full(row.mask_path),
             full(row.depth_path)] for row in rows]


SAMPLE_COLUMNS = ("id", "bg", "fg", "number", "flip", "scale", "x", "y", "w", "h", "split",
                  "bg_path", "overlay_path", "mask_path", "depth_path",
                  "overlay_mean", "mask_coverage", "depth_mean")


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


def sample_table_rows(rows: Sequence[SampleRow]) -> List[List[object]]:
    """samples.csv rows; the per-image means let reports plot histograms
    without reopening every image."""
    table: List[List[object]] = []
    for row in rows:
        p = row.placement
        table.append([p.sample_id, p.bg_stem, p.fg_stem, p.number, int(p.flip), p.scale,
                      p.x, p.y, p.w, p.h, row.split, row.bg_path, row.overlay_path,
                      row.mask_path, row.depth_path, image_mean(row, "overlay"),
                      mask_coverage(row), image_mean(row, "depth")])
    return table


def render_csv(rows: Iterable[Sequence[object]], header: Sequence[str] = (),
               delimiter: str = ",", quote_all: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def split_counts(rows: Iterable[SampleRow]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.split] = counts.get(row.split, 0) + 1
    return counts


class _RenderTablePart(beam.DoFn):
    """The rows of one background (more exactly: of the backgrounds sharing a
    natural sort key) -> their slices of both CSVs, rendered, and their
    per-split counts. Both CSVs are sorted by background first, so the files
    are these slices concatenated in key order."""

    def __init__(self, prefix: str):
        self._prefix = prefix

    def process(self, keyed: Tuple[Tuple, Iterable[SampleRow]]) -> Iterator[Tuple]:
        key, rows = keyed
        ordered = sorted(rows, key=row_order)
        yield (key, split_counts(ordered),
               render_csv(label_rows(ordered, self._prefix), delimiter=";", quote_all=True),
               render_csv(sample_table_rows(ordered)))


class _WriteTables(beam.DoFn):
    def __init__(self, root: str):
        self._root = root

    def process(self, parts: List[Tuple]) -> Iterator[Dict[str, int]]:
        ordered = sorted(parts, key=lambda part: part[0])
        write_file(layout.resolve(self._root, layout.LABEL_CSV),
                   b"".join(part[2] for part in ordered))
        write_file(layout.resolve(self._root, layout.SAMPLES_CSV),
                   render_csv((), header=SAMPLE_COLUMNS) + b"".join(part[3] for part in ordered))
        counts: Dict[str, int] = {}
        for part in ordered:
            for split, count in part[1].items():
                counts[split] = counts.get(split, 0) + count
        yield counts


class WriteTables(beam.PTransform):
    """label_data.csv (the original's format) and samples.csv, sorted; outputs
    the sample count per split.

    Rows are grouped per background and each group is rendered to CSV text
    where it is grouped; only the rendered text (about 300 bytes a sample,
    not the rows themselves) is gathered in one place to write the two files.
    """

    def __init__(self, root: str, prefix: str):
        super().__init__()
        self._root = root
        self._prefix = prefix

    def expand(self, rows):
        return (rows
                | "KeyByBackground" >> beam.Map(
                    lambda row: (natural_key(row.placement.bg_stem), row))
                | "GroupByBackground" >> beam.GroupByKey()
                | "RenderParts" >> beam.ParDo(_RenderTablePart(self._prefix))
                | "Gather" >> beam.combiners.ToList()
                | "WriteCsvs" >> beam.ParDo(_WriteTables(self._root)))


def shard_count(records: int, records_per_shard: int) -> int:
    return max(1, math.ceil(records / records_per_shard))


def shard_of(row: SampleRow, num_shards: int) -> int:
    """A stable shard for a sample: the same on every run and runner."""
    return stable_hash("shard", row.placement.sample_id) % num_shards


class _WriteShard(beam.DoFn):
    """Reads a shard's written files back and writes the shard in sample order,
    so no stage holds image bytes of more than one shard at a time. Each
    background is read and measured once per shard."""

    def __init__(self, root: str, depth_encoding: str):
        self._root = root
        self._depth_encoding = depth_encoding
        self._timer = stage_timer("tfrecords")

    def process(self, keyed: Tuple[Tuple[str, int, int], Iterable[SampleRow]]) -> Iterator:
        with timed(self._timer):
            relative, examples = self._write_shard(*keyed)
        for example in examples:
            yield beam.pvalue.TaggedOutput(EXAMPLES, example)
        yield relative

    def _write_shard(self, key: Tuple[str, int, int],
                     rows: Iterable[SampleRow]) -> Tuple[str, List[bytes]]:
        split, shard, num_shards = key
        relative = layout.tfrecord_path(split, shard, num_shards)
        buffer = io.BytesIO()
        examples = []
        backgrounds: Dict[str, Tuple[bytes, Moments]] = {}
        for row in sorted(rows, key=row_order):
            if row.bg_path not in backgrounds:
                data = read_file(layout.resolve(self._root, row.bg_path))
                backgrounds[row.bg_path] = data, encoded_moments(data)
            background, background_moments = backgrounds[row.bg_path]
            images = {"overlay": row.overlay_path, "mask": row.mask_path,
                      "depth": row.depth_path}
            payload = {kind: read_file(layout.resolve(self._root, path)) if path else b""
                       for kind, path in images.items()}
            payload["background"] = background
            example = sample_example(row, payload, self._depth_encoding, background_moments)
            buffer.write(frame_record(example))
            examples.append(example)
        write_file(layout.resolve(self._root, relative), buffer.getvalue())
        return relative, examples


class WriteTFRecords(beam.PTransform):
    """SampleRow -> tfrecords/<split>-SSSSS-of-NNNNN; outputs the shard paths
    (main) and every serialized record (EXAMPLES), for the TFT analysis."""

    def __init__(self, root: str, records_per_shard: int, depth_encoding: str):
        super().__init__()
        self._root = root
        self._records_per_shard = records_per_shard
        self._depth_encoding = depth_encoding

    def expand(self, rows):
        per_split = (rows
                     | "KeySplit" >> beam.Map(lambda row: (row.split, 1))
                     | "CountSplit" >> beam.CombinePerKey(sum))
        records_per_shard = self._records_per_shard

        def assign(row: SampleRow, counts: Dict[str, int]):
            shards = shard_count(counts[row.split], records_per_shard)
            return (row.split, shard_of(row, shards), shards), row

        return (rows
                | "AssignShard" >> beam.Map(assign, beam.pvalue.AsDict(per_split))
                | "GroupShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteShard(
                    self._root, self._depth_encoding)).with_outputs(EXAMPLES, main="shards"))


class WriteRejects(beam.PTransform):
    """rejects.csv (path, reason), sorted; outputs the rejects as a sorted list."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, rejects):
        root = self._root

        def write(items: List[Reject]) -> List[Reject]:
            ordered = sorted(items, key=lambda reject: (reject.path, reject.reason))
            write_file(layout.resolve(root, layout.REJECTS_CSV), render_csv(
                [(reject.path, reject.reason) for reject in ordered], header=("path", "reason")))
            return ordered

        return (rejects
                | "GatherRejects" >> beam.combiners.ToList()
                | "WriteRejectsCsv" >> beam.Map(write))


def remove_stale_shards(root: str, keep: Iterable[str]) -> None:
    """Delete shards of an earlier build into this output that this build did
    not write (their shard count differed), so the folder holds one set."""
    wanted = {layout.resolve(root, relative) for relative in keep}
    existing = match_files(layout.resolve(root, f"{layout.TFRECORD_DIR}/*"))
    stale = [path for path in existing if path not in wanted]
    if stale:
        FileSystems.delete(stale)


