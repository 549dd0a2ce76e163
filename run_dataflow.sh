#!/usr/bin/env bash
# Submit the full fgbg build to Google Cloud Dataflow, or build the job
# offline with --dry_run. `bash run_dataflow.sh --help` says how;
# docs/running-on-gcp.md has the prerequisites and the cost arithmetic.
set -euo pipefail

# Worker type and autoscaling cap: the pipeline's defaults
# (pipeline/dataflow.py, which says why), unless given after `--`.
# GPU: one NVIDIA L4 per g2-standard-8 worker (L4s attach to G2 machines
# only) runs the depth model while the worker's eight vCPUs compose and
# encode; an L4 has bfloat16 units, which a T4 lacks, and several times its
# fp32 arithmetic (docs/running-on-gcp.md, "GPU variant", cites the
# specifications). Dataflow starts an SDK process per vCPU; as Google
# documents for a model that should be loaded once per machine, they share
# one (--depth_share_model: RunInference's share_model_across_processes, one
# copy), handing it uint8 composites through shared memory, resized on the
# GPU. One model means one CUDA context, so NVIDIA MPS (for several copies
# sharing a GPU) stays off. Depth runs on cuda, so a worker that sees no GPU
# fails instead of running depth on its CPU, in GPU-sized batches
# (--depth_gpu_batch_size). 4 workers matches a modest L4 quota. The CUDA
# container is several GB, beyond the 25 GB boot disk's comfort, hence 50 GB.
# Not yet tried on Dataflow itself (BENCHMARKS.md, "Depth on a GPU", says
# what was measured, and where).
GPU_DEPTH_FLAGS=(--depth_runtime=torch --depth_device=cuda --depth_share_model
  --depth_resize_on_device)
GPU_MACHINE_TYPE=g2-standard-8
GPU_MAX_WORKERS=4
GPU_DISK_SIZE_GB=50
GPU_ACCELERATOR="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
Usage: bash run_dataflow.sh [FLAGS] [-- PIPELINE_OPTIONS...]

