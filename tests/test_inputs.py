"""Input decoding and validation, without Beam."""

import io

import numpy as np
import pytest
from PIL import Image

from fgbg import layout
from transforms.inputs import (
    InputConfig,
    InputError,
    build_foreground,
    check_stem,
    keep_first,
    mask_key,
    open_image,
    to_rgb,
)

CONFIG = InputConfig(
    size=64,
    max_input_pixels=1_000_000,
    min_background_side=8,
    mask_threshold=0,
)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def rgba_square(size=10, alpha=255) -> Image.Image:
    pixels = np.zeros((size, size, 4), np.uint8)
    pixels[2:8, 2:8] = (200, 50, 20, alpha)
    return Image.fromarray(pixels, "RGBA")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is not an image", "not a readable image"),
    ],
)
def test_unusable_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(InputError, match=reason):
        open_image(data, 1000)


def test_truncated_png_is_rejected():
    data = encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    )
    with pytest.raises(InputError, match="corrupt or truncated"):
        open_image(data[: len(data) // 2], 1_000_000)


def test_declared_size_is_checked_before_decoding():
    data = encode(Image.new("L", (2000, 2000)))
    with pytest.raises(InputError, match="exceeds --max_input_pixels"):
        open_image(data, 1_000_000)


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    rotated = open_image(encode(image, "JPEG", exif=exif), 10_000)
    assert rotated.size == (20, 40)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 1000, 32768, 65535]] * 4, np.uint16)
    image = Image.fromarray(values)
    rgb = np.asarray(to_rgb(open_image(encode(image), 1000)))
    # Clipping would turn every non-zero value into 255.
    assert rgb[:, :, 0].tolist() == [[0, 3, 128, 255]] * 4
    assert (rgb == rgb[:, :, :1]).all()


def test_foreground_alpha_becomes_binary_mask():
    fg = build_foreground("fg", "fg.png", encode(rgba_square(alpha=40)), None, None, CONFIG)
    assert set(np.unique(fg.mask)) == {0, 255}
    assert fg.mask.sum() == 36 * 255


def test_mask_file_is_used_and_binarized():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 3
    fg = build_foreground(
        "fg", "fg.png", encode(rgba_square()), "mask_fg.png", encode(Image.fromarray(mask)), CONFIG
    )
    assert np.array_equal(fg.mask, np.where(mask > 0, 255, 0))


def test_rgb_foreground_uses_its_mask_as_alpha():
    rgb = Image.new("RGB", (10, 10), (1, 2, 3))
    mask = np.zeros((10, 10), np.uint8)
    mask[:5] = 255
    fg = build_foreground(
        "fg", "fg.jpg", encode(rgb), "m.png", encode(Image.fromarray(mask)), CONFIG
    )
    assert np.array_equal(fg.rgba[..., 3], mask)


@pytest.mark.parametrize(
    "fg, mask, reason",
    [
        (rgba_square(alpha=0), None, "fully transparent"),
        (Image.new("RGB", (10, 10)), None, "no alpha channel and no mask file"),
        (rgba_square(size=65), None, "larger than the 64x64 background"),
        (rgba_square(), Image.new("L", (9, 10), 255), "is 9x10, foreground is 10x10"),
        (rgba_square(), Image.new("L", (10, 10), 0), "no foreground pixels"),
    ],
)
def test_bad_foregrounds_are_rejected(fg, mask, reason):
    mask_data = encode(mask) if mask is not None else None
    with pytest.raises(InputError, match=reason):
        build_foreground(
            "fg", "fg.png", encode(fg), "mask_fg.png" if mask else None, mask_data, CONFIG
        )


def test_palette_with_transparency_keeps_its_alpha():
    data = encode(rgba_square().quantize())
    reopened = Image.open(io.BytesIO(data))
    assert reopened.mode == "P" and "transparency" in reopened.info
    fg = build_foreground("fg", "fg.png", data, None, None, CONFIG)
    assert fg.mask.sum() == 36 * 255


def test_names_that_escape_the_output_are_refused():
    for stem in ("..", ".", "", ".hidden", "a\\b", "a[12]", "all*", "why?"):
        with pytest.raises(InputError):
            check_stem(stem)
    check_stem("photo de plage é 1")


def test_background_names_cannot_take_the_datasets_own_names():
    for stem in ("label_data.csv", "tfrecords", "Transform", "BG"):
        with pytest.raises(InputError, match="taken by the dataset's own"):
            check_stem(stem, layout.ROOT_NAMES)
    check_stem("bg1", layout.ROOT_NAMES)
    check_stem("tfrecords", ())


def test_mask_names_and_duplicates():
    assert mask_key("gs://b/m/mask_fg_1.png") == "fg_1"
    assert mask_key("m/fg_1.png") is None
    kept, rejects = keep_first(["z/a.png", "b/a.png"], "foreground")
    assert (
        kept == "b/a.png" and rejects[0].path == "z/a.png" and "kept b/a.png" in rejects[0].reason
    )
