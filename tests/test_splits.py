"""Splits (transforms/splits.py): exact fractions, held-out foregrounds,
stable membership; the plan as a Beam stage on TestPipeline."""

import csv
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fgbg.training_data import read_tfrecords
from fgbg.types import UNASSIGNED, Background, Foreground
from pipeline import build
from tests.helpers import comparable, make_inputs, small_build_args, timings
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

# docs/dataset.md, "What a build writes": adding one background moves at most this
# many others to another split (scripts/split_moves.py measures it).
MOST_MOVED_BY_ONE_BACKGROUND = 2
MOST_MOVED_BY_ONE_FOREGROUND = 1
SAMPLES_PER_PAIR = 8  # small_build_args: 2 flips x 2 scales x 2 placements
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


def read_samples(root) -> list:
    with open(root / "samples.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.e2e
def test_held_out_foregrounds_are_seen_by_test_alone_and_a_resume_follows_the_options(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=4, foregrounds=4)
    output = tmp_path / "out"
    fractions = ("--val_fraction=0.25", "--test_fraction=0.25")
    held_args = small_build_args(inputs, output, *fractions, "--test_foreground_fraction=0.25")
    manifest = build.run(held_args)

    members = manifest.splits.members
    held = set(manifest.splits.held_out_foregrounds)
    assert [len(members[split].backgrounds) for split in (TRAIN, VAL, TEST)] == [2, 1, 1]
    assert len(held) == 1 and set(members[TEST].foregrounds) == held
    assert not held & (set(members[TRAIN].foregrounds) | set(members[VAL].foregrounds))
    assert manifest.counts.pairs == 3 * 3 + 1 * 1
    assert manifest.counts.samples == manifest.counts.pairs * SAMPLES_PER_PAIR
    rows = read_samples(output)
    assert len(rows) == manifest.counts.samples
    for row in rows:
        assert (row["fg"] in held) == (row["split"] == TEST)
        assert row["bg"] in members[row["split"]].backgrounds
    for split in SPLITS:
        listed = [row for row in rows if row["split"] == split]
        assert len(listed) == members[split].samples == manifest.counts.samples_per_split[split]
        assert {row["fg"] for row in listed} == set(members[split].foregrounds)
    stats = json.loads((output / "stats.json").read_text())
    assert sorted(stats["splits"]) == sorted(SPLITS)
    test_ids = {
        record["id"].numpy().decode() for record in read_tfrecords(str(output / "tfrecords/test-*"))
    }
    assert {sample_id.split("/")[1] for sample_id in test_ids} == held
    report = (output / "report.html").read_text()
    assert "1 of 4 foregrounds are held out for test" in report
    assert "10 pairs (80 samples), not 4 x 4 = 16 (128 samples)" in report
    first = comparable(output)

    # Without held-out foregrounds: the 6 pairs it left out are made, no other.
    build.run(small_build_args(inputs, output, *fractions))
    assert timings(output)["compositing.pairs"] == 6
    assert timings(output)["compositing.pairs_resumed"] == 10
    # Held out again: nothing is made, and those 6 pairs' files are removed.
    build.run(held_args)
    counters = timings(output)
    assert counters.get("compositing.pairs", 0) == 0 and counters["compositing.pairs_excluded"] == 6
    assert comparable(output) == first


@pytest.mark.e2e
def test_other_fractions_remake_only_the_pairs_whose_split_changed(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=5, foregrounds=2)
    output = tmp_path / "out"
    build.run(small_build_args(inputs, output, "--val_fraction=0.2", "--test_fraction=0.2"))
    build.run(small_build_args(inputs, output, "--val_fraction=0.4", "--test_fraction=0.2"))
    stems = [f"bg{i}" for i in range(1, 6)]
    changed = moved(assign_splits(stems, 0, 0.2, 0.2), assign_splits(stems, 0, 0.4, 0.2))
    assert changed == 1  # val grows by one, taken from train's end
    assert timings(output)["compositing.pairs"] == changed * 2
    assert timings(output)["compositing.pairs_resumed"] == 10 - changed * 2
    rows = read_samples(output)
    assert {split: len({r["bg"] for r in rows if r["split"] == split}) for split in SPLITS} == {
        TRAIN: 2,
        VAL: 2,
        TEST: 1,
    }
