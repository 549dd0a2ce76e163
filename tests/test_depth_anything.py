"""Depth Anything V2 through the depth stage (--depth_model CHECKPOINT):
checkpoints found and refused, the processor's steps, what the maps hold,
the stage, whole builds (local and gs://) and their records and resumes.

The checkpoints are tiny seeded ones laid out as the published ones
(fgbg/depth/seeded_checkpoints.py): nothing is downloaded.
"""

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import apache_beam as beam  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from fgbg.depth import (  # noqa: E402
    checkpoints,
    maps,
    models,
    precision,
    seeded_checkpoints,
    shared_memory,
)
from fgbg.depth.families import family  # noqa: E402
from pipeline import build  # noqa: E402
from pipeline.local_workers import available_cores  # noqa: E402
from pipeline.options import FgbgOptions, UsageError, check_options  # noqa: E402
from tests.depth_fixtures import checkpoint_config, make_composite, random_overlays  # noqa: E402
from tests.helpers import (  # noqa: E402
    emulated_bucket,
    small_build_args,
    timings,
    upload_tree,
)
from transforms.depth import DepthModelHandler, EstimateDepth, encode_depth  # noqa: E402

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
SIDE = 56  # 4x4 patches of 14: the network at its cheapest
HUB_ID = "fgbg-tests/tiny-depth-anything"


@pytest.fixture(scope="module")
def relative(tmp_path_factory) -> str:
    return seeded_checkpoints.write(str(tmp_path_factory.mktemp("relative") / "tiny"))


@pytest.fixture(scope="module")
def outdoor(tmp_path_factory) -> str:
    """A metric checkpoint up to 80 m under a non-commercial licence."""
    folder = tmp_path_factory.mktemp("outdoor") / "tiny"
    return seeded_checkpoints.write(str(folder), metric=True, max_depth=80, licence="cc-by-nc-4.0")


def options(*flags: str) -> FgbgOptions:
    return FgbgOptions(["--bg=b/*", "--fg=f/*", "--output=o", *flags])


def da_config(checkpoint_folder: str, **overrides):
    return checkpoint_config(checkpoint_folder, SIDE, **overrides)


def test_the_seeded_small_checkpoint_has_the_published_parameter_count():
    assert seeded_checkpoints.parameter_count("small") == 24_785_089


def test_a_checkpoint_is_described_from_its_own_files(relative, outdoor):
    found = checkpoints.describe(relative)
    weights = Path(relative, checkpoints.WEIGHTS).read_bytes()
    assert found.weights_sha256 == hashlib.sha256(weights).hexdigest()
    assert found.content.description == "relative disparity"
    assert (found.patch_size, found.default_input_size) == (14, 518)
    assert (found.licence, found.non_commercial) == ("apache-2.0", False)

    metric = checkpoints.describe(outdoor)
    assert metric.content.description == "metric depth"
    assert metric.content.stored_per_metre == 500  # 80 m in millimetres overflows 16 bits
    assert metric.content.stored_range == (0, 40_000)
    assert metric.non_commercial


