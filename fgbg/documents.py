"""The JSON documents a build writes, as typed records shared by the code
that writes them (pipeline/) and the code that reads them (the report, the
run summary, training code).

Each record's `to_json` gives exactly the document on disk (keys sorted when
written, so reruns match byte for byte) and `from_json` reads it back,
tolerating the fields that datasets built by earlier versions lack.

The keys are the on-disk format and keep their published spelling (e.g.
stats.json's `notes.normalisation_splits`); field names follow the code's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from fgbg import layout
from fgbg.storage import read_json, write_json

Json = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Counts:
    samples: int
    samples_per_split: Dict[str, int]
    backgrounds: int
    foregrounds: int
    samples_per_pair: int
    input_files: Dict[str, int]  # files matched by --bg, --fg and --fg_mask
    rejected: int
    tfrecord_shards: int
    # Samples per --blend mode (fgbg/blend_modes.py); empty in datasets
    # built before --blend, whose samples were all mode none.
    samples_per_blend: Dict[str, int] = dataclasses.field(default_factory=dict)
    # The pairs the split plan makes: fewer than backgrounds x foregrounds
    # when foregrounds are held out for test. None in datasets built before.
    pairs: Optional[int] = None

    @property
    def expected_samples(self) -> int:
        """The pairs made x samples per pair: what the tables must list."""
        pairs = self.backgrounds * self.foregrounds if self.pairs is None else self.pairs
        return pairs * self.samples_per_pair


@dataclasses.dataclass(frozen=True)
class SplitMembers:
    """One split's backgrounds and foregrounds (sorted names), the pairs
    they make and the samples the tables list."""

    backgrounds: List[str]
    foregrounds: List[str]
    pairs: int
    samples: int


@dataclasses.dataclass(frozen=True)
class Splits:
    """manifest.json's `splits`: each split's members, the foregrounds held
    out for test, and a sentence on how the splits were drawn and why the
    samples may be fewer than backgrounds x foregrounds x samples per pair."""

    members: Dict[str, SplitMembers]
    held_out_foregrounds: List[str]
    note: str

    @classmethod
    def from_json(cls, document: Json) -> "Splits":
        return cls(
            members={
                split: SplitMembers(**members) for split, members in document["members"].items()
            },
            held_out_foregrounds=document["held_out_foregrounds"],
            note=document["note"],
        )


@dataclasses.dataclass(frozen=True)
class RejectedFile:
    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class DepthInfo:
    """What a build says about its depth maps; `warning` is set when they are
    not real depth, `note` when there are none."""

    model: str
    weights: Optional[str] = None
    encoding: Optional[str] = None
    input_size: Optional[str] = None
    # What the maps were made in ("+"-joined if workers differed); None in
    # datasets built before --depth_precision.
    precision: Optional[str] = None
    runtime: Optional[str] = None  # None in datasets built before --depth_runtime
    # None in datasets built before it was recorded (all resized with Lanczos)
    input_resize: Optional[str] = None
    # Set for transformers checkpoints only (DenseDepth's records are as
    # they were): its weights' digest, what its maps hold, its licence, and
    # a metric build's stored value per metre; and the ONNX export that ran
    # on the onnx runtime (whose digest is weights_sha256).
    weights_sha256: Optional[str] = None
    holds: Optional[str] = None
    licence: Optional[str] = None
    stored_per_metre: Optional[int] = None
    onnx_file: Optional[str] = None
    warning: Optional[str] = None
    note: Optional[str] = None
    # The depth runtime's threads per worker process and what they were made
    # from (fgbg/depth/thread_budget.py's ThreadBudget); None in datasets
    # built before it was recorded, and in builds on a test's pipeline.
    threads: Optional[Dict[str, Any]] = None

    def to_json(self) -> Json:
        if self.model == "none":
            return {"model": self.model, "note": self.note}
        document: Json = {
            "model": self.model,
            "weights": self.weights,
            "encoding": self.encoding,
            "input_size": self.input_size,
        }
        if self.precision:
            document["precision"] = self.precision
        if self.runtime:
            document["runtime"] = self.runtime
        if self.input_resize:
            document["input_resize"] = self.input_resize
        names = ("weights_sha256", "holds", "licence", "stored_per_metre", "onnx_file", "threads")
        for name in names:
            if getattr(self, name):
                document[name] = getattr(self, name)
        if self.warning:
            document["warning"] = self.warning
        return document


@dataclasses.dataclass(frozen=True)
class SceneInfo:
    """manifest.json's `scene`, in builds with --placement depth or
    --depth_labels composed (docs/scene-placement.md): how samples were
    placed, the camera's field of view, where the labels come from, and how
    often a foot point was drawn again or a sample fell back to random
    placement."""

    placement: str
    camera_fov: float
    labels: str  # e.g. "composed from the backgrounds' --bg_depth maps"
    background_depth: str  # where each background's depth came from
    redraws: int
    fallbacks: int


@dataclasses.dataclass(frozen=True)
class Files:
    label_csv: str
    samples_csv: str
    rejects_csv: str
    stats: str
    transform: Optional[str]  # None for builds with --no_tft
    tfrecords: List[str]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """manifest.json: what was built, from what, how; written last."""

    dataset: str
    seed: int
    fingerprint: str
    started_at: str
    finished_at: str
    counts: Counts
    rejects: List[RejectedFile]
    depth: DepthInfo
    files: Files
    options: Dict[str, Any]
    versions: Dict[str, str]
    splits: Optional[Splits] = None  # None in datasets built before it was recorded
    scene: Optional[SceneInfo] = None  # None unless placed by depth or labels composed

    def to_json(self) -> Json:
        document = dataclasses.asdict(self)
        document["depth"] = self.depth.to_json()
        for name in ("splits", "scene"):
            if document[name] is None:
                del document[name]
        return document

    @classmethod
    def from_json(cls, document: Json) -> "Manifest":
        return cls(
            **{
                **document,
                "counts": Counts(**document["counts"]),
                "rejects": [RejectedFile(**reject) for reject in document["rejects"]],
                "depth": DepthInfo(**document["depth"]),
                "files": Files(**document["files"]),
                "splits": Splits.from_json(document["splits"]) if "splits" in document else None,
                "scene": SceneInfo(**document["scene"]) if "scene" in document else None,
            }
        )

    @property
    def depth_encoding(self) -> str:
        """'minmax', 'metric', or 'none' for a composites-only build."""
        return self.depth.encoding or "none"


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Mean and population std per channel, in stored values and divided by
    the kind's full scale (`*_unit`)."""

    pixels: int
    mean: List[float]
    std: List[float]
    mean_unit: List[float]
    std_unit: List[float]


