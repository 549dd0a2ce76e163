"""The PyTorch runtime (--depth_runtime torch): the same function as the
TensorFlow runtime on the published weights' layout, the same loading
rules, and the depth stage and a whole build on it.

PyTorch is an optional extra; run_tests.sh installs it, so these run in CI.
"""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.workload import demo_composites  # noqa: E402
from fgbg.depth import keras_densedepth as kd  # noqa: E402
from fgbg.depth import maps, models, torch_runtime  # noqa: E402
from fgbg.depth import torch_densedepth as td  # noqa: E402
from fgbg.depth.config import DepthConfig  # noqa: E402
from pipeline.options import FgbgOptions  # noqa: E402
from tests.depth_fixtures import random_overlays, write_published_h5  # noqa: E402
from tests.helpers import make_inputs, small_build_args  # noqa: E402
from transforms.depth import DepthModelHandler  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file"),
    pytest.mark.model,
]

REPO = Path(__file__).resolve().parents[1]
# Seed 0's weights keep the demo composites' depth mostly inside DenseDepth's
# range (0.1 m to 10 m), so the maps compared below have structure; with many
# other seeds the output clips to a constant almost everywhere.
SEED = 0
NETWORK_SIZE = (640, 480)
COMPOSITES = 2
# What runs DenseDepth: onnx runs transformers checkpoints' exports only
# (pipeline/options/depth.py refuses it for DenseDepth).
DENSEDEPTH_RUNTIMES = (models.TENSORFLOW, models.TORCH)


def _config(runtime: str, **overrides) -> DepthConfig:
    size = FgbgOptions([]).size
    values = dict(
        model="untrained",
        weights=None,
        seed=SEED,
        batch_size=COMPOSITES,
        min_batch_size=1,
        target_batch_duration_s=10.0,
        input_size=NETWORK_SIZE,
        encoding="minmax",
        jpeg_quality=85,
        out_size=(size, size),
        runtime=runtime,
    )
    values.update(overrides)
    return DepthConfig(**values)


@pytest.fixture(scope="module")
def published_keras(tmp_path_factory):
    """The seeded Keras model, and the nyu.h5-layout file it was saved as."""
    path = tmp_path_factory.mktemp("published") / "nyu.h5"
    model = write_published_h5(SEED, str(path))
    yield model, str(path)
    path.unlink()


@pytest.fixture(scope="module")
def published_h5(published_keras):
    return published_keras[1]


# ---------------------------------------------------------------------------
# The network


def test_the_weights_are_laid_out_as_keras_lays_them_out(published_keras):
    """Same layers, same weights per layer, same shapes, same order: what
    lets one loader check and copy nyu.h5 for both runtimes."""
    keras = [(name, list(specs)) for name, specs in kd.keras_layout(published_keras[0])]
    assert [(name, list(specs)) for name, specs in td.DenseDepth().layout()] == keras


def test_the_untrained_model_is_tensorflows_for_the_same_seed(published_keras):
    images = np.stack(random_overlays(2, 64, seed=3)).astype(np.float32) / 255
    expected = published_keras[0].predict_on_batch(images)  # built from SEED
    network = td.build_densedepth(seed=SEED)
    with torch.inference_mode():
        raw = network(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-5)


def test_the_low_resolution_decoder_computes_the_same_function():
    """The default forward pass (torch_densedepth.LowResolutionDecoder)
    against the network as written, at a size where every up block has a
    border and an interior."""
    images = torch.from_numpy(np.stack(random_overlays(2, 96, seed=8)).astype(np.float32) / 255)
    network = td.build_densedepth(seed=SEED)
    with torch.inference_mode():
        written = network(images.permute(0, 3, 1, 2))
        low = td.LowResolutionDecoder(network)(images.permute(0, 3, 1, 2))
    assert low.shape == written.shape == (2, 1, 48, 48)
    np.testing.assert_allclose(low.numpy(), written.numpy(), rtol=1e-4, atol=1e-5)


AS_WRITTEN = "tensorflow, the network as written"


