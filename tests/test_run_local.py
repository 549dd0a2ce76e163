"""run_local.sh's GPU branch and its first-run depth model.

GPU: where nvidia-smi sees a GPU, PyTorch is installed first if it is
missing, and where PyTorch sees CUDA the build gets the GPU flags; FGBG_GPU=0
or a --depth_runtime argument keeps them out. This machine has no GPU, so
both are faked: an nvidia-smi that exits 0, and a `torch` first on
PYTHONPATH whose cuda.is_available() is True (and a pip that installs it
where it is missing). The builds are composites-only (--depth_model none),
so nothing runs on the fake GPU; what is checked is the options the
manifest records.

First run: with no model named and no nyu.h5, Depth Anything V2 Small's ONNX
export from the Hugging Face cache (fgbg/depth/first_run.py): a tiny export
laid out in a temporary HF_HOME under its Hub id stands in for it; without
it and without a Hub to fetch it from, the untrained DenseDepth and its
warning. Nothing is downloaded.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

from fgbg.depth import first_run
from tests.helpers import make_inputs, small_build_args

REPO = Path(__file__).resolve().parents[1]
GPU_OPTIONS = {
    "depth_runtime": "torch",
    "depth_device": "cuda",
    "depth_share_model": True,
    "depth_resize_on_device": True,
}
GPU_FOUND = "GPU found"
CUDA_TORCH = "class cuda:\n    @staticmethod\n    def is_available():\n        return True\n"
# A pip that "installs" the torch extra: it records its arguments and turns
# the missing torch into the fake one that sees a GPU.
FAKE_PIP = """import pathlib, sys
fake = pathlib.Path(__file__).resolve().parents[1]
(fake / "pip-arguments.txt").write_text(" ".join(sys.argv[1:]))
(fake / "torch" / "__init__.py").write_text({torch!r})
"""

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def fake_gpu(tmp_path) -> dict:
    """The environment of a machine whose PyTorch sees a GPU."""
    if not (Path(sys.prefix) / ".fgbg-installed").exists():
        pytest.skip("not run from a virtualenv scripts/ensure_venv.sh made")
    bin_dir, torch_dir = tmp_path / "bin", tmp_path / "fake" / "torch"
    bin_dir.mkdir()
    torch_dir.mkdir(parents=True)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    (torch_dir / "__init__.py").write_text(CUDA_TORCH)
    return dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        PYTHONPATH=str(torch_dir.parent),
        FGBG_VENV=sys.prefix,
    )


def run_local(env: dict, tmp_path: Path, *extra: str, model: Optional[str] = "none"):
    """stderr and the recorded options of a run_local.sh build, composites-only
    unless another `model` is named (None: none, as a first run names none)."""
    return run_local_build(env, tmp_path, *extra, model=model)[:2]


def run_local_build(env: dict, tmp_path: Path, *extra: str, model: Optional[str] = "none"):
    """stderr, the recorded options, the manifest and stdout of a run_local.sh build."""
    inputs = make_inputs(tmp_path / "inputs", backgrounds=1, foregrounds=1)
    output = tmp_path / "out"
    args = small_build_args(inputs, output, *extra)
    args = [arg for arg in args if arg != "--depth_model=none"]
    if model:
        args.append(f"--depth_model={model}")
    done = subprocess.run(
        ["bash", "run_local.sh", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((output / "manifest.json").read_text())
    return done.stderr, manifest["options"], manifest, done.stdout


def test_a_gpu_gets_the_gpu_flags(fake_gpu, tmp_path):
    stderr, options = run_local(fake_gpu, tmp_path)
    assert GPU_FOUND in stderr
    assert {name: options[name] for name in GPU_OPTIONS} == GPU_OPTIONS


@pytest.mark.parametrize(
    "how, extra",
    [("FGBG_GPU=0", ()), ("--depth_runtime", ("--depth_runtime=tensorflow",))],
)
def test_the_gpu_flags_stay_out_when_told(fake_gpu, tmp_path, how, extra):
    env = dict(fake_gpu, FGBG_GPU="0") if how == "FGBG_GPU=0" else fake_gpu
    stderr, options = run_local(env, tmp_path, *extra)
    assert GPU_FOUND not in stderr
    assert options["depth_runtime"] == "tensorflow" and options["depth_device"] == "auto"


def test_a_gpu_without_pytorch_gets_the_torch_extra_installed_first(fake_gpu, tmp_path):
    fake = Path(fake_gpu["PYTHONPATH"])
    (fake / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
    (fake / "pip").mkdir()
    (fake / "pip" / "__init__.py").write_text("")  # a package, found before the real pip
    (fake / "pip" / "__main__.py").write_text(FAKE_PIP.format(torch=CUDA_TORCH))
    stderr, options = run_local(fake_gpu, tmp_path)
    assert "installing PyTorch" in stderr and GPU_FOUND in stderr
    assert (
        fake / "pip-arguments.txt"
    ).read_text() == "install -q -c requirements/dev.txt -e .[torch]"
    assert {name: options[name] for name in GPU_OPTIONS} == GPU_OPTIONS


@pytest.mark.model
def test_a_named_model_keeps_its_own_defaults(tmp_path):
    """run_local.sh's demo depth (the untrained DenseDepth at 320x256, or
    nyu.h5) stays out when the caller names a model: a Depth Anything V2
    checkpoint runs at its processor's input size."""
    pytest.importorskip("transformers")
    from fgbg.depth import seeded_checkpoints

    checkpoint = seeded_checkpoints.write(str(tmp_path / "da"))
    env = dict(os.environ, FGBG_GPU="0", FGBG_VENV=sys.prefix)
    stderr, options = run_local(env, tmp_path, model=checkpoint)
    assert "no DenseDepth weights" not in stderr
    assert (options["depth_model"], options["depth_input_size"]) == (checkpoint, "518x518")


