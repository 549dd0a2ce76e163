"""Build the fg_bg dataset: `python -m pipeline.build --bg ... --fg ... --output ...`.

The graph, as the data flows:

  backgrounds ─ read, check, resize ─ write bg/ ─┐
  foregrounds (+ masks) ─ read, check ─ side input ┴ cross ─ compose ─ [depth]
    ─ write overlay/mask/depth and each pair's record
    ─ one handle per pair ─┬ label_data.csv, samples.csv
                           ├ tfrecords/<split>-* ─ TFT analysis (train) ─ transform/
                           └ stats.json (exact pixel moments, overall and per split)
  rejects ─ rejects.csv;  everything ─ manifest.json (written last)

Past the writer, stages pass one small handle per pair and read rows back
from the pair's record, so nothing held in memory grows with the samples.

After the run the launcher writes timings.json (from Beam metrics) and the
report (report.html, samples.png).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import posixpath
import shutil
import sys
import tempfile
import threading
import time
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  StandardOptions)

from pipeline.dataflow import apply_worker_defaults, is_dataflow, is_dry_run, write_dry_run_job
from pipeline.options import SAMPLE_SHAPING_OPTIONS, FgbgOptions, unknown_arguments
from transforms import layout
from transforms.compositing import JPEG_QUALITY, RESUMED, ComposeSamples, EncodingConfig
from transforms.inputs import InputConfig, ReadBackgrounds, ReadForegrounds
from transforms.normalize import AnalyzeRecords
from transforms.placements import PlacementConfig, parse_scales
from transforms.progress import total_progress
from transforms.records import match_files
from transforms.report import write_report
from transforms.resume import options_fingerprint
from transforms.stats import ComputeStats, stats_document
from transforms.storage import read_json, remove_stale_temporaries, write_json
from transforms.timing import NAMESPACE
from transforms.writers import (EXAMPLES, MOMENTS, WriteBackgrounds, WriteRejects, WriteSamples,
                                WriteTables, WriteTFRecords, remove_stale_shards)

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
PACKAGES = ("apache-beam", "numpy", "pillow", "tensorflow", "tf_keras", "tensorflow-transform",
            "google-cloud-storage")
EXIT_TOO_MANY_REJECTS = 3


class UsageError(ValueError):
    """A bad option: the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything the graph needs, derived once from the options."""

    output: str
    csv_prefix: str
    inputs: InputConfig
    placements: PlacementConfig
    encoding: EncodingConfig
    records_per_shard: int
    depth_model: str
    depth_encoding: str  # 'none' when there is no depth stage
    fingerprint: str  # of the sample-shaping options


def parse_size(text: str) -> tuple:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


Rule = Tuple[Callable[[float], bool], str]  # a test, and what the error says it wants


def _at_least(low: int) -> Rule:
    return (lambda value: value >= low), f">= {low}"


_POSITIVE: Rule = ((lambda value: value > 0), "> 0")
_FRACTION: Rule = ((lambda value: 0 <= value <= 1), "in 0..1")
_QUALITY: Rule = (JPEG_QUALITY.__contains__, f"in {JPEG_QUALITY.start}..{JPEG_QUALITY.stop - 1}")
# Each numeric option's valid values, checked before any work.
OPTION_RANGES: Tuple[Tuple[str, Callable[[float], bool], str], ...] = (
    ("mask_threshold", (lambda value: 0 <= value < 255), "in 0..254"),
    ("max_input_pixels", *_at_least(1)),
    ("min_background_side", *_at_least(1)),
    ("max_reject_fraction", *_FRACTION),
    ("size", *_at_least(8)),
    ("placements_per_scale", *_at_least(1)),
    ("val_fraction", *_FRACTION),
    ("test_fraction", *_FRACTION),
    ("bg_quality", *_QUALITY),
    ("overlay_quality", *_QUALITY),
    ("mask_quality", *_QUALITY),
    ("depth_quality", *_QUALITY),
    ("depth_batch_size", *_at_least(1)),
    ("depth_min_batch_size", *_at_least(1)),
    ("depth_target_batch_duration_s", *_POSITIVE),
    ("records_per_shard", *_at_least(1)),
    ("tft_batch_size", *_at_least(1)),
    ("progress_interval_s", *_POSITIVE),
)


def check_options(opts: FgbgOptions) -> None:
    """Fail fast, before any work, with a message naming the option."""
    for name in ("bg", "fg", "output"):
        if not getattr(opts, name):
            raise UsageError(f"--{name} is required (see --help)")
    for name, valid, expected in OPTION_RANGES:
        if not valid(getattr(opts, name)):
            raise UsageError(f"--{name} must be {expected}, got {getattr(opts, name)}")
    if opts.val_fraction + opts.test_fraction > 1:
        raise UsageError("--val_fraction and --test_fraction must sum to at most 1")
    if opts.depth_model != "none" and opts.depth_min_batch_size > opts.depth_batch_size:
        raise UsageError("--depth_min_batch_size must be at most --depth_batch_size")
    try:
        parse_scales(opts.scales)
    except ValueError as error:
        raise UsageError(str(error)) from None
    width, height = parse_size(opts.depth_input_size)
    if width % 32 or height % 32:
        raise UsageError(f"--depth_input_size {opts.depth_input_size}: both sides must be "
                         "multiples of 32 (DenseDepth's encoder downsamples 32x)")


def build_config(opts: FgbgOptions) -> BuildConfig:
    output = opts.output.rstrip("/")
    depth_on = opts.depth_model != "none"
    return BuildConfig(
        output=output,
        csv_prefix=opts.csv_prefix if opts.csv_prefix is not None else posixpath.basename(output),
        inputs=InputConfig(size=opts.size, max_input_pixels=opts.max_input_pixels,
                           min_background_side=opts.min_background_side,
                           mask_threshold=opts.mask_threshold,
                           val_fraction=opts.val_fraction, test_fraction=opts.test_fraction),
        placements=PlacementConfig(seed=opts.seed, size=opts.size,
                                   scales=parse_scales(opts.scales),
                                   placements_per_scale=opts.placements_per_scale,
                                   mirror=opts.mirror),
        encoding=EncodingConfig(overlay_quality=opts.overlay_quality,
                                mask_format=opts.mask_format, mask_quality=opts.mask_quality),
        records_per_shard=opts.records_per_shard,
        depth_model=opts.depth_model,
        depth_encoding=opts.depth_encoding if depth_on else "none",
        fingerprint=options_fingerprint(
            {name: getattr(opts, name) for name in SAMPLE_SHAPING_OPTIONS}),
    )


def package_versions() -> Dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def count_matches(pattern: Optional[str]) -> int:
    return len(match_files(pattern)) if pattern else 0


def add_depth_stage(composites, opts: FgbgOptions):
    """Composite -> Composite with depth bytes; imported only when depth is on,
    so composites-only builds never load TensorFlow for it."""
    from transforms.depth import DepthConfig, EstimateDepth

    try:
        config = DepthConfig(
            model=opts.depth_model, weights=opts.depth_weights, seed=opts.seed,
            batch_size=opts.depth_batch_size, min_batch_size=opts.depth_min_batch_size,
            target_batch_duration_s=opts.depth_target_batch_duration_s,
            input_size=parse_size(opts.depth_input_size), encoding=opts.depth_encoding,
            jpeg_quality=opts.depth_quality, out_size=(opts.size, opts.size))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return composites | "EstimateDepth" >> EstimateDepth(config)


def depth_extension(opts: FgbgOptions) -> str:
    if opts.depth_model == "none":
        return ""
    from transforms.depth import DEPTH_FILE_EXTENSION
    return DEPTH_FILE_EXTENSION[opts.depth_encoding]


def depth_description(opts: FgbgOptions) -> Dict[str, object]:
    """What the manifest says about depth; loud when it is not real depth."""
    if opts.depth_model == "none":
        return {"model": "none", "note": "composites-only build: no depth maps were made"}
    description: Dict[str, object] = {
        "model": opts.depth_model, "weights": opts.depth_weights,
        "encoding": opts.depth_encoding, "input_size": opts.depth_input_size}
    if opts.depth_model == "untrained":
        from transforms.densedepth import UNTRAINED_WARNING
        description["warning"] = UNTRAINED_WARNING
    return description


def depth_scale(config: BuildConfig) -> tuple:
    """(stored value that means 1.0, what it means) for stats.json."""
    if config.depth_encoding == "metric":
        from transforms.densedepth import METRIC_DEPTH_SCALE, METRIC_DEPTH_UNIT
        return METRIC_DEPTH_SCALE, METRIC_DEPTH_UNIT
    if config.depth_encoding == "minmax":
        return 255.0, "per-image min-max: 0 nearest, 255 farthest in that image"
    return 255.0, "no depth"


def manifest_document(opts: FgbgOptions, config: BuildConfig, started: str,
                      expected: Dict[str, int], split_counts: List[Dict[str, int]],
                      shards: List[str], rejects: List, backgrounds: int,
                      foregrounds: int) -> Dict[str, object]:
    counts = split_counts[0] if split_counts else {}
    return {
        "dataset": "fgbg",
        "seed": opts.seed,
        "fingerprint": config.fingerprint,
        "started_at": started,
        "finished_at": utc_now(),
        "counts": {
            "samples": sum(counts.values()),
            "samples_per_split": dict(sorted(counts.items())),
            "backgrounds": backgrounds,
            "foregrounds": foregrounds,
            "samples_per_pair": config.placements.samples_per_pair,
            "input_files": expected,
            "rejected": len(rejects),
            "tfrecord_shards": len(shards),
        },
        "rejects": [{"path": r.path, "reason": r.reason} for r in rejects],
        "depth": depth_description(opts),
        "files": {"label_csv": layout.LABEL_CSV, "samples_csv": layout.SAMPLES_CSV,
                  "rejects_csv": layout.REJECTS_CSV, "stats": layout.STATS_JSON,
                  "transform": layout.TRANSFORM_DIR if opts.tft else None,
                  "tfrecords": sorted(shards)},
        "options": fgbg_option_values(opts),
        "versions": package_versions(),
    }


def check_sample_count(counts: Dict[str, object]) -> None:
    """Every accepted pair must be in the tables: a shortfall means samples
    were lost between compositing and the tables, so no manifest vouches for
    the dataset."""
    wanted = counts["backgrounds"] * counts["foregrounds"] * counts["samples_per_pair"]
    if counts["samples"] != wanted:
        raise RuntimeError(
            f"the tables list {counts['samples']} samples, but {counts['backgrounds']} "
            f"backgrounds x {counts['foregrounds']} foregrounds x "
            f"{counts['samples_per_pair']} per pair = {wanted}; manifest not written")


def fgbg_option_values(opts: FgbgOptions) -> Dict[str, object]:
    """Our own options (not Beam's), as given or defaulted."""
    parser = argparse.ArgumentParser(add_help=False)
    FgbgOptions._add_argparse_args(parser)
    values = opts.get_all_options()
    return {action.dest: values.get(action.dest) for action in sorted(
        parser._actions, key=lambda action: action.dest)}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_graph(p: beam.Pipeline, opts: FgbgOptions, config: BuildConfig, started: str,
                expected: Dict[str, int], tft_temp_dir: str,
                progress_dir: Optional[str] = None) -> None:
    """Assemble the whole pipeline on `p`."""
    root = config.output
    prepared, bg_rejects = p | "ReadBackgrounds" >> ReadBackgrounds(opts.bg, config.inputs)
    foregrounds, fg_rejects = p | "ReadForegrounds" >> ReadForegrounds(
        opts.fg, opts.fg_mask, config.inputs)
    written_bgs = prepared | "WriteBackgrounds" >> WriteBackgrounds(root, opts.bg_quality)

    composed = written_bgs.backgrounds | "Compose" >> ComposeSamples(
        foregrounds, config.inputs, config.placements, config.encoding,
        resume_from=root if opts.resume else None, fingerprint=config.fingerprint)
    composites = composed.composites
    if config.depth_model != "none":
        composites = add_depth_stage(composites, opts)
    written = composites | "WriteSamples" >> WriteSamples(
        root, opts.mask_format, depth_extension(opts), config.placements.samples_per_pair,
        progress_dir)
    pairs = (written, composed[RESUMED]) | "AllPairs" >> beam.Flatten()

    split_counts = pairs | "WriteTables" >> WriteTables(root, config.csv_prefix)
    records = pairs | "WriteTFRecords" >> WriteTFRecords(
        root, config.records_per_shard, config.depth_encoding)
    shards = records.shards
    scale, unit = depth_scale(config)
    if opts.tft:
        transform_written = records[EXAMPLES] | "Normalization" >> AnalyzeRecords(
            layout.resolve(root, layout.TRANSFORM_DIR), opts.size, config.depth_encoding, scale,
            tft_temp_dir, opts.tft_batch_size)
    else:
        transform_written = p | "NoNormalization" >> beam.Create([])

    sample_moments = pairs | "SampleMoments" >> beam.FlatMap(
        lambda pair: (((pair.split, kind), moments) for kind, moments in pair.moments.items()))
    stats = ((written_bgs[MOMENTS], sample_moments)
             | "AllMoments" >> beam.Flatten()
             | "Stats" >> ComputeStats()
             | "WriteStats" >> beam.Map(lambda totals: write_json(
                 root, layout.STATS_JSON, stats_document(totals, scale, unit))))

    rejects = ((bg_rejects, fg_rejects)
               | "AllRejects" >> beam.Flatten()
               | "WriteRejects" >> WriteRejects(root))
    bg_count = written_bgs.backgrounds | "CountBackgrounds" >> beam.combiners.Count.Globally()
    fg_count = foregrounds | "CountForegrounds" >> beam.combiners.Count.Globally()

    def write_manifest(_, split_counts, shards, rejects, backgrounds, foregrounds, _stats,
                       _transform):
        document = manifest_document(opts, config, started, expected, split_counts, shards,
                                     rejects[0] if rejects else [], backgrounds, foregrounds)
        check_sample_count(document["counts"])
        remove_stale_shards(root, shards)
        write_json(root, layout.MANIFEST_JSON, document)

    (p
     | "ManifestTrigger" >> beam.Create([None])
     | "WriteManifest" >> beam.Map(
         write_manifest, beam.pvalue.AsList(split_counts), beam.pvalue.AsList(shards),
         beam.pvalue.AsList(rejects), beam.pvalue.AsSingleton(bg_count),
         beam.pvalue.AsSingleton(fg_count), beam.pvalue.AsList(stats),
         beam.pvalue.AsList(transform_written)))


class ProgressReporter:
    """Logs samples done / expected, rate and ETA every interval on local runs."""

    def __init__(self, directory: str, expected: int, interval_s: float):
        self._directory = directory
        self._expected = expected
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        done = total_progress(self._directory)
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = max(self._expected - done, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "unknown"
        return (f"progress: {done}/{self._expected} samples, {rate:.1f} samples/s, "
                f"elapsed {elapsed:.0f}s, ETA {eta}")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            logging.info(self.line())


def resolve_runner(options: PipelineOptions) -> str:
    """Local runs use the FnApiRunner (the DirectRunner's engine) by name, so
    offline machines skip the Prism download attempt."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"
    return standard.runner.split(".")[-1]


def read_manifest(output: str) -> Dict[str, object]:
    return read_json(output, layout.MANIFEST_JSON)


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None) -> Dict[str, object]:
    """Build the dataset; returns the manifest (for a Dataflow dry run:
    {"dry_run_job_file": path}). Raises UsageError on bad options."""
    flags = list(sys.argv[1:] if argv is None else argv)
    unknown = unknown_arguments(flags)
    if unknown:
        raise UsageError(f"unknown option(s) {' '.join(unknown)} (see --help)")
    options = PipelineOptions(flags)
    FileSystems.set_options(options)
    opts = options.view_as(FgbgOptions)
    check_options(opts)
    config = build_config(opts)
    runner = resolve_runner(options)
    expected = {"backgrounds": count_matches(opts.bg), "foregrounds": count_matches(opts.fg),
                "masks": count_matches(opts.fg_mask)}
    if not expected["backgrounds"] or not expected["foregrounds"]:
        raise UsageError(f"no input files: --bg {opts.bg!r} matched {expected['backgrounds']}, "
                         f"--fg {opts.fg!r} matched {expected['foregrounds']}")
    started = utc_now()
    dry_run = is_dry_run(options)
    local = runner in LOCAL_RUNNERS
    if is_dataflow(runner):
        apply_worker_defaults(options)
    if not dry_run:
        remove_stale_temporaries(config.output)
    progress_dir = tempfile.mkdtemp(prefix="fgbg-progress-") if local else None
    scratch = tempfile.mkdtemp(prefix="fgbg-tft-") if local or dry_run else None
    tft_temp_dir = scratch or FileSystems.join(
        options.view_as(GoogleCloudOptions).temp_location or config.output, "fgbg-tft")
    try:
        p = test_pipeline or beam.Pipeline(options=options)
        build_graph(p, opts, config, started, expected, tft_temp_dir, progress_dir)
        expected_samples = (expected["backgrounds"] * expected["foregrounds"]
                            * config.placements.samples_per_pair)
        if dry_run:
            return {"dry_run_job_file": write_dry_run_job(p.run(), options)}
        clock = time.monotonic()
        if progress_dir:
            with ProgressReporter(progress_dir, expected_samples, opts.progress_interval_s):
                result = run_to_completion(p)
        else:
            result = run_to_completion(p)
        write_json(config.output, layout.TIMINGS_JSON,
                   timings_document(result, time.monotonic() - clock))
        write_report(config.output)
    finally:
        for folder in (progress_dir, scratch):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
    return read_manifest(config.output)


def run_to_completion(p: beam.Pipeline):
    result = p.run()
    result.wait_until_finish()
    return result


def timings_document(result, wall_s: float) -> Dict[str, object]:
    """Wall time of the run and CPU seconds per stage, from Beam metrics.

    Stage CPU seconds add up over all workers, so on N cores they can exceed
    the wall time by up to N times.
    """
    stages: Dict[str, float] = {}
    counters: Dict[str, int] = {}
    try:
        queried = result.metrics().query(MetricsFilter())
    except NotImplementedError:
        return {"wall_s": round(wall_s, 3), "cpu_s_by_stage": {}, "counters": {}}
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
    return {"wall_s": round(wall_s, 3),
            "cpu_s_by_stage": {k: round(v, 3) for k, v in sorted(stages.items())},
            "counters": dict(sorted(counters.items()))}


def too_many_rejects(manifest: Dict[str, object], max_fraction: float) -> bool:
    counts = manifest["counts"]
    inputs = sum(counts["input_files"].values())
    return inputs > 0 and counts["rejected"] / inputs > max_fraction


def summary(manifest: Dict[str, object], output: str) -> str:
    """The one-screen report printed at the end of a run."""
    counts = manifest["counts"]
    timings = read_json(output, layout.TIMINGS_JSON)
    lines = [
        f"fgbg: {counts['samples']} samples "
        f"({', '.join(f'{k} {v}' for k, v in counts['samples_per_split'].items())}) "
        f"from {counts['backgrounds']} backgrounds x {counts['foregrounds']} foregrounds "
        f"in {timings['wall_s']:.1f} s",
        f"  output:   {output}",
        f"  report:   {layout.resolve(output, layout.REPORT_HTML)}",
        f"  training: {layout.TFRECORD_DIR}/, {layout.LABEL_CSV}, {layout.SAMPLES_CSV}, "
        f"{layout.STATS_JSON}",
        f"  rejected: {counts['rejected']} input files (see {layout.REJECTS_CSV})",
        f"  depth:    {manifest['depth']['model']}",
    ]
    for reject in manifest["rejects"][:10]:
        lines.append(f"  reject: {reject['path']}: {reject['reason']}")
    if "warning" in manifest["depth"]:
        lines.append(f"  {manifest['depth']['warning']}")
    return "\n".join(lines)


def help_parser() -> argparse.ArgumentParser:
    """The --help text: our options by stage, then a pointer to Beam's."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build",
        description="Build a foreground/background composite dataset with masks, depth "
                    "maps, CSVs, TFRecords and statistics.",
        epilog="Any Apache Beam option is accepted too, e.g. --runner DataflowRunner, "
               "--direct_num_workers 0 --direct_running_mode multi_processing "
               "(all local cores), --project/--region/--temp_location for Dataflow. "
               "Local runs default to the FnApiRunner (the DirectRunner's engine).")
    FgbgOptions._add_argparse_args(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        help_parser().print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Beam logs every postponed (string) annotation it meets in our DoFns.
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(
        logging.WARNING)
    try:
        manifest = run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if "dry_run_job_file" in manifest:
        print(f"dry run: the Dataflow job description is in {manifest['dry_run_job_file']}")
        return 0
    opts = PipelineOptions(argv).view_as(FgbgOptions)
    print(summary(manifest, opts.output))
    if too_many_rejects(manifest, opts.max_reject_fraction):
        print(f"error: more than --max_reject_fraction={opts.max_reject_fraction} of the "
              "input files were rejected", file=sys.stderr)
        return EXIT_TOO_MANY_REJECTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
