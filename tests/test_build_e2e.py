"""The whole graph, end to end, on tiny inputs."""

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgbg.documents import Counts
from fgbg.training_data import read_tfrecords
from pipeline import build
from pipeline.run_documents import check_sample_count
from tests.helpers import comparable, make_inputs, small_build_args

SAMPLES_PER_PAIR = 8  # small_build_args: 2 flips x 2 scales x 2 placements


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build with a few bad inputs mixed in, shared by the checks below."""
    root = tmp_path_factory.mktemp("e2e")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=2, masks=1)
    (root / "inputs" / "bg" / "empty.jpg").write_bytes(b"")
    (root / "inputs" / "bg" / "notes.jpg").write_text("not a photo")
    (root / "inputs" / "fg" / "huge.png").write_bytes(
        (root / "inputs" / "bg" / "bg1.jpg").read_bytes()
    )
    output = root / "out"
    manifest = build.run(small_build_args(inputs, output))
    return output, manifest


def read_image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.e2e
def test_counts_and_layout(built):
    output, manifest = built
    counts = manifest.counts
    assert counts.backgrounds == 3 and counts.foregrounds == 2
    assert counts.samples == 3 * 2 * SAMPLES_PER_PAIR
    assert sorted(p.name for p in (output / "bg").iterdir()) == ["bg1.jpg", "bg2.jpg", "bg3.jpg"]
    for bg in ("bg1", "bg2", "bg3"):
        for fg in ("fg_1", "fg_2"):
            for kind, ext in (("overlay", "jpg"), ("mask", "png")):
                names = sorted(int(p.stem) for p in (output / bg / fg / kind).glob(f"*.{ext}"))
                assert names == list(range(1, SAMPLES_PER_PAIR + 1))
            assert not (output / bg / fg / "depth").exists()
    assert not list(output.rglob(".*.tmp"))


@pytest.mark.e2e
def test_images_have_the_dataset_size_and_masks_are_binary(built):
    output, _ = built
    overlay = read_image(output / "bg1" / "fg_1" / "overlay" / "1.jpg")
    mask = read_image(output / "bg1" / "fg_1" / "mask" / "1.png")
    assert overlay.shape == (64, 64, 3) and mask.shape == (64, 64)
    for path in output.rglob("mask/*.png"):
        assert set(np.unique(read_image(path))) <= {0, 255}


@pytest.mark.e2e
def test_label_csv_has_the_original_format(built):
    output, manifest = built
    text = (output / "label_data.csv").read_text()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == manifest.counts.samples
    assert lines[0] == '"out/bg/bg1.jpg";"out/bg1/fg_1/overlay/1.jpg";"out/bg1/fg_1/mask/1.png";""'
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert all(len(row) == 4 for row in rows)
    for bg_path, overlay, mask, depth in rows:
        assert (output.parent / overlay).is_file() and (output.parent / mask).is_file()
        assert (output.parent / bg_path).is_file() and depth == ""


@pytest.mark.e2e
def test_samples_csv_describes_every_sample(built):
    output, manifest = built
    rows = list(csv.DictReader(open(output / "samples.csv")))
    assert len(rows) == manifest.counts.samples
    splits = {}
    for row in rows:
        splits.setdefault(row["bg"], set()).add(row["split"])
        mask = read_image(output / row["mask_path"])
        x, y, w, h = (int(row[k]) for k in "xywh")
        ys, xs = np.nonzero(mask)
        assert xs.min() >= x and xs.max() < x + w and ys.min() >= y and ys.max() < y + h
        assert row["flip"] == ("1" if int(row["number"]) > SAMPLES_PER_PAIR // 2 else "0")
    assert all(len(s) == 1 for s in splits.values()), "a background leaked across splits"
    per_split = {}
    for row in rows:
        per_split[row["split"]] = per_split.get(row["split"], 0) + 1
    assert per_split == manifest.counts.samples_per_split


@pytest.mark.e2e
def test_tfrecords_parse_through_the_reader(built):
    output, manifest = built
    total = 0
    for split, count in manifest.counts.samples_per_split.items():
        records = list(read_tfrecords(str(output / "tfrecords" / f"{split}-*")))
        assert len(records) == count
        total += count
        first = records[0]
        sample_id = first["id"].numpy().decode()
        assert first["overlay"].shape == (64, 64, 3) and first["mask"].shape == (64, 64, 1)
        on_disk = read_image(
            output / f"{sample_id.rsplit('/', 1)[0]}/mask/{sample_id.rsplit('/', 1)[1]}.png"
        )
        assert np.array_equal(first["mask"].numpy()[..., 0], on_disk)
        assert first["split"].numpy().decode() == split
    assert total == manifest.counts.samples


@pytest.mark.e2e
def test_stats_match_numpy_over_the_written_images(built):
    output, _ = built
    stats = json.loads((output / "stats.json").read_text())
    groups = {
        "background": sorted((output / "bg").glob("*.jpg")),
        "overlay": sorted(output.rglob("overlay/*.jpg")),
        "mask": sorted(output.rglob("mask/*.png")),
    }
    for kind, paths in groups.items():
        channels = 1 if kind == "mask" else 3
        pixels = np.concatenate([read_image(p).reshape(-1, channels) for p in paths]).astype(
            np.float64
        )
        np.testing.assert_allclose(stats[kind]["mean"], pixels.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(stats[kind]["std"], pixels.std(axis=0), rtol=1e-9)
    assert "depth" not in stats


@pytest.mark.e2e
def test_rejects_are_reported_and_good_inputs_kept(built):
    output, manifest = built
    rejects = {Path(r.path).name: r.reason for r in manifest.rejects}
    assert rejects["empty.jpg"] == "empty file"
    assert "not a readable image" in rejects["notes.jpg"]
    assert "larger than the 64x64 background" in rejects["huge.png"]
    table = list(csv.DictReader(open(output / "rejects.csv")))
    assert sorted(Path(r["path"]).name for r in table) == sorted(rejects)
    assert manifest.counts.rejected == 3
    assert manifest.depth.model == "none"


@pytest.mark.e2e
def test_same_seed_gives_identical_bytes_across_running_modes(tmp_path, inputs):
    single = tmp_path / "a" / "out"
    multi = tmp_path / "b" / "out"
    reseeded = tmp_path / "c" / "out"
    build.run(small_build_args(inputs, single, tft=True))
    build.run(
        small_build_args(
            inputs,
            multi,
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
            tft=True,
        )
    )
    build.run(small_build_args(inputs, reseeded, "--seed=1"))
    first, second = comparable(single), comparable(multi)
    assert first["files"].keys() == second["files"].keys()
    assert [name for name in first["files"] if first["files"][name] != second["files"][name]] == []
    assert first["manifest"] == second["manifest"]
    assert same_transform_outputs(single, multi)
    third = comparable(reseeded)
    assert third["files"]["samples.csv"] != first["files"]["samples.csv"]


def same_transform_outputs(a: Path, b: Path) -> bool:
    """Both builds' TFT graphs map the same records to the same tensors."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from fgbg.records import raw_feature_spec

    files = sorted(str(p) for p in (a / "tfrecords").glob("*"))
    raw = tf.io.parse_example(
        next(iter(tf.data.TFRecordDataset(files).batch(64))), raw_feature_spec(with_depth=False)
    )
    outputs = [
        tft.TFTransformOutput(str(root / "transform")).transform_features_layer()(raw)
        for root in (a, b)
    ]
    return all(np.array_equal(outputs[0][k].numpy(), outputs[1][k].numpy()) for k in outputs[0])


