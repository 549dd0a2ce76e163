"""Flaky object storage, for real: whole builds from and to gs:// through a
fault-injecting proxy in front of the GCS emulator (tests/fault_proxy.py),
and through an emulator that is stopped mid-build and started again; answers
lost after the storage acted; storage that never comes back. A build either
completes with exactly the files of an undisturbed build (the storage
clients retry) or fails naming the object, and the rerun resumes to the
identical dataset."""

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from apache_beam.internal.gcp import auth
from apache_beam.io.gcp.gcsio_retry import DEFAULT_RETRY_WITH_THROTTLING_COUNTER
from google.cloud.storage.retry import DEFAULT_RETRY

from fgbg.storage import TEMPORARY_SUFFIX
from pipeline import build
from tests.fault_proxy import FaultProxy
from tests.helpers import (
    assert_nothing_half_written,
    comparable,
    download_tree,
    emulator,
    make_inputs,
    small_build_args,
    upload_tree,
)

REPO = Path(__file__).resolve().parents[1]

BUCKET = "fgbg-flaky"
GS = f"gs://{BUCKET}"
INPUTS = {name: f"{GS}/inputs/{name}/*" for name in ("bg", "fg", "fg_mask")}
# 3 x 2 pairs x 2 scales x 2 flips = 24 samples: every kind of request the
# storage gets, and an outage after 10 overlays, still mid-build.
SIZE = ["--size=96", "--scales=1.0,0.5", "--placements_per_scale=1"]
SAMPLES = 3 * 2 * 2 * 2

pytestmark = [pytest.mark.faults, pytest.mark.gcs, pytest.mark.e2e]


@contextlib.contextmanager
def bucket_with_inputs(monkeypatch, inputs: Path) -> Iterator[tuple]:
    """The emulator, emptied to a bucket that holds `inputs` under inputs/:
    the emulator and the bucket."""
    from google.cloud import storage

    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    with emulator(monkeypatch, BUCKET) as server:
        bucket = storage.Client.create_anonymous_client().bucket(BUCKET)
        upload_tree(bucket, inputs, "inputs")
        yield server, bucket


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flaky") / "inputs"
    make_inputs(folder, backgrounds=3, foregrounds=2, masks=1)
    return folder


@pytest.fixture(scope="module")
def undisturbed(inputs, tmp_path_factory) -> dict:
    """An undisturbed build of the inputs (read from a bucket, written
    locally), made once for every test here to compare with."""
    clean = tmp_path_factory.mktemp("clean") / "v1"
    with pytest.MonkeyPatch.context() as monkeypatch, bucket_with_inputs(monkeypatch, inputs):
        build.run(small_build_args(INPUTS, clean, *SIZE))
    return comparable(clean)


@pytest.fixture
def storage(monkeypatch, inputs, undisturbed):
    """The emulator, emptied to hold the inputs, and the undisturbed build."""
    with bucket_with_inputs(monkeypatch, inputs) as (server, bucket):
        yield server, bucket, undisturbed


def shorten_first_retry_wait(monkeypatch) -> None:
    """The storage clients' first retry waits 0.1 s instead of 1 s (then
    doubles, as by default): the same retries, less time asleep."""
    for policy in (DEFAULT_RETRY, DEFAULT_RETRY_WITH_THROTTLING_COUNTER):
        monkeypatch.setattr(policy, "_initial", 0.1)


def built(bucket, tmp_path: Path, name: str) -> dict:
    local = tmp_path / name / "v1"
    download_tree(bucket, "datasets/v1", local)
    return comparable(local)


def test_a_build_through_flaky_storage_makes_exactly_the_undisturbed_files(
    tmp_path, monkeypatch, storage
):
    server, bucket, clean = storage
    shorten_first_retry_wait(monkeypatch)
    upstream = os.environ["STORAGE_EMULATOR_HOST"]
    with FaultProxy(upstream, fault_share=0.02, seed=3, slow_s=0.5) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        build.run(small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE))
        assert all(count > 0 for count in proxy.injected.values()), proxy.injected
        proxy.fault_share = 0.0  # the objects' links lead through the proxy
        assert built(bucket, tmp_path, "flaky") == clean


def overlays_in(bucket) -> int:
    return sum("/overlay/" in blob.name for blob in bucket.list_blobs(prefix="datasets/"))


