"""Blending modes (--blend): the pure functions without Beam, the draws, the
options' rules, and what a blending build records (pair records, the key
that decides a resume)."""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from fgbg.blend_modes import GAUSSIAN, MIXED, MODES, MOTION, NONE, POISSON, parse_blend
from fgbg.documents import read_manifest, read_timings
from fgbg.pair_records import options_fingerprint, row_from_dict, row_to_dict, written_pair
from fgbg.types import Background, Foreground, Placement, SampleRow
from pipeline import build
from pipeline.config import (
    SAMPLE_SHAPING_OPTIONS,
    RunContext,
    blend_config,
    build_config,
    sample_shaping_values,
)
from pipeline.options import FgbgOptions, UsageError, check_options
from pipeline.run_documents import summary
from tests.helpers import make_inputs, small_build_args, timings
from transforms.blending import (
    POISSON_MARGIN,
    Blend,
    BlendConfig,
    draw_blend,
    motion_kernel,
)
from transforms.compositing import (
    EncodingConfig,
    alpha_composite,
    blend_composite,
    compose_pair,
)
from transforms.placements import PlacementConfig

SIZE = 96
SIGMA = 2.0
MOTION_LENGTH = 7
CONFIG = BlendConfig(modes=MODES, seed=3, sigma=SIGMA, motion_length=MOTION_LENGTH)


def disc(height: int, width: int) -> np.ndarray:
    """A 0/255 elliptic mask filling its box."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - (width - 1) / 2) / (width / 2 - 1)) ** 2 + (
        (yy - (height - 1) / 2) / (height / 2 - 1)
    ) ** 2 <= 1
    return np.where(inside, 255, 0).astype(np.uint8)


def scene(flat: bool, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(textured background, cut-out RGBA, its mask): a flat-coloured object
    or a textured one."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = disc(40, 50)
    colour = (
        np.full((40, 50, 3), (200, 40, 90), np.uint8)
        if flat
        else rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    )
    return background, np.dstack([colour, mask]), mask


def placed(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    canvas[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    return canvas


def grown(mask: np.ndarray, reach: int) -> np.ndarray:
    """The placed mask dilated by `reach` pixels (a square neighbourhood)."""
    return cv2.dilate(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def shrunk(mask: np.ndarray, reach: int) -> np.ndarray:
    return cv2.erode(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def blended(mode: str, flat: bool, x: int = 23, y: int = 30, angle: float = 30.0):
    background, rgba, mask = scene(flat)
    out = blend_composite(background, rgba, mask, x, y, Blend(mode, angle), CONFIG)
    return out, alpha_composite(background, rgba, x, y), background, placed(mask, x, y)


# ------------------------------------------------------------------- mode none


def test_none_is_the_paste_as_it_was_before_blending():
    """Pinned: the digest of one pair's overlays and encoded files as the
    code before --blend made them (main at e596881, the same inputs), for
    compose_pair without a blending config and with --blend none's."""
    rng = np.random.default_rng(31)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:30, :40]
    alpha = np.where(((xx - 20) / 18.0) ** 2 + ((yy - 15) / 13.0) ** 2 <= 1, 255, 0)
    alpha = alpha.astype(np.uint8)
    rgba = np.dstack([rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), alpha])
    foreground = Foreground("fg", "fg.png", None, rgba, alpha, "d")
    background = Background("bg", "bg.jpg", "train", "d")
    placements = PlacementConfig(
        seed=5, size=64, scales=(1.0, 0.7), placements_per_scale=2, mirror=True
    )
    encoding = EncodingConfig(overlay_quality=50, mask_format="png", mask_quality=50)
    none = BlendConfig(modes=(NONE,), seed=5, sigma=SIGMA, motion_length=MOTION_LENGTH)
    for blending in (None, none):
        digest = hashlib.sha256()
        for made in compose_pair(
            background, image, foreground, placements, encoding, "k", blending
        ):
            assert made.blend == NONE
            digest.update(made.overlay.tobytes())
            digest.update(made.overlay_encoded)
            digest.update(made.mask_encoded)
        assert digest.hexdigest() == (
            "5267171455970a9ddc88d1b94665add5f45dcb9f8ac643ed46888d55cc4e4f32"
        )


