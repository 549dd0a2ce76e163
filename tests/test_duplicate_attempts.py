"""A pair made twice is made once: the stages that write a pair's files,
rows and record (tests/pair_attempts.py runs their DoFns as a runner
runs a bundle) leave exactly the files of one undisturbed attempt when a
bundle runs twice, as Dataflow runs a bundle again after a failure or a
lost worker, sometimes while the first attempt still writes: one attempt
after another that was stopped at any storage operation, and two attempts
at the same time in two processes; local and gs:// (the GCS emulator)."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
from apache_beam.internal.gcp import auth

from fgbg.pair_records import PAIR_RECORD, SAMPLE_ROWS
from fgbg.storage import TEMPORARY_SUFFIX, delete_files
from tests.fault_proxy import FaultProxy
from tests.helpers import all_files, emulated_bucket, make_inputs
from tests.pair_attempts import (
    SAMPLES_PER_PAIR,
    STAGES,
    Stopped,
    composites,
    pair_inputs,
    run_attempt,
    stage_of,
    stopping_after,
)
from transforms.pairs import RESUMED, _SkipFinishedPair

REPO = Path(__file__).resolve().parents[1]
BUCKET = "fgbg-attempts"

pytestmark = [pytest.mark.faults]


class Output:
    """Outputs of one kind (local folders, or prefixes in an emulated
    bucket), each read back as relative path -> bytes."""

    def __init__(self, tmp_path: Path, bucket=None):
        self._tmp_path = tmp_path
        self._bucket = bucket

    def root(self, name: str) -> str:
        if self._bucket is None:
            return str(self._tmp_path / name)
        return f"gs://{BUCKET}/{name}"

    def files(self, name: str) -> Dict[str, bytes]:
        if self._bucket is None:
            return all_files(self._tmp_path / name) if (self._tmp_path / name).exists() else {}
        return {
            blob.name[len(name) + 1 :]: blob.download_as_bytes()
            for blob in self._bucket.list_blobs(prefix=f"{name}/")
        }


@pytest.fixture(params=["local", pytest.param("gs", marks=pytest.mark.gcs)])
def outputs(request, tmp_path, monkeypatch) -> Iterator[Output]:
    if request.param == "local":
        yield Output(tmp_path)
        return
    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    with emulated_bucket(monkeypatch, BUCKET) as bucket:
        yield Output(tmp_path, bucket)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("attempts") / "in", backgrounds=1, foregrounds=2)


@pytest.fixture(scope="module")
def bundle(inputs):
    """Two pairs' composites (16 samples), one bundle."""
    return composites(inputs)


def assert_one_attempts_files(files: Dict[str, bytes], undisturbed: Dict[str, bytes]) -> None:
    assert not [name for name in files if f"{SAMPLE_ROWS}/" in name], "row files stay"
    assert not [name for name in files if name.endswith(TEMPORARY_SUFFIX)], "temporaries stay"
    assert files == undisturbed


def test_a_bundle_run_again_after_a_stop_at_any_point_makes_one_attempts_files(outputs, bundle):
    """The first attempt stops before its n-th storage operation (after
    some samples, after the rows, between a record and the removal of its
    row files...); the second runs the stopped stage's bundle again (a
    retried bundle), or the whole chain (fused stages run again). Locally
    every point is tried; on gs:// two."""
    with stopping_after(None) as operations:
        run_attempt(outputs.root("undisturbed"), bundle)
    undisturbed = outputs.files("undisturbed")
    assert sum(name.endswith(PAIR_RECORD) for name in undisturbed) == 2
    retries = {n: (stage_of(operations[n]), STAGES[0]) for n in range(1, len(operations))}
    if outputs.root("x").startswith("gs://"):
        # In the rows; between the first record and the removal of its
        # row files (the steps that list, delete and read what another
        # attempt may have deleted), retried from there and from the start.
        rows = 4 + next(n for n, op in enumerate(operations) if stage_of(op) == "rows")
        record = 1 + next(n for n, op in enumerate(operations) if op.endswith(PAIR_RECORD))
        retries = {rows: ("rows",), record: ("record", "samples")}
    for n, stages in retries.items():
        for retry in dict.fromkeys(stages):
            name = f"stopped-{n}-{retry}"
            with stopping_after(n), pytest.raises(Stopped):
                run_attempt(outputs.root(name), bundle)
            run_attempt(outputs.root(name), bundle, first_stage=retry)
            assert_one_attempts_files(outputs.files(name), undisturbed)


