"""Resuming: pairs that an earlier build into the same output finished are
skipped before compositing.

Each pair arrives with its key (its inputs' bytes and the sample-shaping
options, fgbg/pair_records.py). When the pair's record in the output holds
the same key and every sample, the pair goes to the RESUMED output as a
`WrittenPair`. When it has no such record but all its samples were written
under that key (their row files are there: a build stopped before recording
it), the pair goes to the UNRECORDED output with its sample count, as
WriteSamples counts samples, to be recorded. Either way nothing of it is
made again. Other pairs go on to compositing as a `Pair`.

A record with another key describes files of an earlier build with other
inputs or options; it is deleted here, before any of the pair's files is
rewritten, so that a build killed half-way through the remake never leaves a
record that a later run would reuse over a mix of old and new files. A record
with the pair's own key stays (with --no_resume, or on a duplicate attempt of
the same work): its files are rewritten with the same bytes. An unreadable
record counts as absent and is replaced once the pair is written.
"""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import apache_beam as beam

from fgbg.pair_records import (
    finished_rows,
    pair_key,
    read_record,
    record_path,
    unrecorded_rows,
    written_pair,
)
from fgbg.storage import delete_files
from fgbg.types import Background, Foreground, Pair

RESUMED = "resumed"
UNRECORDED = "unrecorded"


class _SkipFinishedPair(beam.DoFn):
    def __init__(self, root: str, fingerprint: str, samples_per_pair: int, resume: bool):
        self._root = root
        self._fingerprint = fingerprint
        self._samples_per_pair = samples_per_pair
        self._resume = resume
        self._to_make = beam.metrics.Metrics.counter("compositing", "pairs")
        self._resumed = beam.metrics.Metrics.counter("compositing", "pairs_resumed")

    def process(self, pair: Tuple[Background, str], foregrounds: Dict[str, Foreground]) -> Iterator:
        background, fg_stem = pair
        key = pair_key(self._fingerprint, background, foregrounds[fg_stem])
        recorded = read_record(self._root, background.stem, fg_stem)
        if self._resume:
            rows = finished_rows(recorded, key, self._samples_per_pair)
            if rows is not None:
                self._resumed.inc()
                yield beam.pvalue.TaggedOutput(RESUMED, written_pair(rows))
                return
            rows = unrecorded_rows(
                self._root, background.stem, fg_stem, key, self._samples_per_pair
            )
            if rows is not None:
                self._resumed.inc()
                yield beam.pvalue.TaggedOutput(
                    UNRECORDED, ((background.stem, fg_stem), (key, len(rows)))
                )
                return
        if recorded is not None and recorded[0] != key:
            delete_files([record_path(self._root, background.stem, fg_stem)])
        self._to_make.inc()
        yield Pair(background=background, fg_stem=fg_stem, key=key)


class SkipFinishedPairs(beam.PTransform):
    """(Background, foreground stem) -> a `Pair` for each pair to make (main
    output), a `WrittenPair` for each pair finished earlier (RESUMED), and
    (pair, (key, samples)) for each pair written but not recorded earlier
    (UNRECORDED).

    `fingerprint` hashes the options that shape samples; with `resume`
    False every pair is made again.
    """

    def __init__(
        self, root: str, foregrounds, fingerprint: str, samples_per_pair: int, resume: bool
    ):
        super().__init__()
        self._root = root
        self._foregrounds = foregrounds
        self._fingerprint = fingerprint
        self._samples_per_pair = samples_per_pair
        self._resume = resume

    def expand(self, pairs):
        by_stem = self._foregrounds | "KeyForegrounds" >> beam.Map(lambda fg: (fg.stem, fg))
        return pairs | "SkipFinished" >> beam.ParDo(
            _SkipFinishedPair(self._root, self._fingerprint, self._samples_per_pair, self._resume),
            beam.pvalue.AsDict(by_stem),
        ).with_outputs(RESUMED, UNRECORDED, main="pairs")
