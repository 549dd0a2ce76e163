"""The dataset's image files: `bg/<stem>.jpg` and each sample's overlay,
mask and depth, written one sample at a time where they are made.

Every file goes through `fgbg.storage`, so a crash never leaves a
half-written file under its final name. What a written sample leaves for
the pair's bookkeeping (its row) is the next stage's job
(transforms/pairs.py, WriteSampleRows).
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import apache_beam as beam
import numpy as np

from fgbg import layout
from fgbg.images import encode_jpeg
from fgbg.moments import encoded_moments
from fgbg.progress import ProgressFile
from fgbg.storage import write_file
from fgbg.timing import stage_timer, timed
from fgbg.types import Background, Composite, SampleRow

MOMENTS = "moments"


class WriteBackgrounds(beam.PTransform):
    """(Background, image) -> Background, after writing bg/<stem>.jpg; the
    written image's ((background name, "background"), moments) go to the
    MOMENTS output (its split is known once every background is:
    transforms/splits.py)."""

    def __init__(self, root: str, quality: int):
        super().__init__()
        self._root = root
        self._quality = quality

    def expand(self, prepared):
        return prepared | "WriteBackground" >> beam.ParDo(
            _WriteBackground(self._root, self._quality)
        ).with_outputs(MOMENTS, main="backgrounds")


class _WriteBackground(beam.DoFn):
    def __init__(self, root: str, quality: int):
        self._root = root
        self._quality = quality
        self._timer = stage_timer("backgrounds")

    def process(self, prepared: Tuple[Background, np.ndarray]) -> Iterator:
        background, image = prepared
        with timed(self._timer):
            encoded = encode_jpeg(image, self._quality)
            write_file(layout.resolve(self._root, layout.background_path(background.stem)), encoded)
        yield beam.pvalue.TaggedOutput(
            MOMENTS, ((background.stem, "background"), encoded_moments(encoded))
        )
        yield background


class _WriteSample(beam.DoFn):
    """Writes one composite's files; outputs its pair key and `SampleRow`."""

    def __init__(
        self, root: str, mask_extension: str, depth_extension: str, progress_dir: Optional[str]
    ):
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._progress_dir = progress_dir
        # Named after the module that once held it: timings.json and the
        # benchmarks read this name.
        self._written = beam.metrics.Metrics.counter("writers", "samples_written")
        self._timer = stage_timer("writing")

    def setup(self) -> None:
        self._progress = ProgressFile(self._progress_dir)

    def finish_bundle(self) -> None:
        self._progress.flush()

    def process(self, composite: Composite) -> Iterator[Tuple[str, SampleRow]]:
        with timed(self._timer):
            row = self._write(composite)
        self._written.inc()
        self._progress.add()
        yield composite.pair_key, row

    def _write(self, composite: Composite) -> SampleRow:
        placement = composite.placement
        files = {
            "overlay": (layout.sample_path(placement, "overlay", "jpg"), composite.overlay_encoded),
            "mask": (
                layout.sample_path(placement, "mask", self._mask_extension),
                composite.mask_encoded,
            ),
        }
        if composite.depth is not None:
            files["depth"] = (
                layout.sample_path(placement, "depth", self._depth_extension),
                composite.depth,
            )
        for relative, data in files.values():
            write_file(layout.resolve(self._root, relative), data)
        # Lossy files (JPEG overlays, depth, JPEG masks) get the statistics of
        # the written file; a PNG mask's, and a composed metric label's, come
        # with the composite.
        known = {"mask": composite.mask_moments, "depth": composite.depth_moments}
        moments = {
            kind: known.get(kind) or encoded_moments(data) for kind, (_, data) in files.items()
        }
        return SampleRow(
            placement=placement,
            split=composite.split,
            bg_path=layout.background_path(placement.bg_stem),
            overlay_path=files["overlay"][0],
            mask_path=files["mask"][0],
            depth_path=files["depth"][0] if "depth" in files else "",
            moments=moments,
            depth_precision=composite.depth_precision,
            blend=composite.blend,
            scene=composite.scene,
        )


class WriteSamples(beam.PTransform):
    """Composite -> its overlay, mask and depth files, one sample at a time;
    outputs (pair key, `SampleRow`) per sample, for WriteSampleRows.

    `progress_dir` (local runs) receives per-worker counts for progress lines.
    """

    def __init__(
        self,
        root: str,
        mask_extension: str,
        depth_extension: str,
        progress_dir: Optional[str] = None,
    ):
        super().__init__()
        self._root = root
        self._mask_extension = mask_extension
        self._depth_extension = depth_extension
        self._progress_dir = progress_dir

    def expand(self, composites):
        return composites | "WriteSampleFiles" >> beam.ParDo(
            _WriteSample(
                self._root, self._mask_extension, self._depth_extension, self._progress_dir
            )
        )
