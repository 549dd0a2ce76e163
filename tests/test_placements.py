"""Placements: numbering, bounds and determinism, without Beam."""

import pytest

from transforms.placements import (
    PlacementConfig,
    draw_position,
    pair_placements,
    parse_scales,
    sample_number,
    scaled_size,
)

ORIGINAL = PlacementConfig(
    seed=0, size=224, scales=(1.0, 0.8, 0.6, 0.4), placements_per_scale=5, mirror=True
)


def test_original_numbering_layout():
    placements = list(pair_placements(ORIGINAL, "bg1", "fg_1", (150, 100)))
    assert [p.number for p in placements] == list(range(1, 41))
    assert all(not p.flip for p in placements[:20]) and all(p.flip for p in placements[20:])
    for block in (placements[:20], placements[20:]):
        assert [p.scale for p in block] == [1.0] * 5 + [0.8] * 5 + [0.6] * 5 + [0.4] * 5
    assert (placements[5].w, placements[5].h) == (120, 80)


def test_sample_number_matches_the_original_formula():
    assert sample_number(0, 0, 0, 4, 5) == 1
    assert sample_number(0, 3, 4, 4, 5) == 20
    assert sample_number(1, 0, 0, 4, 5) == 21
    assert sample_number(1, 3, 4, 4, 5) == 40


def test_positions_stay_inside_and_reach_both_bounds():
    xs, ys = set(), set()
    for number in range(2000):
        x, y = draw_position(7, "bg", "fg", number, (3, 2))
        assert 0 <= x <= 3 and 0 <= y <= 2
        xs.add(x)
        ys.add(y)
    assert xs == {0, 1, 2, 3} and ys == {0, 1, 2}


def test_placements_fit_inside_background():
    for p in pair_placements(ORIGINAL, "bg9", "fg_3", (150, 150)):
        assert 0 <= p.x and p.x + p.w <= 224 and 0 <= p.y and p.y + p.h <= 224


def test_same_seed_same_placements_other_seed_differs():
    first = list(pair_placements(ORIGINAL, "bg1", "fg_1", (150, 100)))
    again = list(pair_placements(ORIGINAL, "bg1", "fg_1", (150, 100)))
    other = PlacementConfig(
        seed=1, size=224, scales=ORIGINAL.scales, placements_per_scale=5, mirror=True
    )
    reseeded = list(pair_placements(other, "bg1", "fg_1", (150, 100)))
    assert first == again
    assert [(p.x, p.y) for p in first] != [(p.x, p.y) for p in reseeded]


def test_a_placement_does_not_depend_on_other_pairs():
    alone = draw_position(0, "bg1", "fg_1", 3, (100, 100))
    assert alone == draw_position(0, "bg1", "fg_1", 3, (100, 100))
    assert alone != draw_position(0, "bg2", "fg_1", 3, (100, 100))


def test_scaled_size_truncates_like_the_original_but_never_to_zero():
    assert scaled_size(150, 99, 0.8) == (120, 79)
    assert scaled_size(1, 1, 0.4) == (1, 1)


def test_too_large_foreground_is_refused():
    with pytest.raises(ValueError, match="larger than"):
        list(pair_placements(ORIGINAL, "bg", "fg", (225, 10)))


def test_parse_scales():
    assert parse_scales("1.0, 0.5") == (1.0, 0.5)
    for bad in ("", "0", "1.5", "1.0,1.0"):
        with pytest.raises(ValueError):
            parse_scales(bad)
