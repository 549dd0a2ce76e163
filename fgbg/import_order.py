"""Load triton before TensorFlow, in every process that may load both.

TensorFlow's PyPI wheels from 2.20 on load its library with RTLD_GLOBAL,
which puts TensorFlow's own, statically linked LLVM in the process's global
symbol table; triton (3.7 and later) loaded after it binds its LLVM calls to
that copy and dies in a segmentation fault, with nothing printed
(tensorflow/tensorflow#124205; `python -c "import tensorflow; import
triton"`). The other order is safe. A build loads TensorFlow (TFT, DenseDepth's
TensorFlow runtime) and, where the torch extra is installed on Linux,
triton: transformers reaches it through `torch._dynamo` while its modeling
code loads, in the same worker processes.

Only depth on the torch runtime brings triton into a build, so such a build
calls `load_triton_first` before anything may load TensorFlow:
`pipeline.build.run` (the launcher, and a local build's in-process worker),
every SDK worker process at its start (the `fgbg.worker_start` Beam plugin,
which `run` names for local and Dataflow workers alike), and the depth
stage before it loads a torch-runtime model, for pipelines assembled
without `run`. Other projects hit by the same bug did the same (e.g.
PythonOT/POT#839). Keep it until the TensorFlow release setup.py allows
ships the upstream fix (tensorflow/tensorflow#124230 drops RTLD_GLOBAL from
the wheels); tests/test_import_order.py shows the crash without it.

Importing this module changes nothing; only the call does.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from fgbg.depth import models

# What `load_triton_first` found and did.
ABSENT = "absent"  # triton or TensorFlow is not installed: nothing to order
LOADED = "loaded"  # triton is loaded (now or before), so TensorFlow may follow
HIDDEN = "hidden"  # TensorFlow came first: triton made unimportable here

_LOG = logging.getLogger(__name__)


def _installed(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


def load_triton_first() -> str:
    """Import triton now, where it and TensorFlow are both installed and
    TensorFlow is not loaded yet; returns ABSENT, LOADED or HIDDEN.

    Where TensorFlow is loaded already (a caller that imported it first),
    importing triton would crash the process, so triton is hidden from this
    process instead: torch and transformers then run without it, as on a
    machine where it is not installed (torch.compile on a GPU needs it).
    """
    if sys.modules.get("triton") is not None:
        return LOADED
    if "triton" in sys.modules:  # hidden before
        return HIDDEN
    if not (_installed("triton") and _installed("tensorflow")):
        return ABSENT
    if "tensorflow" in sys.modules:
        sys.modules["triton"] = None  # an import of it raises ImportError
        _LOG.warning(
            "TensorFlow was loaded before triton, which would then crash the process "
            "(tensorflow/tensorflow#124205): triton is hidden from this process"
        )
        return HIDDEN
    importlib.import_module("triton")
    return LOADED


# Imported first by every SDK worker (Beam's --beam_plugins).
WORKER_START = "fgbg.worker_start"


def loads_triton(opts: Any) -> bool:
    """Whether a build's processes may load triton: only depth on the torch
    runtime brings it in (transformers reaches it through torch._dynamo,
    torch.compile compiles with it). Checked options: a checkpoint's
    runtime is torch by then."""
    return opts.depth_model != models.NONE and opts.depth_runtime == models.TORCH


def load_triton_first_everywhere(options: PipelineOptions) -> None:
    """Load triton before TensorFlow here, the launcher, and in every SDK
    worker of the run, local or on Dataflow: each imports WORKER_START at its
    start, before anything there can load TensorFlow (fgbg/import_order.py
    says why). Builds that never load triton skip this: it costs every
    process memory (BENCHMARKS.md, "Triton before TensorFlow")."""
    load_triton_first()
    setup = options.view_as(SetupOptions)
    setup.beam_plugins = [*(setup.beam_plugins or []), WORKER_START]
