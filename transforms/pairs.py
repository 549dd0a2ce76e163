"""A pair's lifecycle as stages: skip the pairs an earlier build finished,
remove records that no longer match, leave a row file for each written
sample, and record each pair once all its samples are written.

One stage module, because these steps only make sense together: their
order is what keeps a killed or changed build safe (docs/guarantees.md, Guarantees 2
and 3). The files themselves are read, written and deleted by
fgbg/pair_records.py alone; this module decides when.

Each pair arrives with its key (its inputs' bytes and the sample-shaping
options). SkipFinishedPairs reads the pair's record: when it holds the same
key and every sample, with depth made in the precision this worker runs
(fgbg/depth/precision.py), the pair goes to the RESUMED output as a
`WrittenPair`; when it has no such record but all its samples were written
under that key (their row files are there: a build stopped before recording
it), the pair goes to the UNRECORDED output with its sample count, as
WriteSampleRows counts samples, to be recorded. Either way nothing of it is
made again. Other pairs go on to be made, and RemoveOutdatedRecords first
deletes a record with another key or precision, before any of the pair's files is
rewritten. A record with the pair's own key stays (with --no_resume, or on a
duplicate attempt of the same work): its files are rewritten with the same
bytes. An unreadable record counts as absent and is replaced once the pair
is written.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional, Tuple

import apache_beam as beam

from fgbg import layout
from fgbg.depth import precision
from fgbg.depth.config import DepthConfig
from fgbg.pair_records import (
    finish_recording,
    finished_rows,
    has_leftover_rows,
    is_outdated,
    pair_key,
    read_record,
    record_pair,
    recorded_rows,
    remove_outdated_record,
    unrecorded_rows,
    write_sample_row,
    written_pair,
)
from fgbg.timing import stage_timer, timed
from fgbg.types import Background, Foreground, Pair, SampleRow, WrittenPair

RESUMED = "resumed"
UNRECORDED = "unrecorded"

PairToMake = Tuple[Pair, bool]  # (pair, whether its record is outdated)
PairCount = Tuple[Tuple[str, str], Tuple[str, int]]  # (pair id, (pair key, samples))


class _SkipFinishedPair(beam.DoFn):
    def __init__(
        self,
        root: str,
        fingerprint: str,
        samples_per_pair: int,
        resume: bool,
        depth: Optional[DepthConfig],
    ):
        self._root = root
        self._fingerprint = fingerprint
        self._samples_per_pair = samples_per_pair
        self._resume = resume
        self._depth = depth
        self._precision: Optional[str] = None
        self._to_make = beam.metrics.Metrics.counter("compositing", "pairs")
        self._resumed = beam.metrics.Metrics.counter("compositing", "pairs_resumed")

    def setup(self) -> None:
        # The precision this worker's depth stage will run in, found the
        # same way (the hardware is the worker's, not the launcher's).
        self._precision = precision.resolve(self._depth) if self._depth else None

    def process(self, pair: Tuple[Background, str], foregrounds: Dict[str, Foreground]) -> Iterator:
        background, fg_stem = pair
        key = pair_key(self._fingerprint, background, foregrounds[fg_stem])
        recorded = read_record(self._root, background.stem, fg_stem)
        if self._resume:
            rows = finished_rows(recorded, key, self._samples_per_pair, self._precision)
            if rows is not None:
                if has_leftover_rows(self._root, background.stem, fg_stem):
                    finish_recording(self._root, rows)
                self._resumed.inc()
                yield beam.pvalue.TaggedOutput(RESUMED, written_pair(rows))
                return
            rows = unrecorded_rows(
                self._root, background.stem, fg_stem, key, self._samples_per_pair, self._precision
            )
            if rows is not None:
                self._resumed.inc()
                yield beam.pvalue.TaggedOutput(
                    UNRECORDED, ((background.stem, fg_stem), (key, len(rows)))
                )
                return
        self._to_make.inc()
        outdated = is_outdated(recorded, key, self._precision)
        yield Pair(background=background, fg_stem=fg_stem, key=key), outdated


class SkipFinishedPairs(beam.PTransform):
    """(Background, foreground stem) -> (`Pair`, whether its record is
    outdated) for each pair to make (main output, for
    RemoveOutdatedRecords), a `WrittenPair` for each pair finished earlier
    (RESUMED), and (pair, (key, samples)) for each pair written but not
    recorded earlier (UNRECORDED). Reads records and row files; deletes
    only row files left beside a finished pair's record (`has_leftover_rows`).

    `fingerprint` hashes the options that shape samples; `depth` (None for
    a composites-only build) says which precision depth will run in; with
    `resume` False every pair is made again.
    """

    def __init__(
        self,
        root: str,
        foregrounds,
        fingerprint: str,
        samples_per_pair: int,
        resume: bool,
        depth: Optional[DepthConfig] = None,
    ):
        super().__init__()
        self._root = root
        self._foregrounds = foregrounds
        self._fingerprint = fingerprint
        self._samples_per_pair = samples_per_pair
        self._resume = resume
        self._depth = depth

    def expand(self, pairs):
        by_stem = self._foregrounds | "KeyForegrounds" >> beam.Map(lambda fg: (fg.stem, fg))
        return pairs | "SkipFinished" >> beam.ParDo(
            _SkipFinishedPair(
                self._root, self._fingerprint, self._samples_per_pair, self._resume, self._depth
            ),
            beam.pvalue.AsDict(by_stem),
        ).with_outputs(RESUMED, UNRECORDED, main="pairs")


class RemoveOutdatedRecords(beam.PTransform):
    """(`Pair`, outdated) from SkipFinishedPairs -> the `Pair`, once a record
    of it with another key is deleted, so that it goes before any of the
    pair's files is rewritten."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, pairs):
        root = self._root

        def remove(to_make: PairToMake) -> Pair:
            pair, outdated = to_make
            if outdated:
                remove_outdated_record(root, pair.background.stem, pair.fg_stem)
            return pair

        return pairs | "RemoveOutdatedRecord" >> beam.Map(remove)


