"""The documents of a run, assembled from its configuration and results:
the manifest (written last, by the graph), timings.json (after the run, from
Beam's metrics) and the summary printed at the end.

Their typed records, shared with the code that reads them, are in
fgbg/documents.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from importlib import metadata
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import AsDict, AsList, AsSingleton, PBegin, PCollection

from fgbg import layout
from fgbg.blend_modes import NONE as NO_BLEND
from fgbg.depth.models import NONE
from fgbg.documents import (
    Counts,
    DepthInfo,
    Files,
    Manifest,
    RejectedFile,
    SceneInfo,
    SplitMembers,
    Splits,
    Timings,
    write_manifest,
)
from fgbg.timing import NAMESPACE
from fgbg.types import Reject
from pipeline.config import BuildConfig
from pipeline.local_workers import Workers
from transforms.splits import SPLITS, SplitPlan, plan_note
from transforms.tfrecords import remove_stale_shards

PACKAGES = (
    "apache-beam",
    "numpy",
    "pillow",
    "tensorflow",
    "tf_keras",
    "tensorflow-transform",
    "google-cloud-storage",
    "opencv-python-headless",  # --blend's blurs and seamless cloning
)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> Dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def manifest_document(
    config: BuildConfig,
    split_counts: Dict[str, int],
    shards: List[str],
    rejects: Sequence[Reject],
    plan: SplitPlan,
    depth_precisions: Sequence[str] = (),
    blends: Optional[Dict[str, int]] = None,
    scene_counts: Tuple[int, int] = (0, 0),
) -> Manifest:
    """manifest.json's record; `plan` is the build's split plan,
    `depth_precisions` are those the depth maps were made in (one, unless
    workers of a build differed in hardware), `blends` the samples each
    blending mode made, `scene_counts` the build's (redraws, fallbacks)."""
    return Manifest(
        dataset="fgbg",
        seed=config.seed,
        fingerprint=config.fingerprint,
        started_at=config.run.started_at,
        finished_at=utc_now(),
        counts=Counts(
            samples=sum(split_counts.values()),
            samples_per_split=dict(sorted(split_counts.items())),
            backgrounds=len(plan.backgrounds),
            foregrounds=len(plan.foregrounds),
            samples_per_pair=config.placements.samples_per_pair,
            input_files=config.run.input_files,
            rejected=len(rejects),
            tfrecord_shards=len(shards),
            samples_per_blend=dict(sorted((blends or {}).items())),
            pairs=plan.pairs,
        ),
        rejects=[RejectedFile(path=reject.path, reason=reject.reason) for reject in rejects],
        depth=ran_in(config.depth_info, depth_precisions),
        files=Files(
            label_csv=layout.LABEL_CSV,
            samples_csv=layout.SAMPLES_CSV,
            rejects_csv=layout.REJECTS_CSV,
            stats=layout.STATS_JSON,
            transform=layout.TRANSFORM_DIR if config.tft else None,
            tfrecords=sorted(shards),
        ),
        options=config.options,
        versions=package_versions(),
        splits=splits_record(plan, split_counts, config.placements.samples_per_pair),
        scene=scene_info(config, scene_counts),
    )


def scene_info(config: BuildConfig, counts: Tuple[int, int]) -> Optional[SceneInfo]:
    """The manifest's `scene`: None unless placed by depth or labels composed."""
    scene = config.scene
    if scene is None:
        return None
    if scene.bg_depth:
        source = f"given maps, --bg_depth {scene.bg_depth} ({scene.bg_depth_scale:g} per metre)"
    else:
        source = f"{config.depth_info.model}, run once per background"
    labels = f"composed from {source}" if scene.composed else "the depth model, per composite"
    return SceneInfo(
        placement=scene.placement,
        camera_fov=scene.camera_fov,
        labels=labels,
        background_depth=source,
        redraws=counts[0],
        fallbacks=counts[1],
    )


class WriteManifest(beam.PTransform):
    """manifest.json, written last: it waits for every output it describes
    (`after`: the statistics, the normalisation graph, the pairs removed),
    checks the sample count, and removes shards an earlier build left."""

    def __init__(
        self,
        config: BuildConfig,
        split_counts: PCollection,
        shards: PCollection,
        rejects: PCollection,
        plan: PCollection,
        precisions: PCollection,
        blends: PCollection,
        after: Sequence[PCollection],
        scene_counts: Optional[PCollection] = None,
    ):
        super().__init__()
        self._config = config
        self._inputs = (split_counts, shards, rejects, plan, precisions, blends)
        self._after = after
        self._scene_counts = scene_counts

    def expand(self, begin: PBegin) -> PCollection:
        split_counts, shards, rejects, plan, precisions, blends = self._inputs
        scene_counts = self._scene_counts
        if scene_counts is None:
            scene_counts = begin | "NoSceneCounts" >> beam.Create([])
        return (
            begin
            | "ManifestTrigger" >> beam.Create([None])
            | "WriteManifest"
            >> beam.Map(
                _write_manifest,
                self._config,
                AsList(split_counts),
                AsList(shards),
                AsList(rejects),
                AsSingleton(plan),
                AsList(precisions),
                AsDict(blends),
                AsList(scene_counts),
                *(AsList(waited) for waited in self._after),
            )
        )


def _write_manifest(
    _, config, split_counts, shards, rejects, plan, precisions, blends, scene_counts, *_after
) -> None:
    manifest = manifest_document(
        config,
        split_counts[0] if split_counts else {},
        shards,
        rejects[0] if rejects else [],
        plan,
        precisions,
        blends,
        scene_counts[0] if scene_counts else (0, 0),
    )
    check_sample_count(manifest.counts)
    remove_stale_shards(config.output, shards)
    write_manifest(config.output, manifest)


