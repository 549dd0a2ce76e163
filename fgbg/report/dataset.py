"""What the report is made from: a built dataset's documents and its sample table.

Everything is read back from the written dataset (manifest.json, stats.json,
timings.json, samples.csv and the images) through Beam's FileSystems
(fgbg/storage.py), so the same code reports on a fresh build and on any
existing dataset, local or gs://. The samples shown are picked by a hash of
the run seed, never by a clock or an unseeded random source.
"""

from __future__ import annotations

import array
import csv
import dataclasses
import heapq
import io
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from fgbg import layout
from fgbg.blend_modes import MODES
from fgbg.documents import Manifest, Stats, Timings, read_manifest, read_stats, read_timings
from fgbg.hashing import stable_hash
from fgbg.layout import natural_key
from fgbg.storage import exists, read_file

DEFAULT_ROWS = 8
# A metric depth PNG stores millimetres (see transforms/densedepth.encode_metric).
MILLIMETRES_PER_METRE = 1000.0


class ReportError(ValueError):
    """The dataset cannot be reported on; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """What the report takes from samples.csv, gathered in one streaming pass:
    per-sample values as float arrays (8 bytes each, not a dict per row),
    background and foreground counts per split and the rows chosen for the
    grid."""

    count: int
    overlay_mean: np.ndarray
    mask_coverage: np.ndarray
    depth_mean: np.ndarray  # empty when the build has no depth
    backgrounds_per_split: Dict[str, int]
    chosen: List[Dict[str, str]]
    # One sample per --blend mode, for builds whose table says the mode
    # (mode -> row, in fgbg.blend_modes.MODES order); empty otherwise.
    blend_examples: Dict[str, Dict[str, str]] = dataclasses.field(default_factory=dict)
    foregrounds_per_split: Dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the report is made from: a built dataset's documents and table."""

    root: str
    manifest: Manifest
    stats: Stats
    timings: Optional[Timings]  # datasets built before timings.json lack it
    table: SampleTable

    @property
    def has_depth(self) -> bool:
        return len(self.table.depth_mean) > 0

    @property
    def depth_encoding(self) -> str:
        """'minmax' (per-image grey JPEG) or 'metric' (16-bit millimetre PNG)."""
        return self.manifest.depth.encoding or "minmax"


def check_exists(root: str, relative: str) -> None:
    path = layout.resolve(root, relative)
    if not exists(path):
        raise ReportError(f"{path} not found: is {root} a finished fgbg build?")


def summarize_samples(rows: Iterable[Dict[str, str]], seed: int, count: int) -> SampleTable:
    """One pass over samples.csv rows; keeps nothing per row but three floats."""
    values: Dict[str, array.array] = {
        column: array.array("d") for column in ("overlay_mean", "mask_coverage", "depth_mean")
    }
    backgrounds: Dict[str, set] = {}
    blends = BlendExamples(seed)
    foregrounds: Dict[str, set] = {}
    total = 0

    def counted(rows: Iterable[Dict[str, str]]) -> Iterator[Dict[str, str]]:
        nonlocal total
        for row in rows:
            total += 1
            for column, column_values in values.items():
                if row[column]:
                    column_values.append(float(row[column]))
            backgrounds.setdefault(row["split"], set()).add(row["bg"])
            blends.add(row)
            foregrounds.setdefault(row["split"], set()).add(row["fg"])
            yield row

    chosen = choose_samples(counted(rows), seed, count)
    return SampleTable(
        count=total,
        chosen=chosen,
        backgrounds_per_split={split: len(names) for split, names in backgrounds.items()},
        blend_examples=blends.examples(),
        foregrounds_per_split={split: len(names) for split, names in foregrounds.items()},
        **{
            column: np.frombuffer(column_values, dtype=np.float64)
            for column, column_values in values.items()
        },
    )


class BlendExamples:
    """The report's example of each blending mode, picked while samples.csv
    streams past: per mode, the sample ranked first by a stable hash of
    (seed, its pair), then its number. Ranking pairs first makes every mode
    show the same background and foreground wherever that pair has a sample
    of each mode, so the modes compare side by side."""

    def __init__(self, seed: int):
        self._seed = seed
        self._best: Dict[str, Tuple[Tuple[int, int], Dict[str, str]]] = {}

    def add(self, row: Dict[str, str]) -> None:
        mode = row.get("blend")
        if not mode:
            return
        rank = (stable_hash("blend", self._seed, row["bg"], row["fg"]), int(row["number"]))
        if mode not in self._best or rank < self._best[mode][0]:
            self._best[mode] = rank, row

    def examples(self) -> Dict[str, Dict[str, str]]:
        return {mode: self._best[mode][1] for mode in ordered_modes(self._best)}


def ordered_modes(modes: Iterable[str]) -> List[str]:
    """Modes in fgbg.blend_modes.MODES order, any others after them."""
    modes = list(modes)
    return [mode for mode in MODES if mode in modes] + sorted(set(modes) - set(MODES))


def read_samples(root: str, seed: int, count: int) -> SampleTable:
    path = layout.resolve(root, layout.SAMPLES_CSV)
    if not exists(path):
        raise ReportError(f"{path} not found: is {root} a finished fgbg build?")
    with FileSystems.open(path) as handle:
        return summarize_samples(
            csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")), seed, count
        )


def load_dataset(root: str, rows: int = DEFAULT_ROWS) -> Dataset:
    """Read a built dataset's documents and its table, choosing `rows` samples
    for the grid; raises ReportError if it is not a finished build."""
    root = root.rstrip("/")
    for relative in (layout.MANIFEST_JSON, layout.STATS_JSON):
        check_exists(root, relative)
    manifest = read_manifest(root)
    has_timings = exists(layout.resolve(root, layout.TIMINGS_JSON))
    return Dataset(
        root=root,
        manifest=manifest,
        stats=read_stats(root),
        timings=read_timings(root) if has_timings else None,
        table=read_samples(root, int(manifest.seed), rows),
    )


def read_image(root: str, relative: str) -> Image.Image:
    image = Image.open(io.BytesIO(read_file(layout.resolve(root, relative))))
    image.load()
    return image


def choose_samples(
    samples: Iterable[Dict[str, str]], seed: int, count: int
) -> List[Dict[str, str]]:
    """`count` samples ranked by a stable hash of (seed, id), shown in id order.

    A hash rather than the first rows spreads the pick over backgrounds,
    foregrounds and splits; keying it on the run seed makes every rebuild
    show the same samples, and another seed's build show others. Only the
    `count` best-ranked rows are held while `samples` streams past.
    """
    ranked = heapq.nsmallest(
        max(count, 0), samples, key=lambda row: (stable_hash("report", seed, row["id"]), row["id"])
    )
    return sorted(ranked, key=lambda row: natural_key(row["id"]))
