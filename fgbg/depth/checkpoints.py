"""transformers depth-estimation checkpoints (Depth Anything V2 and any
other that `AutoModelForDepthEstimation` loads): where --depth_model's
checkpoint is, what it holds, and its local copy.

A checkpoint is a folder, local or gs://, holding `config.json`,
`preprocessor_config.json` and its weights, or a Hugging Face Hub id
(`depth-anything/Depth-Anything-V2-Small-hf`) resolved through the Hub's
cache, which downloads only where the network allows and never with
HF_HUB_OFFLINE=1. Its weights are safetensors, which the transformers
runtime loads, or an ONNX export in the Hub's layout (`onnx/model.onnx`,
`onnx/model_quantized.onnx`, ...), which the ONNX runtime runs
(fgbg/depth/onnx_runtime.py); a checkpoint with only an export runs on
ONNX Runtime unasked. The launcher describes it once (`describe`: the
checks that need no model, what its maps hold, its weights' sha256, its
licence); each worker copies it (`local_folder`) and loads only weights with
that digest, so the records name what ran.

No PyTorch and no transformers: the launcher imports this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import re
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

from fgbg.depth import maps, models
from fgbg.depth.models import ModelLoadError
from fgbg.storage import copy_to_local, is_local, list_folder, read_file

CONFIG = "config.json"
PROCESSOR = "preprocessor_config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
MODEL_CARD = "README.md"
# Weights pickled by torch.save: loading them can run arbitrary code.
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# What a Hub id looks like (owner/name); a path with a Keras model's suffix
# is a model file, not a Hub id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_KERAS_SUFFIXES = (".h5", ".keras", ".pb")
# The licence a Hub model card states, in its YAML front matter.
_CARD_LICENCE = re.compile(r"^license:\s*['\"]?([^'\"\s]+)", re.MULTILINE)
# Licences that forbid commercial use: README and the report say so.
NON_COMMERCIAL = ("cc-by-nc",)

SMALL = "depth-anything/Depth-Anything-V2-Small-hf"
# An ONNX export in the Hub's layout (transformers.js reads it): the file
# --depth_onnx_file names by default, and the precisions its siblings' names
# say (model_fp16.onnx, model_quantized.onnx: onnxruntime's quantize_dynamic).
ONNX_WEIGHTS = "onnx/model.onnx"
_ONNX_NAME = re.compile(r"^model(?:_(\w+))?\.onnx$")
_ONNX_PRECISIONS = {
    None: models.FP32,
    "fp16": models.FP16,
    "quantized": models.INT8,
    "int8": models.INT8,
    "uint8": models.INT8,
}
# Weights kept beside a large export (ONNX's external data), by the names
# exporters give them.
_ONNX_DATA_SUFFIXES = ("_data", ".data")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A transformers depth checkpoint as the launcher found it.

    source: --depth_model as given (a Hub id or a folder).
    config, processor: the checkpoint's config.json and
        preprocessor_config.json, parsed.
    weights_sha256: of the weights it runs (`weights_digest`).
    licence: as its model card states it, or None.
    onnx_file: the ONNX export it runs (a path inside it), on the ONNX
        runtime; None for its safetensors, on the transformers runtime.
    """

    source: str
    config: Dict
    processor: Dict
    weights_sha256: str
    licence: Optional[str]
    onnx_file: Optional[str] = None

    @property
    def runtime(self) -> str:
        """What runs it: models.ONNX for an ONNX export, else models.TORCH."""
        return models.ONNX if self.onnx_file else models.TORCH

    @property
    def onnx_precision(self) -> str:
        """The arithmetic its ONNX export holds, as the Hub's file names say
        (model.onnx: fp32; model_quantized.onnx: int8; ...), or the name's
        own suffix; "as exported" for a name outside that convention."""
        found = _ONNX_NAME.match(posixpath.basename(self.onnx_file or ""))
        if not found:
            return "as exported"
        return _ONNX_PRECISIONS.get(found.group(1), found.group(1))

    @property
    def content(self) -> maps.MapContent:
        """What its maps hold. Metric checkpoints (Depth Anything V2's
        `depth_estimation_type: metric`) predict metres up to `max_depth`;
        every other one is taken as relative disparity, as Depth Anything's
        and DPT's relative heads predict."""
        if self.config.get("depth_estimation_type") == "metric":
            max_metres = float(self.config["max_depth"])
            return maps.MapContent(
                quantity=maps.DEPTH,
                metric=True,
                max_metres=max_metres,
                stored_per_metre=maps.stored_per_metre(max_metres),
            )
        return maps.MapContent(quantity=maps.DISPARITY, metric=False)

    @property
    def patch_size(self) -> int:
        """The multiple every input side must be (the ViT's patch)."""
        backbone = self.config.get("backbone_config") or {}
        return int(self.config.get("patch_size") or backbone.get("patch_size") or 1)

    @property
    def default_input_size(self) -> int:
        """The processor's own input side (518 for Depth Anything V2)."""
        size = self.processor.get("size") or {}
        return int(size.get("height") or size.get("shortest_edge"))

    @property
    def non_commercial(self) -> bool:
        return any((self.licence or "").lower().startswith(n) for n in NON_COMMERCIAL)

    def record(self, input_size: Tuple[int, int]) -> Dict[str, str]:
        """What a pair's record says of the model its depth came from."""
        record = {
            "model": self.source,
            "weights_sha256": self.weights_sha256,
            "holds": self.content.description,
            "input_size": f"{input_size[0]}x{input_size[1]}",
        }
        if self.onnx_file:
            record["onnx_file"] = self.onnx_file
        return record


