"""Splits: which backgrounds are train, val and test, which foregrounds only
the test split sees, and so which (background, foreground) pairs a build
makes.

Each split gets exactly round(fraction x backgrounds) of the accepted
backgrounds (`split_sizes`): the backgrounds are ranked by a stable hash of
the run seed and their name, the first ones go to test, the last to val and
those between to train (`assign_splits`). Drawing each background's split
from its own hash, as fgbg did before, gave a 100-background build 4 test
backgrounds instead of 10. Ranking keeps membership stable as inputs grow:
adding one background moves at most two others, adding one foreground at
most one other in or out of the held-out set (docs/dataset.md, "What a build
writes"; scripts/split_moves.py measures it).

`--test_foreground_fraction` holds that share of the foregrounds, ranked
the same way, for the test split: test backgrounds are paired with the
held-out foregrounds only, train and val backgrounds with the others only,
so a model can be tested on objects it never saw. With 0 (the default)
every background is paired with every foreground.

The plan needs every accepted background and foreground, so it is computed
once from the collected names (`PlanSplits`, a singleton side input) and
never depends on how a runner bundles them. A rejected input takes no part:
the fractions are of the backgrounds and foregrounds that make samples.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Dict, FrozenSet, Iterable, Iterator, List, Sequence, Tuple

import apache_beam as beam

from fgbg.hashing import stable_hash
from fgbg.pair_records import remove_pair
from fgbg.types import Background, Moments

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)
EXCLUDED = "excluded"  # CrossPairs' output of the pairs a plan does not make


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """The split options (checked in pipeline/options/) and the run seed."""

    seed: int
    val_fraction: float
    test_fraction: float
    test_foreground_fraction: float = 0.0


def share(fraction: float, count: int) -> int:
    """round(fraction x count), halves up, in exact decimal arithmetic: 0.35
    of 10 is 4, where binary floating point would give 3.4999... and 3."""
    return math.floor(fractions.Fraction(str(fraction)) * count + fractions.Fraction(1, 2))


def split_sizes(count: int, val_fraction: float, test_fraction: float) -> Dict[str, int]:
    """How many of `count` backgrounds each split gets.

    Each split gets round(fraction x count), and at least one when its
    fraction is positive and there are enough backgrounds: one for train
    plus one for each of val and test whose fraction is positive. Train
    always keeps at least one (rounding up never empties it: the largest of
    val and test gives one back). With fewer backgrounds than that, train
    gets the first, test the next, val none.
    """
    wanted = {VAL: val_fraction, TEST: test_fraction}
    positive = [split for split in (TEST, VAL) if wanted[split] > 0]
    if count < 1 + len(positive):
        given = [TRAIN, *positive][:count]
        return {split: int(split in given) for split in SPLITS}
    sizes = {split: max(share(wanted[split], count), int(split in positive)) for split in wanted}
    while sizes[VAL] + sizes[TEST] > count - 1:
        largest = max((VAL, TEST), key=lambda split: (sizes[split], split == VAL))
        sizes[largest] -= 1
    return {TRAIN: count - sizes[VAL] - sizes[TEST], VAL: sizes[VAL], TEST: sizes[TEST]}


def held_out_count(count: int, fraction: float) -> int:
    """How many of `count` foregrounds the test split alone sees:
    round(fraction x count), at least one when the fraction is positive,
    and never all of them (train and val keep at least one)."""
    if fraction <= 0 or count < 2:
        return 0
    return min(max(share(fraction, count), 1), count - 1)


def ranked(seed: int, purpose: str, names: Iterable[str]) -> List[str]:
    """Names in the order of a stable hash of the run seed, `purpose` and the
    name: a fixed, seeded shuffle in which adding a name moves no other."""
    return sorted(set(names), key=lambda name: (stable_hash(seed, purpose, name), name))


def assign_splits(
    names: Iterable[str], seed: int, val_fraction: float, test_fraction: float
) -> Dict[str, str]:
    """{background name: split}: test takes the first of the ranked names,
    val the last, train those between (`split_sizes` says how many). With
    train in the middle, test and val grow and shrink at train's two ends,
    so each change of size moves one name, never one from val to test."""
    order = ranked(seed, "split", names)
    sizes = split_sizes(len(order), val_fraction, test_fraction)
    splits = [TEST] * sizes[TEST] + [TRAIN] * sizes[TRAIN] + [VAL] * sizes[VAL]
    return dict(zip(order, splits))


def held_out_foregrounds(names: Iterable[str], seed: int, fraction: float) -> FrozenSet[str]:
    """The foregrounds that only the test split sees."""
    order = ranked(seed, "test_foreground", names)
    return frozenset(order[: held_out_count(len(order), fraction)])


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Every accepted background's split and which foregrounds each split
    uses; `holds_out` says whether test has foregrounds of its own."""

    backgrounds: Dict[str, str]  # background name -> split
    foregrounds: Tuple[str, ...]  # every accepted foreground, sorted
    held_out: FrozenSet[str]  # foregrounds only the test split sees
    holds_out: bool  # --test_foreground_fraction > 0

    def split_of(self, bg_stem: str) -> str:
        return self.backgrounds[bg_stem]

    def foregrounds_of(self, split: str) -> List[str]:
        """The foregrounds paired with the split's backgrounds, sorted."""
        if not self.holds_out:
            return list(self.foregrounds)
        test_only = split == TEST
        return [stem for stem in self.foregrounds if (stem in self.held_out) == test_only]

    def backgrounds_of(self, split: str) -> List[str]:
        return sorted(stem for stem, assigned in self.backgrounds.items() if assigned == split)

    def pairs_of(self, split: str) -> int:
        return len(self.backgrounds_of(split)) * len(self.foregrounds_of(split))

    @property
    def pairs(self) -> int:
        return sum(self.pairs_of(split) for split in SPLITS)


