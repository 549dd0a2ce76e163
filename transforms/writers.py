"""Writers: images, tables, TFRecord shards, rejects and JSON documents.

Every file goes through `fgbg.storage`, so a crash never leaves a
half-written file under its final name.

Samples are written one at a time where they are made (WriteSamples), each
with its row file; RecordPairs counts each pair's samples and, once all are
written, records the pair. From then on a pair travels as a `WrittenPair`
handle, and the table and shard writers read its rows back from the pair's
record. Nothing that is shuffled or gathered holds one entry per sample, so
memory stays flat however large the dataset is.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from fgbg import layout
from fgbg.hashing import stable_hash
from fgbg.images import encode_jpeg
from fgbg.layout import natural_key
from fgbg.moments import add_to_totals, encoded_moments
from fgbg.pair_records import (
    PAIR_RECORD,
    delete_sample_rows,
    pair_rows,
    unrecorded_rows,
    write_pair_record,
    write_sample_row,
    written_pair,
)
from fgbg.progress import ProgressFile
from fgbg.records import frame_record, moments_example, sample_example
from fgbg.storage import (
    TEMPORARY_SUFFIX,
    delete_files,
    list_folder,
    match_files,
    read_file,
    read_files,
    streamed_file,
    write_file,
)
from fgbg.timing import stage_timer, timed
from fgbg.types import Background, Composite, Moments, Placement, Reject, SampleRow, WrittenPair

MOMENTS = "moments"
EXAMPLES = "examples"


def pair_order(pair: WrittenPair) -> Tuple:
    """The tables' order: backgrounds, then foregrounds, in natural order
    (the stems themselves break ties such as 'bg01' and 'bg1')."""
    return (natural_key(pair.bg_stem), natural_key(pair.fg_stem), pair.bg_stem, pair.fg_stem)


class WriteBackgrounds(beam.PTransform):
    """(Background, image) -> Background, after writing bg/<stem>.jpg; the
    written image's ((split, "background"), moments) go to the MOMENTS output."""

    def __init__(self, root: str, quality: int):
        super().__init__()
        self._root = root
        self._quality = quality

    def expand(self, prepared):
        return prepared | "WriteBackground" >> beam.ParDo(
            _WriteBackground(self._root, self._quality)
        ).with_outputs(MOMENTS, main="backgrounds")


class _WriteBackground(beam.DoFn):
    def __init__(self, root: str, quality: int):
        self._root = root
        self._quality = quality
        self._timer = stage_timer("backgrounds")

    def process(self, prepared: Tuple[Background, np.ndarray]) -> Iterator:
        background, image = prepared
        with timed(self._timer):
            encoded = encode_jpeg(image, self._quality)
            write_file(layout.resolve(self._root, layout.background_path(background.stem)), encoded)
        yield beam.pvalue.TaggedOutput(
            MOMENTS, ((background.split, "background"), encoded_moments(encoded))
        )
        yield background


def pair_id(placement: Placement) -> Tuple[str, str]:
    """(background stem, foreground stem): which pair a sample belongs to."""
    return placement.bg_stem, placement.fg_stem


PairCount = Tuple[Tuple[str, str], Tuple[str, int]]  # (pair id, (pair key, samples))


class _WriteSample(beam.DoFn):
    """Writes one composite's files, then its row file (fgbg/pair_records.py),
    and outputs (its pair, (pair key, 1)) for RecordPairs to count."""

    def __init__(
        self, root: str, mask_extension: str, depth_extension: str, progress_dir: Optional[str]
    ):
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._progress_dir = progress_dir
        self._written = beam.metrics.Metrics.counter("writers", "samples_written")
        self._timer = stage_timer("writing")

    def setup(self) -> None:
        self._progress = ProgressFile(self._progress_dir)

    def finish_bundle(self) -> None:
        self._progress.flush()

    def process(self, composite: Composite) -> Iterator[PairCount]:
        with timed(self._timer):
            row = self._write(composite)
            write_sample_row(self._root, composite.pair_key, row)
        self._written.inc()
        self._progress.add()
        yield pair_id(composite.placement), (composite.pair_key, 1)

    def _write(self, composite: Composite) -> SampleRow:
        placement = composite.placement
        files = {
            "overlay": (layout.sample_path(placement, "overlay", "jpg"), composite.overlay_encoded),
            "mask": (
                layout.sample_path(placement, "mask", self._mask_extension),
                composite.mask_encoded,
            ),
        }
        if composite.depth is not None:
            files["depth"] = (
                layout.sample_path(placement, "depth", self._depth_extension),
                composite.depth,
            )
        for relative, data in files.values():
            write_file(layout.resolve(self._root, relative), data)
        # Lossy files (JPEG overlays, depth, JPEG masks) get the statistics of
        # the written file; a PNG mask's come with the composite.
        known = {"mask": composite.mask_moments} if composite.mask_moments else {}
        moments = {
            kind: known.get(kind) or encoded_moments(data) for kind, (_, data) in files.items()
        }
        return SampleRow(
            placement=placement,
            split=composite.split,
            bg_path=layout.background_path(placement.bg_stem),
            overlay_path=files["overlay"][0],
            mask_path=files["mask"][0],
            depth_path=files["depth"][0] if "depth" in files else "",
            moments=moments,
        )


