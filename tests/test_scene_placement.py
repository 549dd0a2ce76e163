"""Placement by depth and composed labels on scenes whose geometry is known
(tests/scene_fixtures.py): a floor seen by a camera pitched 15 degrees, a
back wall and a box standing nearer on the floor, with analytic depth."""

from __future__ import annotations

import collections
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from fgbg.blend_modes import GAUSSIAN, NONE
from fgbg.depth import maps
from fgbg.images import encode_png_fast
from fgbg.moments import encoded_moments, pixel_moments
from fgbg.scene import (
    Camera,
    DepthMapError,
    check_depth_map,
    decode_depth_png,
    resize_nearest,
    support_mask,
)
from fgbg.types import Background, Foreground
from tests.scene_fixtures import (
    BOX_FRONT,
    BOX_SIDE,
    BOX_TOP,
    FLOOR,
    UPWARD,
    Room,
    render,
    scene_image,
)
from transforms.blending import BlendConfig
from transforms.compositing import EncodingConfig, place_mask, resize_cutout
from transforms.placements import PlacementConfig, scaled_size
from transforms.scene_placement import (
    COMPOSED,
    DEPTH,
    ESTIMATE_MARGIN,
    MODEL,
    RANDOM,
    SceneConfig,
    background_scene,
    compose_scene_pair,
    composed_label,
    estimated_foot_offset,
    foot_extent,
    foot_offset,
    misses_image,
    nearer_than,
    scene_cutouts,
    stored_label,
    stored_label_base,
    stored_map,
    stored_value,
)

SIZE = 64
CAMERA = Camera(60.0)
ENCODING = EncodingConfig(overlay_quality=90, mask_format="png", mask_quality=90)
PLACEMENTS = PlacementConfig(
    seed=7, size=SIZE, scales=(1.0, 0.6), placements_per_scale=6, mirror=True
)


def scene_config(placement=DEPTH, labels=COMPOSED) -> SceneConfig:
    return SceneConfig(
        placement=placement,
        labels=labels,
        camera_fov=60.0,
        bg_depth="depth/*.png",
        bg_depth_scale=1000.0,
        stored_per_metre=1000,
        label_encoding="metric",
        label_quality=90,
    )


def person(width: int = 10, height: int = 22) -> Foreground:
    """An upright cut-out: an ellipse on a transparent margin, textured."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - (width - 1) / 2) / (width / 2 - 1)) ** 2 + (
        (yy - (height - 1) / 2) / (height / 2 - 1)
    ) ** 2 <= 1
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    rng = np.random.default_rng(3)
    rgba = np.dstack([rng.integers(0, 256, (height, width, 3), dtype=np.uint8), alpha])
    return Foreground("person", "person.png", None, rgba, alpha, "d")


ROOM = Room()


def room_scene(room: Room = ROOM):
    depth, surface = render(room)
    return np.round(depth, 3).astype(np.float32), surface


def placed_samples(room: Room = ROOM, foreground: Foreground = None):
    foreground = foreground or person()
    depth, surface = room_scene(room)
    scene = background_scene(depth, CAMERA)
    cutouts = (
        (foreground.rgba, foreground.mask),
        (foreground.rgba[:, ::-1], foreground.mask[:, ::-1]),
    )
    samples = list(scene_cutouts(PLACEMENTS, scene, "room", cutouts, foreground.stem))
    return scene, surface, samples


# ---------------------------------------------------------------- support


@pytest.mark.parametrize("pitch", [0.0, 15.0, 25.0])
def test_support_is_the_floor_and_the_box_top_never_a_wall_or_a_front(pitch):
    depth, surface = room_scene(Room(pitch_degrees=pitch))
    support = support_mask(depth, CAMERA)
    assert not (support & ~np.isin(surface, UPWARD)).any()
    floor = surface == FLOOR
    assert support[floor].mean() > 0.6, "most of the floor is support"
    if (surface == BOX_TOP).sum() > 20:
        assert support[surface == BOX_TOP].any()


def test_a_wall_facing_the_camera_has_no_support():
    depth = np.full((SIZE, SIZE), 3.0, np.float32)
    assert not support_mask(depth, CAMERA).any()
    assert not background_scene(depth, CAMERA).has_floor


def test_unmeasured_pixels_are_never_support():
    depth, _ = room_scene()
    depth[40:50, 10:30] = 0
    support = support_mask(depth, CAMERA)
    assert not support[40:50, 10:30].any()


# ---------------------------------------------------------------- placement


def test_feet_stand_on_upward_surfaces():
    scene, surface, samples = placed_samples()
    assert scene.has_floor
    standing = [s for s in samples if not s.point.fallback]
    assert len(standing) == len(samples) == PLACEMENTS.samples_per_pair
    for sample in standing:
        assert surface[sample.point.foot_y, sample.point.foot_x] in UPWARD
        assert sample.point.foot_depth == scene.depth[sample.point.foot_y, sample.point.foot_x]


def test_the_foot_is_the_bottom_centre_of_the_mask():
    _, _, samples = placed_samples(Room(with_box=False))
    for sample in samples:
        offset_x, offset_y = foot_offset(sample.mask)
        p = sample.placement
        assert (p.x + offset_x, p.y + offset_y) == (sample.point.foot_x, sample.point.foot_y)


@pytest.mark.parametrize("shape", [(10, 22), (56, 150), (139, 150), (150, 54)])
def test_the_estimated_foot_is_within_the_margin_of_the_resized_masks(shape):
    """The check before the resize refuses only draws the resized mask
    would: its estimate of the foot is nearer than ESTIMATE_MARGIN to the
    resized mask's own at every size, mirrored or not."""
    width, height = shape
    mask = person(width, height).mask
    for full in (mask, mask[:, ::-1]):
        extent = foot_extent(full)
        for scale in np.linspace(0.05, 2.5, 60):
            size = scaled_size(width, height, scale)
            small = resize_cutout(np.dstack([full] * 4), full, size)[1]
            if not small.any():
                continue
            estimate = estimated_foot_offset(extent, (width, height), size)
            assert np.abs(np.subtract(estimate, foot_offset(small))).max() <= 1 < ESTIMATE_MARGIN


