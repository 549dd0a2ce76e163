"""Helpers the test modules share: tiny, seeded input sets made on the fly
(nothing is downloaded), reduced build options, a dataset's comparable
files, the GCS emulator (tests/gcs_helpers.py), and Beam graphs of the compositing stages.

A plain module (fixtures and hooks live in conftest.py): test modules import
what they use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

from tests.gcs_helpers import emulated_bucket, emulator  # noqa: F401 (shared here)

# Tests build in their own process, as they did before a build's default
# became one worker process per core (pipeline/local_workers.py); a test that
# names workers itself overrides it, later flags winning.
IN_PROCESS = "--direct_running_mode=in_memory"
LOCAL_RUNNER = ["--runner=FnApiRunner", IN_PROCESS]
REPO = Path(__file__).resolve().parents[1]


def fresh_interpreter_json(code: str):
    """Run `code` in a fresh interpreter from the repository root (it fails
    the test unless it succeeds); the JSON its last line of stdout holds."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(script: str, results: Path, *args: str, timeout: float) -> dict:
    """`python bench/<script> ARGS --name tiny --results RESULTS` from the
    repository root; fails with its output unless it succeeds; its JSON."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args, "--name", "tiny", "--results", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((results / "tiny.json").read_text())


# Inputs and placements small enough for stage tests on TestPipeline.
def small_input_config():
    """An InputConfig for 48-pixel samples."""
    from transforms.inputs import InputConfig

    return InputConfig(
        size=48, max_input_pixels=1_000_000, min_background_side=16, mask_threshold=0
    )


def small_split_config():
    """A SplitConfig with half the backgrounds in val, none in test."""
    from transforms.splits import SplitConfig

    return SplitConfig(seed=3, val_fraction=0.5, test_fraction=0.0)


def small_placements():
    """PlacementConfig for 48-pixel samples: 2 scales x 2 placements x 2 flips."""
    from transforms.placements import PlacementConfig

    return PlacementConfig(seed=3, size=48, scales=(1.0, 0.5), placements_per_scale=2, mirror=True)


def make_background(path: Path, size=(96, 72), seed: int = 0) -> None:
    """A smooth, photo-like gradient with a few soft blobs."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            (xx / w) * 200 + rng.integers(0, 50),
            (yy / h) * 180 + rng.integers(0, 60),
            ((xx + yy) / (w + h)) * 150 + rng.integers(0, 80),
        ],
        axis=-1,
    )
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    image.save(path, quality=95)


def make_foreground(path: Path, size=(40, 30), seed: int = 0) -> np.ndarray:
    """An RGBA ellipse cut-out with a soft edge; returns its alpha."""
    rng = np.random.default_rng(seed)
    w, h = size
    alpha = Image.new("L", (w * 4, h * 4), 0)
    ImageDraw.Draw(alpha).ellipse((2, 2, w * 4 - 3, h * 4 - 3), fill=255)
    alpha = alpha.resize((w, h), Image.LANCZOS)
    color = rng.integers(40, 220, size=3)
    rgb = np.broadcast_to(color, (h, w, 3)).astype(np.uint8)
    rgba = np.dstack([rgb, np.asarray(alpha)])
    Image.fromarray(rgba, "RGBA").save(path)
    return np.asarray(alpha)


