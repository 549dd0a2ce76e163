"""The build's promises (docs/guarantees.md): resumable, incremental, and
hostile inputs never crash the build nor lose a good sample."""

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from pipeline import build
from tests.helpers import (
    FULL_SIZE,
    LOCAL_RUNNER,
    comparable,
    make_background,
    make_foreground,
    make_inputs,
    small_build_args,
    timings,
)
from transforms.splits import assign_splits

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.e2e]


def kill_build_when(args, ready: Callable[[], bool]) -> None:
    """Start `python -m pipeline.build args`, and kill it and its workers at
    once when `ready()` holds; fails if the build ends first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.build", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, "the build finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_build_resumes_to_the_uninterrupted_dataset(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=4, foregrounds=6, masks=2)
    killed = tmp_path / "killed" / "out"
    args = small_build_args(inputs, killed, *FULL_SIZE)
    kill_build_when(args, lambda: len(list(killed.rglob(".pair.json"))) >= 3)
    finished_before = len(list(killed.rglob(".pair.json")))
    assert finished_before < 24 and not (killed / "manifest.json").exists()

    build.run(args)
    counters = timings(killed)
    assert counters["compositing.pairs_resumed"] >= finished_before
    assert counters.get("compositing.pairs", 0) == 24 - counters["compositing.pairs_resumed"]
    assert not [p for p in killed.rglob("*") if p.name.endswith(".tmp")]

    uninterrupted = tmp_path / "whole" / "out"
    build.run(small_build_args(inputs, uninterrupted, *FULL_SIZE))
    assert comparable(killed) == comparable(uninterrupted)


def test_pairs_written_but_not_yet_recorded_survive_a_kill(tmp_path, full_size_clean):
    """Pairs are recorded after a per-pair count that batch runners finish
    only with the whole write stage; a build killed before then must still
    keep the pairs whose samples it wrote (their row files), not make them
    again."""
    inputs, uninterrupted = full_size_clean
    killed = tmp_path / "killed" / "out"
    args = small_build_args(inputs, killed, *FULL_SIZE)

    def complete_row_sets() -> int:
        return sum(len(list(rows.glob("*.json"))) == 40 for rows in killed.glob("*/*/.rows"))

    kill_build_when(args, lambda: complete_row_sets() >= 2)
    assert not list(killed.rglob(".pair.json")), "killed too late: pairs were recorded"
    kept = complete_row_sets()

    build.run(args)
    counters = timings(killed)
    assert counters["compositing.pairs_resumed"] >= kept >= 2
    assert counters.get("compositing.pairs", 0) == 12 - counters["compositing.pairs_resumed"]
    assert not list(killed.glob("*/*/.rows/*"))
    assert comparable(killed) == uninterrupted


def test_added_inputs_compute_only_new_pairs(tmp_path):
    """Only the new pairs, and those of a background that the added one
    moves to another split (splits are exact fractions: 2 backgrounds are
    train 1, test 1 at val and test 0.3; 3 are one each)."""
    inputs = make_inputs(tmp_path / "in", backgrounds=2, foregrounds=2)
    output = tmp_path / "grown" / "out"
    build.run(small_build_args(inputs, output))
    before = assign_splits(["bg1", "bg2"], 0, 0.3, 0.3)
    after = assign_splits(["bg1", "bg2", "bg3"], 0, 0.3, 0.3)
    (kept,) = [stem for stem in before if before[stem] == after[stem]]
    old_sample = output / kept / "fg_1" / "overlay" / "1.jpg"
    stamp = old_sample.stat().st_mtime_ns
    make_background(tmp_path / "in" / "bg" / "bg3.jpg", seed=3)
    make_foreground(tmp_path / "in" / "fg" / "fg_3.png", seed=7)
    build.run(small_build_args(inputs, output))
    counters = timings(output)
    assert counters["compositing.pairs_resumed"] == 2  # the kept background's
    assert counters["compositing.pairs"] == 5 + 2  # new pairs, the moved background's
    assert old_sample.stat().st_mtime_ns == stamp
    fresh = tmp_path / "fresh" / "out"
    build.run(small_build_args(inputs, fresh))
    assert comparable(output) == comparable(fresh)


def test_changed_options_or_inputs_remake_the_affected_pairs(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=2, foregrounds=1)
    output = tmp_path / "out"
    build.run(small_build_args(inputs, output))
    make_background(tmp_path / "in" / "bg" / "bg2.jpg", seed=42)
    build.run(small_build_args(inputs, output))
    assert timings(output)["compositing.pairs"] == 1
    build.run(small_build_args(inputs, output, "--seed=9"))
    assert timings(output)["compositing.pairs"] == 2


def test_a_remade_pair_keeps_no_files_of_its_earlier_build(tmp_path):
    inputs = make_inputs(tmp_path / "in", backgrounds=1, foregrounds=1)
    output = tmp_path / "out"
    build.run(small_build_args(inputs, output, "--mask_format=jpg"))
    assert len(list(output.glob("bg1/fg_1/mask/*.jpg"))) == 8
    build.run(small_build_args(inputs, output, "--placements_per_scale=1"))
    files = sorted(
        p.relative_to(output / "bg1" / "fg_1").as_posix()
        for p in (output / "bg1" / "fg_1").rglob("*")
        if p.is_file()
    )
    assert files == [".pair.json"] + sorted(
        f"{kind}/{n}.{ext}"
        for kind, ext in (("overlay", "jpg"), ("mask", "png"))
        for n in range(1, 5)
    )


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims a huge image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 16)
    idat = (
        struct.pack(">I", len(idat_data))
        + b"IDAT"
        + idat_data
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat_data))
    )
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + iend


def rgba(size, alpha=255, color=(200, 60, 30)) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 4), np.uint8)
    pixels[...] = (*color, alpha)
    return Image.fromarray(pixels, "RGBA")


def hostile_corpus(root: Path) -> dict:
    """Every kind of awkward input; returns the expected outcome per file name."""
    bg, fg, masks = root / "bg", root / "fg", root / "fg_mask"
    for folder in (bg, fg, masks, bg / "other"):
        folder.mkdir(parents=True)
    make_background(bg / "good.jpg", seed=1)
    good = (bg / "good.jpg").read_bytes()
    (bg / "zero.jpg").write_bytes(b"")
    (bg / "truncated.jpg").write_bytes(good[: len(good) // 3])
    make_background(bg / "cut.png", seed=2)
    (bg / "cut.png").write_bytes((bg / "cut.png").read_bytes()[:200])
    (bg / "text.jpg").write_text("hello, I am not a JPEG")
    (bg / "bomb.png").write_bytes(png_with_declared_size(100_000, 100_000))
    Image.open(bg / "good.jpg").convert("CMYK").save(bg / "cmyk.jpg")
    Image.open(bg / "good.jpg").convert("L").save(bg / "grey.jpg")
    Image.fromarray((np.arange(96 * 72, dtype=np.uint16).reshape(72, 96) * 9)).save(
        bg / "sixteen.png"
    )
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)
    stored[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(bg / "rotated.jpg", exif=exif, quality=95)
    (bg / "other" / "good.jpg").write_bytes(good)
    make_background(bg / "plage é 1.jpg", seed=5)
    (bg / "..jpg").write_bytes(good)
    (bg / "label_data.csv.jpg").write_bytes(good)
    make_background(bg / "Zebra.jpg", seed=6)
    make_background(bg / "zebra.jpg", seed=7)

    rgba((30, 20)).save(fg / "fg_ok.png")
    rgba((30, 20)).quantize().save(fg / "fg_palette.png")
    rgba((200, 20)).save(fg / "fg_big.png")
    rgba((1, 1)).save(fg / "fg_dot.png")
    rgba((30, 20), alpha=0).save(fg / "fg_clear.png")
    rgba((30, 20)).save(fg / "fg_badmask.png")
    Image.new("L", (31, 20), 255).save(masks / "mask_fg_badmask.png")
    Image.new("L", (30, 20), 255).save(masks / "mask_nobody.png")
    return {
        "accepted_backgrounds": {
            "good",
            "cmyk",
            "grey",
            "sixteen",
            "rotated",
            "plage é 1",
            "Zebra",
        },
        "accepted_foregrounds": {"fg_ok", "fg_palette", "fg_dot"},
        "rejected": {
            "zero.jpg": "empty file",
            "truncated.jpg": "truncated",
            "cut.png": "truncated",
            "text.jpg": "not a readable image",
            "bomb.png": "decompression bomb",
            "good.jpg": "duplicate background name",
            "..jpg": "cannot be used as an output",
            "label_data.csv.jpg": "is taken by the dataset's own",
            "zebra.jpg": "duplicate background name 'zebra' (names are compared without case)",
            "fg_big.png": "larger than the",
            "fg_clear.png": "fully transparent",
            "fg_badmask.png": "is 31x20, foreground is 30x20",
            "mask_nobody.png": "mask has no foreground",
        },
    }


def test_hostile_inputs_are_handled_or_rejected_with_reasons(tmp_path, capsys):
    expected = hostile_corpus(tmp_path / "in")
    output = tmp_path / "out"
    args = [
        f"--bg={tmp_path / 'in' / 'bg' / '**'}",
        f"--fg={tmp_path / 'in' / 'fg' / '*'}",
        f"--fg_mask={tmp_path / 'in' / 'fg_mask' / '*'}",
        f"--output={output}",
        "--size=64",
        "--scales=1.0,0.5",
        "--placements_per_scale=1",
        "--depth_model=none",
        "--max_input_pixels=1000000",
        "--max_reject_fraction=0.9",
        *LOCAL_RUNNER,
    ]
    assert build.main(args) == 0
    manifest = json.loads((output / "manifest.json").read_text())
    reasons = {Path(r["path"]).name: r["reason"] for r in manifest["rejects"]}
    assert set(reasons) == set(expected["rejected"])
    for name, reason in expected["rejected"].items():
        assert reason in reasons[name], (name, reasons[name])
    rows = list(csv.DictReader(open(output / "samples.csv", encoding="utf-8")))
    assert {row["bg"] for row in rows} == expected["accepted_backgrounds"]
    assert {row["fg"] for row in rows} == expected["accepted_foregrounds"]
    assert len(rows) == 7 * 3 * 4
    for row in rows:
        assert (output / row["overlay_path"]).is_file() and (output / row["mask_path"]).is_file()
    rotated = np.asarray(Image.open(output / "bg" / "rotated.jpg")).astype(int)
    assert rotated[2, 32, 0] > 200 and rotated[2, 32, 2] < 60, "top should be red"
    assert rotated[61, 32, 2] > 200 and rotated[61, 32, 0] < 60, "bottom should be blue"
    assert Image.open(output / "bg" / "cmyk.jpg").mode == "RGB"
    dot = np.asarray(Image.open(output / rows[0]["mask_path"].replace(rows[0]["fg"], "fg_dot")))
    assert dot.max() == 255 and (dot == 255).sum() == 1
    printed = capsys.readouterr().out
    assert f"rejected: {len(expected['rejected'])} input files" in printed


def test_too_many_rejects_fail_the_run(tmp_path):
    hostile_corpus(tmp_path / "in")
    args = [
        f"--bg={tmp_path / 'in' / 'bg' / '*'}",
        f"--fg={tmp_path / 'in' / 'fg' / '*'}",
        f"--output={tmp_path / 'out'}",
        "--size=64",
        "--scales=1.0",
        "--placements_per_scale=1",
        "--depth_model=none",
        "--max_reject_fraction=0.2",
        *LOCAL_RUNNER,
    ]
    assert build.main(args) == build.EXIT_TOO_MANY_REJECTS
    assert (tmp_path / "out" / "manifest.json").is_file()
