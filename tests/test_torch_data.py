"""The PyTorch readers (fgbg/torch_data.py, the `torch` extra): what they
yield, that they normalise with the normalisation splits' numbers, that a
model trains on them through a DataLoader, gs:// through the emulator, and
label_data.csv alone. Skipped where torch is not installed (run_local.sh's
virtualenv); run_tests.sh installs it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from fgbg import layout  # noqa: E402
from fgbg.torch_data import (  # noqa: E402
    LabelCsvDataset,
    SplitDataset,
    SplitMoments,
    pooled_standardization,
)
from pipeline import build  # noqa: E402
from tests.helpers import (  # noqa: E402
    emulated_bucket,
    fresh_interpreter_json,
    make_inputs,
    small_build_args,
    upload_tree,
)

DEPTH = ("--depth_model=untrained", "--depth_input_size=64x64")
BUCKET = "fgbg-torch"

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A tiny build with 'minmax' depth; val 0.25 of 3 backgrounds puts one
    in val and two in train, so train differs from the whole."""
    root = tmp_path_factory.mktemp("torch")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=2)
    output = root / "out"
    build.run(small_build_args(inputs, output, *DEPTH, "--val_fraction=0.25", "--test_fraction=0"))
    return output


@pytest.fixture(scope="module")
def metric_dataset(tmp_path_factory) -> Path:
    """A build with 'metric' depth, read as one built before splits were
    exact, whose 3 backgrounds could all hash into val and test: its
    stats.json says those two set the normalisation (no build has an empty
    train split now: --val_fraction and --test_fraction must leave one)."""
    root = tmp_path_factory.mktemp("torch_metric")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=1)
    output = root / "out"
    build.run(
        small_build_args(
            inputs,
            output,
            *DEPTH,
            "--depth_encoding=metric",
            "--val_fraction=0.34",
            "--test_fraction=0.33",
        )
    )
    stats_path = output / layout.STATS_JSON
    stats = json.loads(stats_path.read_text())
    stats["notes"]["normalisation_splits"] = ["test", "val"]
    stats_path.write_text(json.dumps(stats))
    return output


def sample_rows(root: Path, split: str) -> List[Dict[str, str]]:
    with open(root / layout.SAMPLES_CSV, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def label_rows(path: Path) -> List[List[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=";"))


def stored(path: Path) -> np.ndarray:
    """An image's stored values as Pillow decodes them, (H, W, C)."""
    pixels = np.asarray(Image.open(path))
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def hwc(tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0)


def stacked(dataset, batch_size: int = 16) -> Dict[str, np.ndarray]:
    """Every item of a dataset, through a DataLoader, one array per name."""
    parts: Dict[str, List[np.ndarray]] = {}
    for inputs, targets in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        for name, tensor in {**inputs, **targets}.items():
            parts.setdefault(name, []).append(tensor.numpy())
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def test_importing_the_reader_imports_neither_beam_nor_tensorflow():
    probe = (
        "import json, sys\n"
        "import fgbg.torch_data\n"
        "print(json.dumps([any(m.startswith('apache_beam') for m in sys.modules),\n"
        "                  'tensorflow' in sys.modules]))\n"
    )
    assert fresh_interpreter_json(probe) == [False, False]


def test_items_are_model_ready_chw_tensors_of_the_files_on_disk(dataset):
    train = SplitDataset(str(dataset), "train")
    rows = sample_rows(dataset, "train")
    assert len(train) == len(rows) == 32  # 2 train backgrounds x 2 foregrounds x 8
    inputs, targets = train[3]
    shapes = {name: (tuple(t.shape), t.dtype) for name, t in {**inputs, **targets}.items()}
    assert shapes == {
        "background": ((3, 64, 64), torch.float32),
        "overlay": ((3, 64, 64), torch.float32),
        "mask": ((1, 64, 64), torch.float32),
        "depth": ((1, 64, 64), torch.float32),
    }
    for kind in ("background", "overlay"):
        numbers = train.standardizations[kind]
        restored = hwc(inputs[kind]) * np.array(numbers.std) + np.array(numbers.mean)
        on_disk = stored(dataset / rows[3][f"{'bg' if kind == 'background' else kind}_path"])
        np.testing.assert_allclose(restored, on_disk, atol=1e-3)
    mask = stored(dataset / rows[3]["mask_path"])
    assert np.array_equal(hwc(targets["mask"]), (mask > 127).astype(np.float32))
    assert 0 < targets["mask"].mean() < 1
    depth = stored(dataset / rows[3]["depth_path"])
    np.testing.assert_allclose(hwc(targets["depth"]), depth / 255.0, rtol=1e-6)


def test_every_split_is_normalised_with_the_train_splits_numbers(dataset):
    stats = json.loads((dataset / layout.STATS_JSON).read_text())
    assert stats["notes"]["normalisation_splits"] == ["train"]
    train, val = SplitDataset(str(dataset), "train"), SplitDataset(str(dataset), "val")
    for kind in ("background", "overlay"):
        expected = stats["splits"]["train"][kind]
        assert not np.allclose(expected["mean"], stats[kind]["mean"])
        for split in (train, val):
            assert split.standardizations[kind].mean == tuple(expected["mean"])
            assert split.standardizations[kind].std == tuple(expected["std"])
    every = stacked(train)
    for kind in ("background", "overlay"):
        np.testing.assert_allclose(every[kind].mean(axis=(0, 2, 3)), 0, atol=1e-4)
        np.testing.assert_allclose(every[kind].std(axis=(0, 2, 3)), 1, rtol=1e-4)
    assert not np.allclose(stacked(val)["overlay"].mean(axis=(0, 2, 3)), 0, atol=1e-2)


def test_pooled_numbers_are_those_of_the_splits_pixels_together():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, size=(n, 3)).astype(np.float64) for n in (500, 1500, 40)]
    pooled = pooled_standardization(
        [SplitMoments(len(p), p.mean(axis=0), p.std(axis=0)) for p in parts]
    )
    together = np.concatenate(parts)
    np.testing.assert_allclose(pooled.mean, together.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pooled.std, together.std(axis=0), rtol=1e-10)