class WriteSamples(beam.PTransform):
    """Composite -> its overlay, mask and depth files and its row file, one
    sample at a time; outputs a count of one per sample, keyed by its pair,
    for RecordPairs.

    `progress_dir` (local runs) receives per-worker counts for progress lines.
    """

    def __init__(
        self,
        root: str,
        mask_extension: str,
        depth_extension: str,
        progress_dir: Optional[str] = None,
    ):
        super().__init__()
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._progress_dir = progress_dir

    def expand(self, composites):
        return composites | "WriteSampleFiles" >> beam.ParDo(
            _WriteSample(
                self._root, self._mask_extension, self._depth_extension, self._progress_dir
            )
        )


class _CountPairSamples(beam.CombineFn):
    """(pair key, samples) values -> (pair key, their sum). Every value of a
    pair carries the same key within a build; a second key means two builds
    are writing into one output at once, and nothing can be recorded."""

    def create_accumulator(self) -> Tuple[str, int]:
        return "", 0

    def add_input(self, accumulator: Tuple[str, int], value: Tuple[str, int]) -> Tuple[str, int]:
        return self.merge_accumulators([accumulator, value])

    def merge_accumulators(self, accumulators: Iterable[Tuple[str, int]]) -> Tuple[str, int]:
        keys = {key for key, count in accumulators if count}
        if len(keys) > 1:
            raise RuntimeError(f"samples of one pair were written under pair keys {sorted(keys)}")
        return (keys.pop() if keys else ""), sum(count for _, count in accumulators)

    def extract_output(self, accumulator: Tuple[str, int]) -> Tuple[str, int]:
        return accumulator


class _RecordPair(beam.DoFn):
    """Records a pair whose samples are all written (fgbg/pair_records.py),
    from its samples' row files, then deletes whatever else its folder holds;
    outputs its `WrittenPair`."""

    def __init__(self, root: str, samples_per_pair: int):
        self._root = root
        self._samples_per_pair = samples_per_pair
        self._timer = stage_timer("writing")

    def process(self, counted: PairCount) -> Iterator[WrittenPair]:
        (bg_stem, fg_stem), (key, samples) = counted
        if samples != self._samples_per_pair:
            raise RuntimeError(
                f"a pair was only partly written: {bg_stem}/{fg_stem} "
                f"({samples} of {self._samples_per_pair}); it is not "
                "recorded and is remade on the next run"
            )
        with timed(self._timer):
            rows = unrecorded_rows(self._root, bg_stem, fg_stem, key, samples)
            if rows is None:
                raise RuntimeError(
                    f"{bg_stem}/{fg_stem}: the row files of its {samples} written samples "
                    f"are not all under {layout.resolve(self._root, bg_stem)}; was the "
                    "output changed during the build?"
                )
            # Row files go first: a kill between the two steps then leaves
            # neither, and the pair is made again, never a record beside
            # row files that a later run would have to clean up.
            delete_sample_rows(self._root, rows)
            write_pair_record(self._root, key, rows)
            self._remove_stale_files(rows)
        yield written_pair(rows)

    def _remove_stale_files(self, rows: List[SampleRow]) -> None:
        """Once a pair is written and recorded, delete whatever else its
        folder holds: files an earlier build with other options made (another
        mask or depth format, higher sample numbers), which no table would
        describe. Only after writing and only what is not this pair's, so a
        duplicate attempt of the same work stays harmless; temporary files of
        writes in flight are left alone."""
        folder = layout.pair_folder(rows[0].placement)
        keep = {
            path[len(folder) + 1 :]
            for row in rows
            for path in (row.overlay_path, row.mask_path, row.depth_path)
            if path
        }
        keep.add(PAIR_RECORD)
        folder_path = layout.resolve(self._root, folder)
        delete_files(
            [
                layout.resolve(folder_path, name)
                for name in list_folder(folder_path)
                if name not in keep and not name.endswith(TEMPORARY_SUFFIX)
            ]
        )


