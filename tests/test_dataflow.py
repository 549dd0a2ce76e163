"""The Dataflow path, as far as it runs offline: the dry-run job of the real
pipeline, built by run_dataflow.sh, and the package Dataflow would stage."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.dataflow import (
    DEFAULT_MACHINE_TYPE,
    LOCK,
    apply_staging_defaults,
    apply_worker_defaults,
    flexrs_problem,
    is_dataflow,
    without_unset_flexrs_goal,
)

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "ReadBackgrounds",
    "ReadForegrounds",
    "CrossPairs/Cross",
    "SkipFinishedPairs",
    "Compose/Compose",
    "EstimateDepth",
    "WriteSamples",
    "RecordPairs",
    "WriteTables",
    "WriteTFRecords",
    "Stats",
    "Normalization",
    "WriteManifest",
)


def dry_run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """run_dataflow.sh --dry_run with `flags`, writing tmp_path/job.json."""
    return subprocess.run(
        [
            "bash",
            "run_dataflow.sh",
            "--dry_run",
            *flags,
            "--version",
            "v20261125",
            "--output",
            str(tmp_path / "out"),
            "--job_file",
            str(tmp_path / "job.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@pytest.mark.e2e
def test_dry_run_builds_the_whole_gpu_job(tmp_path):
    job_file = tmp_path / "job.json"
    result = dry_run(tmp_path, "--gpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(job_file) in result.stdout
    job = json.loads(job_file.read_text())
    assert job["name"] == "fgbg-build-v20261125" and job["type"] == "JOB_TYPE_BATCH"
    pool = job["environment"]["workerPools"][0]
    # An L4 (bfloat16 units, which a T4 lacks) attaches to G2 machines only.
    assert pool["machineType"] == "g2-standard-8"
    assert pool["autoscalingSettings"]["maxNumWorkers"] == 4
    environment = json.dumps(job["environment"])
    assert "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in environment
    # One shared model per VM is one CUDA context: nothing for NVIDIA MPS to share.
    assert "use_nvidia_mps" not in environment
    for option in (
        '"depth_runtime": "torch"',
        '"depth_device": "cuda"',
        '"depth_share_model": true',
        '"depth_resize_on_device": true',
    ):
        assert option in environment, option
    transforms = json.loads(Path(f"{job_file}.pipeline.json").read_text())["components"][
        "transforms"
    ]
    names = {transform["uniqueName"] for transform in transforms.values()}
    for stage in STAGES:
        assert any(name == stage or name.startswith(stage + "/") for name in names), stage
    assert any("RunInference" in name for name in names)
    assert "flexResourceSchedulingGoal" not in job["environment"]
    # The container installs the lock itself (Dockerfile).
    assert "requirements_file" not in environment


@pytest.mark.e2e
def test_dry_run_builds_a_flexrs_job_on_cpu_workers(tmp_path):
    result = dry_run(tmp_path, "--flexrs")
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["environment"]["flexResourceSchedulingGoal"] == "FLEXRS_COST_OPTIMIZED"
    assert job["environment"]["workerPools"][0]["machineType"] == DEFAULT_MACHINE_TYPE
    assert "nvidia" not in json.dumps(job["environment"])
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert options["requirements_file"] == str(REPO / LOCK)
    assert options["requirements_cache"] == "skip"


@pytest.mark.processes
def test_the_workers_get_the_lock_as_their_requirements(tmp_path):
    """What Beam's stager uploads for a job the pipeline submits: the lock as
    the workers' requirements.txt, beside the package (setup.py's ranges)."""
    from apache_beam.runners.portability.stager import Stager

    options = PipelineOptions([f"--setup_file={REPO / 'setup.py'}"])
    apply_staging_defaults(options)
    resources = Stager.create_job_resources(
        options, str(tmp_path), log_submission_env_dependencies=False
    )
    staged = {
        Path(dst).name: Path(src) for src, dst, _ in Stager.extract_staging_tuple_iter(resources)
    }
    assert "workflow.tar.gz" in staged

    def pins(path: Path):
        return [line for line in path.read_text().splitlines() if "==" in line]

    assert pins(staged["requirements.txt"]) == pins(REPO / LOCK)
    assert "apache-beam==2.77.0" in pins(REPO / LOCK)


@pytest.mark.parametrize(
    "given, requirements",
    [
        (["--requirements_file=mine.txt"], "mine.txt"),
        (["--sdk_container_image=fgbg-worker"], None),
    ],
    ids=["own_requirements", "container_image"],
)
def test_a_callers_requirements_or_image_keep_the_lock_out(given, requirements):
    options = PipelineOptions([f"--setup_file={REPO / 'setup.py'}", *given])
    assert apply_staging_defaults(options).requirements_file == requirements


def test_flexrs_on_gpu_workers_is_refused_before_anything_is_built(tmp_path):
    result = dry_run(tmp_path, "--flexrs", "--gpu")
    assert result.returncode == 2
    assert "FlexRS does not support GPUs" in result.stderr
    assert not (tmp_path / "job.json").exists()


@pytest.mark.parametrize(
    "given, problem",
    [
        (["--flexrs_goal=COST_OPTIMIZED"], None),
        ([], None),
        (
            [
                "--flexrs_goal=COST_OPTIMIZED",
                "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1",
            ],
            "does not support GPUs",
        ),
        (
            ["--flexrs_goal=SPEED_OPTIMIZED", "--experiments=worker_accelerator=type:nvidia-l4"],
            "does not support GPUs",
        ),
    ],
)
def test_flexrs_problem(given, problem):
    found = flexrs_problem(PipelineOptions(given))
    assert (found is None) if problem is None else (problem in found)


def test_an_empty_flexrs_goal_means_no_flexrs():
    """What the Composer DAG renders when its fgbg_flexrs variable is false."""
    argv = ["--flexrs_goal=", "--seed=1", "--flexrs_goal", "", "--runner=DataflowRunner"]
    assert without_unset_flexrs_goal(argv) == ["--seed=1", "--runner=DataflowRunner"]
    kept = ["--flexrs_goal=COST_OPTIMIZED", "--flexrs_goal", "SPEED_OPTIMIZED"]
    assert without_unset_flexrs_goal(kept) == kept


@pytest.mark.processes
def test_the_staged_package_holds_every_package(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (archive,) = tmp_path.glob("fgbg-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {Path(*Path(name).parts[1:]).as_posix() for name in tar.getnames()}
    for module in (
        "setup.py",
        "pipeline/build.py",
        "pipeline/options/__init__.py",
        "pipeline/options/depth.py",
        "transforms/compositing.py",
        "transforms/depth.py",
        "transforms/normalization.py",
        "fgbg/storage.py",
        "fgbg/depth/keras_densedepth.py",
        "fgbg/depth/maps.py",
    ):
        assert module in names, module


@pytest.mark.parametrize("given", [[], ["--machine_type=", "--max_num_workers=0"]])
def test_unset_worker_options_get_the_pipelines_defaults(given):
    """Nothing given, or what the Composer DAG renders for unset variables."""
    worker = apply_worker_defaults(PipelineOptions(given))
    assert (worker.machine_type, worker.max_num_workers) == ("n1-standard-8", 20)


def test_every_spelling_of_the_dataflow_runner_is_recognized():
    for runner in (
        "DataflowRunner",
        "dataflow",
        "dataflowrunner",
        "TestDataflowRunner",
        "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner",
    ):
        assert is_dataflow(runner), runner
    for runner in ("FnApiRunner", "DirectRunner", "PrismRunner"):
        assert not is_dataflow(runner), runner


def test_chosen_worker_options_are_kept():
    worker = apply_worker_defaults(
        PipelineOptions(["--machine_type=n2-standard-4", "--max_num_workers=3"])
    )
    assert (worker.machine_type, worker.max_num_workers) == ("n2-standard-4", 3)


@pytest.mark.e2e
def test_run_dataflow_sets_up_its_environment_from_a_fresh_clone(tmp_path):
    """From a fresh clone (no virtualenv yet), run_dataflow.sh creates and
    installs one the way run_local.sh does, instead of falling back to a
    system python3 without Beam. The install is cut short here (no package
    index), which is enough to see which environment the script uses."""
    clone = tmp_path / "clone"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((REPO / name).read_bytes())
    venv = tmp_path / "fresh-venv"
    result = subprocess.run(
        ["bash", "run_dataflow.sh", "--dry_run", "--job_file", str(tmp_path / "job.json")],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FGBG_VENV": str(venv),
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(tmp_path),
        },
    )
    assert f"fgbg: creating virtualenv {venv}" in result.stderr
    assert (venv / "bin" / "python").exists()
    assert "No module named 'apache_beam'" not in result.stderr