def test_a_dataset_normalised_without_train_pools_its_splits_and_metric_depth(metric_dataset):
    stats = json.loads((metric_dataset / layout.STATS_JSON).read_text())
    assert stats["notes"]["normalisation_splits"] == ["test", "val"]
    splits = {name: SplitDataset(str(metric_dataset), name) for name in ("test", "val")}
    every = [stacked(split) for split in splits.values()]
    for kind in ("background", "overlay"):
        pixels = np.concatenate([part[kind] for part in every])
        np.testing.assert_allclose(pixels.mean(axis=(0, 2, 3)), 0, atol=1e-4)
        np.testing.assert_allclose(pixels.std(axis=(0, 2, 3)), 1, rtol=1e-4)
    scale = stats["notes"]["depth_scale"]
    row = sample_rows(metric_dataset, "val")[0]
    depth_file = stored(metric_dataset / row["depth_path"])
    assert depth_file.dtype == np.uint16 and depth_file.max() > 255
    _, targets = splits["val"][0]
    np.testing.assert_allclose(hwc(targets["depth"]), depth_file / scale, rtol=1e-6)

    labels = LabelCsvDataset(str(metric_dataset / layout.LABEL_CSV))
    first_row = label_rows(metric_dataset / layout.LABEL_CSV)[0]
    first = labels[0]
    assert first["depth"].dtype == torch.int32
    on_disk = stored(metric_dataset.parent / first_row[3])
    assert np.array_equal(hwc(first["depth"]), on_disk.astype(np.int32))


class TwoHeads(torch.nn.Module):
    """A small encoder-decoder: mask logits and depth from both inputs."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(6, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Upsample(scale_factor=2),
            torch.nn.Conv2d(16, 2, 3, padding=1),
        )

    def forward(self, background, overlay):
        out = self.body(torch.cat([background, overlay], dim=1))
        return out[:, :1], torch.sigmoid(out[:, 1:])


def test_a_small_model_trains_through_a_dataloader(dataset):
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        SplitDataset(str(dataset), "train"),
        batch_size=8,
        shuffle=True,
        num_workers=2,
        generator=torch.Generator().manual_seed(1),
    )
    model = TwoHeads()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):  # 4 batches of 8 each: 16 steps
        for inputs, targets in loader:
            mask, depth = model(inputs["background"], inputs["overlay"])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                mask, targets["mask"]
            ) + torch.nn.functional.l1_loss(depth, targets["depth"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) * 0.8, losses
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.gcs
def test_gs_datasets_read_as_local_ones(dataset, monkeypatch):
    with emulated_bucket(monkeypatch, BUCKET) as bucket:
        # Under the same folder name: label_data.csv's paths start with it.
        upload_tree(bucket, dataset, f"datasets/{dataset.name}")
        remote = f"gs://{BUCKET}/datasets/{dataset.name}"
        local_train = stacked(SplitDataset(str(dataset), "train"))
        remote_train = stacked(SplitDataset(remote, "train"))
        assert local_train.keys() == remote_train.keys()
        for name, array in local_train.items():
            assert np.array_equal(array, remote_train[name]), name
        labels = LabelCsvDataset(f"{remote}/{layout.LABEL_CSV}")
        assert labels.base_dir == f"gs://{BUCKET}/datasets"
        local_labels = LabelCsvDataset(str(dataset / layout.LABEL_CSV))
        assert len(labels) == len(local_labels) == 48
        for name, tensor in local_labels[47].items():
            assert torch.equal(labels[47][name], tensor), name


def test_label_csv_reader_reads_the_original_format(dataset):
    labels = LabelCsvDataset(str(dataset / layout.LABEL_CSV))
    rows = label_rows(dataset / layout.LABEL_CSV)
    assert len(labels) == len(rows) == 48
    assert labels.base_dir == str(dataset.parent)
    item = labels[5]
    assert {name: (tuple(t.shape), t.dtype) for name, t in item.items()} == {
        "background": ((3, 64, 64), torch.uint8),
        "overlay": ((3, 64, 64), torch.uint8),
        "mask": ((1, 64, 64), torch.uint8),
        "depth": ((1, 64, 64), torch.uint8),
    }
    for name, path in zip(("background", "overlay", "mask", "depth"), rows[5]):
        assert np.array_equal(hwc(item[name]), stored(dataset.parent / path)), name
    # The original kept label_data.csv beside the dataset's folder.
    beside = dataset.parent / layout.LABEL_CSV
    shutil.copyfile(dataset / layout.LABEL_CSV, beside)
    moved = LabelCsvDataset(str(beside))
    assert moved.base_dir == str(dataset.parent)
    assert torch.equal(moved[5]["overlay"], item["overlay"])
