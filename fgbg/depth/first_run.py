"""run_local.sh's depth model when the caller names none and nyu.h5 is not
there: Depth Anything V2 Small's ONNX export (Apache-2.0), on the ONNX
runtime, from the Hugging Face cache, fetched into it once where the
network allows.

`python -m fgbg.depth.first_run [BUILD ARGUMENTS]` prints the build
arguments that choose it, one a line, and exits 0. Where it cannot have the
model (no network, a Hub that does not answer within a few seconds,
HF_HUB_OFFLINE=1 with an empty cache), it says so in one line on stderr and
exits 1, and run_local.sh falls back to the untrained DenseDepth with its
warning. Only run_local.sh fetches: `python -m pipeline.build`'s default
stays DenseDepth, and the build it starts reads the cache offline.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

from fgbg.depth import checkpoints

MODEL = "onnx-community/depth-anything-v2-small"
# fp32: the int8 sibling (onnx/model_quantized.onnx) failed the precision
# rule against it (BENCHMARKS.md, "ONNX Runtime").
ONNX_FILE = checkpoints.ONNX_WEIGHTS
# The files a build reads: configuration, processor, the export, and the
# model card for its licence.
FILES = [checkpoints.CONFIG, checkpoints.PROCESSOR, ONNX_FILE, checkpoints.MODEL_CARD]
# The network input: 16 x 16 patches, the demo's image size, rather than the
# processor's 518 (about 7 times the CPU: BENCHMARKS.md, "ONNX Runtime").
INPUT_SIZE = "224"
# Seconds the Hub client waits for the Hub's first answer, and for each read
# of a download, before it gives up (its defaults are 10 and 10).
TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}


def cached_or_fetched() -> str:
    """The model's snapshot folder in the Hugging Face cache: as it is when
    it holds FILES (no network), else fetched with the Hub client's progress
    bars; the client's exception when it cannot be had."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = huggingface_hub.snapshot_download(
            MODEL, allow_patterns=FILES, local_files_only=True
        )
        if all(os.path.exists(os.path.join(folder, name)) for name in FILES):
            return folder
    except LocalEntryNotFoundError:
        pass
    print(
        f"fgbg: fetching Depth Anything V2 Small's ONNX export ({MODEL}, Apache-2.0, about "
        "100 MB) into the Hugging Face cache, once.",
        file=sys.stderr,
    )
    return huggingface_hub.snapshot_download(MODEL, allow_patterns=FILES)


def build_arguments(caller: Sequence[str]) -> List[str]:
    """The arguments that run the model, less those the caller gives."""
    chosen = ["--depth_model", MODEL]
    if not any(arg.startswith("--depth_input_size") for arg in caller):
        chosen += ["--depth_input_size", INPUT_SIZE]
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    caller = sys.argv[1:] if argv is None else argv
    for name, seconds in TIMEOUTS.items():
        os.environ.setdefault(name, seconds)  # read when the Hub client is imported
    try:
        cached_or_fetched()
    except Exception as error:  # the Hub client's many ways of not reaching it
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(
            f"fgbg: Depth Anything V2 Small ({MODEL}) is not in the Hugging Face cache and "
            f"could not be fetched ({reason}); fetch it where the network allows with: "
            f"hf download {MODEL} {' '.join(FILES)}",
            file=sys.stderr,
        )
        return 1
    print("\n".join(build_arguments(caller)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