def pair_id(row: SampleRow) -> Tuple[str, str]:
    """(background stem, foreground stem): which pair a sample belongs to."""
    return row.placement.bg_stem, row.placement.fg_stem


class _WriteSampleRow(beam.DoFn):
    def __init__(self, root: str):
        self._root = root
        self._timer = stage_timer("writing")

    def process(self, written: Tuple[str, SampleRow]) -> Iterator[PairCount]:
        key, row = written
        with timed(self._timer):
            write_sample_row(self._root, key, row)
        yield pair_id(row), (key, 1)


class WriteSampleRows(beam.PTransform):
    """(pair key, `SampleRow`) of each written sample (WriteSamples) -> its
    row file, then (its pair, (pair key, 1)) for RecordPairs to count. The
    row file is written only after the sample's files, so a row always
    stands for a sample that is there."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, written):
        return written | "WriteSampleRow" >> beam.ParDo(_WriteSampleRow(self._root))


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
    """Records a pair whose samples are all written, from its samples' row
    files, and removes whatever else its folder holds (`record_pair`);
    outputs its `WrittenPair`. A pair an earlier attempt recorded is only
    finished (`finish_recording`), so a retried bundle makes the same
    files."""

    def __init__(self, root: str, samples_per_pair: int, depth: Optional[DepthConfig]):
        self._root = root
        self._samples_per_pair = samples_per_pair
        self._depth = depth
        self._precision: Optional[str] = None
        checkpoint = depth.checkpoint if depth else None
        self._model = checkpoint.record(depth.input_size) if checkpoint else None
        self._timer = stage_timer("writing")

    def setup(self) -> None:
        self._precision = precision.resolve(self._depth) if self._depth else None

    def process(self, counted: PairCount) -> Iterator[WrittenPair]:
        (bg_stem, fg_stem), (key, samples) = counted
        if samples != self._samples_per_pair:
            raise RuntimeError(
                f"a pair was only partly written: {bg_stem}/{fg_stem} "
                f"({samples} of {self._samples_per_pair}); it is not "
                "recorded and is remade on the next run"
            )
        with timed(self._timer):
            rows = unrecorded_rows(self._root, bg_stem, fg_stem, key, samples, self._precision)
            if rows is not None:
                record_pair(self._root, key, rows, self._model)
            else:
                # An earlier attempt of this work (a retried or duplicated
                # bundle) recorded the pair, and may have been stopped
                # before it removed the row files.
                rows = recorded_rows(self._root, bg_stem, fg_stem, key, samples, self._precision)
                if rows is not None:
                    finish_recording(self._root, rows)
            if rows is None:
                made_in = f" with depth made in {self._precision}" if self._precision else ""
                raise RuntimeError(
                    f"{bg_stem}/{fg_stem}: the row files of its {samples} written samples "
                    f"are not all under {layout.resolve(self._root, bg_stem)}{made_in}; was "
                    "the output changed during the build, or do its workers differ in hardware?"
                )
        yield written_pair(rows)


class RecordPairs(beam.PTransform):
    """Sample counts keyed by pair (WriteSampleRows, and SkipFinishedPairs'
    UNRECORDED) -> a `WrittenPair` per pair, once its record is written from
    its samples' row files and stale files of earlier builds are removed.

    Counting is a combiner, so the shuffle carries about one small count per
    pair and bundle, not one entry per sample; a pair is recorded only when
    every one of its samples is written, however a runner bundles them.
    A pair is recorded only with depth made in the precision this worker
    resolves (`depth`), so no record mixes precisions.
    """

    def __init__(self, root: str, samples_per_pair: int, depth: Optional[DepthConfig] = None):
        super().__init__()
        self._root = root
        self._samples_per_pair = samples_per_pair
        self._depth = depth

    def expand(self, sample_counts):
        return (
            sample_counts
            | "CountSamplesPerPair" >> beam.CombinePerKey(_CountPairSamples())
            | "RecordPairRemoveStaleFiles"
            >> beam.ParDo(_RecordPair(self._root, self._samples_per_pair, self._depth))
        )