def test_bad_options_fail_fast_with_the_option_named(tmp_path, inputs):
    with pytest.raises(build.UsageError, match="--output is required"):
        build.run([f"--bg={inputs['bg']}", f"--fg={inputs['fg']}"])
    with pytest.raises(build.UsageError, match="no input files"):
        build.run(
            small_build_args({**inputs, "bg": str(tmp_path / "nothing" / "*")}, tmp_path / "o")
        )
    with pytest.raises(build.UsageError, match="multiples of 32"):
        build.run(small_build_args(inputs, tmp_path / "o", "--depth_input_size=100x100"))
    with pytest.raises(build.UsageError, match="unknown option.*--placement_per_scale=1"):
        build.run(small_build_args(inputs, tmp_path / "o", "--placement_per_scale=1"))


@pytest.mark.parametrize(
    "option, message",
    [
        ("--depth_quality=101", "--depth_quality must be in 1..100, got 101"),
        ("--bg_quality=0", "--bg_quality must be in 1..100, got 0"),
        ("--progress_interval_s=0", "--progress_interval_s must be > 0, got 0.0"),
        ("--max_reject_fraction=-1", "--max_reject_fraction must be in 0..1, got -1.0"),
        ("--tft_batch_size=0", "--tft_batch_size must be >= 1, got 0"),
        ("--val_fraction=-0.1", "--val_fraction must be in 0..1, got -0.1"),
        ("--test_foreground_fraction=-0.5", "--test_foreground_fraction must be in 0..1"),
        ("--val_fraction=0.6 --test_fraction=0.6", "would leave the train split empty"),
        ("--val_fraction=0.7 --test_fraction=0.3", "would leave the train split empty"),
        ("--test_foreground_fraction=1", "would leave train and val no foreground"),
        ("--test_foreground_fraction=0.2 --test_fraction=0", "--test_fraction 0 makes none"),
        (
            "--depth_model=untrained --depth_batch_size=2 --depth_min_batch_size=4",
            "--depth_min_batch_size must be at most",
        ),
    ],
)
def test_out_of_range_options_are_named(tmp_path, inputs, option, message):
    with pytest.raises(build.UsageError, match=re.escape(message)):
        build.run(small_build_args(inputs, tmp_path / "o", *option.split()))
    assert not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_cli_exit_status_reports_too_many_rejects(tmp_path, inputs, capsys):
    (Path(inputs["bg"]).parent / "junk.jpg").write_bytes(b"junk")
    args = small_build_args(inputs, tmp_path / "out", "--max_reject_fraction=0.01")
    assert build.main(args) == build.EXIT_TOO_MANY_REJECTS
    captured = capsys.readouterr()
    assert "junk.jpg" in captured.out and "max_reject_fraction" in captured.err


def test_a_sample_shortfall_stops_the_manifest():
    counts = Counts(
        samples=48,
        samples_per_split={"train": 48},
        backgrounds=3,
        foregrounds=2,
        samples_per_pair=8,
        input_files={},
        rejected=0,
        tfrecord_shards=1,
    )
    check_sample_count(counts)
    with pytest.raises(
        RuntimeError, match=r"\(3 backgrounds x 2 foregrounds\) x 8 per pair = 48; manifest not"
    ):
        check_sample_count(dataclasses.replace(counts, samples=40))
    held_out = dataclasses.replace(counts, samples=40, pairs=5)  # a plan that makes 5 pairs
    check_sample_count(held_out)
    with pytest.raises(RuntimeError, match=r"5 pairs \(3 backgrounds x 2 foregrounds, less held"):
        check_sample_count(dataclasses.replace(held_out, samples=48))