def test_a_box_misses_the_image_only_past_the_margin():
    assert not misses_image(0, 0, (10, 20), 64, 0)
    assert not misses_image(54, 44, (10, 20), 64, 0)
    assert misses_image(-1, 0, (10, 20), 64, 0) and misses_image(55, 0, (10, 20), 64, 0)
    assert not misses_image(-2, 46, (10, 20), 64, 2)
    assert misses_image(-2.5, 0, (10, 20), 64, 2) and misses_image(0, 46.5, (10, 20), 64, 2)


def test_height_times_foot_depth_is_constant_within_a_foreground_and_scale():
    foreground = person()
    scene, _, samples = placed_samples(Room(with_box=False), foreground)
    by_scale = collections.defaultdict(list)
    for sample in samples:
        by_scale[sample.placement.scale].append(sample)
    for scale, group in by_scale.items():
        constant = foreground.mask.shape[0] * scale * scene.reference_depth
        depths = {round(s.point.foot_depth, 3) for s in group}
        assert len(depths) > 1, "the draws should land at several depths"
        for sample in group:
            h, z = sample.placement.h, sample.point.foot_depth
            # h = int(H x scale x Z_ref / Z): h x Z within one pixel's depth of it.
            assert h * z <= constant + 1e-6 < (h + 1) * z
            assert sample.point.applied_scale == pytest.approx(scale * scene.reference_depth / z)


def test_placement_is_seeded_by_the_sample_identity():
    _, _, first = placed_samples()
    _, _, again = placed_samples()
    assert [s.placement for s in first] == [s.placement for s in again]
    assert [s.placement.number for s in first] == list(range(1, PLACEMENTS.samples_per_pair + 1))


def test_a_scene_without_a_floor_falls_back_to_random_placement_in_front():
    depth = np.full((SIZE, SIZE), 3.0, np.float32)
    scene = background_scene(depth, CAMERA)
    foreground = person()
    cutouts = ((foreground.rgba, foreground.mask),) * 2
    samples = list(scene_cutouts(PLACEMENTS, scene, "wall", cutouts, "person"))
    assert all(s.point.fallback and s.point.tries == 0 for s in samples)
    assert all(s.point.visible_fraction == 1.0 and s.point.foot_depth == 3.0 for s in samples)
    assert all(not s.in_front.any() for s in samples)


# ---------------------------------------------------------------- occlusion


# A cabinet taller than the camera: the floor behind it shows beside it,
# and an object standing there reaches behind it.
CABINET = Room(box=((-0.4, 0.4), (0.0, 2.2), (2.2, 2.8)))