class RecordPairs(beam.PTransform):
    """Sample counts keyed by pair (WriteSamples) -> a `WrittenPair` per pair,
    once its record is written from its samples' row files and stale files of
    earlier builds are removed.

    Counting is a combiner, so the shuffle carries about one small count per
    pair and bundle, not one entry per sample; a pair is recorded only when
    every one of its samples is written, however a runner bundles them.
    """

    def __init__(self, root: str, samples_per_pair: int):
        super().__init__()
        self._root = root
        self._samples_per_pair = samples_per_pair

    def expand(self, sample_counts):
        return (
            sample_counts
            | "CountSamplesPerPair" >> beam.CombinePerKey(_CountPairSamples())
            | "RecordPair" >> beam.ParDo(_RecordPair(self._root, self._samples_per_pair))
        )


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
            ]
        )
    return table


def render_csv(
    rows: Iterable[Sequence[object]],
    header: Sequence[str] = (),
    delimiter: str = ",",
    quote_all: bool = False,
) -> bytes:
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

    def __init__(self, root: str, prefix: str):
        self._root = root
        self._prefix = prefix
        self._timer = stage_timer("tables")

    def process(self, pairs: List[WrittenPair]) -> Iterator[Dict[str, int]]:
        ordered = sorted(pairs, key=pair_order)
        with (
            timed(self._timer),
            streamed_file(layout.resolve(self._root, layout.LABEL_CSV)) as label,
            streamed_file(layout.resolve(self._root, layout.SAMPLES_CSV)) as samples,
        ):
            samples.write(render_csv((), header=SAMPLE_COLUMNS))
            for rows in pair_rows(self._root, ordered):
                label.write(
                    render_csv(label_rows(rows, self._prefix), delimiter=";", quote_all=True)
                )
                samples.write(render_csv(sample_table_rows(rows)))
        yield split_counts(ordered)


class WriteTables(beam.PTransform):
    """WrittenPair -> label_data.csv (the original's format) and samples.csv,
    sorted by background, foreground and number; outputs the sample count per
    split."""

    def __init__(self, root: str, prefix: str):
        super().__init__()
        self._root = root
        self._prefix = prefix

    def expand(self, pairs):
        return (
            pairs
            | "GatherPairs" >> beam.combiners.ToList()
            | "WriteCsvs" >> beam.ParDo(_WriteTables(self._root, self._prefix))
        )


def shard_count(records: int, records_per_shard: int) -> int:
    return max(1, math.ceil(records / records_per_shard))


ShardKey = Tuple[str, int, int]  # (split, shard index, shards in the split)


def plan_shards(
    pairs: Iterable[Tuple[str, str, str, int]], records_per_shard: int
) -> Dict[Tuple[str, str], ShardKey]:
    """(bg, fg, split, samples) of every pair -> each pair's shard.

    Whole pairs go to a shard. Each split gets ceil(samples /
    records_per_shard) shards (at most one per pair), and its pairs are dealt
    round-robin in a stable pseudo-random order: shards differ by at most one
    pair, none is empty, and the plan is the same on every run and runner.
    """
    by_split: Dict[str, List[Tuple[str, str, int]]] = {}
    for bg, fg, split, samples in pairs:
        by_split.setdefault(split, []).append((bg, fg, samples))
    plan: Dict[Tuple[str, str], ShardKey] = {}
    for split, members in sorted(by_split.items()):
        shards = min(
            len(members), shard_count(sum(samples for _, _, samples in members), records_per_shard)
        )
        dealt = sorted(members, key=lambda m: (stable_hash("shard", m[0], m[1]), m[0], m[1]))
        for index, (bg, fg, _) in enumerate(dealt):
            plan[(bg, fg)] = (split, index % shards, shards)
    return plan


def record_order(row: SampleRow) -> int:
    """A shard's records are in a stable pseudo-random order, so a reader
    that takes a shard front to back meets its pairs mixed, not each pair's
    samples in a run."""
    return stable_hash("record", row.placement.sample_id)


