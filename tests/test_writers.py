"""The writers on TestPipeline: pair handles in, tables and shards out."""

import csv
import dataclasses
import io
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fgbg import layout
from fgbg.layout import natural_key
from fgbg.pair_records import pair_rows, write_pair_record, written_pair
from fgbg.records import MOMENT_KINDS, moments_feature
from fgbg.storage import streamed_file
from fgbg.types import Placement, SampleRow
from tests.conftest import compose_inputs, make_inputs, pairs_to_make
from transforms.compositing import ComposeSamples, EncodingConfig
from transforms.inputs import InputConfig, ReadBackgrounds, ReadForegrounds
from transforms.placements import PlacementConfig
from transforms.writers import (
    EXAMPLES,
    RecordPairs,
    WriteBackgrounds,
    WriteSamples,
    WriteTables,
    WriteTFRecords,
    plan_shards,
)

CONFIG = InputConfig(
    size=48,
    max_input_pixels=1_000_000,
    min_background_side=16,
    mask_threshold=0,
    val_fraction=0.5,
    test_fraction=0.0,
)
PLACEMENTS = PlacementConfig(
    seed=3, size=48, scales=(1.0, 0.5), placements_per_scale=2, mirror=True
)
SAMPLES_PER_PAIR = PLACEMENTS.samples_per_pair  # 8


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Writes 3 x 2 pairs through WriteBackgrounds, WriteSamples, WriteTables
    and WriteTFRecords,
    checking the transforms' outputs with assert_that; returns the output root."""
    root = tmp_path_factory.mktemp("writers")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=2)
    output = root / "out"
    with BeamTestPipeline(runner="FnApiRunner") as p:
        prepared, _ = p | ReadBackgrounds(inputs["bg"], CONFIG)
        foregrounds, _ = p | ReadForegrounds(inputs["fg"], None, CONFIG)
        backgrounds = (prepared | WriteBackgrounds(str(output), 90)).backgrounds
        composites = pairs_to_make(backgrounds, foregrounds) | ComposeSamples(
            foregrounds, CONFIG, PLACEMENTS, EncodingConfig(80, "png", 50)
        )
        pairs = (
            composites
            | WriteSamples(str(output), "png", "")
            | RecordPairs(str(output), SAMPLES_PER_PAIR)
        )
        assert_that(
            pairs
            | beam.Map(
                lambda pair: (pair.bg_stem, pair.fg_stem, pair.samples, pair.moments["mask"][0])
            ),
            equal_to([(f"bg{b}", f"fg_{f}", 8, 8 * 48 * 48) for b in (1, 2, 3) for f in (1, 2)]),
            label="pairs",
        )
        counts = pairs | WriteTables(str(output), "out")
        assert_that(counts | beam.Map(lambda c: sum(c.values())), equal_to([48]), label="counts")
        records = pairs | WriteTFRecords(str(output), 16, "none")
        assert_that(
            records.shards
            | beam.combiners.ToList()
            | beam.Map(
                lambda paths: (
                    sorted(paths)
                    == sorted(f"tfrecords/{p.name}" for p in (output / "tfrecords").glob("*"))
                )
            ),
            equal_to([True]),
            label="shards",
        )
        summaries = records[EXAMPLES] | beam.MapTuple(
            lambda _split, summary: moments_of_summary(summary)
        )
        summed = summaries | beam.CombineGlobally(
            lambda items: np.sum(list(items), axis=0).tolist() if items else []
        )
        assert_that(summed, equal_to_record_moments(output), label="sums")
    return output


def moments_of_summary(serialized: bytes):
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    return [
        v
        for kind in MOMENT_KINDS
        for v in example.features.feature[moments_feature(kind)].int64_list.value
    ]


def equal_to_record_moments(output: Path):
    """A matcher, run once the shards exist: the per-shard summaries' sum is
    the sum of every record's own moments."""

    def check(actual):
        assert actual == [sum_record_moments(output)]

    return check


def read_records(output: Path):
    import tensorflow as tf

    for shard in sorted((output / "tfrecords").glob("*")):
        for serialized in tf.data.TFRecordDataset(str(shard)):
            yield shard.name, tf.train.Example.FromString(serialized.numpy())