def test_none_equals_alpha_composite_exactly():
    out, pasted, _, _ = blended(NONE, flat=False)
    assert np.array_equal(out, pasted)


# ------------------------------------------------------------ where pixels move


def edge_band(mask: np.ndarray, reach: int) -> np.ndarray:
    return grown(mask, reach) & ~shrunk(mask, reach)


@pytest.mark.parametrize(
    "mode, reach",
    [(GAUSSIAN, math.ceil(3 * SIGMA) + 1), (MOTION, MOTION_LENGTH // 2 + 1)],
)
def test_gaussian_and_motion_change_a_flat_object_only_in_a_band_at_its_edge(mode, reach):
    out, pasted, background, mask = blended(mode, flat=True)
    moved = changed(out, pasted)
    assert moved.sum() > 50, "the mode changed (next to) nothing"
    assert not (moved & ~edge_band(mask, reach)).any()
    far = ~grown(mask, reach)
    assert np.array_equal(out[far], background[far])
    inside = shrunk(mask, reach)
    assert np.array_equal(out[inside], pasted[inside])


def test_gaussian_keeps_a_textured_object_sharp_inside():
    out, pasted, background, mask = blended(GAUSSIAN, flat=False)
    reach = math.ceil(3 * SIGMA) + 1
    assert not (changed(out, pasted) & ~edge_band(mask, reach)).any()
    far = ~grown(mask, reach)
    assert np.array_equal(out[far], background[far])


def test_motion_smears_a_textured_object_but_nothing_far_from_it():
    out, pasted, background, mask = blended(MOTION, flat=False)
    reach = MOTION_LENGTH // 2 + 1
    moved = changed(out, pasted)
    assert moved[shrunk(mask, reach)].mean() > 0.5, "the object's texture is not blurred"
    far = ~grown(mask, reach)
    assert np.array_equal(out[far], background[far])


def test_gaussian_feathers_the_edge_towards_the_background():
    """Just outside the object the feathered paste lies between object and
    background; just inside, between them too: a soft edge, not a step."""
    out, pasted, background, mask = blended(GAUSSIAN, flat=True)
    outside = grown(mask, 1) & ~(mask > 0)
    colour = np.array((200, 40, 90), np.float64)
    towards = np.abs(out[outside] - colour).sum(axis=1) < np.abs(
        background[outside].astype(np.float64) - colour
    ).sum(axis=1)
    assert towards.mean() > 0.9


@pytest.mark.parametrize("flat", [True, False])
def test_poisson_changes_pixels_only_inside_and_near_the_object(flat):
    out, pasted, background, mask = blended(POISSON, flat=flat)
    near = grown(mask, POISSON_MARGIN + 1)
    assert changed(out, pasted)[mask > 0].mean() > 0.3, "nothing was cloned"
    assert np.array_equal(out[~near], background[~near])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("corner", [(0, 0), (SIZE - 50, SIZE - 40), (0, SIZE - 40)])
def test_every_mode_handles_objects_at_the_image_border(mode, corner):
    """A cut-out flush with (or, grown by its blur, past) the border: the
    image keeps its size and far pixels stay the background's."""
    background, rgba, mask = scene(flat=False)
    x, y = max(corner[0], 0), max(corner[1], 0)
    out = blend_composite(background, rgba, mask, x, y, Blend(mode, 100.0), CONFIG)
    assert out.shape == background.shape and out.dtype == np.uint8
    far = ~grown(placed(mask, x, y), max(math.ceil(3 * SIGMA), MOTION_LENGTH, POISSON_MARGIN) + 1)
    assert np.array_equal(out[far], background[far])


def test_the_motion_kernel_is_a_normalised_line_at_the_angle():
    kernel = motion_kernel(MOTION_LENGTH, 90.0)
    assert kernel.shape == (MOTION_LENGTH, MOTION_LENGTH)
    assert abs(float(kernel.sum()) - 1) < 1e-6
    # At 90 degrees the line is vertical: all weight in the middle column.
    assert kernel[:, MOTION_LENGTH // 2].sum() > 0.99


# ------------------------------------------------------------------ the draws


def placement(number: int, bg: str = "bg", fg: str = "fg") -> Placement:
    return Placement(bg, fg, number, False, 1.0, 0, 0, 10, 10)


def test_mixed_draws_every_listed_mode_reproducibly():
    draws = [draw_blend(CONFIG, placement(n, f"bg{n % 7}")) for n in range(400)]
    counts = collections.Counter(blend.mode for blend in draws)
    assert set(counts) == set(MODES) and min(counts.values()) > 60
    assert draws == [draw_blend(CONFIG, placement(n, f"bg{n % 7}")) for n in range(400)]
    angles = {blend.angle for blend in draws if blend.mode == MOTION}
    assert len(angles) == counts[MOTION] and all(0 <= a < 180 for a in angles)
    other_seed = dataclasses.replace(CONFIG, seed=4)
    assert draws != [draw_blend(other_seed, placement(n, f"bg{n % 7}")) for n in range(400)]


def test_a_list_draws_among_its_modes_only_whatever_its_order():
    modes = parse_blend("poisson,gaussian")
    assert modes == parse_blend("gaussian,poisson") == (GAUSSIAN, POISSON)
    config = dataclasses.replace(CONFIG, modes=modes)
    drawn = {draw_blend(config, placement(n)).mode for n in range(100)}
    assert drawn == {GAUSSIAN, POISSON}
    assert parse_blend(MIXED) == MODES and parse_blend("motion") == (MOTION,)


def test_mixed_compose_pair_makes_the_same_bytes_twice_and_keeps_the_mask():
    background, rgba, mask = scene(flat=False)
    foreground = Foreground("fg", "fg.png", None, rgba, mask, "d")
    bg = Background("bg", "bg.jpg", "train", "d")
    placements = PlacementConfig(
        seed=3, size=SIZE, scales=(1.0, 0.8), placements_per_scale=5, mirror=True
    )
    encoding = EncodingConfig(overlay_quality=50, mask_format="png", mask_quality=50)

    def make(blending):
        return list(compose_pair(bg, background, foreground, placements, encoding, "k", blending))

    first, again, hard = make(CONFIG), make(CONFIG), make(None)
    assert [c.overlay_encoded for c in first] == [c.overlay_encoded for c in again]
    assert {c.blend for c in first} == set(MODES)
    for made, pasted in zip(first, hard):
        assert made.mask_encoded == pasted.mask_encoded
        assert made.mask_moments == pasted.mask_moments
        assert (made.blend == NONE) == np.array_equal(made.overlay, pasted.overlay)


# ---------------------------------------------------------------- the options


def options(*flags: str) -> FgbgOptions:
    return PipelineOptions(["--bg=b/*", "--fg=f/*", "--output=o", *flags]).view_as(FgbgOptions)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--blend=soft"], "--blend soft: unknown blend mode 'soft'"),
        (["--blend=gaussian,box"], "unknown blend mode 'box'"),
        (["--blend=gaussian,gaussian"], "listed twice"),
        (["--blend=mixed,none"], "unknown blend mode 'mixed'"),
        (["--blend=gaussian", "--blend_sigma=-1"], "--blend_sigma must be > 0, got -1.0"),
        (["--blend_sigma=0"], "--blend_sigma must be > 0"),
        (["--blend_motion_length=4"], "--blend_motion_length must be odd and >= 3, got 4"),
        (["--blend_motion_length=1"], "--blend_motion_length must be odd and >= 3"),
    ],
)
def test_bad_blend_values_are_usage_errors(flags, message):
    with pytest.raises(UsageError, match=message):
        check_options(options(*flags))


@pytest.mark.parametrize("flag", ["--blend=soft", "--blend_sigma=-2", "--blend_motion_length=6"])
def test_a_build_with_a_bad_blend_value_stops_before_anything_runs(tmp_path, flag):
    inputs = make_inputs(tmp_path / "in", backgrounds=1, foregrounds=1)
    with pytest.raises(build.UsageError, match=flag.split("=")[0]):
        build.run(small_build_args(inputs, tmp_path / "out", flag))
    assert not (tmp_path / "out").exists()


def test_blend_settings_enter_the_pair_key_only_when_they_shape_samples():
    default = sample_shaping_values(options())
    assert not {"blend", "blend_sigma", "blend_motion_length"} & set(default)
    # Unused settings of modes that are not drawn change nothing.
    assert sample_shaping_values(options("--blend_sigma=5", "--blend_motion_length=9")) == default
    gaussian = sample_shaping_values(options("--blend=gaussian"))
    assert gaussian == {**default, "blend": GAUSSIAN, "blend_sigma": 2.0}
    assert sample_shaping_values(options("--blend=gaussian", "--blend_sigma=3")) != gaussian
    assert sample_shaping_values(options("--blend=poisson,gaussian")) == sample_shaping_values(
        options("--blend=gaussian,poisson")
    )
    mixed = sample_shaping_values(options("--blend=mixed"))
    assert mixed["blend"] == ",".join(MODES) and mixed["blend_motion_length"] == 7
    assert blend_config(options("--blend=mixed", "--seed=9")).seed == 9


# -------------------------------------------------------------- pair records


def row(number: int, blend: str) -> SampleRow:
    return SampleRow(
        placement=placement(number),
        split="train",
        bg_path="bg/bg.jpg",
        overlay_path=f"bg/fg/overlay/{number}.jpg",
        mask_path=f"bg/fg/mask/{number}.png",
        depth_path="",
        moments={"mask": (1, (2,), (3,))},
        blend=blend,
    )


def test_records_say_the_mode_unless_it_is_none_and_count_modes_per_pair():
    assert "blend" not in row_to_dict(row(1, NONE))
    assert row_from_dict(row_to_dict(row(1, NONE))).blend == NONE
    assert row_from_dict(row_to_dict(row(2, POISSON))).blend == POISSON
    rows = [row(1, NONE), row(2, POISSON), row(3, POISSON), row(4, MOTION)]
    assert written_pair(rows).blends == ((MOTION, 1), (NONE, 1), (POISSON, 2))


def test_the_default_blend_keeps_pair_keys_of_earlier_builds():
    """Outputs built before --blend existed are still resumed."""
    opts = options()
    earlier = options_fingerprint({name: getattr(opts, name) for name in SAMPLE_SHAPING_OPTIONS})
    run = RunContext(started_at="", input_files={}, tft_temp_dir="t", progress_dir=None)
    assert build_config(opts, run).fingerprint == earlier
    assert build_config(options("--blend=motion"), run).fingerprint != earlier


# ------------------------------------------------------------ a whole build


def samples_table(root: Path) -> Dict[str, Dict[str, str]]:
    with open(root / "samples.csv", newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def record_blends(root: Path) -> Dict[str, str]:
    import tensorflow as tf

    from fgbg.records import feature_spec

    files = sorted(str(path) for path in (root / "tfrecords").iterdir())
    parsed = [tf.io.parse_single_example(r, feature_spec()) for r in tf.data.TFRecordDataset(files)]
    return {p["id"].numpy().decode(): p["blend"].numpy().decode() for p in parsed}


def decoded(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.e2e
def test_a_mixed_build_says_each_samples_mode_and_differs_only_near_objects(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=3, foregrounds=2)
    mixed, plain = tmp_path / "mixed" / "out", tmp_path / "plain" / "out"
    build.run(small_build_args(inputs, mixed, "--blend=mixed", "--seed=3"))
    build.run(small_build_args(inputs, plain, "--seed=3"))

    table = samples_table(mixed)
    modes = {sample_id: row["blend"] for sample_id, row in table.items()}
    assert set(modes.values()) == set(MODES)
    assert record_blends(mixed) == modes
    manifest = json.loads((mixed / "manifest.json").read_text())
    counted = dict(collections.Counter(modes.values()))
    assert manifest["counts"]["samples_per_blend"] == counted
    printed = summary(read_manifest(str(mixed)), read_timings(str(mixed)), str(mixed))
    blend_line = next(line for line in printed.splitlines() if line.startswith("  blend: "))
    assert all(f"{mode} {count}" in blend_line for mode, count in counted.items())
    report = (mixed / "report.html").read_text(encoding="utf-8")
    assert 'id="blend-examples"' in report and 'id="blend-table"' in report

    assert "blend" not in samples_table(plain)["bg1/fg_1/1"]
    assert set(record_blends(plain).values()) == {NONE}  # the feature's default
    assert 'id="blending"' not in (plain / "report.html").read_text(encoding="utf-8")
    # Far from the object (the blur's reach plus a JPEG block of 16 pixels)
    # a blended overlay decodes to the hard paste's pixels; masks are equal.
    reach = max(math.ceil(3 * 2.0), 7 // 2, POISSON_MARGIN) + 16
    for sample_id, row in table.items():
        assert (mixed / row["mask_path"]).read_bytes() == (plain / row["mask_path"]).read_bytes()
        mask = decoded(mixed / row["mask_path"])[..., 0]
        far = ~grown(mask, reach)
        blended_pixels = decoded(mixed / row["overlay_path"])
        hard_pixels = decoded(plain / row["overlay_path"])
        assert np.array_equal(blended_pixels[far], hard_pixels[far]), sample_id
        if modes[sample_id] == NONE:
            assert np.array_equal(blended_pixels, hard_pixels)

    # A resume with another blend setting remakes every pair; the same one none.
    build.run(small_build_args(inputs, mixed, "--blend=gaussian", "--seed=3"))
    assert timings(mixed).get("compositing.pairs_resumed", 0) == 0
    assert {row["blend"] for row in samples_table(mixed).values()} == {GAUSSIAN}
    build.run(small_build_args(inputs, mixed, "--blend=gaussian", "--seed=3"))
    assert timings(mixed)["compositing.pairs_resumed"] == 6


# ------------------------------------------------------------------ the report


def test_the_report_picks_one_example_per_mode_from_one_pair_where_it_can():
    from fgbg.report.dataset import BlendExamples

    rows = [
        {"id": f"{bg}/{fg}/{n}", "bg": bg, "fg": fg, "number": str(n), "blend": mode}
        for bg in ("b1", "b2", "b3")
        for fg in ("f1", "f2")
        for n, mode in enumerate((NONE, GAUSSIAN, POISSON, MOTION, GAUSSIAN), start=1)
    ]
    picks = BlendExamples(seed=5)
    for row in rows:
        picks.add(row)
    examples = picks.examples()
    assert list(examples) == list(MODES)
    assert len({(row["bg"], row["fg"]) for row in examples.values()}) == 1
    assert examples[GAUSSIAN]["number"] == "2"
    unblended = BlendExamples(seed=5)
    unblended.add({"id": "b/f/1", "bg": "b", "fg": "f", "number": "1"})
    assert unblended.examples() == {}


def test_the_edge_close_up_is_centred_on_the_objects_outline():
    from PIL import Image

    from fgbg.report import grid

    mask = placed(disc(40, 50), 23, 30)
    row = {"x": "23", "y": "30", "w": "50", "h": "40"}
    x, y = grid.edge_point(mask, row)
    assert mask[y, x] == 255 and mask[y, x - 1] == 0
    overlay = Image.fromarray(np.dstack([mask] * 3))
    close_up = np.asarray(grid.edge_close_up(overlay, Image.fromarray(mask), row))
    assert close_up.shape == (grid.TILE, grid.TILE, 3)
    assert 0 < (close_up[..., 0] > 0).mean() < 1  # both object and background shown


@pytest.mark.bench
def test_the_blending_bench_prices_every_mode_against_none(tmp_path):
    from bench import bench_blending, workload

    globs = workload.make_inputs(tmp_path / "in", 1, 1)
    costs = bench_blending.blend_costs(globs, rounds=1)
    assert list(costs) == [*MODES, MIXED]
    assert {cost["samples"] for cost in costs.values()} == {40}
    assert all(cost["cpu_ms"] > 0 and cost["wall_ms"] > 0 for cost in costs.values())
    table = bench_blending.blend_markdown(costs, 1)
    assert "| poisson | 40 |" in table and "| none | 40 |" in table


def test_the_sample_grid_captions_say_the_mode_of_a_blended_sample():
    from fgbg.report import grid

    row = {"id": "b/f/3", "split": "val", "scale": "0.8", "flip": "0"}
    assert grid.caption(row) == "b/f/3 · val · scale 0.8"
    assert grid.caption({**row, "blend": POISSON}) == "b/f/3 · val · scale 0.8 · poisson"
