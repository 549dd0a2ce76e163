"""Faults a real build meets, made to happen for real (README "Faults
tried"): an output disk that fills, a read-only output, a second build
racing one that is still running. Each build that fails says which file and
why; what it leaves is whole; the rerun after the fix resumes to the
dataset an undisturbed build makes."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from fgbg import layout
from fgbg.pair_records import PAIR_RECORD
from pipeline import build
from tests.conftest import comparable, make_inputs, small_build_args

REPO = Path(__file__).resolve().parents[1]
FULL_SIZE = ["--size=160", "--scales=1.0,0.8,0.6,0.4", "--placements_per_scale=5"]


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


def assert_nothing_half_written(root: Path) -> None:
    """No temporary file left, every image decodes, every JSON parses, and
    every recorded pair's files are all there."""
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    for path in root.rglob("*"):
        if path.suffix in (".jpg", ".png"):
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".json":
            json.loads(path.read_text())
    for record in root.rglob(PAIR_RECORD):
        for row in json.loads(record.read_text())["rows"]:
            for kind in ("overlay_path", "mask_path"):
                assert (root / row[kind]).is_file(), (record, row[kind])


def counters(root: Path) -> dict:
    return json.loads((root / "timings.json").read_text())["counters"]


def clean_build(tmp_path: Path, inputs) -> Path:
    output = tmp_path / "clean" / "out"
    build.run(small_build_args(inputs, output, *FULL_SIZE))
    return output


def test_a_full_disk_fails_naming_the_file_and_a_rerun_after_freeing_space_resumes(
    tmp_path, capsys
):
    inputs = make_inputs(tmp_path / "in", backgrounds=3, foregrounds=3)
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
        assert counters(output)["compositing.pairs_resumed"] >= recorded
        assert comparable(output) == comparable(clean_build(tmp_path, inputs))


def test_a_read_only_output_fails_naming_it_and_a_rerun_after_the_fix_resumes(tmp_path, capsys):
    """A whole read-only output is refused before any work (taking the
    lease is the first write); a read-only folder inside it fails the build
    when a sample is first written there, naming the file."""
    inputs = make_inputs(tmp_path / "in", backgrounds=3, foregrounds=3)
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
    assert comparable(output) == comparable(clean_build(tmp_path, inputs))


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


def test_a_second_build_into_an_output_in_use_is_refused_and_the_first_finishes(tmp_path, capsys):
    inputs = make_inputs(tmp_path / "in", backgrounds=3, foregrounds=3)
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)
    first = start_build(args)
    wait_for(lambda: len(list(output.rglob("*.jpg"))) >= 5, first)

    assert build.main(args) == build.EXIT_OUTPUT_BUSY
    error = capsys.readouterr().err
    assert f"{output}/.lease.json: another build is writing this output" in error
    assert f"(pid {first.pid})" in error

    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    assert not (output / layout.LEASE_JSON).exists()
    assert comparable(output) == comparable(clean_build(tmp_path, inputs))


def test_a_stale_lease_needs_force_and_a_killed_builds_lease_does_not(tmp_path, capsys):
    """A build killed outright leaves its lease; the next build on the same
    host sees that its process is gone and takes it over. A lease of a
    build elsewhere that stopped renewing it is stale: refused without
    --force, taken over with it."""
    inputs = make_inputs(tmp_path / "in", backgrounds=3, foregrounds=3)
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *FULL_SIZE)
    killed = start_build(args)
    wait_for(lambda: len(list(output.rglob("*.jpg"))) >= 5, killed)
    os.killpg(killed.pid, 9)
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
