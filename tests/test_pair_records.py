"""A pair's files (fgbg/pair_records.py) and its lifecycle stages
(transforms/pairs.py): rows, records, skips and removals."""

import dataclasses
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from fgbg import layout
from fgbg.pair_records import (
    finished_rows,
    is_outdated,
    pair_rows,
    parse_record,
    read_record,
    record_pair,
    remove_pair,
    row_to_dict,
    unrecorded_rows,
    write_pair_record,
    write_sample_row,
    written_pair,
)
from fgbg.storage import list_folder, write_file
from fgbg.types import Placement, SampleRow
from tests.helpers import (
    compose_inputs,
    emulated_bucket,
    make_inputs,
    small_build_args,
    small_input_config,
    small_placements,
)
from transforms.compositing import EncodingConfig
from transforms.image_files import WriteSamples
from transforms.pairs import RecordPairs, WriteSampleRows

CONFIG = small_input_config()
PLACEMENTS = small_placements()
SAMPLES_PER_PAIR = PLACEMENTS.samples_per_pair  # 8


def sample_rows(numbers):
    return [
        SampleRow(
            placement=Placement("bg1", "fg1", n, False, 1.0, 0, 0, 8, 8),
            split="train",
            bg_path="bg/bg1.jpg",
            overlay_path=f"bg1/fg1/overlay/{n}.jpg",
            mask_path=f"bg1/fg1/mask/{n}.png",
            depth_path="",
            moments={"overlay": (4, (1, 2, 3), (1, 4, 9))},
        )
        for n in numbers
    ]


def test_recording_a_pair_consumes_its_rows_and_removes_stale_files(tmp_path):
    rows = sample_rows((1, 2))
    pair = tmp_path / "bg1" / "fg1"
    for name in ("overlay/1.jpg", "overlay/2.jpg", "mask/1.png", "mask/2.png"):
        (pair / name).parent.mkdir(parents=True, exist_ok=True)
        (pair / name).write_bytes(b"x")
    stale = ("mask/1.jpg", "overlay/3.jpg")
    for name in stale:
        (pair / name).write_bytes(b"old")
    (pair / "mask" / ".4.png.tmp").write_bytes(b"in flight")
    for row in rows:
        write_sample_row(str(tmp_path), "key", row)
    assert unrecorded_rows(str(tmp_path), "bg1", "fg1", "other", 2, None) is None
    found = unrecorded_rows(str(tmp_path), "bg1", "fg1", "key", 2, None)
    assert found == rows

    record_pair(str(tmp_path), "key", found)
    assert not (pair / ".rows").exists()
    assert sorted(str(p.relative_to(pair)) for p in pair.rglob("*") if p.is_file()) == [
        ".pair.json",
        "mask/.4.png.tmp",
        "mask/1.png",
        "mask/2.png",
        "overlay/1.jpg",
        "overlay/2.jpg",
    ]
    assert json.loads((pair / ".pair.json").read_text())["pair_key"] == "key"


def with_depth(rows, precision):
    return [
        dataclasses.replace(
            row, depth_path=f"bg1/fg1/depth/{row.placement.number}.jpg", depth_precision=precision
        )
        for row in rows
    ]


def test_a_record_is_reused_only_with_depth_made_in_the_precision_this_run_makes(tmp_path):
    """A resume on hardware that runs another precision remakes the pair, and
    removes its record first, rather than mixing precisions in one dataset."""
    rows = with_depth(sample_rows((1, 2)), "bf16")
    write_pair_record(str(tmp_path), "key", rows)
    recorded = read_record(str(tmp_path), "bg1", "fg1")
    assert [row.depth_precision for row in recorded[1]] == ["bf16", "bf16"]
    assert finished_rows(recorded, "key", 2, "bf16") == rows
    assert finished_rows(recorded, "key", 2, "fp32") is None
    assert is_outdated(recorded, "key", "fp32") and is_outdated(recorded, "other", "bf16")
    assert not is_outdated(recorded, "key", "bf16") and not is_outdated(None, "key", "fp32")

    for row in with_depth(sample_rows((1, 2)), "fp32"):
        write_sample_row(str(tmp_path), "key", row)
    assert unrecorded_rows(str(tmp_path), "bg1", "fg1", "key", 2, "bf16") is None
    assert len(unrecorded_rows(str(tmp_path), "bg1", "fg1", "key", 2, "fp32")) == 2