def beside_the_cabinet(depth: np.ndarray, surface: np.ndarray):
    """A floor pixel two columns left of the cabinet, farther than it."""
    columns = np.flatnonzero((surface == BOX_FRONT).any(axis=0))
    column = int(columns[0]) - 2
    rows = np.flatnonzero((surface[:, column] == FLOOR) & (depth[:, column] > 3.5))
    return column, int(rows[-1])


@pytest.mark.parametrize("blend", [NONE, GAUSSIAN])
def test_the_nearer_box_hides_exactly_the_object_pixels_behind_it(blend):
    depth, surface = room_scene(CABINET)
    foot_x, foot_y = beside_the_cabinet(depth, surface)
    z = float(depth[foot_y, foot_x])
    # Where an object standing there would be (above its foot), only the
    # cabinet is nearer than it.
    above = np.arange(SIZE)[:, None] <= foot_y
    cabinet = np.isin(surface, (BOX_FRONT, BOX_TOP, BOX_SIDE)) & above
    assert cabinet.any() and np.array_equal(nearer_than(depth, z) & above, cabinet)

    # The whole pair, composed: wherever the cabinet is in front of a
    # sample, its overlay is the background and its mask empty; elsewhere
    # the object is pasted whole.
    image = scene_image(surface)
    foreground = person(24, 40)
    blending = BlendConfig(modes=(blend,), seed=1, sigma=1.5, motion_length=5)
    made = composed_pair(image, background_scene(depth, CAMERA), foreground, blending)
    hidden = 0
    for composite in made:
        point = composite.scene
        assert not point.fallback
        mask = png(composite.mask_encoded) > 0
        nearer = nearer_than(depth, point.foot_depth)
        full = full_cutout_mask(composite, foreground)
        assert np.array_equal(mask, full & ~nearer)
        assert np.array_equal(composite.overlay[nearer], image[nearer])
        assert point.visible_fraction == pytest.approx(mask.sum() / full.sum())
        hidden += bool((full & nearer).any())
    assert hidden >= 2, "too few samples stood behind the cabinet"


def full_cutout_mask(composite, foreground: Foreground) -> np.ndarray:
    """The object's whole mask at the composite's place and size, hidden or not."""
    p = composite.placement
    mask = foreground.mask[:, ::-1] if p.flip else foreground.mask
    _, small = resize_cutout(foreground.rgba, mask, (p.w, p.h))
    full = np.zeros((SIZE, SIZE), bool)
    full[p.y : p.y + p.h, p.x : p.x + p.w] = small > 0
    return full


# ---------------------------------------------------------------- labels


def png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def composed_pair(image, scene, foreground, blending=None, config=None):
    background = Background("room", "room.png", "train", "d")
    return list(
        compose_scene_pair(
            background,
            image,
            scene,
            foreground,
            PLACEMENTS,
            ENCODING,
            "k",
            blending,
            config or scene_config(),
        )
    )


@pytest.mark.parametrize("blend", [NONE, GAUSSIAN])
def test_a_composed_label_is_the_background_outside_the_mask_and_the_foot_inside(blend):
    depth, surface = room_scene()
    scene = background_scene(depth, CAMERA)
    blending = BlendConfig(modes=(blend,), seed=1, sigma=1.5, motion_length=5)
    made = composed_pair(scene_image(surface), scene, person(12, 40), blending)
    stored = np.rint(depth * 1000).astype(np.uint16)
    for composite in made:
        label = png(composite.depth)
        mask = png(composite.mask_encoded) > 0
        assert label.dtype == np.uint16
        assert np.array_equal(label[~mask], stored[~mask])
        assert (label[mask] == round(composite.scene.foot_depth * 1000)).all()
        # Hard: every label pixel is the background's or the object's, even
        # where --blend feathers the overlay.
        assert set(np.unique(label[mask])) == {round(composite.scene.foot_depth * 1000)}
        assert set(np.unique(mask)) <= {False, True}
        # The writer takes these instead of decoding the label again.
        assert composite.depth_moments == encoded_moments(composite.depth)


def test_random_placement_with_composed_labels_keeps_the_random_overlays():
    from fgbg.types import Background as Bg
    from transforms.compositing import compose_pair

    depth, surface = room_scene()
    scene = background_scene(depth, CAMERA)
    image = scene_image(surface)
    foreground = person()
    random = list(
        compose_pair(
            Bg("room", "room.png", "train", "d"), image, foreground, PLACEMENTS, ENCODING, "k"
        )
    )
    composed = composed_pair(image, scene, foreground, config=scene_config(RANDOM, COMPOSED))
    for plain, labelled in zip(random, composed):
        assert plain.placement == labelled.placement
        assert plain.overlay_encoded == labelled.overlay_encoded
        assert plain.mask_encoded == labelled.mask_encoded
        assert plain.depth is None and labelled.depth is not None
        assert labelled.scene is None


