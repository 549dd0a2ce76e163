"""The TFRecord shards: `tfrecords/<split>-SSSSS-of-NNNNN`, whole pairs per
shard, each shard streamed from its pairs' records and written files, plus
one moments-only record per shard for the normalisation analysis.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Iterator, List, Tuple

import apache_beam as beam

from fgbg import layout
from fgbg.hashing import stable_hash
from fgbg.moments import add_to_totals, encoded_moments
from fgbg.pair_records import pair_rows
from fgbg.records import frame_record, moments_example, sample_example
from fgbg.storage import delete_files, match_files, read_file, read_files, streamed_file
from fgbg.timing import stage_timer, timed
from fgbg.types import Moments, SampleRow, WrittenPair
from transforms.tables import pair_order

EXAMPLES = "examples"


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

    def __init__(self, root: str, depth_encoding: str, with_blend: bool):
        self._root = root
        self._depth_encoding = depth_encoding
        self._with_blend = with_blend
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
                        sample_example(
                            row, payload, self._depth_encoding, background_moments, self._with_blend
                        )
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
    With `with_blend` each record says its sample's blending mode (a build
    with --blend none writes the records it wrote before --blend).
    """

    def __init__(
        self, root: str, records_per_shard: int, depth_encoding: str, with_blend: bool = False
    ):
        super().__init__()
        self._root = root
        self._records_per_shard = records_per_shard
        self._depth_encoding = depth_encoding
        self._with_blend = with_blend

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
            >> beam.ParDo(
                _WriteShard(self._root, self._depth_encoding, self._with_blend)
            ).with_outputs(EXAMPLES, main="shards")
        )


def remove_stale_shards(root: str, keep: Iterable[str]) -> None:
    """Delete shards of an earlier build into this output that this build did
    not write (their shard count differed), so the folder holds one set."""
    wanted = {layout.resolve(root, relative) for relative in keep}
    existing = match_files(layout.resolve(root, f"{layout.TFRECORD_DIR}/*"))
    stale = [path for path in existing if path not in wanted]
    delete_files(stale)
