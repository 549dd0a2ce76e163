"""Compositing math, mask alignment and encodings, without Beam."""

import io

import numpy as np
from PIL import Image

from fgbg.moments import pixel_moments
from fgbg.types import Background, Foreground
from transforms.compositing import (
    EncodingConfig,
    alpha_composite,
    compose_pair,
    encode_mask,
    place_mask,
    resize_cutout,
)
from transforms.placements import PlacementConfig


def test_alpha_composite_matches_float_formula():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    fg = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = alpha_composite(bg, fg, 4, 9)
    a = fg[..., 3:4] / 255.0
    expected = np.round(fg[..., :3] * a + bg[9:14, 4:11] * (1 - a))
    assert np.abs(out[9:14, 4:11].astype(int) - expected).max() <= 1
    outside = np.ones((20, 30), bool)
    outside[9:14, 4:11] = False
    assert np.array_equal(out[outside], bg[outside])


def test_opaque_and_transparent_pixels_are_exact():
    bg = np.full((4, 4, 3), 10, np.uint8)
    fg = np.zeros((2, 2, 4), np.uint8)
    fg[0, 0] = (200, 100, 50, 255)
    out = alpha_composite(bg, fg, 1, 1)
    assert tuple(out[1, 1]) == (200, 100, 50)
    assert tuple(out[2, 2]) == (10, 10, 10)


def test_resized_mask_is_binary_and_matches_resized_alpha():
    alpha = np.zeros((40, 60), np.uint8)
    alpha[5:35, 10:50] = 255
    rgba = np.dstack([np.full((40, 60, 3), 90, np.uint8), alpha])
    small_rgba, small_mask = resize_cutout(rgba, alpha, (30, 20))
    assert set(np.unique(small_mask)) <= {0, 255}
    assert np.array_equal(small_mask == 255, small_rgba[..., 3] >= 128)


def test_place_mask_aligns_with_placement():
    mask = np.full((3, 5), 255, np.uint8)
    canvas = place_mask(mask, 2, 4, 10)
    ys, xs = np.nonzero(canvas)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 6, 2, 6)


def test_png_masks_are_lossless_jpg_masks_are_not():
    mask = place_mask(np.full((7, 9), 255, np.uint8), 3, 3, 32)
    png = np.asarray(Image.open(io.BytesIO(encode_mask(mask, EncodingConfig(50, "png", 50)))))
    assert np.array_equal(png, mask)
    jpg = np.asarray(Image.open(io.BytesIO(encode_mask(mask, EncodingConfig(50, "jpg", 50)))))
    assert not set(np.unique(jpg)) <= {0, 255}


def test_compose_pair_overlay_and_mask_share_the_footprint():
    alpha = np.zeros((12, 16), np.uint8)
    alpha[2:10, 3:13] = 255
    rgba = np.dstack([np.full((12, 16, 3), (250, 0, 0), np.uint8), alpha])
    fg = Foreground(
        stem="fg", source="fg.png", mask_source=None, rgba=rgba, mask=alpha.copy(), digest="d1"
    )
    bg_image = np.zeros((32, 32, 3), np.uint8)
    config = PlacementConfig(
        seed=3, size=32, scales=(1.0, 0.5), placements_per_scale=2, mirror=True
    )
    composites = list(
        compose_pair(
            Background("bg", "bg.jpg", "train", "d2"),
            bg_image,
            fg,
            config,
            EncodingConfig(90, "png", 50),
            "key",
        )
    )
    assert [c.placement.number for c in composites] == list(range(1, 9))
    for composite in composites:
        mask = np.asarray(Image.open(io.BytesIO(composite.mask_encoded)))
        p = composite.placement
        source = rgba[:, ::-1] if p.flip else rgba
        small_rgba, _ = resize_cutout(
            np.ascontiguousarray(source), source[..., 3].copy(), (p.w, p.h)
        )
        footprint = np.zeros((32, 32), bool)
        footprint[p.y : p.y + p.h, p.x : p.x + p.w] = small_rgba[..., 3] >= 128
        assert np.array_equal(mask == 255, footprint)
        assert composite.mask_moments == pixel_moments(mask)
        solid = footprint & (composite.overlay[..., 0] > 240)
        assert solid.sum() > 0 and np.all(mask[solid] == 255)
        ys, xs = np.nonzero(mask)
        assert xs.min() >= p.x and xs.max() < p.x + p.w
        assert ys.min() >= p.y and ys.max() < p.y + p.h


def test_alpha_composite_is_exactly_rounded_for_every_input():
    """Every (fg, bg, alpha) byte triple gives round((fg*a + bg*(255-a)) / 255)."""
    fg, bg = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    for a in range(256):
        rgba = np.dstack([fg, fg, fg, np.full_like(fg, a)])
        out = alpha_composite(np.dstack([bg, bg, bg]), rgba, 0, 0)
        expected = (fg.astype(np.int64) * a + bg.astype(np.int64) * (255 - a) + 127) // 255
        assert np.array_equal(out[..., 0], expected), a
