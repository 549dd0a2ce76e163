"""Build the fg_bg dataset: `python -m pipeline.build --bg ... --fg ... --output ...`.

The graph, as the data flows:

  backgrounds ─ read, check, resize ─ write bg/ ───┐
  foregrounds (+ masks) ─ read, check ─ side input ┤
  every accepted name ─ split plan (side input) ───┴ cross
    ─ (pairs the plan leaves out: removed) ─ skip finished pairs
    ─ remove outdated records
    ─ compose ─ [depth] ─ write overlay/mask/depth, one sample at a time
    ─ write the sample's row ─ count samples per pair
    ─ record the pair, remove stale files ─ one handle per pair
      ─┬ label_data.csv, samples.csv
       ├ tfrecords/<split>-* ─ TFT analysis (train) ─ transform/
       └ stats.json (exact pixel moments, overall and per split)
  rejects ─ rejects.csv;  everything ─ manifest.json (written last)

A pair's steps (skip, remove, write rows, record) are the stages of
transforms/pairs.py, and its files are touched only by fgbg/pair_records.py.

Past the pair records, stages pass one small handle per pair and read rows
back from the pair's record, so nothing held in memory grows with the
samples. After the run, `run` writes timings.json (from Beam metrics) and
the report (report.html, samples.png).
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
import time
import traceback
from typing import Dict, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
)

from fgbg import layout
from fgbg.depth import shared_model_files
from fgbg.depth.checkpoints import Checkpoint
from fgbg.depth.thread_budget import ThreadBudget
from fgbg.documents import (
    Manifest,
    read_manifest,
    read_timings,
    write_stats,
    write_timings,
)
from fgbg.import_order import load_triton_first_everywhere, loads_triton
from fgbg.lease import Lease, LeaseHeldError, LeaseLostError, lease_store
from fgbg.progress import ProgressReporter
from fgbg.report import write_report
from fgbg.storage import remove_stale_temporaries
from pipeline.config import BuildConfig, RunContext, build_config
from pipeline.console import configure_logging, failure_reason, filtered_stderr
from pipeline.dataflow import (
    apply_staging_defaults,
    apply_worker_defaults,
    flexrs_problem,
    is_dataflow,
    is_dry_run,
    without_unset_flexrs_goal,
    write_dry_run_job,
)
from pipeline.local_workers import (
    LOCAL_RUNNERS,
    apply_workers,
    available_cores,
    depth_thread_budget,
    local_workers,
    resolve_runner,
)
from pipeline.options import FgbgOptions, UsageError, check_options, help_parser, unknown_arguments
from pipeline.options.inputs import input_file_counts
from pipeline.run_documents import (
    WriteManifest,
    summary,
    timings_document,
    too_many_rejects,
    utc_now,
)
from pipeline.worker_watchdog import failing_on_worker_death
from transforms.background_depth import BackgroundDepth
from transforms.compositing import ComposeSamples, CrossPairs
from transforms.image_files import MOMENTS, WriteBackgrounds, WriteSamples
from transforms.inputs import ReadBackgrounds, ReadForegrounds
from transforms.normalization import AnalyzeRecords
from transforms.pairs import (
    RESUMED,
    UNRECORDED,
    RecordPairs,
    RemoveOutdatedRecords,
    SkipFinishedPairs,
    WriteSampleRows,
)
from transforms.rejects import WriteRejects
from transforms.scene_placement import SceneCounts
from transforms.splits import PlanSplits, RemoveExcludedPairs, SplitMoments, planned_pairs
from transforms.stats import ComputeStats, stats_document
from transforms.tables import WriteTables
from transforms.tfrecords import EXAMPLES, WriteTFRecords

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TOO_MANY_REJECTS = 3
EXIT_OUTPUT_BUSY = 4


def build_graph(p: beam.Pipeline, config: BuildConfig) -> None:
    """Assemble the whole pipeline on `p`."""
    root = config.output
    prepared, bg_rejects = p | "ReadBackgrounds" >> ReadBackgrounds(config.bg, config.inputs)
    if config.scene:
        prepared, depth_rejects = prepared | "BackgroundDepth" >> BackgroundDepth(
            root, config.inputs.size, config.scene, config.depth
        )
        bg_rejects = (bg_rejects, depth_rejects) | "BackgroundRejects" >> beam.Flatten()
    foregrounds, fg_rejects = p | "ReadForegrounds" >> ReadForegrounds(
        config.fg, config.fg_mask, config.inputs
    )
    written_bgs = prepared | "WriteBackgrounds" >> WriteBackgrounds(root, config.bg_quality)
    plan = (written_bgs.backgrounds, foregrounds) | "PlanSplits" >> PlanSplits(config.splits)
    pairs, excluded = written_bgs.backgrounds | "CrossPairs" >> CrossPairs(plan)
    removed = excluded | "RemoveExcludedPairs" >> RemoveExcludedPairs(root)

    found = pairs | "SkipFinishedPairs" >> SkipFinishedPairs(
        root,
        foregrounds,
        config.fingerprint,
        config.placements.samples_per_pair,
        config.resume,
        config.depth,
    )
    composites = (
        found.pairs
        | "RemoveOutdatedRecords" >> RemoveOutdatedRecords(root)
        | "Compose"
        >> ComposeSamples(
            foregrounds,
            config.inputs,
            config.placements,
            config.encoding,
            config.blending,
            config.scene,
            root,
            config.depth,
        )
    )
    if config.depth_per_composite:
        # Imported here: Beam's RunInference module imports PyTorch whenever
        # it is installed, a cost in every worker that composites-only builds
        # do not need (fgbg/depth/config.py; BENCHMARKS.md#compositing,
        # "Memory: no RunInference without depth").
        from transforms.depth import EstimateDepth

        composites = composites | "EstimateDepth" >> EstimateDepth(config.depth)
    sample_counts = (
        composites
        | "WriteSamples"
        >> WriteSamples(
            root, config.encoding.mask_format, config.depth_extension, config.run.progress_dir
        )
        | "WriteSampleRows" >> WriteSampleRows(root)
    )
    recorded = (
        (sample_counts, found[UNRECORDED])
        | "AllSampleCounts" >> beam.Flatten()
        | "RecordPairs" >> RecordPairs(root, config.placements.samples_per_pair, config.depth)
    )
    written = (recorded, found[RESUMED]) | "AllPairs" >> beam.Flatten()

    split_counts = written | "WriteTables" >> WriteTables(
        root, config.csv_prefix, config.blending.recorded, config.placed_by_depth
    )
    records = written | "WriteTFRecords" >> WriteTFRecords(
        root, config.records_per_shard, config.depth_encoding, config.blending.recorded
    )
    shards = records.shards
    scale, unit = config.depth_scale
    if config.tft:
        transform_written = records[EXAMPLES] | "Normalization" >> AnalyzeRecords(
            layout.resolve(root, layout.TRANSFORM_DIR),
            config.inputs.size,
            config.depth_encoding,
            scale,
            config.run.tft_temp_dir,
            config.tft_batch_size,
        )
    else:
        transform_written = p | "NoNormalization" >> beam.Create([])

    sample_moments = written | "SampleMoments" >> beam.FlatMap(
        lambda pair: (((pair.split, kind), moments) for kind, moments in pair.moments.items())
    )
    background_moments = written_bgs[MOMENTS] | "BackgroundMomentsBySplit" >> SplitMoments(plan)
    stats = (
        (background_moments, sample_moments)
        | "AllMoments" >> beam.Flatten()
        | "Stats" >> ComputeStats()
        | "WriteStats"
        >> beam.Map(lambda totals: write_stats(root, stats_document(totals, scale, unit)))
    )

    rejects = (
        (bg_rejects, fg_rejects)
        | "AllRejects" >> beam.Flatten()
        | "WriteRejects" >> WriteRejects(root)
    )
    precisions = (
        written
        | "DepthPrecisions" >> beam.FlatMap(lambda pair: pair.depth_precisions)
        | "DistinctPrecisions" >> beam.Distinct()
    )
    blends = (
        written
        | "BlendModes" >> beam.FlatMap(lambda pair: pair.blends)
        | "SamplesPerBlend" >> beam.CombinePerKey(sum)
    )

    p | "WriteManifest" >> WriteManifest(
        config,
        split_counts,
        shards,
        rejects,
        plan,
        precisions,
        blends,
        after=(stats, transform_written, removed),
        scene_counts=written | "SceneCounts" >> SceneCounts() if config.scene else None,
    )


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None) -> Manifest:
    """Build the dataset; returns its manifest. A Dataflow dry run returns
    None after writing the job file. Raises UsageError on bad options."""
    flags = without_unset_flexrs_goal(sys.argv[1:] if argv is None else argv)
    unknown = unknown_arguments(flags)
    if unknown:
        raise UsageError(f"unknown option(s) {' '.join(unknown)} (see --help)")
    options = PipelineOptions(flags)
    FileSystems.set_options(options)
    opts = options.view_as(FgbgOptions)
    checkpoint = check_options(opts)
    if loads_triton(opts):
        load_triton_first_everywhere(options)
    runner = resolve_runner(options)
    input_files = input_file_counts(opts)
    started = utc_now()
    local = runner in LOCAL_RUNNERS
    workers = local_workers(flags, available_cores()) if local and test_pipeline is None else None
    if workers and workers.by_default:
        apply_workers(options, workers)
    # A build on a test's pipeline runs in the test's processes: no budget.
    threads = None if local and workers is None else depth_thread_budget(opts, options, workers)
    if is_dataflow(runner):
        apply_worker_defaults(options)
        apply_staging_defaults(options)
        problem = flexrs_problem(options)
        if problem:
            raise UsageError(problem)
    build = functools.partial(
        _build, options, opts, checkpoint, input_files, started, local, test_pipeline, threads
    )
    if is_dry_run(options):
        return build()
    store = lease_store(opts.output.rstrip("/"), options)
    with Lease(store, opts.lease_stale_after_s, local, opts.force) as lease:
        return build(lease)


def _build(
    options: PipelineOptions,
    opts: FgbgOptions,
    checkpoint: Optional[Checkpoint],
    input_files: Dict[str, int],
    started: str,
    local: bool,
    test_pipeline: Optional[beam.Pipeline],
    threads: Optional[ThreadBudget],
    lease: Optional[Lease] = None,
) -> Optional[Manifest]:
    """The build proper, holding the output's lease; a dry run writes no
    output, so it takes no lease (`lease` None) and returns None.
    `checkpoint`: the transformers checkpoint check_options described."""
    dry_run = lease is None
    output = opts.output.rstrip("/")
    if not dry_run:
        # Streamed files (the tables at the root, the shards) are the only
        # ones written under a temporary name on object stores.
        remove_stale_temporaries(output, ("", layout.TFRECORD_DIR))
    progress_dir = tempfile.mkdtemp(prefix="fgbg-progress-") if local else None
    # Beam's shared model leaves files in the local workers' temporary folder.
    model_tag = shared_model_files.new_tag() if local and opts.depth_share_model else None
    scratch = tempfile.mkdtemp(prefix="fgbg-tft-") if local or dry_run else None
    tft_temp_dir = scratch or FileSystems.join(
        options.view_as(GoogleCloudOptions).temp_location or output, "fgbg-tft"
    )
    config = build_config(
        opts,
        RunContext(
            started_at=started,
            input_files=input_files,
            tft_temp_dir=tft_temp_dir,
            progress_dir=progress_dir,
            threads=threads,
            shared_model_tag=model_tag,
        ),
        checkpoint,
    )
    try:
        p = test_pipeline or beam.Pipeline(options=options)
        build_graph(p, config)
        if dry_run:
            write_dry_run_job(p.run(), options)
            return None
        clock = time.monotonic()
        if progress_dir:
            expected = (
                planned_pairs(input_files["backgrounds"], input_files["foregrounds"], config.splits)
                * config.placements.samples_per_pair
            )
            with (
                ProgressReporter(progress_dir, expected, opts.progress_interval_s),
                failing_on_worker_death(),
            ):
                result = run_to_completion(p)
        else:
            result = run_to_completion(p)
        lease.check_held()
        write_timings(config.output, timings_document(result, time.monotonic() - clock))
        write_report(config.output)
    finally:
        for folder in (progress_dir, scratch):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        if model_tag:
            shared_model_files.remove_files(model_tag)
    return read_manifest(config.output)


def run_to_completion(p: beam.Pipeline):
    result = p.run()
    result.wait_until_finish()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: help, logging, the run, its summary and exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        help_parser().print_help()
        return 0
    opts = PipelineOptions(argv).view_as(FgbgOptions)
    configure_logging(opts.verbose)
    try:
        with filtered_stderr(enabled=not opts.verbose):
            manifest = run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (LeaseHeldError, LeaseLostError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_OUTPUT_BUSY
    except Exception as error:
        if opts.verbose:
            traceback.print_exc()
        print(
            f"error: the build failed: {failure_reason(error)}\n"
            "Finished pairs are kept: fix the cause and rerun the same command to "
            "resume" + ("." if opts.verbose else " (--verbose shows the traceback)."),
            file=sys.stderr,
        )
        return EXIT_FAILED
    if manifest is None:
        print(
            "dry run: the Dataflow job description is in "
            f"{PipelineOptions(argv).view_as(DebugOptions).dataflow_job_file}"
        )
        return 0
    workers = local_workers(argv, available_cores())
    print(summary(manifest, read_timings(opts.output.rstrip("/")), opts.output, workers))
    if too_many_rejects(manifest, opts.max_reject_fraction):
        print(
            f"error: more than --max_reject_fraction={opts.max_reject_fraction} of the "
            "input files were rejected",
            file=sys.stderr,
        )
        return EXIT_TOO_MANY_REJECTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