BANNER = "WARNING: no DenseDepth weights"
GAVE_UP = f"fgbg: Depth Anything V2 Small ({first_run.MODEL}) is not in the Hugging Face cache"


def first_run_env(tmp_path: Path, **extra: str) -> dict:
    """A run_local.sh environment with no nyu.h5, no GPU, its own Hugging
    Face cache and none of the caller's Hub settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return dict(
        env,
        FGBG_GPU="0",
        FGBG_VENV=sys.prefix,
        FGBG_DEPTH_WEIGHTS=str(tmp_path / "no-nyu.h5"),
        HF_HOME=str(tmp_path / "hf"),
        **extra,
    )


def hub_cache(hf_home: Path, repo_id: str, folder: str) -> None:
    """`folder` in a Hugging Face cache under `repo_id`, as the Hub client
    lays a snapshot out (refs/main naming it)."""
    revision = "0" * 40
    cached = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text(revision)
    (cached / "snapshots").mkdir()
    os.symlink(folder, cached / "snapshots" / revision)


@pytest.mark.model
def test_a_first_run_makes_depth_with_depth_anything_from_the_hub_cache(onnx_exports, tmp_path):
    """A tiny export stands in for the Hub's, under its id; it was exported
    for 56x56 inputs, which the caller's --depth_input_size asks for."""
    export = onnx_exports(56)[1]
    env = first_run_env(tmp_path, HF_HUB_OFFLINE="1")
    hub_cache(tmp_path / "hf", first_run.MODEL, export)
    stderr, options, manifest, stdout = run_local_build(
        env, tmp_path, "--depth_input_size=56", model=None
    )
    assert BANNER not in stderr and GAVE_UP not in stderr
    depth = manifest["depth"]
    assert (depth["model"], depth["runtime"], depth["onnx_file"], depth["licence"]) == (
        first_run.MODEL,
        "onnx",
        "onnx/model.onnx",
        "apache-2.0",
    )
    assert "warning" not in depth and options["depth_input_size"] == "56x56"
    assert f"depth:    {first_run.MODEL} (onnx/model.onnx on ONNX Runtime)" in stdout + stderr


def hub_is_unreachable() -> bool:
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return True
    return False


@pytest.mark.processes
@pytest.mark.parametrize(
    "hub",
    ["no route to the Hub", "a Hub refusing connections", "HF_HUB_OFFLINE=1"],
)
def test_without_the_model_and_a_hub_the_first_run_gives_up_in_seconds(tmp_path, hub):
    """Bounded by the subprocess's 30 s: never a hang. The real Hub only
    where it cannot be reached (elsewhere this would download it)."""
    extra = {
        "no route to the Hub": {},
        "a Hub refusing connections": {"HF_ENDPOINT": "http://127.0.0.1:9"},
        "HF_HUB_OFFLINE=1": {"HF_HUB_OFFLINE": "1"},
    }[hub]
    if hub == "no route to the Hub" and not hub_is_unreachable():
        pytest.skip("this machine reaches huggingface.co: it would download the model")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fgbg.depth.first_run"],
        cwd=REPO,
        env=first_run_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert [line for line in done.stderr.splitlines() if line.startswith(GAVE_UP)]
    assert time.monotonic() - started < 30
    assert not list((tmp_path / "hf").rglob("*.onnx"))


@pytest.mark.model
def test_without_the_model_run_local_falls_back_to_the_untrained_model(tmp_path):
    env = first_run_env(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    stderr, options, manifest, _ = run_local_build(
        env, tmp_path, "--depth_input_size=64x64", model=None
    )
    assert GAVE_UP in stderr and BANNER in stderr
    assert (
        options["depth_model"] == "untrained" and "RANDOM weights" in manifest["depth"]["warning"]
    )