@dataclasses.dataclass(frozen=True)
class StatsNotes:
    method: str
    scales: str
    depth_scale: float
    depth_unit: str
    normalization_splits: Optional[List[str]]  # None in datasets built before splits
    normalization: Optional[str]

    _KEYS = {"normalization_splits": "normalisation_splits", "normalization": "normalisation"}

    def to_json(self) -> Json:
        return {
            self._KEYS.get(field.name, field.name): getattr(self, field.name)
            for field in dataclasses.fields(self)
        }

    @classmethod
    def from_json(cls, document: Json) -> "StatsNotes":
        return cls(
            **{
                field.name: document.get(cls._KEYS.get(field.name, field.name))
                for field in dataclasses.fields(cls)
            }
        )


@dataclasses.dataclass(frozen=True)
class Stats:
    """stats.json: every image kind over the whole dataset (top level, by
    kind), the same per split (`splits`), and notes on method and scales."""

    kinds: Dict[str, ChannelStats]
    splits: Dict[str, Dict[str, ChannelStats]]
    notes: StatsNotes

    def to_json(self) -> Json:
        document: Json = {kind: dataclasses.asdict(stats) for kind, stats in self.kinds.items()}
        document["splits"] = {
            split: {kind: dataclasses.asdict(stats) for kind, stats in kinds.items()}
            for split, kinds in self.splits.items()
        }
        document["notes"] = self.notes.to_json()
        return document

    @classmethod
    def from_json(cls, document: Json) -> "Stats":
        def kinds_of(part: Json) -> Dict[str, ChannelStats]:
            return {
                kind: ChannelStats(**value)
                for kind, value in part.items()
                if kind not in ("splits", "notes")
            }

        return cls(
            kinds=kinds_of(document),
            splits={split: kinds_of(part) for split, part in document.get("splits", {}).items()},
            notes=StatsNotes.from_json(document.get("notes", {})),
        )


@dataclasses.dataclass(frozen=True)
class Timings:
    """timings.json: the run's wall time, CPU seconds per stage summed over
    all workers (so up to N times the wall time on N cores), and Beam's
    counters."""

    wall_s: float
    cpu_s_by_stage: Dict[str, float]
    counters: Dict[str, int]

    def to_json(self) -> Json:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document: Json) -> "Timings":
        return cls(
            wall_s=document["wall_s"],
            cpu_s_by_stage=document["cpu_s_by_stage"],
            counters=document.get("counters", {}),
        )


def write_manifest(root: str, manifest: Manifest) -> None:
    write_json(root, layout.MANIFEST_JSON, manifest.to_json())


def read_manifest(root: str) -> Manifest:
    return Manifest.from_json(read_json(root, layout.MANIFEST_JSON))


def write_stats(root: str, stats: Stats) -> None:
    write_json(root, layout.STATS_JSON, stats.to_json())


def read_stats(root: str) -> Stats:
    return Stats.from_json(read_json(root, layout.STATS_JSON))


def write_timings(root: str, timings: Timings) -> None:
    write_json(root, layout.TIMINGS_JSON, timings.to_json())


def read_timings(root: str) -> Timings:
    return Timings.from_json(read_json(root, layout.TIMINGS_JSON))