@pytest.fixture(scope="module")
def depth_by_runtime(published_keras):
    """Post-processed depth of the demo composites at 640x480, fp32, from
    each runtime's handler (what a build runs) loading the same
    published-layout file, and from the Keras model that file was saved
    from, as written (in memory: a loader's fault cannot reach it)."""
    keras, published_h5 = published_keras
    composites = list(demo_composites(COMPOSITES))
    depth = {}
    for runtime in DENSEDEPTH_RUNTIMES:
        handler = DepthModelHandler(_config(runtime, model="densedepth", weights=published_h5))
        depth[runtime] = np.stack(handler.run_inference(composites, handler.load_model()))
    inputs = maps.preprocess(np.stack(composites), NETWORK_SIZE)
    depth[AS_WRITTEN] = maps.postprocess(keras.predict_on_batch(inputs))[..., 0]
    return depth


@pytest.mark.parametrize("runtime", DENSEDEPTH_RUNTIMES)
def test_each_runtime_makes_the_published_networks_depth_at_640x480(depth_by_runtime, runtime):
    reference = depth_by_runtime[AS_WRITTEN]
    assert reference.shape == (COMPOSITES, NETWORK_SIZE[1] // 2, NETWORK_SIZE[0] // 2)
    unclipped = (reference > maps.MIN_DEPTH / maps.MAX_DEPTH) & (reference < 1)
    assert unclipped.mean() > 0.9, "the fixture's depth should not be clipped flat"
    np.testing.assert_allclose(depth_by_runtime[runtime], reference, rtol=1e-3)


@pytest.mark.parametrize("runtime", DENSEDEPTH_RUNTIMES)
def test_each_runtime_stores_the_published_networks_min_max_maps(depth_by_runtime, runtime):
    out_size = _config(runtime).out_size
    levels = np.concatenate(
        [
            np.abs(
                np.asarray(maps.minmax_grey(a, out_size), np.int16)
                - np.asarray(maps.minmax_grey(b, out_size), np.int16)
            ).ravel()
            for a, b in zip(depth_by_runtime[runtime], depth_by_runtime[AS_WRITTEN])
        ]
    )
    assert np.mean(levels <= 1) >= 0.999


# ---------------------------------------------------------------------------
# Loading: the TensorFlow loader's rules (mismatched layers are checked for
# both runtimes in test_densedepth.py)


@pytest.mark.parametrize(
    "model, weights, message",
    [
        ("none", None, "none has no model"),
        ("densedepth", None, "ialhashim/DenseDepth"),
        ("densedepth", "{tmp}/nyu.h5", "model file not found: {tmp}/nyu.h5"),
        ("{tmp}/model.keras", None, "needs --depth_runtime tensorflow"),
    ],
)
def test_what_the_torch_runtime_cannot_load_is_named(tmp_path, model, weights, message):
    model, message = model.format(tmp=tmp_path), message.format(tmp=tmp_path)
    weights = weights and weights.format(tmp=tmp_path)
    with pytest.raises(models.ModelLoadError, match=message):
        torch_runtime.load_network(model, weights, SEED)


def test_a_truncated_weights_file_is_refused_naming_it(published_h5, tmp_path):
    path = tmp_path / "nyu.h5"
    with open(published_h5, "rb") as source:
        path.write_bytes(source.read(1 << 20))
    with pytest.raises(models.ModelLoadError, match=rf"{path}: not a readable model file"):
        torch_runtime.load_network("densedepth", str(path), SEED)


def test_nan_weights_are_refused_naming_the_layer(published_h5, tmp_path):
    path = tmp_path / "nyu.h5"
    shutil.copyfile(published_h5, path)
    with h5py.File(path, "r+") as h5:
        h5["model_weights/conv3/conv3/bias:0"][...] = np.nan
    with pytest.raises(
        models.ModelLoadError, match=rf"{path}: weight 'layers.conv3.bias' holds NaN"
    ):
        torch_runtime.load_network("densedepth", str(path), SEED)


def test_devices_resolve_to_what_this_process_sees():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert torch_runtime.resolve_device("auto").type == "cpu"
    with pytest.raises(models.ModelLoadError, match="--depth_device cuda: .*no CUDA GPU"):
        torch_runtime.resolve_device("cuda")


def test_each_device_gets_its_faster_decoder_unless_told():
    """The low-resolution decoder on a CPU, the network as written on a GPU:
    each is the faster there (BENCHMARKS.md "Depth on CPU", "Depth on a GPU")."""
    cpu = torch.device("cpu")
    assert torch_runtime.low_resolution_decoder_wins(cpu)
    assert not torch_runtime.low_resolution_decoder_wins(torch.device("cuda"))
    network = td.build_densedepth(SEED)
    assert isinstance(torch_runtime.DepthModel(network, cpu).network, td.LowResolutionDecoder)
    written = torch_runtime.DepthModel(network, cpu, low_resolution_decoder=False)
    assert isinstance(written.network, td.DenseDepth)


@pytest.mark.parametrize(
    "device, compiled, takes_turns",
    [("cuda", False, True), ("cpu", True, True), ("cpu", False, False)],
)
def test_gpu_and_compiled_forward_passes_take_turns(device, compiled, takes_turns):
    """A second thread gets into the forward pass while a first is in it
    only where calls may overlap (CPU, not compiled)."""
    guard = torch_runtime.forward_guard(torch.device(device), compiled)
    second_is_in = threading.Event()

    def second_caller():
        with guard:
            second_is_in.set()

    with guard:
        caller = threading.Thread(target=second_caller)
        caller.start()
        got_in_meanwhile = second_is_in.wait(timeout=2)
    caller.join(timeout=10)
    assert got_in_meanwhile != takes_turns
    assert second_is_in.is_set()


def test_bf16_autocast_stays_close_to_fp32():
    images = np.stack(random_overlays(2, 64, seed=5)).astype(np.float32) / 255
    network = td.build_densedepth(seed=SEED)
    cpu = torch.device("cpu")
    fp32 = torch_runtime.DepthModel(network, cpu, models.FP32).predict(images)
    bf16 = torch_runtime.DepthModel(network, cpu, models.BF16).predict(images)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (2, 32, 32, 1)
    difference = np.abs(bf16 - fp32).max()
    assert 0 < difference <= 0.05 * np.abs(fp32).max()


def test_composites_resized_on_the_device_reach_the_same_network():
    """--depth_resize_on_device: uint8 composites go to the device as they
    are; at the network size nothing is resized, so the output is exactly
    that of the float path."""
    images = np.stack(random_overlays(2, 64, seed=6))
    model = torch_runtime.DepthModel(td.build_densedepth(seed=SEED), torch.device("cpu"))
    np.testing.assert_array_equal(
        model.predict_composites(images, (64, 64)), model.predict(images.astype(np.float32) / 255)
    )


def test_the_stage_resizing_on_the_device_stays_near_the_lanczos_path():
    """Bicubic on the device against PIL's Lanczos on the CPU, through the
    handler at 640x480: the same maps but for resampling detail
    (BENCHMARKS.md "Depth on CPU" compares the two on the demo composites)."""
    composites = list(demo_composites(2))
    depth = {}
    for on_device in (False, True):
        handler = DepthModelHandler(_config(models.TORCH, resize_on_device=on_device))
        depth[on_device] = np.stack(handler.run_inference(composites, handler.load_model()))
    assert depth[True].shape == depth[False].shape
    assert 0 < np.abs(depth[True] - depth[False]).mean() < 0.01 * depth[False].mean()


# ---------------------------------------------------------------------------
# A whole build on the torch runtime, without TensorFlow


@pytest.mark.e2e
def test_a_build_on_the_torch_runtime_never_imports_tensorflow(tmp_path):
    """What the GPU machine needs: it has PyTorch and no TensorFlow. The
    build runs in a process of its own and reports which of the two it
    imported, with its manifest."""
    inputs = make_inputs(tmp_path / "inputs", backgrounds=2, foregrounds=1)
    args = small_build_args(
        inputs,
        tmp_path / "out",
        "--depth_model=untrained",
        "--depth_runtime=torch",
        "--depth_input_size=64x64",
        "--scales=1.0",
        "--placements_per_scale=1",
    )
    code = (
        "import json, sys\n"
        "from pipeline import build\n"
        f"manifest = build.run({args!r})\n"
        "print(json.dumps([manifest.counts.samples, manifest.depth.to_json(),\n"
        "                  'torch' in sys.modules, 'tensorflow' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples, depth, imported_torch, imported_tensorflow = json.loads(done.stdout.splitlines()[-1])
    assert samples == 2 * 2 and depth["runtime"] == "torch"
    assert imported_torch and not imported_tensorflow
    depth_files = sorted((tmp_path / "out").glob("bg*/fg_1/depth/*.jpg"))
    assert len(depth_files) == samples