def test_a_pair_recorded_before_its_row_files_went_is_finished_when_resumed(
    outputs, bundle, inputs
):
    """A build stopped between writing a record and deleting the row files
    beside it: the rerun resumes the pair from its record, and removes the
    row files, so the dataset is the undisturbed one."""
    with stopping_after(None) as operations:
        run_attempt(outputs.root("undisturbed"), bundle)
    first_record = next(n for n, op in enumerate(operations) if op.endswith(PAIR_RECORD))
    root = outputs.root("stopped")
    with stopping_after(first_record + 1), pytest.raises(Stopped):
        run_attempt(root, bundle)
    assert [name for name in outputs.files("stopped") if f"{SAMPLE_ROWS}/" in name]

    first = bundle[0].placement
    backgrounds, foregrounds = pair_inputs(inputs)
    skip = _SkipFinishedPair(root, "", SAMPLES_PER_PAIR, True, None)
    skip.setup()
    resumed = list(skip.process((backgrounds[first.bg_stem], first.fg_stem), foregrounds))
    assert [output.tag for output in resumed] == [RESUMED]
    pair = f"{first.bg_stem}/{first.fg_stem}/"
    stopped = {k: v for k, v in outputs.files("stopped").items() if k.startswith(pair)}
    undisturbed = {k: v for k, v in outputs.files("undisturbed").items() if k.startswith(pair)}
    assert_one_attempts_files(stopped, undisturbed)


def attempt_process(root: str, bundle_file: Path, ready: Path, go: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.pair_attempts", root, str(bundle_file), str(ready), str(go)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )


@pytest.mark.processes
def test_two_attempts_at_the_same_time_in_two_processes_make_one_attempts_files(
    outputs, bundle, tmp_path
):
    """Two processes run the same bundle at the same instant (each made
    ready, then both released), one in the bundle's order and one in
    reverse, so that one records a pair while the other still writes it.

    On gs:// both attempts delete the same row files; a deletion that
    meets a file the other just deleted is the race of the next test."""
    run_attempt(outputs.root("undisturbed"), bundle)
    go = tmp_path / "go"
    processes = []
    for order, samples in (("forward", bundle), ("reverse", bundle[::-1])):
        bundle_file = tmp_path / f"{order}.pickle"
        bundle_file.write_bytes(pickle.dumps(samples))
        ready = tmp_path / f"{order}.ready"
        processes.append((ready, attempt_process(outputs.root("twice"), bundle_file, ready, go)))
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in processes):
        assert time.monotonic() < deadline, "an attempt never got ready"
        assert all(process.poll() is None for _, process in processes)
        time.sleep(0.01)
    go.touch()
    for _, process in processes:
        error = process.communicate(timeout=120)[1].decode()
        assert process.returncode == 0, error
    assert_one_attempts_files(outputs.files("twice"), outputs.files("undisturbed"))


@pytest.mark.gcs
def test_files_another_attempt_deletes_during_a_deletion_leave_none_of_them(monkeypatch):
    """Beam's GCS delete looks a file up twice (exists, then its metadata)
    before deleting it; when another attempt deletes it in between, the
    deletion still removes every file it was given, and says nothing."""
    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    names = [f"pair/.rows/{n}.json" for n in range(1, 4)]
    with emulated_bucket(monkeypatch, BUCKET) as bucket:
        for name in names:
            bucket.blob(name).upload_from_string(b"{}")
        reads = []

        def other_attempt_deletes(kind: str, path: str) -> None:
            if kind == "read" and "2.json" in path:
                reads.append(path)
                if len(reads) == 2:  # between the lookup and the metadata
                    bucket.blob(names[1]).delete()

        with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], fault_share=0.0) as proxy:
            proxy.before_forward = other_attempt_deletes
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            delete_files([f"gs://{BUCKET}/{name}" for name in names])
        assert len(reads) >= 2, "the other attempt never deleted between the two reads"
        assert list(bucket.list_blobs(prefix="pair/")) == []
