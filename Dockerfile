# Dataflow worker container for the GPU variant (run_dataflow.sh --gpu): Beam's
# Python 3.11 SDK image for the Beam version the package pins, plus the fgbg
# package with its PyTorch extra (PyPI's Linux torch wheel brings its CUDA
# libraries), since run_dataflow.sh --gpu runs depth on the torch runtime.
# NOT built or run in this repository's checks (no container runtime or GPU
# there); docs/running-on-gcp.md says how to build and push it.
FROM apache/beam_python3.11_sdk:2.77.0

# Only what `pip install` needs: the build context also holds virtualenvs.
COPY setup.py /fgbg/
COPY pipeline /fgbg/pipeline
COPY transforms /fgbg/transforms
COPY fgbg /fgbg/fgbg
COPY requirements /fgbg/requirements
# At the versions the tests passed with (docs/dependencies.md): the
# application's lock, and the torch extra's.
RUN pip install --no-cache-dir -r /fgbg/requirements/app.txt \
    -c /fgbg/requirements/dev.txt "/fgbg[torch]"

# TensorFlow is installed too (TFT runs it); should it find CUDA libraries,
# this keeps the first process that loads it from reserving the GPU's memory.
ENV TF_FORCE_GPU_ALLOW_GROWTH=true