Submits \`python -m pipeline.build\` to Dataflow (DataflowRunner), staging
this package with --setup_file. Each flag falls back to the environment
variable in brackets.

  --project ID      Google Cloud project               [FGBG_PROJECT]
  --region REGION   Dataflow region, e.g. us-central1  [FGBG_REGION]
  --bucket NAME     bucket for inputs, outputs, temp and staging files,
                    without gs://                      [FGBG_BUCKET]
  --inputs PREFIX   folder holding bg/*.jpg, fg/*.png and fg_mask/*
                    (default gs://BUCKET/inputs)       [FGBG_INPUTS]
  --output PREFIX   folder of dataset versions; the build writes
                    PREFIX/VERSION (default gs://BUCKET/datasets/fgbg)
                                                       [FGBG_OUTPUT]
  --version V       dataset version, lowercase letters, digits and
                    hyphens (default v<UTC date>, e.g. v20261125); the
                    Dataflow job is named fgbg-build-V  [FGBG_VERSION]
  --gpu             run on L4 GPU workers from the custom container
                    (see Dockerfile), image FGBG_WORKER_IMAGE (default
                    REGION-docker.pkg.dev/PROJECT/fgbg/fgbg-worker:latest)
  --flexrs          run as a FlexRS job (Flexible Resource Scheduling):
                    Dataflow queues it for up to 6 hours and runs it on
                    preemptible and regular VMs at a lower price; CPU
                    workers only (docs/running-on-gcp.md, "FlexRS")
  --dry_run         build the complete Dataflow job offline, submit
                    nothing, and print where its description went; needs
                    no credentials. Defaults in this mode: project
                    dry-run-project, region us-central1, bucket
                    dry-run-bucket, inputs demo/inputs, output
                    \${TMPDIR:-/tmp}/fgbg-dry-run
  --job_file PATH   with --dry_run: where the job description goes
                    (default \${TMPDIR:-/tmp}/fgbg-build-VERSION.dataflow-job.json)
  -h, --help        show this help

The DenseDepth weights are read from gs://BUCKET/models/nyu.h5.
Workers: the pipeline's default type and autoscaling cap (see
pipeline/dataflow.py; with --gpu, $GPU_MACHINE_TYPE with one L4 each and at
most $GPU_MAX_WORKERS).
Options after \`--\` go to the pipeline last, so they override these, e.g.
  -- --max_num_workers=50 --depth_batch_size=16

Example:
  bash run_dataflow.sh --project my-project --region us-central1 --bucket my-bucket
EOF
}

die() {
  echo "run_dataflow.sh: error: $*" >&2
  exit 2
}

project=${FGBG_PROJECT:-}
region=${FGBG_REGION:-}
bucket=${FGBG_BUCKET:-}
inputs=${FGBG_INPUTS:-}
output=${FGBG_OUTPUT:-}
version=${FGBG_VERSION:-}
job_file=""
gpu=false
flexrs=false
dry_run=false

while (($#)); do
  case $1 in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;  # --flag=value: split, then reread
    --project | --region | --bucket | --inputs | --output | --version | --job_file)
      (($# >= 2)) || die "$1 needs a value"
      printf -v "${1#--}" '%s' "$2"
      shift 2
      ;;
    --gpu) gpu=true; shift ;;
    --flexrs) flexrs=true; shift ;;
    --dry_run) dry_run=true; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown flag '$1' (pipeline options go after --; see --help)" ;;
  esac
done
pipeline_args=("$@")

if $dry_run; then
  project=${project:-dry-run-project}
  region=${region:-us-central1}
  bucket=${bucket:-dry-run-bucket}
  inputs=${inputs:-$REPO/demo/inputs}
  output=${output:-${TMPDIR:-/tmp}/fgbg-dry-run}
fi
[[ -n $project ]] || die "no project: pass --project or set FGBG_PROJECT"
[[ -n $region ]] || die "no region: pass --region or set FGBG_REGION"
[[ -n $bucket ]] || die "no bucket: pass --bucket or set FGBG_BUCKET"
bucket=${bucket#gs://}
bucket=${bucket%/}
inputs=${inputs:-gs://$bucket/inputs}
output=${output:-gs://$bucket/datasets/fgbg}
version=${version:-v$(date -u +%Y%m%d)}
[[ $version =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] \
  || die "version '$version': use lowercase letters, digits and hyphens (it names the Dataflow job)"

job_name=fgbg-build-$version
dataset=${output%/}/$version
inputs=${inputs%/}

args=(
  --runner=DataflowRunner
  --project="$project"
  --region="$region"
  --job_name="$job_name"
  --temp_location="gs://$bucket/tmp"
  --staging_location="gs://$bucket/staging"
  --setup_file="$REPO/setup.py"
  --labels="dataset-version=$version"
  --bg="$inputs/bg/*.jpg"
  --fg="$inputs/fg/*.png"
  --fg_mask="$inputs/fg_mask/*"
  --depth_weights="gs://$bucket/models/nyu.h5"
  --output="$dataset"
)
if $gpu; then
  image=${FGBG_WORKER_IMAGE:-$region-docker.pkg.dev/$project/fgbg/fgbg-worker:latest}
  args+=(
    --machine_type="$GPU_MACHINE_TYPE"
    --max_num_workers="$GPU_MAX_WORKERS"
    --disk_size_gb="$GPU_DISK_SIZE_GB"
    --sdk_container_image="$image"
    --dataflow_service_options="$GPU_ACCELERATOR"
    --experiments=use_runner_v2
    "${GPU_DEPTH_FLAGS[@]}"
  )
fi
if $flexrs; then
  args+=(--flexrs_goal=COST_OPTIMIZED)  # the pipeline refuses it with --gpu
fi
if $dry_run; then
  job_file=${job_file:-${TMPDIR:-/tmp}/$job_name.dataflow-job.json}
  rm -f "$job_file"
  args+=(--dry_run=True --dataflow_job_file="$job_file")
fi

# The same environment as run_local.sh and run_tests.sh: .venv, created and
# installed on first use.
# shellcheck source=scripts/ensure_venv.sh
source "$REPO/scripts/ensure_venv.sh"
command=(python -m pipeline.build "${args[@]}" "${pipeline_args[@]}")
echo "+ ${command[*]}" >&2
if ! $dry_run; then
  # The pipeline waits for the job; interrupting this script does not stop it.
  echo "Dataflow job $job_name writes $dataset; follow it at" \
    "https://console.cloud.google.com/dataflow/jobs?project=$project" >&2
fi
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${command[@]}"

if $dry_run; then
  [[ -s $job_file ]] || die "the pipeline finished but wrote no job description to $job_file"
  echo "Dry run: nothing was submitted. Dataflow job description: $job_file"
fi
