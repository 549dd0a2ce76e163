"""Reading a built dataset for PyTorch (the `torch` extra: `pip install -e .[torch]`).

`SplitDataset(root, split)` is the PyTorch counterpart of
fgbg.training_data.training_dataset: a map-style `torch.utils.data.Dataset`
of `(inputs, targets)` dict pairs, model-ready, for a `DataLoader`:

    from torch.utils.data import DataLoader
    from fgbg.torch_data import SplitDataset

    train = DataLoader(SplitDataset("demo/output", "train"), batch_size=16, shuffle=True)
    inputs, targets = next(iter(train))
    inputs["overlay"]    # float32 (16, 3, 224, 224), standardised per channel
    targets["mask"]      # float32 (16, 1, 224, 224), 0 or 1

It computes what the build's tensorflow-transform graph computes
(transforms/normalization.py) without TensorFlow: background and overlay
standardised per channel with the exact mean and std of the normalisation
splits' pixels (stats.json: the train split, or every split of a build that
has none), the mask as 0/1 (stored value > 127), depth as the stored 0..255 /
255 ('minmax') or metres, stored / stats.json's depth_scale ('metric').

`LabelCsvDataset(csv)` reads the original format, `label_data.csv`, alone,
as fgbg.training_data.label_csv_dataset does for tf.data.

Images are decoded with Pillow (which the build used to measure stats.json,
and whose JPEG decoding TensorFlow's INTEGER_ACCURATE matches) and read
through Beam's FileSystems (fgbg.storage), so a root may be local or gs://.
Importing this module imports neither Beam nor TensorFlow: fgbg.storage and
fgbg.documents, which import Beam, are imported when a dataset is made.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from fgbg import layout
from fgbg.images import CHANNELS

if TYPE_CHECKING:
    from fgbg.documents import Stats

INPUT_KINDS = ("background", "overlay")
LABEL_COLUMNS = ("background", "overlay", "mask", "depth")
SAMPLE_PATH_COLUMNS = {
    "background": "bg_path",
    "overlay": "overlay_path",
    "mask": "mask_path",
    "depth": "depth_path",
}
MASK_THRESHOLD = 127  # as the transform graph: JPEG masks (--mask_format jpg) are not 0/255
MINMAX_DEPTH_SCALE = 255.0

Tensors = Dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Standardization:
    """Per-channel mean and population std, in stored values (0..255)."""

    mean: Tuple[float, ...]
    std: Tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SplitMoments:
    """What stats.json says about one image kind in one split."""

    pixels: int
    mean: Sequence[float]
    std: Sequence[float]


def pooled_standardization(parts: Sequence[SplitMoments]) -> Standardization:
    """The mean and std of the union of several splits' pixels, from each
    split's count, mean and std, as the transform graph sums the moments of
    every normalisation split. One split is taken as it is."""
    if len(parts) == 1:
        return Standardization(tuple(parts[0].mean), tuple(parts[0].std))
    total = sum(part.pixels for part in parts)
    means, stds = [], []
    for channel in range(len(parts[0].mean)):
        mean = sum(part.pixels * part.mean[channel] for part in parts) / total
        square = sum(
            part.pixels * (part.std[channel] ** 2 + part.mean[channel] ** 2) for part in parts
        )
        means.append(mean)
        stds.append(math.sqrt(max(square / total - mean * mean, 0.0)))
    return Standardization(tuple(means), tuple(stds))


def normalization_numbers(stats: Stats) -> Dict[str, Standardization]:
    """Background's and overlay's numbers from stats.json's normalisation
    splits; datasets built before splits normalised with the whole dataset."""
    splits = stats.notes.normalization_splits
    chosen = [stats.splits[split] for split in splits] if splits else [stats.kinds]
    return {
        kind: pooled_standardization(
            [
                SplitMoments(kinds[kind].pixels, kinds[kind].mean, kinds[kind].std)
                for kinds in chosen
            ]
        )
        for kind in INPUT_KINDS
    }


def pack_paths(paths: Iterable[str]) -> np.ndarray:
    """Paths as one numpy array of UTF-8 bytes. DataLoader workers are forked,
    and reading a Python list of strings touches each string's refcount,
    copying the pages that hold it into every worker (pytorch/pytorch#13246);
    a numpy array is one object, so hundreds of thousands of paths stay shared."""
    return np.array([path.encode("utf-8") for path in paths], dtype=np.bytes_)


def unpack_path(paths: np.ndarray, index: int) -> str:
    return bytes(paths[index]).decode("utf-8")


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """An encoded image as an (H, W, C) array of its stored values, decoded
    by Pillow: uint8, or uint16 for a 16-bit PNG (metric depth). An image
    stored with other channels than its kind's is converted, as TensorFlow's
    decoders do when given `channels`."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode.startswith("I;16"):
            pixels = np.array(image, dtype=np.uint16)
        else:
            pixels = np.array(image.convert("RGB" if channels == 3 else "L"))
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (C, H, W), contiguous, as PyTorch's convolutions expect."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def standardize(pixels: np.ndarray, numbers: Standardization) -> torch.Tensor:
    """(pixel - channel mean) / channel std as float32 (C, H, W); computed
    in float64 and then narrowed, as the transform graph does."""
    mean = np.asarray(numbers.mean, dtype=np.float64)
    std = np.asarray(numbers.std, dtype=np.float64)
    return torch.from_numpy(channels_first(((pixels - mean) / std).astype(np.float32)))


def mask_target(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(channels_first((pixels > MASK_THRESHOLD).astype(np.float32)))


def depth_target(pixels: np.ndarray, scale: float) -> torch.Tensor:
    """Stored depth / scale: 255 for 'minmax' maps (so 0..1), the build's
    depth_scale for 'metric' ones (so metres)."""
    return torch.from_numpy(channels_first((pixels / scale).astype(np.float32)))


def depth_scale(stats: Stats, encoding: str) -> Optional[float]:
    """What stored depth values are divided by for this build's encoding:
    255 for 'minmax' maps, the build's depth_scale for 'metric' ones; None
    for a build without depth."""
    if encoding == "none":
        return None
    return MINMAX_DEPTH_SCALE if encoding == "minmax" else float(stats.notes.depth_scale)


@contextlib.contextmanager
def csv_text(path: str) -> Iterator[io.TextIOBase]:
    """A CSV file's text, local or gs://, read as it is consumed."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        yield io.TextIOWrapper(handle, encoding="utf-8", newline="")


def read_split_paths(root: str, split: str) -> Dict[str, List[str]]:
    """Each image kind's paths (relative to the root) for the split's
    samples, in samples.csv's order, read row by row."""
    columns: Dict[str, List[str]] = {kind: [] for kind in SAMPLE_PATH_COLUMNS}
    splits = set()
    with csv_text(layout.resolve(root, layout.SAMPLES_CSV)) as text:
        for row in csv.DictReader(text):
            splits.add(row["split"])
            if row["split"] == split:
                for kind, column in SAMPLE_PATH_COLUMNS.items():
                    columns[kind].append(row[column])
    if not columns["overlay"]:
        raise ValueError(f"{root} has no samples in split {split!r}; its splits: {sorted(splits)}")
    return columns


class SplitDataset(torch.utils.data.Dataset):
    """One split of a built dataset, local or gs://, as `(inputs, targets)`.

    inputs: background, overlay, float32 (3, H, W), standardised with
    `standardizations` (the normalisation splits' numbers, whatever `split`
    is read). targets: mask, float32 (1, H, W) in {0, 1}, and, when the
    build made depth, depth, float32 (1, H, W) ('minmax': 0..1; 'metric':
    metres). Samples are in samples.csv's order; shuffle in the DataLoader.
    """

    def __init__(self, root: str, split: str):
        from fgbg.documents import read_manifest, read_stats

        stats = read_stats(root)
        self.root = root
        self.split = split
        self.standardizations = normalization_numbers(stats)
        self.depth_encoding = read_manifest(root).depth_encoding
        self._depth_scale = depth_scale(stats, self.depth_encoding)
        kinds = (*INPUT_KINDS, "mask", *(("depth",) if self._depth_scale is not None else ()))
        columns = read_split_paths(root, split)
        self._paths = {kind: pack_paths(columns[kind]) for kind in kinds}

    def __len__(self) -> int:
        return len(self._paths["overlay"])

    def __getitem__(self, index: int) -> Tuple[Tensors, Tensors]:
        pixels = {kind: self._read(kind, index) for kind in self._paths}
        inputs = {
            kind: standardize(pixels[kind], self.standardizations[kind]) for kind in INPUT_KINDS
        }
        targets = {"mask": mask_target(pixels["mask"])}
        if self._depth_scale is not None:
            targets["depth"] = depth_target(pixels["depth"], self._depth_scale)
        return inputs, targets

    def _read(self, kind: str, index: int) -> np.ndarray:
        from fgbg.storage import read_file

        path = layout.resolve(self.root, unpack_path(self._paths[kind], index))
        return decode_image(read_file(path), CHANNELS[kind])


def read_label_columns(csv_path: str) -> Dict[str, List[str]]:
    """label_data.csv's paths by kind (bg;overlay;mask;depth, every field
    quoted), read row by row; no depth when any row lacks it."""
    columns: Dict[str, List[str]] = {kind: [] for kind in LABEL_COLUMNS}
    with csv_text(csv_path) as text:
        for number, row in enumerate(csv.reader(text, delimiter=";"), 1):
            if row and len(row) < 3:
                raise ValueError(f"{csv_path}, row {number}: {len(row)} fields, not 3 or 4")
            for kind, path in zip(LABEL_COLUMNS, row):
                columns[kind].append(path)
    if not columns["overlay"]:
        raise ValueError(f"{csv_path} has no rows")
    if len(columns["depth"]) < len(columns["overlay"]) or not all(columns["depth"]):
        del columns["depth"]
    return columns


class LabelCsvDataset(torch.utils.data.Dataset):
    """Decoded images from a label_data.csv alone, for code written against
    the original dataset: dicts of background, overlay (uint8 (3, H, W)),
    mask (uint8 (1, H, W), 0/255) and, when the CSV has it, depth (uint8
    (1, H, W) for 'minmax' JPEGs; a 'metric' build's 16-bit PNG keeps its
    full range as int32, which PyTorch handles throughout, unlike uint16).
    `base_dir` overrides what the CSV's paths are relative to."""

    def __init__(self, csv_path: str, base_dir: Optional[str] = None):
        columns = read_label_columns(csv_path)
        first = columns["background"][0]
        self.base_dir = base_dir if base_dir is not None else layout.label_base_dir(csv_path, first)
        self._paths = {kind: pack_paths(paths) for kind, paths in columns.items()}

    def __len__(self) -> int:
        return len(self._paths["overlay"])

    def __getitem__(self, index: int) -> Tensors:
        from fgbg.storage import read_file

        images = {}
        for kind, paths in self._paths.items():
            data = read_file(layout.resolve(self.base_dir, unpack_path(paths, index)))
            pixels = decode_image(data, CHANNELS[kind])
            if pixels.dtype == np.uint16:
                pixels = pixels.astype(np.int32)
            images[kind] = torch.from_numpy(channels_first(pixels))
        return images
