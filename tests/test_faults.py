"""Faults a real build meets, made to happen for real (docs/guarantees.md "Faults
tried"): an output disk that fills, a read-only output, a second build
racing one that is still running. Each build that fails says which file and
why; what it leaves is whole; the rerun after the fix resumes to the
dataset an undisturbed build makes."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from fgbg import layout
from fgbg.pair_records import PAIR_RECORD
from pipeline import build
from pipeline.worker_watchdog import worker_processes
from tests.helpers import (
    FULL_SIZE,
    assert_nothing_half_written,
    comparable,
    make_inputs,
    small_build_args,
    timings,
)
from transforms import image_files

REPO = Path(__file__).resolve().parents[1]
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def mount_or_skip(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"needs root and mount (mount {' '.join(args)}: {result.stderr.strip()})")


@contextlib.contextmanager
def loop_filesystem(folder: Path, size_mb: int) -> Iterator[Path]:
    """A small ext4 filesystem in a file, mounted through a loop device."""
    image = folder / "disk.img"
    mountpoint = folder / "disk"
    mountpoint.mkdir(parents=True)
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mount_or_skip("-o", "loop", str(image), str(mountpoint))
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for everyone, root included (a read-only bind
    mount over itself; file modes do not stop root)."""
    mount_or_skip("--bind", str(folder), str(folder))
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """3 backgrounds x 3 foregrounds, shared by the tests below (which only
    read them), so that one undisturbed build serves them all."""
    return make_inputs(tmp_path_factory.mktemp("faults") / "in", backgrounds=3, foregrounds=3)


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> dict:
    """An undisturbed build of the inputs, made once for the module."""
    output = tmp_path_factory.mktemp("clean") / "out"
    build.run(small_build_args(inputs, output, *FULL_SIZE))
    return comparable(output)


def test_a_full_disk_fails_naming_the_file_and_a_rerun_after_freeing_space_resumes(
    tmp_path, capsys, inputs, clean
):
    with loop_filesystem(tmp_path, size_mb=16) as disk:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (free - 1_500_000))
        output = disk / "out"
        args = small_build_args(inputs, output, *FULL_SIZE)

        assert build.main(args) == build.EXIT_FAILED
        error = capsys.readouterr().err
        assert f"cannot write {output}/" in error and "No space left on device" in error
        assert "rerun the same command to resume" in error
        assert not (output / layout.MANIFEST_JSON).exists()
        assert not (output / layout.LEASE_JSON).exists()
        assert_nothing_half_written(output)
        recorded = len(list(output.rglob(PAIR_RECORD)))

        ballast.unlink()
        build.run(args)
        assert timings(output)["compositing.pairs_resumed"] >= recorded
        assert comparable(output) == clean


def test_a_read_only_output_fails_naming_it_and_a_rerun_after_the_fix_resumes(
    tmp_path, capsys, inputs, clean
):
    """A whole read-only output is refused before any work (taking the
    lease is the first write); a read-only folder inside it fails the build
    when a sample is first written there, naming the file."""
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)

    output.mkdir()
    with read_only(output):
        assert build.main(args) == build.EXIT_FAILED
    error = capsys.readouterr().err
    assert f"cannot write {output}/.lease.json: Read-only file system" in error
    assert not list(output.iterdir())

    (output / "bg2").mkdir()
    with read_only(output / "bg2"):
        assert build.main(args) == build.EXIT_FAILED
        error = capsys.readouterr().err
        assert f"cannot write {output}/bg2/fg_" in error and "Read-only file system" in error
        assert_nothing_half_written(output)
    build.run(args)
    assert comparable(output) == clean


def start_build(args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.build", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, "the build ended first"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_second_build_into_an_output_in_use_is_refused_and_the_first_finishes(
    tmp_path, capsys, inputs, clean
):
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)
    first = start_build(args)
    wait_for(lambda: len(list(output.rglob("*.jpg"))) >= 5, first)

    assert build.main(args) == build.EXIT_OUTPUT_BUSY
    error = capsys.readouterr().err
    assert f"{output}/.lease.json: another build is writing this output" in error
    assert f"(pid {first.pid})" in error

    error = first.communicate(timeout=300)[1].decode()
    assert first.returncode == 0, error
    assert not (output / layout.LEASE_JSON).exists()
    assert comparable(output) == clean