def test_depth_placement_with_model_labels_leaves_depth_to_the_model():
    depth, surface = room_scene()
    scene = background_scene(depth, CAMERA)
    made = composed_pair(scene_image(surface), scene, person(), config=scene_config(DEPTH, MODEL))
    assert all(c.depth is None and c.scene is not None for c in made)


def test_min_max_labels_are_the_min_max_of_the_composed_map():
    depth, surface = room_scene()
    scene = background_scene(depth, CAMERA)
    config = dataclasses.replace(scene_config(), label_encoding="minmax")
    made = composed_pair(scene_image(surface), scene, person(), config=config)
    grey = np.asarray(Image.open(io.BytesIO(made[0].depth)))
    assert grey.dtype == np.uint8 and grey.shape == (SIZE, SIZE)
    assert made[0].depth[:2] == b"\xff\xd8", "a JPEG, as min-max maps are stored"
    assert made[0].depth_moments is None, "lossy: the writer decodes what it wrote"


@pytest.mark.parametrize("seed", range(4))
def test_a_stored_label_made_in_its_box_is_the_composed_label_stored(seed):
    """The build's path (the background's stored map with the object's value
    under its visible mask, moments by difference) against the definition
    (`composed_label`, then stored): the same pixels, the same moments, with
    unmeasured pixels and values at the 16-bit limit under the mask."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 70.0, (SIZE, SIZE)).astype(np.float32)
    depth[rng.random((SIZE, SIZE)) < 0.2] = 0
    seen = np.where(rng.random((23, 17)) < 0.6, 255, 0).astype(np.uint8)
    x, y = int(rng.integers(SIZE - 17)), int(rng.integers(SIZE - 23))
    foot = float(depth[y + 22, x + 8] or 2.345)
    expected = stored_map(composed_label(depth, place_mask(seen, x, y, SIZE), foot), 1000)
    label, moments = stored_label(
        stored_label_base(depth, 1000), seen, x, y, stored_value(foot, 1000)
    )
    assert label.dtype == np.uint16 and np.array_equal(label, expected)
    assert moments == pixel_moments(expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_fast_pngs_are_lossless_and_read_by_pillow(dtype):
    rng = np.random.default_rng(3)
    values = rng.integers(0, np.iinfo(dtype).max, (31, 45), endpoint=True).astype(dtype)
    values[:10] = 1234 % np.iinfo(dtype).max  # a run, as a label's background rows are
    data = encode_png_fast(values)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert png(data).dtype == dtype and np.array_equal(png(data), values)
    assert encode_png_fast(values) == data, "the same bytes every time"


# ---------------------------------------------------------------- depth maps


def png16(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_depth_maps_are_read_in_metres_and_resized_without_mixing_depths():
    values = np.zeros((30, 40), np.uint16)
    values[:, :20] = 1500
    values[:, 20:] = 4000
    metres = decode_depth_png(png16(values), 1000.0)
    assert metres.dtype == np.float32 and metres[0, 0] == 1.5
    resized = resize_nearest(metres, 16)
    assert set(np.unique(resized)) == {1.5, 4.0}, "no depth between the two surfaces"
    assert resize_nearest(metres, 16).shape == (16, 16)


def test_depth_maps_of_another_aspect_or_mostly_unmeasured_are_refused():
    metres = np.ones((30, 40), np.float32)
    check_depth_map(metres, 40 / 30)
    with pytest.raises(DepthMapError, match="aspect"):
        check_depth_map(metres, 1.0)
    metres[:20] = 0
    with pytest.raises(DepthMapError, match="depth at 33%"):
        check_depth_map(metres, 40 / 30)
    with pytest.raises(DepthMapError, match="RGB image"):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, format="PNG")
        decode_depth_png(buffer.getvalue(), 1000.0)
    with pytest.raises(DepthMapError, match="not a readable depth map"):
        decode_depth_png(b"not a png", 1000.0)


def test_metric_labels_round_trip_through_the_build_codec():
    depth, _ = room_scene()
    stored = np.rint(depth * 1000).astype(np.uint16)
    assert np.array_equal(maps.decode_metric(png16(stored), 1000), stored / np.float32(1000))
