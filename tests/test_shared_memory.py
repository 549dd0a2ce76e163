"""The shared model's transport (fgbg/depth/shared_memory.py): batches and
maps cross between processes through shared memory, whole, in order, and
leave no block behind; in a pipeline, a shared model's depth has the same
bytes as a model per process."""

from __future__ import annotations

import multiprocessing
from multiprocessing.managers import BaseManager
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from bench.workload import as_composites
from fgbg.depth import shared_memory
from fgbg.depth.config import DepthConfig
from tests.depth_fixtures import tiny_depth_config
from transforms.depth import EstimateDepth

SHM = Path("/dev/shm")


class PixelModel:
    """A model whose maps depend on each image's pixels, so a batch mixed up
    or cut short on the way shows in the maps; the depth runtime's contract."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        return 1.0 + images[:, ::2, ::2, :1].astype(np.float32) * 99.0

    def predict_composites(self, composites: np.ndarray, input_size) -> np.ndarray:
        return 1.0 + composites[:, ::2, ::2, :1].astype(np.float32) / 255.0 * 99.0


def load_pixel_model(config: DepthConfig) -> PixelModel:
    return PixelModel()


class _Manager(BaseManager):
    pass


_Manager.register("Server", shared_memory.SharedMemoryServer)


def blocks() -> set:
    return {path.name for path in SHM.iterdir() if path.name.startswith("psm_")}


def batch(seed: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 48, 3), dtype=np.uint8)


def test_a_batch_crosses_within_one_process_and_leaves_no_block():
    before = blocks()
    server = shared_memory.SharedMemoryServer(PixelModel())
    images = batch(0)
    maps = shared_memory.predict(server, images, (48, 32))
    np.testing.assert_array_equal(maps, PixelModel().predict_composites(images, (48, 32)))
    floats = images.astype(np.float32) / 255.0
    np.testing.assert_array_equal(
        shared_memory.predict(server, floats, None), PixelModel().predict(floats)
    )
    assert blocks() == before


@pytest.mark.processes
def test_batches_cross_to_a_model_in_another_process_and_leave_no_block():
    before = blocks()
    manager = _Manager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    try:
        server = manager.Server(PixelModel())
        for seed in range(4):
            images = batch(seed, count=seed + 1)
            maps = shared_memory.predict(server, images, (48, 32))
            np.testing.assert_array_equal(maps, PixelModel().predict_composites(images, (48, 32)))
    finally:
        manager.shutdown()
    assert blocks() == before


def test_an_error_in_the_model_reaches_the_caller_and_leaves_no_block():
    class Failing:
        def predict_composites(self, composites, input_size):
            raise ValueError("depth model returned shape (1,) for a batch of 3")

    before = blocks()
    server = shared_memory.SharedMemoryServer(Failing())
    with pytest.raises(ValueError, match="returned shape"):
        shared_memory.predict(server, batch(1), (48, 32))
    assert blocks() == before


def depth_config(share_model: bool) -> DepthConfig:
    return tiny_depth_config(
        batch_size=4,
        min_batch_size=1,
        target_batch_duration_s=1.0,
        input_size=(48, 32),
        encoding="minmax",
        out_size=(32, 32),
        runtime="torch",
        device="cuda",
        resize_on_device=True,
        share_model=share_model,
        loader=load_pixel_model,
    )


def composites(count: int):
    return as_composites(list(batch(7, count)), first_number=1)


def reference_depth() -> list:
    """(sample number, encoded depth) with the model called directly."""
    from fgbg.depth import maps
    from transforms.depth import encode_depth

    config = depth_config(False)
    made = []
    for composite in composites(10):
        raw = PixelModel().predict_composites(composite.overlay[None], config.input_size)
        encoded = encode_depth(maps.postprocess(raw)[0, ..., 0], config)[0]
        made.append((composite.placement.number, encoded))
    return made


@pytest.mark.e2e
@pytest.mark.parametrize("share_model", [False, True], ids=["model_per_process", "shared_model"])
def test_a_shared_model_gives_each_sample_its_own_depth_bytes(share_model):
    """Two worker processes; with share_model one holds the model and the
    other hands it batches through shared memory."""
    before = blocks()
    options = PipelineOptions(
        [
            "--runner=FnApiRunner",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    with beam.Pipeline(options=options) as p:
        depth = (
            p
            | beam.Create(composites(10))
            | EstimateDepth(depth_config(share_model))
            | beam.Map(lambda c: (c.placement.number, c.depth))
        )
        assert_that(depth, equal_to(reference_depth()))
    assert blocks() == before