class _WriteShard(beam.DoFn):
    """Writes one shard from its pairs' records and written files; outputs the
    shard's path and (EXAMPLES) its split with one moments-only record of the
    shard's summed pixel moments, for the normalisation analysis. Memory holds one
    shard; each background is read and measured once per shard."""

    def __init__(self, root: str, depth_encoding: str):
        self._root = root
        self._depth_encoding = depth_encoding
        # The sample's own files, read back in this order for each record.
        self._sample_files = ("overlay", "mask") + (("depth",) if depth_encoding != "none" else ())
        self._timer = stage_timer("tfrecords")

    def process(self, keyed: Tuple[ShardKey, Iterable[WrittenPair]]) -> Iterator:
        with timed(self._timer):
            relative, moments = self._write_shard(*keyed)
            summary = moments_example(moments, ("background",) + self._sample_files)
        yield beam.pvalue.TaggedOutput(EXAMPLES, (keyed[0][0], summary))
        yield relative

    def _write_shard(
        self, key: ShardKey, pairs: Iterable[WrittenPair]
    ) -> Tuple[str, Dict[str, Moments]]:
        split, shard, num_shards = key
        relative = layout.tfrecord_path(split, shard, num_shards)
        rows = sorted(
            (row for rows in pair_rows(self._root, sorted(pairs, key=pair_order)) for row in rows),
            key=record_order,
        )
        files = read_files(
            [
                layout.resolve(self._root, getattr(row, f"{kind}_path"))
                for row in rows
                for kind in self._sample_files
            ]
        )
        backgrounds: Dict[str, Tuple[bytes, Moments]] = {}
        totals: Dict[str, Moments] = {}
        with streamed_file(layout.resolve(self._root, relative)) as shard_file:
            for row in rows:
                if row.bg_path not in backgrounds:
                    data = read_file(layout.resolve(self._root, row.bg_path))
                    backgrounds[row.bg_path] = data, encoded_moments(data)
                background, background_moments = backgrounds[row.bg_path]
                payload = {"background": background, "depth": b""}
                payload.update((kind, next(files)) for kind in self._sample_files)
                add_to_totals(totals, "background", background_moments)
                add_to_totals(totals, "overlay", row.moments["overlay"])
                shard_file.write(
                    frame_record(
                        sample_example(row, payload, self._depth_encoding, background_moments)
                    )
                )
        return relative, totals


class WriteTFRecords(beam.PTransform):
    """WrittenPair -> tfrecords/<split>-SSSSS-of-NNNNN, about
    `records_per_shard` records each; outputs the shard paths (main) and
    (split, moments-only record) per shard (EXAMPLES), for the normalisation
    analysis.

    Whole pairs go to a shard (plan_shards), so the shuffle carries one small
    handle per pair; within a shard the records are in a stable mixed order.
    """

    def __init__(self, root: str, records_per_shard: int, depth_encoding: str):
        super().__init__()
        self._root = root
        self._records_per_shard = records_per_shard
        self._depth_encoding = depth_encoding

    def expand(self, pairs):
        records_per_shard = self._records_per_shard
        plan = (
            pairs
            | "ShardKeys"
            >> beam.Map(lambda pair: (pair.bg_stem, pair.fg_stem, pair.split, pair.samples))
            | "GatherShardKeys" >> beam.combiners.ToList()
            | "PlanShards" >> beam.Map(plan_shards, records_per_shard)
        )
        return (
            pairs
            | "AssignShard"
            >> beam.Map(
                lambda pair, plan: (plan[(pair.bg_stem, pair.fg_stem)], pair),
                beam.pvalue.AsSingleton(plan),
            )
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(_WriteShard(self._root, self._depth_encoding)).with_outputs(
                EXAMPLES, main="shards"
            )
        )


class WriteRejects(beam.PTransform):
    """rejects.csv (path, reason), sorted; outputs the rejects as a sorted list."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, rejects):
        root = self._root

        def write(items: List[Reject]) -> List[Reject]:
            ordered = sorted(items, key=lambda reject: (reject.path, reject.reason))
            write_file(
                layout.resolve(root, layout.REJECTS_CSV),
                render_csv(
                    [(reject.path, reject.reason) for reject in ordered], header=("path", "reason")
                ),
            )
            return ordered

        return (
            rejects
            | "GatherRejects" >> beam.combiners.ToList()
            | "WriteRejectsCsv" >> beam.Map(write)
        )


def remove_stale_shards(root: str, keep: Iterable[str]) -> None:
    """Delete shards of an earlier build into this output that this build did
    not write (their shard count differed), so the folder holds one set."""
    wanted = {layout.resolve(root, relative) for relative in keep}
    existing = match_files(layout.resolve(root, f"{layout.TFRECORD_DIR}/*"))
    stale = [path for path in existing if path not in wanted]
    if stale:
        FileSystems.delete(stale)