def test_records_from_before_precision_was_recorded_read_as_fp32():
    """Builds before --depth_precision auto ran fp32 unless told otherwise
    (and a bf16 build of theirs has another pair key)."""
    old = {
        "pair_key": "key",
        "rows": [
            {
                "placement": dataclasses.asdict(row.placement),
                "split": row.split,
                "bg_path": row.bg_path,
                "overlay_path": row.overlay_path,
                "mask_path": row.mask_path,
                "depth_path": depth_path,
                "moments": {"overlay": [4, [1, 2, 3], [1, 4, 9]]},
            }
            for row, depth_path in zip(sample_rows((1, 2)), ("bg1/fg1/depth/1.jpg", ""))
        ],
    }
    _, rows = parse_record(json.dumps(old).encode())
    assert [row.depth_precision for row in rows] == ["fp32", None]


def test_rows_without_depth_say_nothing_of_precision():
    """Composites-only builds write the same row files as before."""
    assert "depth_precision" not in row_to_dict(sample_rows((1,))[0])
    assert row_to_dict(with_depth(sample_rows((1,)), "bf16")[0])["depth_precision"] == "bf16"


def test_pair_rows_name_the_record_that_cannot_be_read(tmp_path):
    rows = sample_rows((2, 1))
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
                | WriteSampleRows(str(output))
                | RecordPairs(str(output), SAMPLES_PER_PAIR)
            )
    assert not list(output.rglob(".pair.json"))


@pytest.mark.e2e
def test_a_remake_killed_half_way_is_not_reused_later(tmp_path):
    """Build A records the pair; a remake with other options (another pair
    key) overwrites some files and dies; the next run with A's options must
    make the pair again instead of trusting A's record over mixed files."""
    from pipeline import build

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
                | WriteSampleRows(str(output))
                | RecordPairs(str(output), SAMPLES_PER_PAIR)
            )
    assert not (output / "bg1" / "fg_1" / ".pair.json").exists()
    build.run(small_build_args(inputs, output))
    timings = json.loads((output / "timings.json").read_text())
    assert timings["counters"]["compositing.pairs"] == 1


PAIR_FILES = (".pair.json", "overlay/1.jpg", "mask/1.png", ".rows/2.json")


def write_pair_files(root: str, pair: str) -> None:
    for name in PAIR_FILES:
        write_file(layout.resolve(root, f"{pair}/{name}"), b"x")


def check_remove_pair(root: str) -> None:
    """A pair's every file goes; a pair whose name starts the same stays."""
    write_pair_files(root, "bg1/fg_1")
    write_pair_files(root, "bg1/fg_10")
    remove_pair(root, "bg1", "fg_1")
    assert list_folder(layout.resolve(root, "bg1/fg_1")) == []
    assert sorted(list_folder(layout.resolve(root, "bg1/fg_10"))) == sorted(PAIR_FILES)
    remove_pair(root, "bg1", "fg_1")  # nothing left: not an error


def test_remove_pair_deletes_a_pairs_files_and_folders(tmp_path):
    check_remove_pair(str(tmp_path))
    assert sorted(path.name for path in (tmp_path / "bg1").iterdir()) == ["fg_10"]


@pytest.mark.gcs
def test_remove_pair_deletes_a_pairs_objects_in_a_bucket(monkeypatch):
    with emulated_bucket(monkeypatch, "fgbg-remove-pair"):
        check_remove_pair("gs://fgbg-remove-pair/out")
