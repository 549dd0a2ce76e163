"""The ONNX runtime (--depth_runtime onnx): a checkpoint's ONNX export on
ONNX Runtime, with the checkpoint's image processor in numpy and Pillow.

Its processor steps are checked against transformers' own processor, its
maps against the transformers runtime's on the same composites, and its
builds in this process and, with neither PyTorch nor transformers
importable, from the command line. The exports are tiny seeded Depth
Anything V2 checkpoints exported here (conftest.py's `onnx_exports`, once
per session): nothing is downloaded.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")

import apache_beam as beam  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from fgbg.depth import checkpoints, image_processor, models, seeded_checkpoints  # noqa: E402
from pipeline import build  # noqa: E402
from pipeline.options import FgbgOptions, UsageError, check_options  # noqa: E402
from tests.depth_fixtures import checkpoint_config, make_composite, random_overlays  # noqa: E402
from tests.helpers import small_build_args  # noqa: E402
from transforms.depth import DepthModelHandler, EstimateDepth  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIDE = 56  # the exports' input side: 4x4 patches of 14
QUANTIZED = "onnx/model_quantized.onnx"
# A process that cannot import PyTorch or transformers, as after the quick
# start's install: a finder ahead of the others that says they are missing.
HIDE_TORCH = """import sys


class HiddenPackages:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HiddenPackages())
"""


def relative_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Within 1e-3 of the reference's largest magnitude."""
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * float(np.abs(theirs).max()))


@pytest.fixture(scope="module")
def export(onnx_exports) -> str:
    return onnx_exports(SIDE)[1]


@pytest.fixture(scope="module")
def quantized(export, tmp_path_factory) -> str:
    """The export with its int8 sibling, as the Hub's exports have one."""
    folder = tmp_path_factory.mktemp("quantized") / "export"
    shutil.copytree(export, folder)
    seeded_checkpoints.quantize(str(folder))
    return str(folder)


def options(*flags: str) -> FgbgOptions:
    return FgbgOptions(["--bg=b/*", "--fg=f/*", "--output=o", *flags])


def config_of(folder: str, runtime=None, onnx_file="", **overrides):
    """The depth stage's configuration for checkpoint `folder` at the
    exports' size, on the runtime it chooses (or `runtime`)."""
    return checkpoint_config(folder, SIDE, runtime, onnx_file, **overrides)


@pytest.mark.model
@pytest.mark.parametrize("input_size", [(56, 56), (518, 518), (70, 56), (518, 392)])
@pytest.mark.parametrize("image_side", [64, 37])
def test_preprocessing_is_the_processors_own(export, input_size, image_side):
    from fgbg.depth import transformers_runtime

    checkpoint = checkpoints.describe(export)
    composites = np.stack(random_overlays(2, image_side, seed=0))
    theirs = transformers_runtime.preprocess(
        transformers_runtime.image_processor(checkpoint), composites, input_size
    )
    ours = image_processor.preprocess(checkpoint.processor, composites, input_size)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    relative_close(ours, theirs)


@pytest.mark.model
@pytest.mark.parametrize(
    "raw_size, out_size", [((56, 56), (224, 224)), ((518, 518), (224, 224)), ((37, 50), (33, 64))]
)
def test_postprocessing_is_the_processors_bicubic(export, raw_size, out_size):
    from fgbg.depth import transformers_runtime

    checkpoint = checkpoints.describe(export)
    raw = np.random.default_rng(1).random((2, *raw_size)).astype(np.float32) * 10
    processor = transformers_runtime.image_processor(checkpoint)
    theirs = transformers_runtime.postprocess(processor, raw, out_size)
    ours = image_processor.postprocess(raw, out_size)
    assert ours.shape == theirs.shape == (2, out_size[1], out_size[0])
    relative_close(ours, theirs)


def test_the_processor_keeps_the_aspect_ratio_and_the_patch_multiple():
    # Scaled as little as possible: 518 wide is further from 224 than 392 high.
    assert image_processor.resized_size((224, 224), (518, 392), True, 14) == (392, 392)
    assert image_processor.resized_size((224, 224), (518, 392), False, 14) == (518, 392)
    assert image_processor.resized_size((100, 50), (100, 50), False, 14) == (98, 56)
    assert image_processor.postprocess(np.ones((1, 3, 3)), (5, 4)).shape == (1, 4, 5)
    with pytest.raises(ValueError, match="ZoeDepthImageProcessor"):
        image_processor.check_supported({"image_processor_type": "ZoeDepthImageProcessor"})


