"""Flaky object storage, for real: whole builds from and to gs:// through a
fault-injecting proxy in front of the GCS emulator (tests/fault_proxy.py),
and through an emulator that is stopped mid-build and started again. A
build either completes with exactly the files of an undisturbed build
(the storage clients retry) or fails naming the object, and the rerun
resumes to the identical dataset."""

import os
import threading
import time
from pathlib import Path

import pytest
from apache_beam.internal.gcp import auth

from pipeline import build
from tests.fault_proxy import FaultProxy
from tests.helpers import (
    comparable,
    download_tree,
    emulator,
    make_inputs,
    small_build_args,
    upload_tree,
)

BUCKET = "fgbg-flaky"
GS = f"gs://{BUCKET}"
INPUTS = {name: f"{GS}/inputs/{name}/*" for name in ("bg", "fg", "fg_mask")}
SIZE = ["--size=96", "--scales=1.0,0.5", "--placements_per_scale=3"]

pytestmark = [pytest.mark.faults, pytest.mark.gcs, pytest.mark.e2e]


@pytest.fixture
def storage(tmp_path, monkeypatch):
    """The emulator holding the inputs, and an undisturbed build of them
    (read from the bucket, written locally) to compare with."""
    from google.cloud import storage

    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    make_inputs(tmp_path / "inputs", backgrounds=3, foregrounds=2, masks=1)
    with emulator(monkeypatch, BUCKET) as server:
        bucket = storage.Client.create_anonymous_client().bucket(BUCKET)
        upload_tree(bucket, tmp_path / "inputs", "inputs")
        clean = tmp_path / "clean" / "v1"
        build.run(small_build_args(INPUTS, clean, *SIZE))
        yield server, bucket, comparable(clean)


def built(bucket, tmp_path: Path, name: str) -> dict:
    local = tmp_path / name / "v1"
    download_tree(bucket, "datasets/v1", local)
    return comparable(local)


def test_a_build_through_flaky_storage_makes_exactly_the_undisturbed_files(
    tmp_path, monkeypatch, storage
):
    server, bucket, clean = storage
    upstream = os.environ["STORAGE_EMULATOR_HOST"]
    with FaultProxy(upstream, fault_share=0.02, seed=3, slow_s=0.5) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        build.run(small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE))
        assert all(count > 0 for count in proxy.injected.values()), proxy.injected
        proxy.fault_share = 0.0  # the objects' links lead through the proxy
        assert built(bucket, tmp_path, "flaky") == clean


def restart_when(server, ready, down_s: float) -> threading.Thread:
    """In a thread: once `ready()`, stop the emulator's HTTP server (the
    emulator's own stop), keep it down `down_s` seconds, and serve the same
    storage again on the same port."""
    from gcp_storage_emulator.server import APIThread

    def outage() -> None:
        deadline = time.monotonic() + 120
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        api = server._api
        api.join()
        time.sleep(down_s)
        server._api = APIThread(api._host, api._port, server._storage)
        server.start()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def test_a_build_rides_out_the_storage_stopping_and_starting_again(tmp_path, storage):
    server, bucket, clean = storage

    def samples_written() -> int:
        names = server._storage.objects.get(BUCKET, {})
        return sum("/overlay/" in name for name in names)

    outage = restart_when(server, lambda: samples_written() >= 10, down_s=4.0)
    build.run(small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE))
    outage.join(timeout=5)
    assert not outage.is_alive() and samples_written() == 3 * 2 * 12
    assert built(bucket, tmp_path, "restarted") == clean


def test_an_object_the_storage_refuses_fails_the_build_naming_it_and_a_rerun_resumes(
    tmp_path, monkeypatch, capsys, storage
):
    """A 403 on one input is not a bad image: the build fails naming the
    object rather than rejecting it and building a smaller dataset."""
    _, bucket, clean = storage
    with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], fault_share=0.0) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        proxy.refused = "inputs%2Fbg%2Fbg2.jpg"
        args = small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE)
        assert build.main(args) == build.EXIT_FAILED
        error = capsys.readouterr().err
        assert f"cannot read {GS}/inputs/bg/bg2.jpg: 403" in error
        assert not list(bucket.list_blobs(prefix="datasets/v1/.lease.json"))
        assert not list(bucket.list_blobs(prefix="datasets/v1/manifest.json"))
        proxy.refused = ""
        build.run(args)
        assert built(bucket, tmp_path, "refused") == clean
