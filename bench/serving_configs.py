"""How Beam's local runner serves the depth model, by name, for
bench_serving.py and bench_depth_gpu.py, and the depth stage alone in a
pipeline of demo composites. A configuration is `KIND[:N][/device_resize]`:
default (no worker flags: the build's own default, pipeline/local_workers.py); in_process
(one worker in the launching process); threads:N (worker threads sharing its
model); processes:N (worker processes, a model each); shared:N (processes
calling one model per machine, --depth_share_model, through shared memory);
shared_pickle:N (the same through Beam's pickling proxy, for comparison).
`/device_resize` adds --depth_resize_on_device."""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, NamedTuple, Sequence

import apache_beam as beam

from bench import standin, workload

DEVICE_RESIZE = "device_resize"
SHARE_MODEL = "--depth_share_model"
RESIZE_ON_DEVICE = "--depth_resize_on_device"
SHARED_KINDS = ("shared", "shared_pickle")


class Serving(NamedTuple):
    """A configuration's flags: Beam's, fgbg's, and the DepthConfig fields
    that have no flag (the pickled transport)."""

    beam: List[str]
    fgbg: List[str]
    depth_fields: Dict[str, object]


def serving(config: str) -> Serving:
    """The flags and DepthConfig fields of a configuration name."""
    runner, _, variant = config.partition("/")
    kind, _, count = runner.partition(":")
    if variant not in ("", DEVICE_RESIZE):
        raise ValueError(f"unknown variant {variant!r} in {config!r}: only /{DEVICE_RESIZE}")
    fgbg = [RESIZE_ON_DEVICE] if variant else []
    if kind == "default" and not count:
        return Serving([], fgbg, {})
    if kind == "in_process" and not count:
        return Serving(["--direct_running_mode=in_memory", "--direct_num_workers=1"], fgbg, {})
    if kind == "threads" and count.isdigit():
        beam = ["--direct_running_mode=multi_threading", f"--direct_num_workers={count}"]
        return Serving(beam, fgbg, {})
    if kind in ("processes", *SHARED_KINDS) and count.isdigit():
        beam = ["--direct_running_mode=multi_processing", f"--direct_num_workers={count}"]
        if kind == "processes":
            return Serving(beam, fgbg, {})
        fields = {"share_model": True, "shared_memory": kind == "shared"}
        return Serving(beam, [SHARE_MODEL, *fgbg], fields)
    raise ValueError(
        f"unknown configuration {config!r}: default, in_process, threads:N, processes:N, "
        "shared:N or shared_pickle:N"
    )


def runner_flags(config: str) -> List[str]:
    """Beam's local-runner options and fgbg's depth flags for a configuration."""
    flags = serving(config)
    return flags.beam + flags.fgbg


def depth_config_for(base, config: str):
    """`base` (a DepthConfig) served as `config` says."""
    flags = serving(config)
    return dataclasses.replace(
        base, resize_on_device=RESIZE_ON_DEVICE in flags.fgbg, **flags.depth_fields
    )


def run_stage(config: str, depth, images: int, distinct: int, control: bool = False) -> Dict:
    """`images` demo composites through the depth stage (`depth`, a
    DepthConfig) on the local runner as `config` says, or, with `control`,
    through a stand-in for it that only encodes one fixed map per composite
    (what the stage costs besides serving). Wall seconds, and Beam's
    RunInference metrics where the stage ran."""
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.depth import DEPTH_METRICS_NAMESPACE, ENCODED_COUNTER, EstimateDepth

    started = time.perf_counter()
    pipeline = beam.Pipeline(
        options=PipelineOptions(["--runner=FnApiRunner", *serving(config).beam])
    )
    composites = (
        pipeline
        | beam.Create(range(images))  # reshuffled: spread over the workers
        | beam.ParDo(DemoComposite(distinct))
    )
    if control:
        _ = composites | beam.ParDo(EncodeFixedMap(depth))
    else:
        _ = composites | EstimateDepth(depth)
    result = pipeline.run()
    result.wait_until_finish()
    wall = time.perf_counter() - started

    def metric(name: str):
        filtered = MetricsFilter().with_namespace(DEPTH_METRICS_NAMESPACE).with_name(name)
        query = result.metrics().query(filtered)
        found = query["counters"] + query["distributions"]
        return found[0].committed if found else None

    if metric(ENCODED_COUNTER) != images:
        raise RuntimeError(f"{config}: {metric(ENCODED_COUNTER)} of {images} maps encoded")
    measured: Dict[str, object] = {"images": images, "wall_s": wall}
    latency = metric("inference_batch_latency_micro_secs")
    if latency is not None:
        load = metric("load_model_latency_milli_secs")
        # model loads overlap across workers: the slowest one delays the run
        measured.update(
            load_s=load.max / 1000.0, batches=latency.count, model_call_s=latency.sum / 1e6
        )
    return measured


class DemoComposite(beam.DoFn):
    """Sample number -> a demo composite. Made inside the pipeline: a Create
    of the composites themselves pickles them all into the job graph, which
    costs more than what is measured (BENCHMARKS.md, "Depth on a GPU")."""

    def __init__(self, distinct: int):
        self._distinct = distinct

    def setup(self):
        self._overlays = workload.demo_composites(self._distinct)

    def process(self, number: int):
        overlay = self._overlays[number % len(self._overlays)]
        yield workload.as_composites([overlay], first_number=number)[0]


class EncodeFixedMap(beam.DoFn):
    """The depth stage's encoding of one fixed map per composite, counted as
    the stage counts its maps: the control that takes all but the serving
    out of a stage measurement."""

    def __init__(self, depth):
        self._depth = depth

    def setup(self):
        from fgbg.depth import maps
        from transforms.depth import DEPTH_METRICS_NAMESPACE, ENCODED_COUNTER

        width, height = self._depth.input_size
        self._map = maps.postprocess(standin.raw_maps(1, (height, width)))[0, ..., 0]
        self._encoded = beam.metrics.Metrics.counter(DEPTH_METRICS_NAMESPACE, ENCODED_COUNTER)

    def process(self, composite):
        from transforms.depth import encode_depth

        yield dataclasses.replace(composite, depth=encode_depth(self._map, self._depth)[0])
        self._encoded.inc()


def config_names(names: str) -> Sequence[str]:
    """A comma-separated list of configurations, each checked."""
    listed = [name.strip() for name in names.split(",") if name.strip()]
    for name in listed:
        serving(name)
    return listed