def splits_record(plan: SplitPlan, split_counts: Dict[str, int], samples_per_pair: int) -> Splits:
    """manifest.json's `splits`: each split's members from the plan, its
    samples from the tables (samples.csv's split column)."""
    return Splits(
        members={
            split: SplitMembers(
                backgrounds=plan.backgrounds_of(split),
                foregrounds=plan.foregrounds_of(split),
                pairs=plan.pairs_of(split),
                samples=split_counts.get(split, 0),
            )
            for split in SPLITS
        },
        held_out_foregrounds=sorted(plan.held_out),
        note=plan_note(plan, samples_per_pair),
    )


def ran_in(depth: DepthInfo, precisions: Sequence[str]) -> DepthInfo:
    """The manifest's depth record with the precision the maps were made in,
    which a launcher cannot know (`--depth_precision auto` resolves on each
    worker), in place of the one asked for."""
    if depth.model == NONE:
        return depth
    return dataclasses.replace(depth, precision="+".join(sorted(precisions)) or None)


def check_sample_count(counts: Counts) -> None:
    """Every accepted pair must be in the tables: a shortfall means samples
    were lost between compositing and the tables, so no manifest vouches for
    the dataset."""
    if counts.samples != counts.expected_samples:
        pairs = counts.expected_samples // counts.samples_per_pair
        fewer = "" if pairs == counts.backgrounds * counts.foregrounds else ", less held-out pairs"
        raise RuntimeError(
            f"the tables list {counts.samples} samples, but the build's {pairs} pairs "
            f"({counts.backgrounds} backgrounds x {counts.foregrounds} foregrounds{fewer}) "
            f"x {counts.samples_per_pair} per pair = {counts.expected_samples}; "
            "manifest not written"
        )


def timings_document(result, wall_s: float) -> Timings:
    """Wall time of the run and CPU seconds per stage, from Beam metrics.

    Stage CPU seconds add up over all workers, so on N cores they can exceed
    the wall time by up to N times.
    """
    stages: Dict[str, float] = {}
    counters: Dict[str, int] = {}
    try:
        queried = result.metrics().query(MetricsFilter())
    except NotImplementedError:
        return Timings(wall_s=round(wall_s, 3), cpu_s_by_stage={}, counters={})
    for distribution in queried["distributions"]:
        name = distribution.key.metric
        total = distribution.committed.sum if distribution.committed else 0
        if name.namespace == NAMESPACE:
            stages[name.name] = stages.get(name.name, 0.0) + total / 1e6
        elif name.name == "inference_batch_latency_micro_secs":
            stages["depth"] = stages.get("depth", 0.0) + total / 1e6
    for counter in queried["counters"]:
        key = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
        counters[key] = counters.get(key, 0) + (counter.committed or 0)
    return Timings(
        wall_s=round(wall_s, 3),
        cpu_s_by_stage={k: round(v, 3) for k, v in sorted(stages.items())},
        counters=dict(sorted(counters.items())),
    )


def too_many_rejects(manifest: Manifest, max_fraction: float) -> bool:
    inputs = sum(manifest.counts.input_files.values())
    return inputs > 0 and manifest.counts.rejected / inputs > max_fraction


def on_onnx_runtime(depth: DepthInfo) -> str:
    """What the summary adds to the depth model's name when an ONNX export
    of it made the maps."""
    return f" ({depth.onnx_file} on ONNX Runtime)" if depth.onnx_file else ""


def summary(
    manifest: Manifest, timings: Timings, output: str, workers: Optional[Workers] = None
) -> str:
    """The one-screen report printed at the end of a run; `workers` those of
    a local run (None on a remote runner)."""
    counts = manifest.counts
    lines = [
        f"fgbg: {counts.samples} samples "
        f"({', '.join(f'{k} {v}' for k, v in counts.samples_per_split.items())}) "
        f"from {counts.backgrounds} backgrounds x {counts.foregrounds} foregrounds "
        f"in {timings.wall_s:.1f} s",
        f"  output:   {output}",
        f"  report:   {layout.resolve(output, layout.REPORT_HTML)}",
        f"  training: {layout.TFRECORD_DIR}/, {layout.LABEL_CSV}, {layout.SAMPLES_CSV}, "
        f"{layout.STATS_JSON}",
        f"  rejected: {counts.rejected} input files (see {layout.REJECTS_CSV})",
        f"  depth:    {manifest.depth.model}{on_onnx_runtime(manifest.depth)}",
    ]
    blends = counts.samples_per_blend
    if set(blends) - {NO_BLEND}:
        lines.append(f"  blend:    {', '.join(f'{k} {v}' for k, v in blends.items())}")
    if workers:
        lines.append(f"  workers:  {workers.describe()}")
    if manifest.splits and manifest.splits.held_out_foregrounds:
        lines.append(
            f"  splits:   {len(manifest.splits.held_out_foregrounds)} foregrounds held out "
            f"for test; {counts.pairs} pairs made, not "
            f"{counts.backgrounds} x {counts.foregrounds} (manifest.json, splits)"
        )
    for reject in manifest.rejects[:10]:
        lines.append(f"  reject: {reject.path}: {reject.reason}")
    if manifest.depth.warning:
        lines.append(f"  {manifest.depth.warning}")
    return "\n".join(lines)