@pytest.mark.model
def test_an_export_is_described_by_its_file_and_runs_on_onnx_unasked(onnx_exports, tmp_path):
    safetensors, export = onnx_exports(SIDE)
    found = checkpoints.describe(export)
    onnx_bytes = Path(export, checkpoints.ONNX_WEIGHTS).read_bytes()
    assert (found.runtime, found.onnx_file, found.onnx_precision) == (
        models.ONNX,
        "onnx/model.onnx",
        "fp32",
    )
    assert found.weights_sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    assert (found.licence, found.content.description) == ("apache-2.0", "relative disparity")
    assert found.record((SIDE, SIDE))["onnx_file"] == "onnx/model.onnx"

    both = tmp_path / "both"
    shutil.copytree(safetensors, both)
    shutil.copytree(Path(export, "onnx"), both / "onnx")
    assert checkpoints.describe(str(both)).runtime == models.TORCH
    assert checkpoints.describe(str(both), models.ONNX).weights_sha256 == found.weights_sha256
    opts = options(f"--depth_model={both}", "--depth_runtime=onnx", f"--depth_input_size={SIDE}")
    assert check_options(opts).runtime == models.ONNX and opts.depth_runtime == models.ONNX


@pytest.mark.model
def test_an_exports_external_weights_are_digested_and_loaded_with_it(export, tmp_path):
    """A large export keeps its weights beside it (model.onnx_data): the
    digest covers both, and the worker's copy loads them."""
    onnx = pytest.importorskip("onnx")
    folder = tmp_path / "external"
    shutil.copytree(export, folder)
    model = onnx.load(str(folder / checkpoints.ONNX_WEIGHTS))
    onnx.save_model(
        model,
        str(folder / checkpoints.ONNX_WEIGHTS),
        save_as_external_data=True,
        location="model.onnx_data",
    )
    assert (folder / "onnx" / "model.onnx_data").stat().st_size > 10_000
    found = checkpoints.describe(str(folder))
    inline = checkpoints.describe(export)
    assert found.weights_sha256 != inline.weights_sha256
    composites = random_overlays(2, 64, seed=2)
    maps = []
    for checkpoint_folder in (str(folder), export):
        handler = DepthModelHandler(config_of(checkpoint_folder))
        maps.append(np.stack(handler.run_inference(composites, handler.load_model())))
    np.testing.assert_array_equal(*maps)


@pytest.mark.model
def test_the_int8_sibling_is_chosen_by_its_file_and_records_int8(quantized):
    chosen = (
        f"--depth_model={quantized}",
        f"--depth_onnx_file={QUANTIZED}",
        f"--depth_input_size={SIDE}",
    )
    opts = options(*chosen)
    checkpoint = check_options(opts)
    assert (opts.depth_runtime, checkpoint.onnx_file, checkpoint.onnx_precision) == (
        models.ONNX,
        QUANTIZED,
        models.INT8,
    )
    digest = hashlib.sha256(Path(quantized, QUANTIZED).read_bytes()).hexdigest()
    assert checkpoint.weights_sha256 == digest
    with pytest.raises(UsageError, match="holds int8 weights"):
        check_options(options(*chosen, "--depth_precision=fp32"))