def plan_splits(
    config: SplitConfig, background_names: Iterable[str], foreground_names: Iterable[str]
) -> SplitPlan:
    """The plan for these accepted inputs."""
    foregrounds = sorted(set(foreground_names))
    return SplitPlan(
        backgrounds=assign_splits(
            background_names, config.seed, config.val_fraction, config.test_fraction
        ),
        foregrounds=tuple(foregrounds),
        held_out=held_out_foregrounds(foregrounds, config.seed, config.test_foreground_fraction),
        holds_out=config.test_foreground_fraction > 0,
    )


def planned_pairs(backgrounds: int, foregrounds: int, config: SplitConfig) -> int:
    """How many pairs a plan for this many backgrounds and foregrounds makes."""
    sizes = split_sizes(backgrounds, config.val_fraction, config.test_fraction)
    if config.test_foreground_fraction <= 0:
        return backgrounds * foregrounds
    held_out = held_out_count(foregrounds, config.test_foreground_fraction)
    return (sizes[TRAIN] + sizes[VAL]) * (foregrounds - held_out) + sizes[TEST] * held_out


def plan_note(plan: SplitPlan, samples_per_pair: int) -> str:
    """What the manifest and the report say about the splits: how they were
    drawn and, when foregrounds are held out, why the samples are fewer
    than backgrounds x foregrounds x samples per pair."""
    sizes = ", ".join(f"{split} {len(plan.backgrounds_of(split))}" for split in SPLITS)
    lines = [
        f"Backgrounds per split ({sizes}): round(fraction x {len(plan.backgrounds)} "
        "accepted backgrounds), at least one for a positive fraction when there are "
        "enough, chosen by rank of a hash of the run seed and their names; no "
        "background is in two splits."
    ]
    if plan.holds_out:
        count, kept = len(plan.foregrounds), len(plan.foregrounds_of(TRAIN))
        every = len(plan.backgrounds) * count
        lines.append(
            f"{len(plan.held_out)} of {count} foregrounds are held out for test: test "
            "backgrounds are paired with them only, train and val backgrounds only with "
            f"the other {kept}, so test measures objects the model never saw. The build "
            f"makes {plan.pairs:,} pairs ({plan.pairs * samples_per_pair:,} samples), not "
            f"{len(plan.backgrounds)} x {count} = {every:,} "
            f"({every * samples_per_pair:,} samples)."
        )
        if not plan.held_out:
            lines.append("With a single foreground none can be held out, so test has no samples.")
    return " ".join(lines)


def moved(before: Dict[str, str], after: Dict[str, str]) -> int:
    """How many names in both assignments changed split."""
    return sum(1 for name, split in before.items() if name in after and after[name] != split)


class PlanSplits(beam.PTransform):
    """(accepted backgrounds, accepted foregrounds) -> one `SplitPlan`, from
    every name collected: a singleton to pass as a side input."""

    def __init__(self, config: SplitConfig):
        super().__init__()
        self._config = config

    def expand(self, inputs):
        backgrounds, foregrounds = inputs
        config = self._config
        bg_names = (
            backgrounds
            | "BackgroundNames" >> beam.Map(lambda background: background.stem)
            | "AllBackgroundNames" >> beam.combiners.ToList()
        )
        fg_names = (
            foregrounds
            | "ForegroundNames" >> beam.Map(lambda foreground: foreground.stem)
            | "AllForegroundNames" >> beam.combiners.ToList()
        )
        return bg_names | "Plan" >> beam.Map(
            lambda names, fg: plan_splits(config, names, fg), beam.pvalue.AsSingleton(fg_names)
        )


class SplitMoments(beam.PTransform):
    """((background name, kind), Moments) -> ((its split, kind), Moments)."""

    def __init__(self, plan):
        super().__init__()
        self._plan = plan

    def expand(self, moments):
        def by_split(keyed: Tuple[Tuple[str, str], Moments], plan: SplitPlan):
            (stem, kind), values = keyed
            return (plan.split_of(stem), kind), values

        return moments | "BySplit" >> beam.Map(by_split, beam.pvalue.AsSingleton(self._plan))


def plan_pairs(background: Background, plan: SplitPlan) -> Iterator:
    """The background's pairs the plan makes, (background, foreground name)
    in name order, and (EXCLUDED) those it does not."""
    made = set(plan.foregrounds_of(background.split))
    for stem in plan.foregrounds:
        if stem in made:
            yield background, stem
        else:
            yield beam.pvalue.TaggedOutput(EXCLUDED, (background.stem, stem))


class RemoveExcludedPairs(beam.PTransform):
    """(background, foreground) pairs the plan does not make -> nothing,
    once whatever an earlier build with other split options wrote of them
    is deleted, record first (fgbg/pair_records.remove_pair)."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, excluded):
        root = self._root
        removed = beam.metrics.Metrics.counter("compositing", "pairs_excluded")

        def remove(pair: Tuple[str, str]) -> Sequence[None]:
            removed.inc()
            remove_pair(root, *pair)
            return ()

        return excluded | "RemovePair" >> beam.FlatMap(remove)