def is_checkpoint(model: str) -> bool:
    """Whether --depth_model names a transformers checkpoint: a folder with a
    config.json, or (not being a local path) a Hub id."""
    if model in (models.PUBLISHED, models.UNTRAINED, models.NONE):
        return False
    if FileSystems.exists(FileSystems.join(model.rstrip("/"), CONFIG)):
        return True
    return is_hub_id(model) and not model.endswith(_KERAS_SUFFIXES)


def is_hub_id(model: str) -> bool:
    """Whether `model` reads as a Hub id (owner/name) and is no local path."""
    return is_local(model) and not os.path.exists(model) and bool(_HUB_ID.match(model))


def missing_message(model: str, reason: str) -> str:
    """The error for a checkpoint that is not there, with the one command
    that fetches it."""
    fetch = (
        f"hf download {model}" if is_hub_id(model) else f"hf download {SMALL} --local-dir {model}"
    )
    return (
        f"--depth_model {model}: no transformers checkpoint there ({reason}). "
        f"Fetch it where the network allows with: {fetch}"
    )


def hub_patterns(onnx_file: Optional[str] = None) -> List[str]:
    """The files of a Hub checkpoint a build reads: its configuration, card
    and safetensors weights, or the ONNX export `onnx_file` (and its
    external data, where it has some)."""
    if onnx_file:
        weights = [onnx_file, *(onnx_file + suffix for suffix in _ONNX_DATA_SUFFIXES)]
    else:
        weights = ["*.safetensors", WEIGHTS_INDEX]
    return [CONFIG, PROCESSOR, MODEL_CARD, *weights]


def hub_folder(model: str, onnx_file: Optional[str] = None) -> str:
    """The Hub id's snapshot folder in the Hugging Face cache, with the
    files `hub_patterns` names downloaded first where the network allows
    (HF_HUB_OFFLINE=1: the cache only)."""
    import huggingface_hub

    try:
        return huggingface_hub.snapshot_download(model, allow_patterns=hub_patterns(onnx_file))
    except Exception as error:  # the Hub client's many ways of not finding it
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(
            missing_message(model, f"not in the Hugging Face cache: {reason}")
        ) from error


def folder_of(model: str, onnx_file: Optional[str] = None) -> str:
    """The folder a checkpoint's files are read from: the Hub id's cache
    snapshot (with `onnx_file`'s export, or its safetensors weights), or the
    folder itself (local or gs://)."""
    return hub_folder(model, onnx_file) if is_hub_id(model) else model.rstrip("/")


def weight_files(folder: str, names: List[str]) -> List[str]:
    """The checkpoint's safetensors weights, or ModelLoadError saying why
    not (none at all, or only pickled weights, which are refused)."""
    if WEIGHTS_INDEX in names:
        index = json.loads(read_file(FileSystems.join(folder, WEIGHTS_INDEX)))
        return sorted(set(index["weight_map"].values()))
    if WEIGHTS in names:
        return [WEIGHTS]
    pickled = [name for name in PICKLED_WEIGHTS if name in names]
    if pickled:
        raise ModelLoadError(
            f"{folder}: holds only pickled PyTorch weights ({pickled[0]}), which can run "
            "code when loaded; fgbg loads safetensors only (model.safetensors). Convert "
            "them, or fetch the checkpoint's safetensors files"
        )
    raise ModelLoadError(
        f"{folder}: no {WEIGHTS} (the checkpoint's weights) and no ONNX export ({ONNX_WEIGHTS})"
    )


