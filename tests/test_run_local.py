"""run_local.sh's GPU branch. Where nvidia-smi sees a GPU, PyTorch is
installed first if it is missing, and where PyTorch sees CUDA the build gets
the GPU flags; FGBG_GPU=0 or a --depth_runtime argument keeps them out.
This machine has no GPU, so both are faked: an nvidia-smi that exits 0, and
a `torch` first on PYTHONPATH whose cuda.is_available() is True (and a pip
that installs it where it is missing). The builds are composites-only
(--depth_model none), so nothing runs on the fake GPU; what is checked is
the options the manifest records."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_local(env: dict, tmp_path: Path, *extra: str, model: str = "none"):
    """stderr and the recorded options of a run_local.sh build, composites-only
    unless another `model` is named."""
    inputs = make_inputs(tmp_path / "inputs", backgrounds=1, foregrounds=1)
    output = tmp_path / "out"
    args = small_build_args(inputs, output, f"--depth_model={model}", *extra)
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
    return done.stderr, manifest["options"]


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
    assert (fake / "pip-arguments.txt").read_text() == "install -q -e .[torch]"
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
