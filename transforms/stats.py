"""Statistics: the true per-channel pixel mean and std of every image kind,
over the whole dataset and per split.

The original notebook reported the std of per-image stds, which normalises
nothing. Here each image contributes exact integer moments (pixel count, sum,
sum of squares per channel, as Python ints), keyed by (split, kind); merging
adds integers, so the result is exact and identical in any merge order, on
any runner. The transform graph normalises with the train split's numbers
only (`normalization_splits`), so no validation or test pixel shapes what a
model is trained with.
"""

from __future__ import annotations

from typing import Dict, Hashable, Iterable, List, Tuple

import apache_beam as beam

from fgbg.documents import ChannelStats, Stats, StatsNotes
from fgbg.images import CHANNELS
from fgbg.moments import add_to_totals, summarize
from fgbg.types import Moments

KINDS = tuple(CHANNELS)  # in the order stats.json and the report list them
NORMALIZATION_SPLIT = "train"
StatsKey = Tuple[str, str]  # (split, kind)


def normalization_splits(splits: Iterable[str]) -> List[str]:
    """The splits whose pixels set the transform graph's mean and std: the
    train split alone, or every split of a build that has no train split (a
    tiny build whose few backgrounds all hashed into val or test), so that
    the graph still has numbers to use."""
    present = sorted(set(splits))
    return [NORMALIZATION_SPLIT] if NORMALIZATION_SPLIT in present else present


class MomentsByKeyFn(beam.CombineFn):
    """(key, Moments) elements -> {key: summed Moments}; keys are
    (split, kind) in the build."""

    def create_accumulator(self) -> Dict[Hashable, Moments]:
        return {}

    def add_input(
        self, accumulator: Dict[Hashable, Moments], element: Tuple[Hashable, Moments]
    ) -> Dict[Hashable, Moments]:
        return add_to_totals(accumulator, *element)

    def merge_accumulators(
        self, accumulators: Iterable[Dict[Hashable, Moments]]
    ) -> Dict[Hashable, Moments]:
        merged: Dict[Hashable, Moments] = {}
        for accumulator in accumulators:
            for key, moments in accumulator.items():
                self.add_input(merged, (key, moments))
        return merged

    def extract_output(self, accumulator: Dict[Hashable, Moments]) -> Dict[Hashable, Moments]:
        return accumulator


def _summaries(totals: Dict[str, Moments], depth_scale: float) -> Dict[str, ChannelStats]:
    """{kind: its stats}, kinds in a fixed order."""
    return {
        kind: ChannelStats(**summarize(totals[kind], depth_scale if kind == "depth" else 255.0))
        for kind in KINDS
        if kind in totals
    }


def stats_document(totals: Dict[StatsKey, Moments], depth_scale: float, depth_unit: str) -> Stats:
    """The content of stats.json: every kind over the whole dataset, then
    the same per split.

    `depth_scale` is the stored depth value that `mean_unit`/`std_unit` map to
    1.0 (255 for the min-max JPEG encoding); `depth_unit` says what it means.
    """
    overall: Dict[str, Moments] = {}
    by_split: Dict[str, Dict[str, Moments]] = {}
    for (split, kind), moments in sorted(totals.items()):
        add_to_totals(overall, kind, moments)
        add_to_totals(by_split.setdefault(split, {}), kind, moments)
    notes = StatsNotes(
        method="exact pixel mean and population std over every pixel of every written image",
        scales="mean/std in stored pixel values; mean_unit/std_unit divide by 255 "
        "(depth: by depth_scale)",
        depth_scale=depth_scale,
        depth_unit=depth_unit,
        normalization_splits=normalization_splits(by_split),
        normalization="transform/ standardises background and overlay with the pixels "
        "of normalisation_splits only (train, when the build has one), "
        "so no val or test pixel leaks into training",
    )
    return Stats(
        kinds=_summaries(overall, depth_scale),
        splits={split: _summaries(kinds, depth_scale) for split, kinds in sorted(by_split.items())},
        notes=notes,
    )


class ComputeStats(beam.PTransform):
    """((split, kind), Moments) -> one {(split, kind): Moments} dict."""

    def expand(self, moments):
        return moments | "SumMoments" >> beam.CombineGlobally(MomentsByKeyFn())
