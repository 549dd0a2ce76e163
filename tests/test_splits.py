"""Splits (transforms/splits.py): exact fractions, held-out foregrounds,
stable membership; the plan as a Beam stage on TestPipeline."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fgbg.types import UNASSIGNED, Background, Foreground
from transforms.compositing import CrossPairs
from transforms.splits import (
    SPLITS,
    TEST,
    TRAIN,
    VAL,
    PlanSplits,
    SplitConfig,
    assign_splits,
    held_out_count,
    held_out_foregrounds,
    moved,
    plan_note,
    plan_pairs,
    plan_splits,
    planned_pairs,
    split_sizes,
)

# README, "What a build writes": adding one background moves at most this
# many others to another split (bench/split_moves.py measures it).
MOST_MOVED_BY_ONE_BACKGROUND = 2
MOST_MOVED_BY_ONE_FOREGROUND = 1
NO_PIXELS = np.zeros((1, 1), np.uint8)  # the plan reads foregrounds' names only


def names(count: int, prefix: str = "bg") -> list:
    return [f"{prefix}{i}" for i in range(count)]


@pytest.mark.parametrize(
    "count, val, test, expected",
    [
        (100, 0.1, 0.1, (80, 10, 10)),
        (0, 0.1, 0.1, (0, 0, 0)),
        (1, 0.1, 0.1, (1, 0, 0)),  # too few for three splits: train first,
        (2, 0.1, 0.1, (1, 0, 1)),  # then test
        (3, 0.1, 0.1, (1, 1, 1)),  # enough: at least one each
        (5, 0.1, 0.1, (3, 1, 1)),  # 0.5 rounds up
        (15, 0.1, 0.1, (11, 2, 2)),
        (25, 0.1, 0.1, (19, 3, 3)),
        (10, 0.35, 0.35, (2, 4, 4)),  # 3.5 exactly, not 3.4999... in binary
        (10, 0.1, 0.0, (9, 1, 0)),
        (2, 0.0, 0.5, (1, 0, 1)),
        (4, 0.375, 0.5, (1, 1, 2)),  # rounding would empty train: val gives one back
        (7, 0.45, 0.45, (1, 3, 3)),
        (1000, 0.05, 0.15, (800, 50, 150)),
    ],
)
def test_each_split_gets_exactly_its_rounded_share(count, val, test, expected):
    sizes = split_sizes(count, val, test)
    assert (sizes[TRAIN], sizes[VAL], sizes[TEST]) == expected
    assigned = assign_splits(names(count), seed=0, val_fraction=val, test_fraction=test)
    assert sorted(assigned) == sorted(names(count))
    assert {split: list(assigned.values()).count(split) for split in SPLITS} == sizes


def test_every_count_keeps_train_and_gives_positive_fractions_one_when_there_are_enough():
    for val, test in ((0.1, 0.1), (0.45, 0.45), (0.01, 0.2), (0.0, 0.1), (0.33, 0.66)):
        positive = sum(1 for fraction in (val, test) if fraction > 0)
        for count in range(1, 120):
            sizes = split_sizes(count, val, test)
            assert sum(sizes.values()) == count and sizes[TRAIN] >= 1
            if count >= 1 + positive:
                assert all(sizes[split] >= 1 for split, f in ((VAL, val), (TEST, test)) if f > 0)
            for split, fraction in ((VAL, val), (TEST, test)):
                # Off the rounded share only to keep one in train or one here.
                assert abs(sizes[split] - fraction * count) < 1.5


def test_the_same_seed_and_names_give_the_same_split_in_any_order():
    listed = names(50)
    first = assign_splits(listed, 7, 0.1, 0.1)
    assert assign_splits(list(reversed(listed)), 7, 0.1, 0.1) == first
    assert assign_splits(listed, 8, 0.1, 0.1) != first
    held = held_out_foregrounds(names(20, "fg"), 7, 0.25)
    assert held == held_out_foregrounds(list(reversed(names(20, "fg"))), 7, 0.25)
    assert len(held) == 5


@pytest.mark.parametrize("val, test", [(0.1, 0.1), (0.3, 0.3), (0.05, 0.15), (0.45, 0.45)])
def test_adding_one_background_moves_at_most_the_documented_number(val, test):
    worst = 0
    for count in range(0, 160):
        for seed in range(2):
            before = assign_splits(names(count), seed, val, test)
            after = assign_splits(names(count) + ["added"], seed, val, test)
            worst = max(worst, moved(before, after))
    assert worst == MOST_MOVED_BY_ONE_BACKGROUND


def test_adding_one_foreground_moves_at_most_one_in_or_out_of_the_held_out_set():
    worst = 0
    for count in range(0, 120):
        before = held_out_foregrounds(names(count, "fg"), 1, 0.3)
        after = held_out_foregrounds(names(count, "fg") + ["added"], 1, 0.3)
        worst = max(worst, len(before - after) + len(after - before - {"added"}))
    assert worst == MOST_MOVED_BY_ONE_FOREGROUND


def test_held_out_counts():
    assert [held_out_count(count, 0.1) for count in (0, 1, 2, 5, 10, 100, 101)] == [
        0,
        0,  # one foreground: train keeps it
        1,
        1,
        1,
        10,
        10,
    ]
    assert held_out_count(4, 0.9) == 3  # never all of them
    assert held_out_count(100, 0.0) == 0


def test_held_out_foregrounds_are_only_on_test_backgrounds():
    config = SplitConfig(seed=2, val_fraction=0.1, test_fraction=0.1, test_foreground_fraction=0.1)
    plan = plan_splits(config, names(100), names(100, "fg"))
    assert [len(plan.backgrounds_of(split)) for split in (TRAIN, VAL, TEST)] == [80, 10, 10]
    assert len(plan.held_out) == 10
    assert set(plan.foregrounds_of(TEST)) == plan.held_out
    for split in (TRAIN, VAL):
        assert len(plan.foregrounds_of(split)) == 90
        assert not set(plan.foregrounds_of(split)) & plan.held_out
    made = {
        (background.stem, fg)
        for stem, split in plan.backgrounds.items()
        for background, fg in (
            item
            for item in plan_pairs(Background(stem, "", split, ""), plan)
            if not isinstance(item, beam.pvalue.TaggedOutput)
        )
    }
    assert len(made) == plan.pairs == 90 * 90 + 10 * 10 == planned_pairs(100, 100, config)
    assert all((plan.split_of(bg) == TEST) == (fg in plan.held_out) for bg, fg in made)
    note = plan_note(plan, 40)
    assert "10 of 100 foregrounds are held out for test" in note
    assert "8,200 pairs (328,000 samples), not 100 x 100 = 10,000 (400,000 samples)" in note


def test_without_held_out_foregrounds_every_pair_is_made():
    config = SplitConfig(seed=0, val_fraction=0.1, test_fraction=0.1)
    plan = plan_splits(config, names(7), names(3, "fg"))
    assert not plan.held_out and plan.pairs == 21 == planned_pairs(7, 3, config)
    assert all(plan.foregrounds_of(split) == names(3, "fg") for split in SPLITS)
    assert "held out" not in plan_note(plan, 40)


def test_a_single_foreground_cannot_be_held_out_and_test_gets_no_pairs():
    config = SplitConfig(seed=0, val_fraction=0.0, test_fraction=0.5, test_foreground_fraction=0.5)
    plan = plan_splits(config, names(4), ["fg0"])
    assert not plan.held_out and plan.pairs_of(TEST) == 0 and plan.pairs_of(TRAIN) == 2
    assert "test has no samples" in plan_note(plan, 8)


def test_the_plan_stage_assigns_splits_and_excludes_mixed_pairs():
    config = SplitConfig(
        seed=0, val_fraction=0.25, test_fraction=0.25, test_foreground_fraction=0.5
    )
    expected = plan_splits(config, names(4), names(2, "fg"))
    (held,) = expected.held_out
    with BeamTestPipeline(runner="FnApiRunner") as p:
        backgrounds = p | "Backgrounds" >> beam.Create(
            [Background(stem, f"{stem}.jpg", UNASSIGNED, "d") for stem in names(4)]
        )
        foregrounds = p | "Foregrounds" >> beam.Create(
            [
                Foreground(stem, f"{stem}.png", None, NO_PIXELS, NO_PIXELS, "d")
                for stem in names(2, "fg")
            ]
        )
        plan = (backgrounds, foregrounds) | PlanSplits(config)
        pairs, excluded = backgrounds | CrossPairs(plan)
        assert_that(
            pairs | beam.Map(lambda pair: (pair[0].stem, pair[0].split, pair[1])),
            equal_to(
                [
                    (bg, split, fg)
                    for bg, split in expected.backgrounds.items()
                    for fg in expected.foregrounds_of(split)
                ]
            ),
            label="pairs",
        )
        assert_that(
            excluded,
            equal_to(
                [
                    (bg, fg)
                    for bg, split in expected.backgrounds.items()
                    for fg in names(2, "fg")
                    if fg not in expected.foregrounds_of(split)
                ]
            ),
            label="excluded",
        )
    assert expected.foregrounds_of(TEST) == [held]
