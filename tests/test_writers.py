"""The writers on TestPipeline: pair handles in, tables and shards out."""

import csv
import io
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from fgbg import layout
from fgbg.layout import natural_key
from fgbg.records import MOMENT_KINDS, moments_feature
from fgbg.storage import streamed_file
from tests.helpers import make_inputs, pairs_to_make, small_input_config, small_placements
from transforms.compositing import ComposeSamples, EncodingConfig
from transforms.image_files import WriteBackgrounds, WriteSamples
from transforms.inputs import ReadBackgrounds, ReadForegrounds
from transforms.pairs import RecordPairs, WriteSampleRows
from transforms.tables import WriteTables
from transforms.tfrecords import EXAMPLES, WriteTFRecords, plan_shards

CONFIG = small_input_config()
PLACEMENTS = small_placements()
SAMPLES_PER_PAIR = PLACEMENTS.samples_per_pair  # 8


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Writes 3 x 2 pairs through WriteBackgrounds, WriteSamples,
    WriteSampleRows, RecordPairs, WriteTables and WriteTFRecords, checking
    the transforms' outputs with assert_that; returns the output root."""
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
            | WriteSampleRows(str(output))
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


def test_delete_files_takes_names_literally_and_tolerates_gone_files(tmp_path):
    from fgbg.storage import delete_files

    for name in ("1 [copy].png", "1.png", "1 c.png"):
        (tmp_path / name).write_bytes(b"x")
    delete_files([str(tmp_path / "1 [copy].png"), str(tmp_path / "gone.png")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1 c.png", "1.png"]


def test_list_folder_gives_paths_relative_to_the_folder(tmp_path):
    from fgbg.storage import list_folder

    for name in ("bg1/fg_1/mask/1.png", "bg1/fg_1/.pair.json", "bg1/fg_10/mask/1.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert sorted(list_folder(str(tmp_path / "bg1" / "fg_1"))) == [".pair.json", "mask/1.png"]
    assert list_folder(str(tmp_path / "nothing")) == []


def test_a_storage_failure_names_the_path_in_the_projects_words():
    """What a build prints when storage fails: the path, and why in one
    line; the client's text only where the storage answered (a 403 says
    why), never where it gave no answer."""
    import requests
    from apache_beam.io.filesystem import BeamIOError
    from google.api_core.exceptions import Forbidden, RetryError

    from fgbg.storage import storage_error

    path = "gs://b/d/samples.csv"
    gave_up = RetryError("Timeout of 120.0s exceeded", requests.ConnectionError("reset"))
    assert str(storage_error("write", path, gave_up)) == (
        f"cannot write {path}: the storage did not answer within the client's retries "
        "(last: ConnectionError)"
    )
    no_answers = AttributeError("'NoneType' object has no attribute 'status_code'")
    assert str(storage_error("write", path, no_answers)) == (
        f"cannot write {path}: the storage did not answer within the client's retries"
    )
    batch = BeamIOError("Rename operation failed", {("a.tmp", path): 503})
    assert str(storage_error("write", path, batch)) == (
        f"cannot write {path}: the storage still answered HTTP 503 when the client's retries ended"
    )
    assert str(storage_error("read", path, Forbidden("no access"))) == (
        f"cannot read {path}: 403 no access"
    )
    assert str(storage_error("write", "/out/x", OSError(28, "No space left on device"))) == (
        "cannot write /out/x: No space left on device"
    )