def sum_record_moments(output: Path):
    total = np.zeros(14, dtype=np.int64)
    for _, example in read_records(output):
        total += [
            v
            for kind in MOMENT_KINDS
            for v in example.features.feature[moments_feature(kind)].int64_list.value
        ]
    return total.tolist()


def test_every_sample_lands_once_with_its_whole_pair_in_one_shard(written):
    shard_of_pair = {}
    ids = []
    for shard, example in read_records(written):
        sample_id = example.features.feature["id"].bytes_list.value[0].decode()
        split = example.features.feature["split"].bytes_list.value[0].decode()
        assert shard.startswith(split + "-")
        bg, fg, _ = sample_id.split("/")
        assert shard_of_pair.setdefault((bg, fg), shard) == shard
        ids.append(sample_id)
    assert sorted(ids) == sorted(
        f"bg{b}/fg_{f}/{n}" for b in (1, 2, 3) for f in (1, 2) for n in range(1, 9)
    )


def test_shards_hold_records_per_shard_in_whole_pairs(written):
    sizes = {}
    for shard, _ in read_records(written):
        sizes[shard] = sizes.get(shard, 0) + 1
    for split in ("train", "val"):
        shards = sorted(name for name in sizes if name.startswith(split + "-"))
        pairs = sum(sizes[name] for name in shards) // 8
        assert len(shards) == -(-pairs // 2)
        assert all(name.endswith(f"-of-{len(shards):05d}") for name in shards)
    assert set(sizes.values()) <= {8, 16}


def test_plan_shards_deals_whole_pairs_evenly_and_stably():
    pairs = [
        (f"bg{b}", f"fg{f}", "train" if b < 8 else "val", 40) for b in range(10) for f in range(7)
    ]
    plan = plan_shards(pairs, records_per_shard=100)
    assert plan == plan_shards(list(reversed(pairs)), records_per_shard=100)
    for split, pair_count in (("train", 56), ("val", 14)):
        keys = [key for key in plan.values() if key[0] == split]
        shards = -(-pair_count * 40 // 100)
        assert len(keys) == pair_count and {key[2] for key in keys} == {shards}
        sizes = [sum(1 for key in keys if key[1] == index) for index in range(shards)]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    tiny = plan_shards([("a", "x", "test", 40)], records_per_shard=1)
    assert tiny == {("a", "x"): ("test", 0, 1)}


def test_records_carry_their_own_written_files(written):
    for _, example in read_records(written):
        feature = example.features.feature
        bg, fg, number = feature["id"].bytes_list.value[0].decode().split("/")
        assert (
            feature["background"].bytes_list.value[0] == (written / "bg" / f"{bg}.jpg").read_bytes()
        )
        for kind, ext in (("overlay", "jpg"), ("mask", "png")):
            assert (
                feature[kind].bytes_list.value[0]
                == (written / bg / fg / kind / f"{number}.{ext}").read_bytes()
            )
        assert feature["depth"].bytes_list.value[0] == b""


def test_records_in_a_shard_are_mixed_not_in_pair_runs(written):
    by_shard = {}
    for shard, example in read_records(written):
        sample_id = example.features.feature["id"].bytes_list.value[0].decode()
        by_shard.setdefault(shard, []).append(sample_id.rsplit("/", 1)[0])
    pairs = max(by_shard.values(), key=len)
    assert len(set(pairs)) == 2 and pairs != sorted(pairs)


def test_tables_are_sorted_and_match_the_files(written):
    label = list(csv.reader(io.StringIO((written / layout.LABEL_CSV).read_text()), delimiter=";"))
    samples = list(csv.DictReader(io.StringIO((written / layout.SAMPLES_CSV).read_text())))
    assert len(label) == len(samples) == 48
    keys = [(natural_key(s["bg"]), natural_key(s["fg"]), int(s["number"])) for s in samples]
    assert keys == sorted(keys)
    for row, sample in zip(label, samples):
        assert row[1] == f"out/{sample['overlay_path']}"
        assert (written / sample["overlay_path"]).is_file()
        assert (written / sample["mask_path"]).is_file()


def test_streamed_file_publishes_nothing_when_a_piece_fails(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError):
        with streamed_file(str(target)) as handle:
            handle.write(b"first half")
            raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []
    with streamed_file(str(target)) as handle:
        handle.write(b"a")
        handle.write(b"b")
    assert target.read_bytes() == b"ab"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_pair_rows_name_the_record_that_cannot_be_read(tmp_path):
    rows = [
        SampleRow(
            placement=Placement("bg1", "fg1", n, False, 1.0, 0, 0, 8, 8),
            split="train",
            bg_path="bg/bg1.jpg",
            overlay_path=f"o/{n}.jpg",
            mask_path=f"m/{n}.png",
            depth_path="",
            moments={"overlay": (4, (1, 2, 3), (1, 4, 9))},
        )
        for n in (2, 1)
    ]
    write_pair_record(str(tmp_path), "key", rows)
    pair = written_pair(rows)
    assert [row.placement.number for row in next(pair_rows(str(tmp_path), [pair]))] == [1, 2]
    assert pair.moments == {"overlay": (8, (2, 4, 6), (2, 8, 18))}

    with pytest.raises(ValueError, match="2 rows recorded, 3 written"):
        next(pair_rows(str(tmp_path), [dataclasses.replace(pair, samples=3)]))
    record = tmp_path / "bg1" / "fg1" / ".pair.json"
    record.write_text('{"rows": [')
    with pytest.raises(ValueError, match=r"bg1/fg1/\.pair\.json: unreadable pair record"):
        next(pair_rows(str(tmp_path), [pair]))


def test_a_pair_cut_short_in_a_bundle_fails_loudly(tmp_path):
    """A pair is recorded only once all its samples are written; if samples of
    a pair were ever lost before the record step, the build must fail, not
    drop the pair."""
    inputs = make_inputs(tmp_path / "inputs", backgrounds=1, foregrounds=1)
    output = tmp_path / "out"
    with pytest.raises(Exception, match=r"partly written: bg1/fg_1 \(5 of 8\)"):
        with BeamTestPipeline(runner="FnApiRunner") as p:
            _ = (
                compose_inputs(p, inputs, CONFIG, PLACEMENTS, EncodingConfig(80, "png", 50))
                | beam.Filter(lambda composite: composite.placement.number <= 5)
                | WriteSamples(str(output), "png", "")
                | RecordPairs(str(output), SAMPLES_PER_PAIR)
            )
    assert not list(output.rglob(".pair.json"))


def test_delete_files_takes_names_literally_and_tolerates_gone_files(tmp_path):
    from fgbg.storage import delete_files

    for name in ("1 [copy].png", "1.png", "1 c.png"):
        (tmp_path / name).write_bytes(b"x")
    delete_files([str(tmp_path / "1 [copy].png"), str(tmp_path / "gone.png")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1 c.png", "1.png"]


def test_a_remake_killed_half_way_is_not_reused_later(tmp_path):
    """Build A records the pair; a remake with other options (another pair
    key) overwrites some files and dies; the next run with A's options must
    make the pair again instead of trusting A's record over mixed files."""
    from pipeline import build
    from tests.conftest import small_build_args

    inputs = make_inputs(tmp_path / "inputs", backgrounds=1, foregrounds=1)
    output = tmp_path / "out"
    build.run(small_build_args(inputs, output))
    with pytest.raises(Exception, match="partly written"):
        with BeamTestPipeline(runner="FnApiRunner") as p:
            _ = (
                compose_inputs(
                    p,
                    inputs,
                    CONFIG,
                    PLACEMENTS,
                    EncodingConfig(80, "png", 50),
                    resume_root=str(output),
                )
                | beam.Filter(lambda composite: composite.placement.number <= 3)
                | WriteSamples(str(output), "png", "")
                | RecordPairs(str(output), SAMPLES_PER_PAIR)
            )
    assert not (output / "bg1" / "fg_1" / ".pair.json").exists()
    build.run(small_build_args(inputs, output))
    timings = json.loads((output / "timings.json").read_text())
    assert timings["counters"]["compositing.pairs"] == 1


def test_list_folder_gives_paths_relative_to_the_folder(tmp_path):
    from fgbg.storage import list_folder

    for name in ("bg1/fg_1/mask/1.png", "bg1/fg_1/.pair.json", "bg1/fg_10/mask/1.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert sorted(list_folder(str(tmp_path / "bg1" / "fg_1"))) == [".pair.json", "mask/1.png"]
    assert list_folder(str(tmp_path / "nothing")) == []
