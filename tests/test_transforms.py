"""Stage transforms on TestPipeline with assert_that."""

import shutil

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.helpers import compose_inputs, make_inputs
from transforms.compositing import EncodingConfig
from transforms.inputs import InputConfig, ReadBackgrounds, ReadForegrounds
from transforms.placements import PlacementConfig

CONFIG = InputConfig(
    size=64,
    max_input_pixels=1_000_000,
    min_background_side=16,
    mask_threshold=0,
)


def test_read_foregrounds_pairs_masks_and_reports_rejects(tmp_path):
    inputs = make_inputs(tmp_path, backgrounds=1, foregrounds=3, masks=1)
    (tmp_path / "fg" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "fg_mask" / "mask_nobody.png").write_bytes(
        (tmp_path / "fg_mask" / "mask_fg_1.png").read_bytes()
    )
    (tmp_path / "fg_mask" / "stray.png").write_bytes(b"x")
    with BeamTestPipeline(runner="FnApiRunner") as p:
        foregrounds, rejects = p | ReadForegrounds(inputs["fg"], inputs["fg_mask"], CONFIG)
        assert_that(
            foregrounds | beam.Map(lambda fg: (fg.stem, fg.mask_source is not None)),
            equal_to([("fg_1", True), ("fg_2", False), ("fg_3", False)]),
            label="foregrounds",
        )
        assert_that(
            rejects | beam.Map(lambda r: (r.path.rsplit("/", 1)[-1], r.reason.split(" ")[0])),
            equal_to([("broken.png", "not"), ("mask_nobody.png", "mask"), ("stray.png", "mask")]),
            label="rejects",
        )


def test_read_backgrounds_keeps_one_per_name(tmp_path):
    make_inputs(tmp_path, backgrounds=2, foregrounds=1)
    (tmp_path / "bg" / "more").mkdir()
    shutil.copy(tmp_path / "bg" / "bg1.jpg", tmp_path / "bg" / "more" / "bg1.png")
    with BeamTestPipeline(runner="FnApiRunner") as p:
        prepared, rejects = p | ReadBackgrounds(str(tmp_path / "bg" / "**"), CONFIG)
        assert_that(
            prepared | beam.Map(lambda item: (item[0].stem, item[1].shape)),
            equal_to([("bg1", (64, 64, 3)), ("bg2", (64, 64, 3))]),
            label="bgs",
        )
        assert_that(
            rejects | beam.Map(lambda r: "duplicate background name" in r.reason),
            equal_to([True]),
            label="dups",
        )


def test_compose_samples_crosses_every_pair(tmp_path):
    inputs = make_inputs(tmp_path, backgrounds=2, foregrounds=3)
    placements = PlacementConfig(
        seed=0, size=64, scales=(1.0, 0.5), placements_per_scale=2, mirror=True
    )
    with BeamTestPipeline(runner="FnApiRunner") as p:
        composites = compose_inputs(p, inputs, CONFIG, placements, EncodingConfig(50, "png", 50))
        ids = composites | beam.Map(lambda c: c.placement.sample_id)
        assert_that(
            ids,
            equal_to([f"bg{b}/fg_{f}/{n}" for b in (1, 2) for f in (1, 2, 3) for n in range(1, 9)]),
        )
        assert_that(
            composites | beam.Map(lambda c: c.overlay.shape),
            equal_to([(64, 64, 3)] * 48),
            label="shapes",
        )