def make_inputs(
    root: Path, backgrounds: int = 2, foregrounds: int = 2, masks: int = 1
) -> Dict[str, str]:
    """bg/, fg/, fg_mask/ under root; returns the glob options."""
    for folder in ("bg", "fg", "fg_mask"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(backgrounds):
        make_background(root / "bg" / f"bg{i + 1}.jpg", size=(96 + 8 * i, 72 + 4 * i), seed=i)
    for i in range(foregrounds):
        alpha = make_foreground(
            root / "fg" / f"fg_{i + 1}.png", size=(40 - 4 * i, 30 + 2 * i), seed=100 + i
        )
        if i < masks:
            Image.fromarray(np.where(alpha > 0, 255, 0).astype(np.uint8), "L").save(
                root / "fg_mask" / f"mask_fg_{i + 1}.png"
            )
    return {
        "bg": str(root / "bg" / "*"),
        "fg": str(root / "fg" / "*"),
        "fg_mask": str(root / "fg_mask" / "*"),
    }


def pairs_to_make(
    backgrounds, foregrounds, resume_root: Optional[str] = None, samples_per_pair: int = 0
):
    """Every (background, foreground) `Pair`, its background's split from
    `small_split_config`, keyed with an empty options fingerprint; with
    `resume_root`, through the resume step over that output instead
    (transforms/pairs.py)."""
    import apache_beam as beam

    from fgbg.pair_records import pair_key
    from fgbg.types import Pair
    from transforms.compositing import CrossPairs
    from transforms.pairs import RemoveOutdatedRecords, SkipFinishedPairs
    from transforms.splits import PlanSplits

    plan = (backgrounds, foregrounds) | "PlanSplits" >> PlanSplits(small_split_config())
    crossed, _ = backgrounds | CrossPairs(plan)
    if resume_root:
        found = crossed | SkipFinishedPairs(
            resume_root, foregrounds, "", samples_per_pair, resume=True
        )
        return found.pairs | RemoveOutdatedRecords(resume_root)
    by_stem = foregrounds | "ByStem" >> beam.Map(lambda fg: (fg.stem, fg))
    return crossed | "KeyPairs" >> beam.Map(
        lambda pair, fgs: Pair(pair[0], pair[1], pair_key("", pair[0], fgs[pair[1]])),
        beam.pvalue.AsDict(by_stem),
    )


def compose_inputs(
    p, inputs: Dict[str, str], config, placements, encoding, resume_root: Optional[str] = None
):
    """Every composite of the inputs' pairs, on TestPipeline `p` (masks from
    the foregrounds' alpha)."""
    import apache_beam as beam

    from transforms.compositing import ComposeSamples
    from transforms.inputs import ReadBackgrounds, ReadForegrounds

    prepared, _ = p | ReadBackgrounds(inputs["bg"], config)
    foregrounds, _ = p | ReadForegrounds(inputs["fg"], None, config)
    backgrounds = prepared | beam.Map(lambda item: item[0])
    pairs = pairs_to_make(backgrounds, foregrounds, resume_root, placements.samples_per_pair)
    return pairs | ComposeSamples(foregrounds, config, placements, encoding)


def small_build_args(
    inputs: Dict[str, str], output: Path, *extra: str, tft: bool = False
) -> List[str]:
    """Reduced counts so an end-to-end build takes seconds: 2 scales x 2
    placements x 2 flips, no depth; the TFT analysis (a few seconds) only when
    a test is about it."""
    return [
        f"--bg={inputs['bg']}",
        f"--fg={inputs['fg']}",
        f"--fg_mask={inputs['fg_mask']}",
        f"--output={output}",
        "--size=64",
        "--scales=1.0,0.5",
        "--placements_per_scale=2",
        "--depth_model=none",
        "--records_per_shard=10",
        "--val_fraction=0.3",
        "--test_fraction=0.3",
        *LOCAL_RUNNER,
        *([] if tft else ["--no_tft"]),
        *extra,
    ]


def all_files(root: Path) -> Dict[str, bytes]:
    """Relative path -> bytes of every file under root."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# TensorFlow writes a fresh fingerprint and object ids into every SavedModel,
# so the TFT graph's protobufs differ between identical builds; tests compare
# what the graph computes instead (tests/test_build_e2e.py).
SAVED_MODEL_PROTOS = (
    "transform/transform_fn/saved_model.pb",
    "transform/transform_fn/fingerprint.pb",
)


def comparable(root: Path) -> dict:
    """A dataset's files and manifest, less what legitimately varies between
    two identical builds: times (timings.json, and report.html that shows
    them), the output path and SavedModel protobufs."""
    files = all_files(root)
    files.pop("timings.json")
    files.pop("report.html")
    for name in SAVED_MODEL_PROTOS:
        files.pop(name, None)
    manifest = json.loads(files.pop("manifest.json"))
    for volatile in ("started_at", "finished_at"):
        manifest.pop(volatile)
    manifest["options"].pop("output")
    return {"manifest": manifest, "files": files}


def timings(root: Path) -> dict:
    """A build's counters (timings.json)."""
    return json.loads((root / "timings.json").read_text())["counters"]


def upload_tree(bucket, local: Path, prefix: str) -> None:
    """Every file under `local` into `bucket` under `prefix`, same relative paths."""
    for path in sorted(local.rglob("*")):
        if path.is_file():
            blob = bucket.blob(f"{prefix}/{path.relative_to(local).as_posix()}")
            blob.upload_from_filename(str(path))


def download_tree(bucket, prefix: str, local: Path) -> None:
    """Every object under `prefix` in `bucket` into `local`, same relative paths."""
    for blob in bucket.list_blobs(prefix=f"{prefix}/"):
        target = local / blob.name[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))


def assert_nothing_half_written(root: Path, killed: bool = False) -> None:
    """Every image decodes, every JSON parses, every recorded pair's files
    are all there, and no temporary file stays, unless the process writing
    it was `killed` (the next run deletes it)."""
    from fgbg.pair_records import PAIR_RECORD

    if not killed:
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


# Sample counts and size of a full-size build (40 samples a pair at 160
# pixels), for tests that must catch a build in the middle of its work.
FULL_SIZE = ["--size=160", "--scales=1.0,0.8,0.6,0.4", "--placements_per_scale=5"]
