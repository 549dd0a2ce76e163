"""gs:// end to end: the whole pipeline against a real GCS JSON API server
(gcp-storage-emulator) on loopback. Nothing in Beam is mocked: its GCS
filesystem talks HTTP to the emulator via STORAGE_EMULATOR_HOST. TensorFlow's
own file layer ignores the emulator, so these builds also show that every
file, transform/ included, is written through Beam."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image

from fgbg import layout
from pipeline import build
from tests.depth_fixtures import tiny_depth_model
from tests.helpers import (
    LOCAL_RUNNER,
    all_files,
    comparable,
    download_tree,
    emulated_bucket,
    make_foreground,
    make_inputs,
    small_build_args,
    upload_tree,
)
from tests.scene_fixtures import Room, scene_build_args, write_scene

BUCKET = "fgbg-test"

pytestmark = [pytest.mark.gcs]


@pytest.fixture
def bucket(monkeypatch):
    """An emulated bucket; Beam and the storage client both point at it."""
    with emulated_bucket(monkeypatch, BUCKET) as handle:
        yield handle


def transformed(root: Path) -> dict:
    """A dataset's first records through its own transform/, read as a TFX
    trainer reads it (raw feature spec from transform/metadata/)."""
    transform = tft.TFTransformOutput(str(root / layout.TRANSFORM_DIR))
    shards = sorted(str(p) for p in (root / "tfrecords").glob("*"))
    serialized = next(iter(tf.data.TFRecordDataset(shards).batch(64)))
    raw = tf.io.parse_example(serialized, transform.raw_feature_spec())
    return {k: v.numpy() for k, v in transform.transform_features_layer()(raw).items()}


@pytest.mark.e2e
def test_whole_build_from_and_to_a_bucket(tmp_path, bucket):
    local_inputs = tmp_path / "inputs"
    make_inputs(local_inputs, backgrounds=2, foregrounds=2, masks=1)
    (local_inputs / "bg" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    upload_tree(bucket, local_inputs, "inputs")
    tiny_depth_model().save(str(tmp_path / "tiny.h5"))
    bucket.blob("models/tiny.h5").upload_from_filename(str(tmp_path / "tiny.h5"))
    gs = f"gs://{BUCKET}"
    inputs = {
        "bg": f"{gs}/inputs/bg/*",
        "fg": f"{gs}/inputs/fg/*",
        "fg_mask": f"{gs}/inputs/fg_mask/*",
    }
    options = (f"--depth_model={gs}/models/tiny.h5", "--depth_input_size=64x64")
    manifest = build.run(small_build_args(inputs, f"{gs}/datasets/v1", *options, tft=True))
    assert manifest.counts.samples == 2 * 2 * 8
    assert [Path(r.path).name for r in manifest.rejects] == ["broken.jpg"]

    blobs = {
        blob.name[len("datasets/v1/") :]: blob for blob in bucket.list_blobs(prefix="datasets/v1/")
    }
    for kind, ext in (("overlay", "jpg"), ("mask", "png"), ("depth", "jpg")):
        assert len([n for n in blobs if f"/{kind}/" in n and n.endswith(ext)]) == 32
    assert not [name for name in blobs if name.endswith(".tmp")]

    label_rows = blobs["label_data.csv"].download_as_text().splitlines()
    assert len(label_rows) == 32
    assert label_rows[0] == (
        '"v1/bg/bg1.jpg";"v1/bg1/fg_1/overlay/1.jpg";'
        '"v1/bg1/fg_1/mask/1.png";"v1/bg1/fg_1/depth/1.jpg"'
    )

    shards = [name for name in blobs if name.startswith("tfrecords/")]
    local_shards = []
    for name in shards:
        target = tmp_path / "shards" / Path(name).name
        target.parent.mkdir(exist_ok=True)
        blobs[name].download_to_filename(str(target))
        local_shards.append(str(target))
    records = [
        tf.train.Example.FromString(serialized.numpy())
        for serialized in tf.data.TFRecordDataset(local_shards)
    ]
    assert len(records) == 32
    for record in records:  # the shard writer's read-ahead kept every file with its row
        feature = record.features.feature
        sample_id = feature["id"].bytes_list.value[0].decode()
        bg, fg, number = sample_id.split("/")
        for kind, ext in (("overlay", "jpg"), ("mask", "png"), ("depth", "jpg")):
            assert (
                feature[kind].bytes_list.value[0]
                == blobs[f"{bg}/{fg}/{kind}/{number}.{ext}"].download_as_bytes()
            )

    stats = json.loads(blobs["stats.json"].download_as_text())
    overlays = [
        np.asarray(Image.open(io.BytesIO(blob.download_as_bytes())))
        for name, blob in sorted(blobs.items())
        if "/overlay/" in name
    ]
    pixels = np.concatenate([o.reshape(-1, 3) for o in overlays]).astype(np.float64)
    np.testing.assert_allclose(stats["overlay"]["mean"], pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["overlay"]["std"], pixels.std(axis=0), rtol=1e-9)
    samples = list(csv.DictReader(io.StringIO(blobs["samples.csv"].download_as_text())))
    assert {row["depth_path"].split("/")[2] for row in samples} == {"depth"}

    # The same build written locally holds the same files, byte for byte
    # (less times and the SavedModel's fresh ids), and the same graph.
    local = tmp_path / "local" / "v1"
    build.run(small_build_args(inputs, local, *options, tft=True))
    from_bucket = tmp_path / "from_bucket" / "v1"
    download_tree(bucket, "datasets/v1", from_bucket)
    assert all_files(from_bucket).keys() == all_files(local).keys()
    assert "transform/metadata/schema.pbtxt" in all_files(from_bucket)
    assert comparable(from_bucket) == comparable(local)
    ours, theirs = transformed(from_bucket), transformed(local)
    assert sorted(ours) == ["background", "depth", "mask", "overlay"]
    assert all(np.array_equal(ours[name], theirs[name]) for name in ours)


def test_list_folder_lists_one_prefix_only(bucket):
    from fgbg.storage import list_folder

    for name in (
        "d/bg1/fg_1/mask/1.jpg",
        "d/bg1/fg_1/.pair.json",
        "d/bg1/fg_10/mask/1.png",
        "d/bg1/fg_2/overlay/1.jpg",
    ):
        bucket.blob(name).upload_from_string(b"x")
    assert sorted(list_folder(f"gs://{BUCKET}/d/bg1/fg_1")) == [".pair.json", "mask/1.jpg"]
    assert list_folder(f"gs://{BUCKET}/d/nothing/here") == []


def test_stale_files_are_found_and_deleted_literally(bucket):
    """Folder markers are not files; names with glob characters are taken
    as they are; a file already gone is not an error."""
    from fgbg.storage import delete_files, list_folder

    for name in (
        "e/a[1]/fg/",
        "e/a[1]/fg/mask/",
        "e/a[1]/fg/mask/1.png",
        "e/a[1]/fg/mask/2 [copy].png",
        "e/a1/fg/mask/1.png",
    ):
        bucket.blob(name).upload_from_string(b"" if name.endswith("/") else b"x")
    folder = f"gs://{BUCKET}/e/a[1]/fg"
    assert sorted(list_folder(folder)) == ["mask/1.png", "mask/2 [copy].png"]
    delete_files([f"{folder}/mask/2 [copy].png", f"{folder}/mask/gone.png"])
    assert sorted(blob.name for blob in bucket.list_blobs(prefix="e/")) == [
        "e/a1/fg/mask/1.png",
        "e/a[1]/fg/",
        "e/a[1]/fg/mask/",
        "e/a[1]/fg/mask/1.png",
    ]


def test_copy_tree_publishes_a_local_tree_byte_for_byte(tmp_path, bucket):
    """Nested files, a name Beam would read as gzip, and bytes that are not
    gzip: each arrives as it was, and no temporary object stays."""
    from fgbg.storage import copy_tree

    files = {
        "transform_fn/saved_model.pb": b"\x08\x01graph",
        "transform_fn/variables/variables.index": bytes(range(256)),
        "transform_fn/assets/vocab.gz": b"not gzip at all",
        "metadata/schema.pbtxt": b'feature {\n  name: "mask"\n}\n',
    }
    for name, data in files.items():
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_bytes(data)
    copied = copy_tree(str(tmp_path / "tree"), f"gs://{BUCKET}/d/transform")
    assert copied == sorted(files)
    blobs = {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs(prefix="d/")}
    assert blobs == {f"d/transform/{name}": data for name, data in files.items()}


def test_publishing_the_transform_replaces_an_earlier_one(tmp_path, bucket):
    """The tree TFT wrote, plus the raw metadata, becomes transform/; what an
    earlier build left there (another graph's variables) is deleted."""
    from transforms.normalization import publish_transform

    scratch = tmp_path / "scratch"
    (scratch / "transform_fn" / "variables").mkdir(parents=True)
    (scratch / "transform_fn" / "saved_model.pb").write_bytes(b"new graph")
    (scratch / "transform_fn" / "variables" / "variables.index").write_bytes(b"new index")
    bucket.blob("d/transform/transform_fn/saved_model.pb").upload_from_string(b"old graph")
    bucket.blob("d/transform/transform_fn/variables/variables.data-1").upload_from_string(b"old")
    destination = f"gs://{BUCKET}/d/transform"
    assert publish_transform(None, str(scratch), destination, False) == destination
    blobs = {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs(prefix="d/")}
    assert sorted(blobs) == [
        "d/transform/metadata/schema.pbtxt",
        "d/transform/transform_fn/saved_model.pb",
        "d/transform/transform_fn/variables/variables.index",
    ]
    assert blobs["d/transform/transform_fn/saved_model.pb"] == b"new graph"
    assert b'name: "overlay_moments"' in blobs["d/transform/metadata/schema.pbtxt"]


# One scale, two placements, in this process: 4 samples a pair.
SMALL_SCENE = ("--scales=1.0", "--placements_per_scale=2", *LOCAL_RUNNER)


def is_image(name: str) -> bool:
    """A sample's overlay, mask or label, or a background's depth map."""
    kinds = ("/overlay/", "/mask/", "/depth/")
    return name.startswith(layout.BACKGROUND_DEPTH_DIR + "/") or any(k in name for k in kinds)


@pytest.mark.e2e
def test_depth_maps_from_a_bucket_place_and_label_as_local_ones_do(tmp_path, bucket):
    local_inputs = tmp_path / "inputs"
    write_scene(local_inputs, "room", Room())
    write_scene(local_inputs, "nomap", Room())
    (local_inputs / "depth" / "nomap.png").unlink()
    (local_inputs / "fg").mkdir()
    make_foreground(local_inputs / "fg" / "thing.png", size=(12, 28), seed=0)
    upload_tree(bucket, local_inputs, "inputs")

    local = build.run(scene_build_args(str(local_inputs), str(tmp_path / "local"), *SMALL_SCENE))
    remote = build.run(
        scene_build_args(f"gs://{BUCKET}/inputs", f"gs://{BUCKET}/scene", *SMALL_SCENE)
    )
    download_tree(bucket, "scene", tmp_path / "remote")

    assert remote.counts.samples == local.counts.samples == 4
    assert [Path(r.path).name for r in remote.rejects] == ["nomap.png"]
    assert "no depth map named nomap" in remote.rejects[0].reason
    local_images, remote_images = (
        {name: data for name, data in all_files(root).items() if is_image(name)}
        for root in (tmp_path / "local", tmp_path / "remote")
    )
    assert len(remote_images) == 3 * 4 + 1
    assert remote_images == local_images