@pytest.mark.model
def test_bad_exports_and_options_are_usage_errors_naming_the_file(export, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (checkpoints.CONFIG, checkpoints.PROCESSOR):
        shutil.copyfile(Path(export, name), bare / name)
    with pytest.raises(UsageError, match=r"no model\.safetensors .* no ONNX export \(onnx/model"):
        check_options(options(f"--depth_model={bare}"))
    with pytest.raises(UsageError, match=r"no onnx/model\.onnx \(the ONNX export to run\)"):
        check_options(options(f"--depth_model={bare}", "--depth_runtime=onnx"))

    corrupt = tmp_path / "corrupt"
    shutil.copytree(export, corrupt)
    model = corrupt / checkpoints.ONNX_WEIGHTS
    model.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(UsageError, match=r"onnx/model\.onnx is not an ONNX model"):
        check_options(options(f"--depth_model={corrupt}"))

    with pytest.raises(UsageError, match="exported for 56x56 inputs, not 518x518"):
        check_options(options(f"--depth_model={export}"))
    sized = (f"--depth_model={export}", f"--depth_input_size={SIDE}")
    with pytest.raises(UsageError, match="holds fp32 weights"):
        check_options(options(*sized, "--depth_precision=bf16"))
    with pytest.raises(UsageError, match="are for --depth_runtime torch"):
        check_options(options(*sized, "--depth_resize_on_device"))
    with pytest.raises(UsageError, match="run a checkpoint's ONNX export"):
        check_options(options("--depth_model=untrained", "--depth_runtime=onnx"))


@pytest.mark.model
@pytest.mark.parametrize("metric", [False, True], ids=["relative", "metric"])
def test_maps_equal_the_transformers_runtimes(onnx_exports, metric):
    """The same composites through the same handler, on the checkpoint's
    safetensors (transformers' processor, PyTorch) and on its export (the
    processor in numpy and Pillow, ONNX Runtime)."""
    safetensors, export = onnx_exports(SIDE, metric=metric)
    composites = random_overlays(4, 64, seed=6)
    made = {}
    for folder in (safetensors, export):
        handler = DepthModelHandler(config_of(folder, out_size=(64, 64)))
        made[folder] = np.stack(handler.run_inference(composites, handler.load_model()))
    assert made[safetensors].std() > 0
    relative_close(made[export], made[safetensors])


@pytest.mark.model
def test_the_stage_encodes_maps_in_the_precision_its_file_holds(quantized):
    overlays = random_overlays(3, 32, seed=3)
    composites = [make_composite(n + 1, overlay) for n, overlay in enumerate(overlays)]
    with TestPipeline() as p:
        for onnx_file, precision in ((checkpoints.ONNX_WEIGHTS, "fp32"), (QUANTIZED, "int8")):
            config = config_of(quantized, models.ONNX, onnx_file)
            encoded = p | f"Create {precision}" >> beam.Create(composites)
            described = (
                encoded
                | f"Depth {precision}" >> EstimateDepth(config)
                | f"Describe {precision}"
                >> beam.Map(lambda c: (Image.open(io.BytesIO(c.depth)).format, c.depth_precision))
            )
            assert_that(described, equal_to([("JPEG", precision)] * 3), label=precision)


@pytest.mark.e2e
@pytest.mark.model
def test_a_build_on_onnx_runtime_records_the_export(export, inputs, tmp_path):
    output = tmp_path / "out"
    manifest = build.run(
        small_build_args(inputs, output, f"--depth_model={export}", f"--depth_input_size={SIDE}")
    )
    sha = hashlib.sha256(Path(export, checkpoints.ONNX_WEIGHTS).read_bytes()).hexdigest()
    depth = manifest.depth.to_json()
    assert {k: depth[k] for k in ("runtime", "onnx_file", "weights_sha256", "precision")} == {
        "runtime": "onnx",
        "onnx_file": "onnx/model.onnx",
        "weights_sha256": sha,
        "precision": "fp32",
    }
    assert (depth["holds"], depth["licence"]) == ("relative disparity", "apache-2.0")
    assert "warning" not in depth
    records = sorted(output.glob("*/*/.pair.json"))
    assert records and all(
        json.loads(r.read_text())["depth_model"]["onnx_file"] == "onnx/model.onnx" for r in records
    )
    jpegs = sorted(output.glob("*/*/depth/*.jpg"))
    assert len(jpegs) == manifest.counts.samples
    assert np.asarray(Image.open(jpegs[0])).std() > 0
    assert sha in (output / "report.html").read_text()


@pytest.mark.e2e
@pytest.mark.model
@pytest.mark.processes
def test_a_command_line_build_runs_without_pytorch_or_transformers(export, inputs, tmp_path):
    """`python -m pipeline.build` in a fresh interpreter, as a user runs it:
    the default runner (a worker process per core), TFT on, and neither
    PyTorch nor transformers importable there or in its workers."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(HIDE_TORCH)
    path = os.pathsep.join([str(hidden), str(REPO), os.environ.get("PYTHONPATH", "")])
    output = tmp_path / "out"
    args = [a for a in small_build_args(inputs, output, tft=True) if not a.startswith("--runner")]
    args = [a for a in args if not a.startswith("--direct_") and a != "--depth_model=none"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.build", *args, f"--depth_model={export}"]
        + [f"--depth_input_size={SIDE}"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((output / "manifest.json").read_text())
    assert (manifest["depth"]["runtime"], manifest["files"]["transform"]) == ("onnx", "transform")
    assert len(list(output.glob("*/*/depth/*.jpg"))) == manifest["counts"]["samples"]
    assert "onnx/model.onnx on ONNX Runtime" in done.stdout + done.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
    )
    assert "No module named 'torch'" in probe.stderr