def test_the_other_order_a_build_started_elsewhere_is_refused_by_this_one(
    tmp_path, monkeypatch, inputs, clean
):
    """The same race the other way round: this process builds (in a
    thread), and a build started from another terminal is refused, naming
    this process; this build then finishes unharmed. This build's first
    sample waits (bounded) until the other build has been refused, so the
    other build always meets it running."""
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)
    writing, refused = threading.Event(), threading.Event()
    write_file = image_files.write_file

    def write_once_refused(path: str, data: bytes) -> None:
        if "/overlay/" in path:
            writing.set()
            refused.wait(timeout=120)
        write_file(path, data)

    monkeypatch.setattr(image_files, "write_file", write_once_refused)
    holder = threading.Thread(target=build.run, args=(args,))
    holder.start()
    try:
        assert writing.wait(timeout=120), "this build never wrote a sample"
        assert (output / layout.LEASE_JSON).exists()
        second = start_build(args)
        error = second.communicate(timeout=120)[1].decode()
        assert second.returncode == build.EXIT_OUTPUT_BUSY, error
        assert "another build is writing this output: run " in error
        assert f"(pid {os.getpid()})" in error
    finally:
        refused.set()
        holder.join(timeout=300)
    assert not holder.is_alive()
    assert not (output / layout.LEASE_JSON).exists()
    assert comparable(output) == clean


def test_a_stale_lease_needs_force_and_a_killed_builds_lease_does_not(tmp_path, capsys, inputs):
    """A build killed outright leaves its lease; the next build on the same
    host sees that its process is gone and takes it over. A lease of a
    build elsewhere that stopped renewing it is stale: refused without
    --force, taken over with it."""
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)
    killed = start_build(args)
    wait_for(lambda: len(list(output.rglob("*.jpg"))) >= 5, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert json.loads((output / layout.LEASE_JSON).read_text())["pid"] == killed.pid
    build.run(args)
    assert not (output / layout.LEASE_JSON).exists()

    elsewhere = {
        "run_id": "0123456789ab",
        "owner": "airflow",
        "host": "composer-worker-7",
        "pid": 4242,
        "started_at": "2026-01-01T00:00:00+00:00",
        "renewed_at": "2026-01-01T00:05:00+00:00",
        "stale_after_s": 600.0,
        "local_run": True,
    }
    (output / layout.LEASE_JSON).write_text(json.dumps(elsewhere))
    assert build.main(args) == build.EXIT_OUTPUT_BUSY
    error = capsys.readouterr().err
    assert "a stale lease holds this output: run 0123456789ab by airflow" in error
    assert "on composer-worker-7 (pid 4242)" in error and "rerun with --force" in error
    build.run([*args, "--force"])
    assert not (output / layout.LEASE_JSON).exists()


def test_a_worker_killed_mid_bundle_fails_the_build_and_a_rerun_resumes(tmp_path, full_size_clean):
    """On the multi-process local runner one SDK worker is killed while
    samples are being written: the runner does not retry, so the build
    fails at once, saying so; what it wrote under final names is whole, and
    the rerun resumes to the dataset an undisturbed build makes (on one
    process: bytes do not depend on the running mode, test_build_e2e)."""
    inputs, clean = full_size_clean
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE, *MULTI_PROCESS)
    victim = start_build(args)
    wait_for(lambda: len(list(output.rglob("overlay/*.jpg"))) >= 20, victim)
    workers = worker_processes(victim.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)

    error = victim.communicate(timeout=60)[1].decode()
    assert victim.returncode == build.EXIT_FAILED and "error: the build failed:" in error
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not (output / layout.MANIFEST_JSON).exists()
    assert_nothing_half_written(output, killed=True)
    recorded = len(list(output.rglob(PAIR_RECORD)))

    build.run(args)
    assert timings(output).get("compositing.pairs_resumed", 0) >= recorded
    assert comparable(output) == clean


def test_a_worker_that_dies_before_connecting_fails_the_build_instead_of_hanging(tmp_path):
    """Every SDK worker exits at start-up (a `sitecustomize` that quits
    where Beam sets WORKER_ID): Beam alone would wait for ever; the
    watchdog (pipeline/worker_watchdog.py) fails the build, naming why."""
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('WORKER_ID'):\n    os._exit(3)\n"
    )
    inputs = make_inputs(tmp_path / "in", backgrounds=2, foregrounds=2)
    args = small_build_args(inputs, tmp_path / "out", *MULTI_PROCESS)
    crashing = subprocess.Popen(
        [sys.executable, "-m", "pipeline.build", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{crash}{os.pathsep}{REPO}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        error = crashing.communicate(timeout=90)[1].decode()
    except subprocess.TimeoutExpired:
        os.killpg(crashing.pid, signal.SIGKILL)
        pytest.fail("the build hung after its workers died")
    assert crashing.returncode == build.EXIT_FAILED, error
    assert "an SDK worker process died (Worker subprocess exited with return code 3)" in error
    assert "it crashed" in error