def has_torch_weights(names: List[str]) -> bool:
    """Whether a checkpoint's files include weights for the transformers
    runtime (safetensors, or the pickled ones it refuses with the reason)."""
    return any(name in names for name in (WEIGHTS, WEIGHTS_INDEX, *PICKLED_WEIGHTS))


def onnx_files(folder: str, names: List[str], onnx_file: str) -> List[str]:
    """The ONNX export `onnx_file` and its external data files, or
    ModelLoadError naming the missing file."""
    if onnx_file not in names:
        raise ModelLoadError(f"{folder}: no {onnx_file} (the ONNX export to run)")
    return [onnx_file, *(onnx_file + s for s in _ONNX_DATA_SUFFIXES if onnx_file + s in names)]


def _files_of(model: str, runtime: Optional[str], onnx_file: str) -> Tuple[str, List[str]]:
    """A checkpoint's folder and the files in it, with what `runtime` runs
    fetched from the Hub: the export `onnx_file` when asked for, or when no
    runtime is and the Hub's snapshot has no transformers weights."""
    folder = folder_of(model, onnx_file if runtime == models.ONNX else None)
    names = list_folder(folder)
    if runtime is None and is_hub_id(model) and not has_torch_weights(names):
        folder = folder_of(model, onnx_file)
        names = list_folder(folder)
    return folder, names


def weights_digest(folder: str, files: List[str]) -> str:
    """sha256 of the weights file, or of 'name digest' lines for a sharded
    checkpoint, read through Beam's FileSystems (local or gs://)."""
    digests = []
    for name in files:
        digest = hashlib.sha256()
        with FileSystems.open(FileSystems.join(folder, name)) as stream:
            for chunk in iter(lambda: stream.read(16 << 20), b""):
                digest.update(chunk)
        digests.append(digest.hexdigest())
    if len(digests) == 1:
        return digests[0]
    lines = "".join(f"{name} {d}\n" for name, d in zip(files, digests))
    return hashlib.sha256(lines.encode()).hexdigest()


def _read_json(folder: str, name: str) -> Dict:
    path = FileSystems.join(folder, name)
    try:
        return json.loads(read_file(path))
    except ValueError as error:
        raise ModelLoadError(f"{path}: not valid JSON ({error})") from error


def describe(
    model: str, runtime: Optional[str] = None, onnx_file: str = ONNX_WEIGHTS
) -> Checkpoint:
    """The checkpoint --depth_model names, checked as far as it can be
    without loading it; ModelLoadError naming the file and the reason.
    `runtime`: models.ONNX runs its export `onnx_file`, models.TORCH its
    safetensors weights, None whichever it has (the safetensors first)."""
    folder, names = _files_of(model, runtime, onnx_file)
    for needed in (CONFIG, PROCESSOR):
        if needed not in names:
            raise ModelLoadError(missing_message(model, f"no {needed} in {folder}"))
    exported = runtime == models.ONNX or (
        runtime is None and not has_torch_weights(names) and onnx_file in names
    )
    files = onnx_files(folder, names, onnx_file) if exported else weight_files(folder, names)
    card = read_file(FileSystems.join(folder, MODEL_CARD)) if MODEL_CARD in names else b""
    licence = _CARD_LICENCE.search(card.decode("utf-8", "replace"))
    return Checkpoint(
        source=model,
        config=_read_json(folder, CONFIG),
        processor=_read_json(folder, PROCESSOR),
        weights_sha256=weights_digest(folder, files),
        licence=licence.group(1) if licence else None,
        onnx_file=onnx_file if exported else None,
    )


@contextlib.contextmanager
def local_folder(checkpoint: Checkpoint) -> Iterator[str]:
    """A local folder holding the checkpoint, with the weights the launcher
    described (ModelLoadError when they changed since): the folder itself,
    the Hub cache's snapshot, or a temporary copy of a gs:// folder."""
    folder = folder_of(checkpoint.source, checkpoint.onnx_file)
    names = list_folder(folder)
    if checkpoint.onnx_file:
        files = onnx_files(folder, names, checkpoint.onnx_file)
    else:
        files = weight_files(folder, names)
    with contextlib.ExitStack() as stack:
        if not is_local(folder):
            local = stack.enter_context(tempfile.TemporaryDirectory(prefix="fgbg-checkpoint-"))
            for name in (CONFIG, PROCESSOR, *files):
                copy_to_local(FileSystems.join(folder, name), posixpath.join(local, name))
            folder = local
        digest = weights_digest(folder, files)
        if digest != checkpoint.weights_sha256:
            raise ModelLoadError(
                f"{checkpoint.source}: its weights changed since the build started "
                f"(sha256 {digest}, the launcher read {checkpoint.weights_sha256})"
            )
        yield folder