def test_a_build_rides_out_the_storage_stopping_and_starting_again(tmp_path, storage):
    """Once 10 samples' overlays are stored, the emulator stops answering
    (its listening socket closed, as its own stop does), stays down 4 s,
    and serves the same storage again on the same port."""
    server, bucket, clean = storage
    server.stop_when("/overlay/", count=10, down_s=4.0)
    build.run(small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE))
    assert server.outage_over(timeout_s=5) and overlays_in(bucket) == SAMPLES
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


def test_answers_lost_after_the_storage_acted_are_retried_to_exactly_the_undisturbed_files(
    tmp_path, monkeypatch, storage
):
    """The proxy forwards every request, and loses the answer of the first
    request of each kind and of every 50th after it (2%): the emulator
    wrote, copied, deleted or listed, and the client, told nothing, asks
    again. The emulator answers the repeats as GCS does (a finished
    upload's session answers with its object; the lease's generation
    preconditions)."""
    server, bucket, clean = storage
    shorten_first_retry_wait(monkeypatch)
    server.answer(preconditions=True, repeated_uploads=True)
    with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], 0.0, lost_every=50) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        build.run(small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE))
        sent = set(proxy.kinds)
        assert {"write", "read", "list", "delete", "batch:delete", "batch:copy"} <= sent
        assert set(proxy.lost) == sent, (proxy.kinds, proxy.lost)
        assert built(bucket, tmp_path, "lost") == clean


# Shortens the storage clients' retry window (Beam's GCS client and the
# lease's) in the build process: both retry objects are shared by every
# request, including those that take them as a default argument.
SHORT_RETRIES = """
from apache_beam.internal.gcp import auth
from apache_beam.io.gcp.gcsio_retry import DEFAULT_RETRY_WITH_THROTTLING_COUNTER
from google.cloud.storage.retry import DEFAULT_RETRY
from apache_beam.io.gcp import gcsio_retry
from google.cloud.storage import retry

auth.get_service_credentials = lambda options: None
for policy in (retry.DEFAULT_RETRY, gcsio_retry.DEFAULT_RETRY_WITH_THROTTLING_COUNTER):
    policy._timeout = {seconds}
"""
RETRY_WINDOW_S = 4.0
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")  # progress, warnings


def test_storage_that_never_comes_back_fails_the_build_within_the_retry_window_naming_the_path(
    tmp_path, monkeypatch, storage
):
    """The storage stops answering for good (every connection reset) when
    the build renames its first streamed file (a table or shard, through a
    batch copy): the build, in a process of its own with the clients'
    retry window shortened, fails within about one window with the
    project's one-line error naming the object, and no traceback; what it
    left under final names is whole; once the storage is back the rerun
    resumes to the identical dataset, its temporaries gone."""
    _, bucket, clean = storage
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "sitecustomize.py").write_text(SHORT_RETRIES.format(seconds=RETRY_WINDOW_S))
    args = small_build_args(INPUTS, f"{GS}/datasets/v1", *SIZE)
    with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], 0.0) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        proxy.down_at = "batch:copy"
        failing = subprocess.run(
            [sys.executable, "-m", "pipeline.build", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": f"{settings}{os.pathsep}{REPO}"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        ended = time.monotonic()
        assert failing.returncode == build.EXIT_FAILED, failing.stderr
        assert proxy.down and ended - proxy.went_down < 3 * RETRY_WINDOW_S, ended - proxy.went_down
        assert "Traceback" not in failing.stderr
        said = [line for line in failing.stderr.splitlines() if not LOG_LINE.match(line)]
        assert said[0].startswith(f"error: the build failed: cannot write {GS}/datasets/v1/")
        assert "the storage did not answer within the client's retries" in said[0]
        assert said[1:] == [
            "Finished pairs are kept: fix the cause and rerun the same command to resume "
            "(--verbose shows the traceback)."
        ]

        proxy.down_at, proxy.down = "", False  # the storage is back
        failed = tmp_path / "failed" / "v1"
        download_tree(bucket, "datasets/v1", failed)
        assert [path for path in failed.rglob("*") if path.name.endswith(TEMPORARY_SUFFIX)]
        assert_nothing_half_written(failed, killed=True)
        build.run(args)
        assert built(bucket, tmp_path, "resumed") == clean
