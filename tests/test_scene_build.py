"""Placement by depth through the command line: one whole build of rendered
rooms with their own depth maps (--bg_depth), in a fresh interpreter with
the default runner and the TFT analysis, shared by the tests that read it;
and the option rules that need no build."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

from pipeline import build
from pipeline.config import RunContext, build_config
from pipeline.options import FgbgOptions, UsageError, check_options
from tests.helpers import make_foreground
from tests.scene_fixtures import (
    UPWARD,
    Room,
    millimetres,
    render,
    scene_build_args,
    write_scene,
)

REPO = Path(__file__).resolve().parents[1]
ROOMS = {
    "room": Room(),
    "cabinet": Room(box=((-0.4, 0.4), (0.0, 2.2), (2.2, 2.8))),
    "hall": Room(pitch_degrees=10.0, with_box=False),
}
FOREGROUND_SIZES = {"tall": (12, 28), "wide": (20, 16)}


def write_bad_backgrounds(folder: Path) -> Dict[str, str]:
    """Backgrounds whose maps are missing, of another aspect, mostly
    unmeasured or unreadable; returns what each one's reject must say."""
    room = Room()
    for name in ("nomap", "squashed", "unmeasured", "broken"):
        write_scene(folder, name, room)
    (folder / "depth" / "nomap.png").unlink()
    depth, _ = render(room)
    Image.fromarray(millimetres(depth)[:48]).save(folder / "depth" / "squashed.png")
    unmeasured = millimetres(depth)
    unmeasured[: room.size * 3 // 4] = 0
    Image.fromarray(unmeasured).save(folder / "depth" / "unmeasured.png")
    (folder / "depth" / "broken.png").write_bytes(b"\x89PNG but not really")
    return {
        "nomap": "no depth map named nomap",
        "squashed": "aspect",
        "unmeasured": "depth at 25% of its pixels",
        "broken": "not a readable depth map",
    }


@pytest.fixture(scope="module")
def scene_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    inputs = folder / "in"
    for name, room in ROOMS.items():
        write_scene(inputs, name, room, seed=len(name))
    expected_rejects = write_bad_backgrounds(inputs)
    (inputs / "fg").mkdir()
    for seed, (name, size) in enumerate(FOREGROUND_SIZES.items()):
        make_foreground(inputs / "fg" / f"{name}.png", size=size, seed=seed)
    output = folder / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.build",
            *scene_build_args(
                str(inputs),
                str(output),
                "--scales=1.0,0.6",
                "--placements_per_scale=2",
                "--records_per_shard=16",
            ),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return output, expected_rejects


def samples(output: Path) -> List[Dict[str, str]]:
    with open(output / "samples.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def image(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        return np.asarray(opened)


@pytest.mark.e2e
def test_no_depth_model_runs_and_bad_maps_are_rejected_with_reasons(scene_build):
    output, expected = scene_build
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["depth"]["model"] == "given maps (--bg_depth)"
    assert manifest["scene"]["placement"] == "depth"
    assert manifest["scene"]["camera_fov"] == 60.0
    assert manifest["scene"]["labels"].startswith("composed from given maps")
    assert manifest["counts"]["samples"] == len(ROOMS) * len(FOREGROUND_SIZES) * 8
    counters = json.loads((output / "timings.json").read_text())["counters"]
    assert not any("inference" in name for name in counters), counters
    assert manifest["scene"]["redraws"] == counters.get("scene.redraws", 0)
    reasons = {Path(r["path"]).stem: r["reason"] for r in manifest["rejects"]}
    assert set(reasons) == set(expected)
    for name, says in expected.items():
        assert says in reasons[name], reasons[name]
    assert sorted(p.name for p in (output / "bg_depth").iterdir()) == sorted(
        f"{name}.png" for name in ROOMS
    )
    assert (output / "report.html").is_file() and (output / "transform").is_dir()


@pytest.mark.e2e
def test_objects_stand_on_the_floors_and_box_tops(scene_build):
    output, _ = scene_build
    surfaces = {name: render(room)[1] for name, room in ROOMS.items()}
    rows = samples(output)
    standing = [row for row in rows if row["fallback"] == "0"]
    assert len(standing) == len(rows)
    for row in standing:
        surface = surfaces[row["bg"]][int(row["foot_y"]), int(row["foot_x"])]
        assert surface in UPWARD, row["id"]


@pytest.mark.e2e
def test_labels_are_the_scene_outside_the_mask_and_the_foot_depth_inside(scene_build):
    output, _ = scene_build
    for row in samples(output):
        label = image(output / row["depth_path"])
        mask = image(output / row["mask_path"]) > 0
        scene = image(output / "bg_depth" / f"{row['bg']}.png")
        assert label.dtype == np.uint16
        assert np.array_equal(label[~mask], scene[~mask])
        assert (label[mask] == round(float(row["foot_depth_m"]) * 1000)).all()
        assert mask.sum() / 64**2 == pytest.approx(float(row["mask_coverage"]), abs=1e-6)


@pytest.mark.e2e
def test_farther_is_smaller_by_the_depth_ratio(scene_build):
    """Within a pair and a drawn scale, h = int(H x scale x Z_ref / Z): so
    h x Z <= H x scale x Z_ref < (h + 1) x Z for every sample, one constant."""
    output, _ = scene_build
    groups: Dict[tuple, List[Dict[str, str]]] = {}
    for row in samples(output):
        groups.setdefault((row["bg"], row["fg"], row["scale"]), []).append(row)
    for key, rows in groups.items():
        low = max(int(r["h"]) * float(r["foot_depth_m"]) for r in rows)
        high = min((int(r["h"]) + 1) * float(r["foot_depth_m"]) for r in rows)
        assert low <= high + 1e-3, key


@pytest.mark.e2e
def test_records_say_where_each_sample_stands(scene_build):
    import tensorflow as tf

    from fgbg.records import feature_spec

    output, _ = scene_build
    table = {row["id"]: row for row in samples(output)}
    files = sorted(str(path) for path in (output / "tfrecords").iterdir())
    parsed = [tf.io.parse_single_example(r, feature_spec()) for r in tf.data.TFRecordDataset(files)]
    assert len(parsed) == len(table)
    for record in parsed:
        row = table[record["id"].numpy().decode()]
        assert int(record["foot_x"]) == int(row["foot_x"])
        assert int(record["foot_y"]) == int(row["foot_y"])
        assert int(record["tries"]) == int(row["tries"])
        assert float(record["foot_depth"]) == pytest.approx(float(row["foot_depth_m"]), abs=1e-4)
        assert float(record["visible_fraction"]) == pytest.approx(
            float(row["visible_fraction"]), abs=1e-5
        )


def page_image(html: str, image_id: str) -> np.ndarray:
    """The pixels of the page's <img id=image_id> (a data: URI PNG)."""
    tag = html.split(f'id="{image_id}"', 1)[1].split(">", 1)[0]
    encoded = tag.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    return image_bytes(base64.b64decode(encoded))


def image_bytes(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as opened:
        return np.asarray(opened.convert("RGB"))


@pytest.mark.e2e
def test_the_build_report_shows_samples_placed_at_random_beside_by_depth(scene_build):
    from fgbg.report import placement
    from fgbg.report.dataset import load_dataset
    from fgbg.report.grid import CAPTION_HEIGHT, GAP, HEADER_HEIGHT, MARGIN, TILE

    output, _ = scene_build
    dataset = load_dataset(str(output))
    rows = placement.beside_random_rows(dataset)
    assert len(rows) == placement.BESIDE_RANDOM_SAMPLES
    assert set(placement.build_foregrounds(dataset, [r["fg"] for r in rows])) == {
        r["fg"] for r in rows
    }
    shown = page_image((output / "report.html").read_text(), "placement-beside-random")
    width, height = placement.beside_random_size(len(rows))
    assert shown.shape == (height, width, 3)
    # Each row's three tiles are pictures, none the grey "not found" placeholder.
    for index in range(len(rows)):
        top = MARGIN + HEADER_HEIGHT + index * (TILE + CAPTION_HEIGHT + GAP)
        for column in range(3):
            left = MARGIN + column * (TILE + GAP)
            tile = shown[top : top + TILE, left : left + TILE].reshape(-1, 3)
            assert len(np.unique(tile, axis=0)) > 50, (index, column)


@pytest.mark.e2e
def test_the_report_shows_the_same_samples_placed_at_random_beside_by_depth(scene_build, tmp_path):
    from pipeline import report
    from tests.helpers import IN_PROCESS

    output, _ = scene_build
    inputs = output.parent / "in"
    random = tmp_path / "random"
    manifest = json.loads((output / "manifest.json").read_text())
    flags = [f"--{name}={manifest['options'][name]}" for name in ("size", "scales")]
    flags += [
        f"--placements_per_scale={manifest['options']['placements_per_scale']}",
        f"--bg={inputs}/bg/*",
        f"--fg={inputs}/fg/*",
        f"--bg_depth={inputs}/depth/*.png",
        "--depth_labels=composed",
        "--depth_encoding=metric",
        "--val_fraction=0",
        "--test_fraction=0",
        "--no_tft",
        f"--output={random}",
        IN_PROCESS,
    ]
    assert build.main(flags) == 0
    # The build's own report remade these samples' random placement exactly
    # as the random build made them (the mask does not depend on --blend).
    from fgbg.report import placement
    from fgbg.report.dataset import load_dataset

    dataset = load_dataset(str(output))
    rows = placement.beside_random_rows(dataset)
    foregrounds = placement.build_foregrounds(dataset, [r["fg"] for r in rows])
    theirs = {r["id"]: r for r in samples(random)}
    for row in rows:
        _, mask = placement.placed_at_random(dataset, row, foregrounds[row["fg"]])
        assert np.array_equal(np.asarray(mask), image(random / theirs[row["id"]]["mask_path"]))
    assert report.main([str(output), "--compare", str(random)]) == 0
    html = (output / "report.html").read_text()
    assert 'id="placement-comparison"' in html and str(random) in html
    assert "foot points drawn again" in html


@pytest.mark.e2e
@pytest.mark.parametrize("labels", ["model", "composed"])
def test_with_a_model_its_forward_passes_are_per_sample_or_per_background(
    scene_build, tmp_path, labels
):
    """A metric model file (the tiny DenseDepth stand-in): with model labels
    it runs on every composite and placement still reads the given maps;
    with composed labels and no --bg_depth it runs once per background."""
    from tests.depth_fixtures import tiny_depth_model
    from tests.helpers import IN_PROCESS

    output, _ = scene_build
    inputs = output.parent / "in"
    model_file = tmp_path / "tiny.h5"
    tiny_depth_model().save(str(model_file))
    given = [f"--bg_depth={inputs}/depth/*.png", "--placement=depth"] if labels == "model" else []
    out = tmp_path / "out"
    flags = [
        f"--bg={inputs}/bg/room.png",
        f"--fg={inputs}/fg/tall.png",
        f"--depth_model={model_file}",
        "--depth_input_size=64x64",
        "--depth_encoding=metric",
        f"--depth_labels={labels}",
        *given,
        "--size=64",
        "--scales=1.0",
        "--placements_per_scale=2",
        "--val_fraction=0",
        "--test_fraction=0",
        "--no_tft",
        f"--output={out}",
        IN_PROCESS,
    ]
    assert build.main(flags) == 0
    counters = json.loads((out / "timings.json").read_text())["counters"]
    passes = sum(v for k, v in counters.items() if k.endswith("num_inferences"))
    rows = samples(out)
    assert len(rows) == 4
    assert passes == (len(rows) if labels == "model" else 1)
    assert ("foot_x" in rows[0]) == (labels == "model"), "scene columns only when placed by depth"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["depth"]["model"] == str(model_file)
    assert (out / "bg_depth" / "room.png").is_file()
    for row in rows:
        assert image(out / row["depth_path"]).dtype == np.uint16


# ------------------------------------------------------------ option rules


def options(*flags: str) -> FgbgOptions:
    return FgbgOptions(["--bg=b/*", "--fg=f/*", "--output=o", *flags])


def relative_checkpoint(folder: Path) -> str:
    """The files a relative Depth Anything checkpoint is described from
    (fgbg/depth/checkpoints.py), with placeholder weights: it is refused
    before anything would load them."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"patch_size": 14}))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 518, "width": 518}})
    )
    (folder / "model.safetensors").write_bytes(b"placeholder")
    return str(folder)


def test_a_relative_checkpoint_is_refused_before_anything_runs(tmp_path, capsys):
    model = relative_checkpoint(tmp_path / "relative")
    argv = ["--bg=b/*", "--fg=f/*", f"--output={tmp_path / 'o'}", f"--depth_model={model}"]
    for wanted in ("--placement=depth", "--depth_labels=composed"):
        assert build.main([*argv, wanted]) == build.EXIT_USAGE
        error = capsys.readouterr().err
        assert "needs depth in metres" in error and "relative disparity" in error
    assert not (tmp_path / "o").exists()


def test_placement_by_depth_needs_some_depth():
    with pytest.raises(UsageError, match="give --bg_depth"):
        check_options(options("--placement=depth", "--depth_model=none"))
    with pytest.raises(UsageError, match="would not run"):
        check_options(
            options("--bg_depth=d/*", "--depth_labels=composed", "--depth_model=untrained")
        )
    with pytest.raises(UsageError, match="would not read it"):
        check_options(options("--bg_depth=d/*", "--depth_model=none"))
    with pytest.raises(UsageError, match="camera_fov"):
        check_options(options("--placement=depth", "--depth_model=none", "--camera_fov=180"))
    opts = options("--bg_depth=d/*", "--depth_labels=composed")
    check_options(opts)
    assert opts.depth_model == "none", "the default model stands down"


def test_scene_options_shape_pair_keys_only_away_from_their_defaults():
    run = RunContext(started_at="", input_files={}, tft_temp_dir="t", progress_dir=None)

    def fingerprint(*flags: str) -> str:
        opts = options("--depth_model=none", *flags)
        check_options(opts)
        return build_config(opts, run).fingerprint

    default = fingerprint()
    assert fingerprint("--camera_fov=50") == default, "unused without --placement depth"
    by_depth = fingerprint("--placement=depth", "--bg_depth=d/*")
    assert by_depth != default
    assert fingerprint("--placement=depth", "--bg_depth=d/*", "--camera_fov=50") != by_depth
    assert fingerprint("--placement=depth", "--bg_depth=d/*", "--bg_depth_scale=5000") != by_depth
    assert fingerprint("--placement=depth", "--bg_depth=d/*", "--depth_labels=composed") != (
        by_depth
    )


def test_a_depth_map_changes_its_backgrounds_pair_keys():
    from fgbg.types import Background
    from transforms.background_depth import with_depth_digest

    background = Background("room", "room.png", "train", "abc")
    first = with_depth_digest(background, b"one map")
    assert first.digest != background.digest
    assert with_depth_digest(background, b"another map").digest != first.digest


# ------------------------------------------------------------ background depth


def test_a_model_runs_once_per_background_and_its_maps_are_written(tmp_path):
    """With composed labels and no --bg_depth, the depth stage's handler
    runs on each background, once: bg_depth/<name>.png holds its metric map."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from fgbg.depth import maps
    from fgbg.types import Background
    from tests.depth_fixtures import tiny_depth_config, tiny_depth_model, tiny_raw_reference
    from transforms.background_depth import BackgroundDepth
    from transforms.depth import DEPTH_METRICS_NAMESPACE
    from transforms.scene_placement import SceneConfig

    model_file = str(tmp_path / "tiny.h5")
    tiny_depth_model().save(model_file)
    depth = tiny_depth_config(model=model_file, out_size=(64, 64))
    scene = SceneConfig("depth", "composed", 60.0, None, 1000.0, 1000, "metric", 90)
    rng = np.random.default_rng(5)
    prepared = [
        (Background(f"bg{n}", f"bg{n}.png", "", "d"), rng.integers(0, 256, (64, 64, 3), np.uint8))
        for n in range(3)
    ]
    pipeline = TestPipeline(runner="FnApiRunner")
    backgrounds, rejects = (
        pipeline
        | beam.Create(prepared, reshuffle=False)
        | BackgroundDepth(str(tmp_path), 64, scene, depth)
    )
    assert_that(backgrounds | beam.Map(lambda item: item[0].stem), equal_to(["bg0", "bg1", "bg2"]))
    assert_that(rejects, equal_to([]), label="NoRejects")
    result = pipeline.run()
    result.wait_until_finish()
    query = result.metrics().query(
        MetricsFilter().with_namespace(DEPTH_METRICS_NAMESPACE).with_name("num_inferences")
    )
    assert query["counters"][0].committed == len(prepared)
    for background, pixels in prepared:
        raw = tiny_raw_reference(pixels[None].astype(np.float64) / 255.0)[0]
        expected, _ = maps.metric_stored(maps.postprocess(raw), (64, 64))
        written = image(tmp_path / "bg_depth" / f"{background.stem}.png")
        assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