def test_pickled_weights_are_refused_with_the_reason(relative, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in (checkpoints.CONFIG, checkpoints.PROCESSOR):
        (folder / name).write_bytes(Path(relative, name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(UsageError, match=r"pytorch_model\.bin.*run code.*safetensors"):
        check_options(options(f"--depth_model={folder}"))


def test_unloadable_weights_are_a_load_error_naming_the_checkpoint(relative, tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    for name in (checkpoints.CONFIG, checkpoints.PROCESSOR, checkpoints.WEIGHTS):
        (folder / name).write_bytes(Path(relative, name).read_bytes())
    weights = folder / checkpoints.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(models.ModelLoadError, match=f"{folder}: transformers could not load"):
        DepthModelHandler(da_config(str(folder))).load_model()


def test_a_relative_checkpoint_cannot_make_metric_maps(relative, capsys):
    argv = ["--bg=b/*", "--fg=f/*", "--output=o", f"--depth_model={relative}"]
    assert build.main([*argv, "--depth_encoding=metric"]) == build.EXIT_USAGE
    assert "needs a metric checkpoint" in capsys.readouterr().err


def test_input_sizes_follow_the_patch_and_default_to_the_processors(relative):
    with pytest.raises(UsageError, match="multiples of its patch size, 14"):
        check_options(options(f"--depth_model={relative}", "--depth_input_size=100"))
    opts = options(f"--depth_model={relative}")
    assert check_options(opts).weights_sha256
    assert (opts.depth_input_size, opts.depth_runtime) == ("518x518", models.TORCH)
    densedepth = options("--depth_model=untrained")
    assert check_options(densedepth) is None
    assert densedepth.depth_input_size == "640x480"


def test_preprocessing_is_bicubic_rescale_and_imagenet_normalisation(relative):
    composites = np.stack(random_overlays(2, 64, seed=0))
    prepared = family(da_config(relative)).preprocess(composites)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for image, got in zip(composites, prepared):
        resized = np.asarray(Image.fromarray(image).resize((SIDE, SIDE), Image.BICUBIC))
        expected = ((resized / 255 - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_maps_come_back_at_the_dataset_size_by_bicubic_interpolation(relative):
    raw = np.random.default_rng(0).random((2, SIDE, SIDE)).astype(np.float32)
    maps_ = family(da_config(relative, out_size=(32, 32))).postprocess(raw)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(raw)[:, None], size=(32, 32), mode="bicubic", align_corners=False
    )[:, 0]
    np.testing.assert_allclose(maps_, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["relative", "metric"])
def test_maps_equal_what_transformers_own_pipeline_computes(kind, relative, outdoor):
    """The stage's maps before encoding are transformers' pipeline("depth-
    estimation") on the same composites (the processor's own size, CPU), and
    the written files follow from them as the map's content says."""
    from transformers import pipeline

    folder = relative if kind == "relative" else outdoor
    encoding = "minmax" if kind == "relative" else "metric"
    config = da_config(folder, input_size=(518, 518), encoding=encoding, out_size=(64, 64))
    handler = DepthModelHandler(config)
    composites = random_overlays(2, 64, seed=6)
    ours = np.stack(handler.run_inference(composites, handler.load_model()))
    estimator = pipeline("depth-estimation", model=folder, device="cpu")
    outputs = estimator([Image.fromarray(image) for image in composites])
    theirs = np.stack([output["predicted_depth"].numpy() for output in outputs])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(np.abs(theirs).max()))

    encoded, _ = encode_depth(ours[0], config)
    written = np.asarray(Image.open(io.BytesIO(encoded)), dtype=np.float32)
    if kind == "relative":  # bright is far: the min-max of the negated disparity
        negated = maps.encode_minmax(-theirs[0], config.out_size, config.jpeg_quality)
        expected = np.asarray(Image.open(io.BytesIO(negated)), dtype=np.float32)
        assert np.abs(written - expected).max() <= 1
        assert np.corrcoef(written.ravel(), -theirs[0].ravel())[0, 1] > 0.9
    else:  # metres, within the stored step (2 mm up to 80 m)
        step = 1 / config.checkpoint.content.stored_per_metre
        np.testing.assert_allclose(written * step, np.clip(theirs[0], 0, 80), atol=step)


def test_a_disparity_map_is_stored_bright_where_far():
    disparity = np.tile(np.linspace(1.0, 5.0, 16, dtype=np.float32), (16, 1))  # right is near
    content = maps.MapContent(quantity=maps.DISPARITY, metric=False)
    grey = np.asarray(maps.minmax_grey(content.far_is_larger(disparity), (16, 16)))
    assert grey[:, 0].mean() > 250 and grey[:, -1].mean() < 5
    np.testing.assert_array_equal(
        np.rint(maps.minmax_scaled(-disparity)), 255 - np.rint(maps.minmax_scaled(disparity))
    )


def test_metric_maps_keep_the_models_whole_range_in_16_bits():
    content = maps.MapContent(
        quantity=maps.DEPTH, metric=True, max_metres=80.0, stored_per_metre=500
    )
    metres = np.linspace(0.0, 80.0, 64, dtype=np.float32).reshape(8, 8)
    decoded = maps.decode_metric(maps.encode_metric(metres, (8, 8), content), 500)
    np.testing.assert_allclose(decoded, metres, atol=0.001 + 1e-6)
    assert decoded.max() == 80.0


def test_the_handler_runs_the_checkpoint_and_maps_vary_with_the_image(relative):
    config = da_config(relative, batch_size=3, min_batch_size=1)
    handler = DepthModelHandler(config)
    model = handler.load_model()
    composites = random_overlays(3, 64, seed=1)
    depth = handler.run_inference(composites, model)
    assert [d.shape for d in depth] == [(32, 32)] * 3
    assert min(float(d.std()) for d in depth) > 0
    assert not np.allclose(depth[0], depth[1])
    # Resizing on the device matches the processor where nothing is resized.
    at_size = np.stack(random_overlays(2, SIDE, seed=2))
    on_cpu = model.predict(family(config).preprocess(at_size))
    np.testing.assert_allclose(model.predict_composites(at_size, (SIDE, SIDE)), on_cpu, atol=1e-4)


def test_a_shared_model_serves_the_checkpoints_batches_through_shared_memory(relative):
    """--depth_share_model: the processor's NCHW batches and the (N, h, w)
    predictions cross as they are."""
    config = da_config(relative, share_model=True)
    handler = DepthModelHandler(config)
    server = handler.load_model()
    assert isinstance(server, shared_memory.SharedMemoryServer)
    composites = random_overlays(2, 64, seed=4)
    alone = DepthModelHandler(da_config(relative))
    np.testing.assert_array_equal(
        np.stack(handler.run_inference(composites, server)),
        np.stack(alone.run_inference(composites, alone.load_model())),
    )


def test_a_named_precision_runs_where_the_cpu_offers_it(relative):
    if models.BF16 not in precision.cpu_offers():
        pytest.skip("this CPU has no bfloat16 units")
    config = da_config(relative, precision=models.BF16)
    handler = DepthModelHandler(config)
    model = handler.load_model()
    assert model.precision == models.BF16
    composites = random_overlays(2, 64, seed=5)
    bf16 = np.stack(handler.run_inference(composites, model))
    fp32_handler = DepthModelHandler(da_config(relative))
    fp32 = np.stack(fp32_handler.run_inference(composites, fp32_handler.load_model()))
    assert not np.array_equal(bf16, fp32)
    np.testing.assert_allclose(bf16, fp32, rtol=0.1, atol=0.1 * float(np.abs(fp32).max()))


def test_the_stage_encodes_every_composite_as_a_minmax_jpeg(relative):
    config = da_config(relative)
    overlays = random_overlays(3, 32, seed=3)
    composites = [make_composite(n + 1, overlay) for n, overlay in enumerate(overlays)]
    with TestPipeline() as p:
        encoded = p | beam.Create(composites) | EstimateDepth(config)
        described = encoded | beam.Map(
            lambda c: (
                c.placement.number,
                Image.open(io.BytesIO(c.depth)).format,
                c.depth_precision,
            )
        )
        assert_that(described, equal_to([(n, "JPEG", "fp32") for n in (1, 2, 3)]))


@pytest.mark.e2e
@pytest.mark.processes
@pytest.mark.parametrize("share_model", [False, True], ids=["model_per_process", "shared_model"])
def test_a_model_shared_across_processes_writes_the_same_bytes(relative, share_model):
    """Two worker processes; with share_model one holds the checkpoint and the
    other hands it batches through shared memory. Every CPU batch is filled,
    so the bytes are those of the model called here, batch by batch."""
    config = da_config(relative, batch_size=2, min_batch_size=1, share_model=share_model)
    composites = [make_composite(n + 1, o) for n, o in enumerate(random_overlays(6, 32, seed=7))]
    alone = DepthModelHandler(da_config(relative, batch_size=2, min_batch_size=1))
    model = alone.load_model()
    expected = [
        (c.placement.number, encode_depth(alone.run_inference([c.overlay], model)[0], config)[0])
        for c in composites
    ]
    options = beam.options.pipeline_options.PipelineOptions(
        ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    with beam.Pipeline(options=options) as p:
        made = (
            p
            | beam.Create(composites)
            | EstimateDepth(config)
            | beam.Map(lambda c: (c.placement.number, c.depth))
        )
        assert_that(made, equal_to(expected))


def build_args(inputs, output, model: str, *extra: str):
    return small_build_args(
        inputs, output, f"--depth_model={model}", f"--depth_input_size={SIDE}", *extra
    )


@pytest.mark.e2e
def test_a_build_records_the_checkpoint_and_resumes_only_with_it(relative, inputs, tmp_path):
    output = tmp_path / "out"
    manifest = build.run(build_args(inputs, output, relative))
    sha = checkpoints.describe(relative).weights_sha256
    depth = manifest.depth.to_json()
    assert depth["model"] == relative and depth["weights_sha256"] == sha
    assert (depth["holds"], depth["input_size"], depth["runtime"]) == (
        "relative disparity",
        f"{SIDE}x{SIDE}",
        "torch",
    )
    assert depth["licence"] == "apache-2.0" and "warning" not in depth
    # one process, in this one: the runtime keeps its default, every core
    assert (depth["threads"]["processes"], depth["threads"]["per_process"]) == (
        1,
        available_cores(),
    )
    records = sorted(output.glob("*/*/.pair.json"))
    assert len(records) == manifest.counts.samples // manifest.counts.samples_per_pair
    for record in records:
        assert json.loads(record.read_text())["depth_model"] == {
            "model": relative,
            "weights_sha256": sha,
            "holds": "relative disparity",
            "input_size": f"{SIDE}x{SIDE}",
        }
    stats = json.loads((output / "stats.json").read_text())
    assert "negated disparity" in stats["notes"]["depth_unit"]
    report = (output / "report.html").read_text()
    assert sha in report and "relative disparity" in report

    build.run(build_args(inputs, output, relative))
    assert timings(output)["compositing.pairs_resumed"] == len(records)

    retrained = seeded_checkpoints.write(str(tmp_path / "retrained"), seed=1)
    build.run(build_args(inputs, output, retrained))
    counters = timings(output)
    assert counters.get("compositing.pairs_resumed", 0) == 0
    assert counters["compositing.pairs"] == len(records)
    new_sha = checkpoints.describe(retrained).weights_sha256
    assert {json.loads(r.read_text())["depth_model"]["weights_sha256"] for r in records} == {
        new_sha
    }


@pytest.mark.e2e
@pytest.mark.processes
def test_a_build_records_its_thread_budget_and_named_workers_and_threads_win(
    relative, inputs, tmp_path
):
    workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    manifest = build.run(
        build_args(inputs, tmp_path / "out", relative, *workers, "--depth_threads=3")
    )
    assert manifest.depth.threads == {
        "per_process": 3,
        "cores": available_cores(),
        "processes": 2,
        "shared_model": False,
        "named": True,
        "where": "this machine",
    }


@pytest.mark.e2e
def test_a_metric_build_stores_the_models_range_and_says_the_licence(outdoor, inputs, tmp_path):
    output = tmp_path / "out"
    manifest = build.run(build_args(inputs, output, outdoor, "--depth_encoding=metric"))
    assert manifest.depth.stored_per_metre == 500
    assert "non-commercial" in manifest.depth.warning and "cc-by-nc-4.0" in manifest.depth.warning
    stats = json.loads((output / "stats.json").read_text())
    assert stats["notes"]["depth_scale"] == 500.0
    assert "steps of 2 mm" in stats["notes"]["depth_unit"]
    pngs = sorted(output.glob("*/*/depth/*.png"))
    assert len(pngs) == manifest.counts.samples
    metres = maps.decode_metric(pngs[0].read_bytes(), 500)
    assert 0 <= metres.min() and metres.max() <= 80 and metres.std() > 0
    assert "non-commercial" in (output / "report.html").read_text()


@pytest.mark.gcs
def test_a_gs_folder_is_copied_to_each_worker_with_its_digest(relative, monkeypatch, tmp_path):
    with emulated_bucket(monkeypatch, "models") as bucket:
        upload_tree(bucket, Path(relative), "da/tiny")
        found = checkpoints.describe("gs://models/da/tiny")
        assert checkpoints.is_checkpoint("gs://models/da/tiny")
        assert found == dataclasses.replace(
            checkpoints.describe(relative), source="gs://models/da/tiny"
        )
        with checkpoints.local_folder(found) as local:
            assert sorted(os.listdir(local)) == [
                checkpoints.CONFIG,
                checkpoints.WEIGHTS,
                checkpoints.PROCESSOR,
            ]
        bucket.blob(f"da/tiny/{checkpoints.WEIGHTS}").upload_from_string(b"other weights")
        with pytest.raises(models.ModelLoadError, match="weights changed"):
            with checkpoints.local_folder(found):
                pass


@pytest.mark.processes
def test_a_hub_id_comes_from_the_cache_offline_or_names_its_fetch_command(relative, tmp_path):
    """In fresh interpreters, as the Hub client reads its settings at import."""
    revision = "0" * 40
    snapshot = tmp_path / "hf" / "hub" / "models--fgbg-tests--tiny-depth-anything"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(revision)
    (snapshot / "snapshots").mkdir()
    os.symlink(relative, snapshot / "snapshots" / revision)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    describe = (
        "import sys; from fgbg.depth import checkpoints;"
        "c = checkpoints.describe(sys.argv[1]); print(c.weights_sha256, c.content.description)"
    )
    found = subprocess.run(
        [sys.executable, "-c", describe, HUB_ID], env=env, cwd=REPO, capture_output=True, text=True
    )
    sha = checkpoints.describe(relative).weights_sha256
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [sha, "relative", "disparity"]

    missing = subprocess.run(
        [sys.executable, "-m", "pipeline.build", "--bg=b/*", "--fg=f/*", "--output=o"]
        + [f"--depth_model={checkpoints.SMALL}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == build.EXIT_USAGE
    assert f"hf download {checkpoints.SMALL}" in missing.stderr
    assert "Traceback" not in missing.stderr
