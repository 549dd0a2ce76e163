"""Attempts of the stages that write a pair's files, rows and record
(transforms/image_files.py's WriteSamples, transforms/pairs.py's
WriteSampleRows and RecordPairs), run by hand the way a runner runs a
bundle, so that a test can run one twice: one attempt after another that
was stopped at any storage operation, or two at once in two processes
(`python -m tests.pair_attempts OUTPUT COMPOSITES READY GO`), as Dataflow
does when it retries a bundle or runs a straggler's twice.

The stages' own DoFns do the work; only the runner around them is this
module's."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline

from fgbg import pair_records
from fgbg.types import Background, Composite, Foreground
from tests.helpers import (
    compose_inputs,
    small_input_config,
    small_placements,
    small_split_config,
)
from transforms import image_files
from transforms.compositing import EncodingConfig
from transforms.image_files import _WriteSample
from transforms.inputs import ReadBackgrounds, ReadForegrounds
from transforms.pairs import _CountPairSamples, _RecordPair, _WriteSampleRow
from transforms.splits import plan_splits

STAGES = ("samples", "rows", "record")
MASK_FORMAT = "png"
SAMPLES_PER_PAIR = small_placements().samples_per_pair


class Stopped(BaseException):
    """The attempt's worker went away (a BaseException, as a worker's
    death is no error that the stages' code could handle)."""


_MADE: List[object] = []  # what a pipeline of this module made, in this process


def _keep(element: object) -> None:
    _MADE.append(element)


def _made_by(build) -> List[object]:
    """What `build(p)`'s last PCollection holds, run on the in-process
    runner."""
    _MADE.clear()
    with TestPipeline(runner="FnApiRunner") as p:
        _ = build(p) | beam.Map(_keep)
    made = list(_MADE)
    _MADE.clear()
    return made


def composites(inputs: Dict[str, str]) -> List[Composite]:
    """Every composite of the inputs' pairs, made once by a real pipeline,
    in a stable order."""
    made = _made_by(
        lambda p: compose_inputs(
            p, inputs, small_input_config(), small_placements(), EncodingConfig(80, MASK_FORMAT, 50)
        )
    )
    return sorted(
        made, key=lambda c: (c.placement.bg_stem, c.placement.fg_stem, c.placement.number)
    )


def pair_inputs(inputs: Dict[str, str]) -> Tuple[Dict[str, Background], Dict[str, Foreground]]:
    """The inputs' backgrounds and foregrounds by stem, as the resume stage
    (SkipFinishedPairs) receives them."""
    config = small_input_config()
    backgrounds = _made_by(
        lambda p: (p | ReadBackgrounds(inputs["bg"], config))[0] | beam.Map(lambda item: item[0])
    )
    foregrounds = _made_by(lambda p: (p | ReadForegrounds(inputs["fg"], None, config))[0])
    # Each background with the split the composites were made in (their pair key holds it).
    plan = plan_splits(small_split_config(), [bg.stem for bg in backgrounds], [])
    return (
        {bg.stem: dataclasses.replace(bg, split=plan.split_of(bg.stem)) for bg in backgrounds},
        {fg.stem: fg for fg in foregrounds},
    )


def run_attempt(root: str, bundle: Sequence[Composite], first_stage: str = STAGES[0]) -> None:
    """One attempt of the bundle, from `first_stage` on: each composite's
    files, then each sample's row file, then each pair's record (after
    counting its samples, as RecordPairs' combiner does). A retry of a later
    stage's bundle starts there: the earlier stages' work was done."""
    start = STAGES.index(first_stage)
    writer = _WriteSample(root, MASK_FORMAT, "", None)
    writer.setup()
    written = [next(writer.process(composite)) for composite in bundle] if start == 0 else None
    if written is None:  # what the finished sample stage handed on
        written = [(c.pair_key, row) for c, row in zip(bundle, sample_rows(bundle))]
    row_writer = _WriteSampleRow(root)
    counted = [next(row_writer.process(item)) for item in written] if start <= 1 else None
    if counted is None:
        counted = [
            ((row.placement.bg_stem, row.placement.fg_stem), (key, 1)) for key, row in written
        ]
    combiner = _CountPairSamples()
    totals: Dict[Tuple[str, str], Tuple[str, int]] = {}
    for pair, value in counted:
        totals[pair] = combiner.add_input(totals.get(pair, combiner.create_accumulator()), value)
    recorder = _RecordPair(root, SAMPLES_PER_PAIR, None)
    recorder.setup()
    for pair, total in sorted(totals.items()):
        list(recorder.process((pair, total)))


def sample_rows(bundle: Sequence[Composite]):
    """The rows the sample stage hands on for these composites, computed
    without writing (into a throwaway folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        writer = _WriteSample(scratch, MASK_FORMAT, "", None)
        writer.setup()
        return [next(writer.process(composite))[1] for composite in bundle]


@contextlib.contextmanager
def stopping_after(operations: Optional[int]) -> Iterator[List[str]]:
    """Count the stages' storage operations (writes and deletes); with
    `operations`, stop the attempt (raise Stopped) when that many are done.
    Yields the operations done, in order."""
    done: List[str] = []
    patched = [
        (image_files, "write_file"),
        (pair_records, "write_file"),
        (pair_records, "delete_files"),
    ]
    originals = [getattr(module, name) for module, name in patched]

    def counted(original, name):
        def operation(*args, **kwargs):
            if operations is not None and len(done) >= operations:
                raise Stopped(f"stopped before operation {len(done) + 1}")
            result = original(*args, **kwargs)
            done.append(f"{name} {args[0]}")
            return result

        return operation

    for (module, name), original in zip(patched, originals):
        setattr(module, name, counted(original, name))
    try:
        yield done
    finally:
        for (module, name), original in zip(patched, originals):
            setattr(module, name, original)


def stage_of(operation: str) -> str:
    """Which stage a storage operation (`stopping_after`'s list) belongs to."""
    if "/.rows/" in operation and operation.startswith("write_file"):
        return "rows"
    if (
        operation.startswith("write_file")
        and "/.rows/" not in operation
        and ".pair.json" not in operation
    ):
        return "samples"
    return "record"


def main(argv: Sequence[str]) -> None:
    """An attempt in a process of its own: announce readiness by creating
    READY, wait for GO to exist, then run the whole bundle."""
    from apache_beam.internal.gcp import auth

    auth.get_service_credentials = lambda options: None  # the emulator is anonymous
    root, bundle_path, ready, go = argv
    bundle = pickle.loads(Path(bundle_path).read_bytes())
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.001)
    run_attempt(root, bundle)


if __name__ == "__main__":
    main(sys.argv[1:])
