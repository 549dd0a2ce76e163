"""Inputs: find, de-duplicate, decode and validate backgrounds and foregrounds.

Every input file is read and checked once. A file that fails becomes a
`Reject` (path + reason) on a tagged output and the build goes on without it.
Files are matched with Beam's fileio, so local paths and gs:// work alike.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import unicodedata
import warnings
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from PIL import Image, ImageOps, UnidentifiedImageError

from fgbg import layout
from fgbg.hashing import content_digest
from fgbg.storage import GLOB_CHARACTERS, read_file
from fgbg.types import UNASSIGNED, Background, Foreground, Reject

REJECTS = "rejects"
MASK_PREFIX = "mask_"
# Preferred mask suffix first: PNG is lossless, a JPEG mask needs binarising.
MASK_SUFFIXES = (".png", ".jpg", ".jpeg")


class InputError(ValueError):
    """An input file that cannot be used; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Limits and choices for reading inputs."""

    size: int
    max_input_pixels: int
    min_background_side: int
    mask_threshold: int


def file_name(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/"))


def file_stem(path: str) -> str:
    return posixpath.splitext(file_name(path))[0]


def check_stem(stem: str, reserved: Sequence[str] = ()) -> None:
    """Refuse names that would escape the output folder or break the layout,
    and names in `reserved` (compared by `name_key`, as duplicates are): a
    background's folder sits beside the dataset's own files."""
    if (
        stem in ("", ".", "..")
        or stem.startswith(".")
        or any(ch in stem for ch in "/\\")
        or any(ord(ch) < 32 for ch in stem)
    ):
        raise InputError(f"file name {stem!r} cannot be used as an output folder name")
    if any(ch in stem for ch in GLOB_CHARACTERS):
        raise InputError(
            f"file name {stem!r} holds a glob character ({' '.join(GLOB_CHARACTERS)}), "
            "which storage listings and readers' file patterns would take for a "
            "pattern; rename the file"
        )
    if name_key(stem) in {name_key(name) for name in reserved}:
        raise InputError(
            f"file name {stem!r} is taken by the dataset's own {stem!r} "
            f"at the top of the output; rename the file"
        )


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully, with the EXIF orientation applied.

    The declared size is checked before any pixel is decoded, so a small file
    that claims a huge size (a decompression bomb) costs nothing.
    """
    if not data:
        raise InputError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    f"decompression bomb: declared size {width}x{height} "
                    f"exceeds --max_input_pixels={max_pixels}"
                )
            image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError("not a readable image (unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"decompression bomb: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"corrupt or truncated image data: {error}") from None
    return ImageOps.exif_transpose(image)


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8-bit by scaling, not clipping."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.uint32)
        return Image.fromarray((values >> 8).clip(0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        return Image.fromarray(np.asarray(image).clip(0, 255).astype(np.uint8), "L")
    return image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def to_rgb(image: Image.Image) -> Image.Image:
    return to_8bit(image).convert("RGB")


def to_rgba(image: Image.Image) -> Image.Image:
    return to_8bit(image).convert("RGBA")


def resize_background(image: Image.Image, size: int) -> np.ndarray:
    """Lanczos to size x size, aspect ratio not kept, as the original did."""
    return np.asarray(to_rgb(image).resize((size, size), Image.LANCZOS))


def open_background(data: bytes, config: InputConfig) -> Image.Image:
    """The background decoded and checked, at its own size."""
    image = open_image(data, config.max_input_pixels)
    if min(image.size) < config.min_background_side:
        raise InputError(
            f"background is {image.size[0]}x{image.size[1]}, smaller than "
            f"--min_background_side={config.min_background_side}"
        )
    return image


def load_background(data: bytes, config: InputConfig) -> np.ndarray:
    """The background as every stage sees it: decoded, checked and resized."""
    return resize_background(open_background(data, config), config.size)


def binarize(values: np.ndarray, threshold: int) -> np.ndarray:
    """0/255 uint8: values above the threshold are foreground."""
    return np.where(values > threshold, 255, 0).astype(np.uint8)


def load_mask(data: bytes, max_pixels: int, threshold: int) -> np.ndarray:
    mask = open_image(data, max_pixels)
    grey = to_8bit(mask)
    if has_alpha(grey):
        grey = grey.convert("RGBA").getchannel("A")
    return binarize(np.asarray(grey.convert("L")), threshold)


def build_foreground(
    stem: str,
    source: str,
    fg_data: bytes,
    mask_source: Optional[str],
    mask_data: Optional[bytes],
    config: InputConfig,
) -> Foreground:
    """A checked foreground: RGBA to composite with and a 0/255 mask.

    The mask file, when present, is the segmentation target; the foreground's
    alpha (or, lacking alpha, the mask itself) is what blends the overlay.
    """
    image = open_image(fg_data, config.max_input_pixels)
    width, height = image.size
    if width > config.size or height > config.size:
        raise InputError(
            f"foreground is {width}x{height}, larger than the "
            f"{config.size}x{config.size} background"
        )
    mask = None
    if mask_data is not None:
        try:
            mask = load_mask(mask_data, config.max_input_pixels, config.mask_threshold)
        except InputError as error:
            raise InputError(f"mask {mask_source}: {error}") from None
        if mask.shape != (height, width):
            raise InputError(
                f"mask {mask_source} is {mask.shape[1]}x{mask.shape[0]}, "
                f"foreground is {width}x{height}"
            )
    if has_alpha(image):
        rgba = np.array(to_rgba(image))
        if not rgba[..., 3].any():
            raise InputError("foreground is fully transparent")
        if mask is None:
            mask = binarize(rgba[..., 3], config.mask_threshold)
    elif mask is not None:
        rgba = np.dstack([np.asarray(to_rgb(image)), mask])
    else:
        raise InputError(
            f"foreground has no alpha channel and no mask file ({MASK_PREFIX}{stem}.png or .jpg)"
        )
    if not mask.any():
        raise InputError(
            f"mask has no foreground pixels at --mask_threshold={config.mask_threshold}"
        )
    return Foreground(
        stem=stem,
        source=source,
        mask_source=mask_source,
        rgba=rgba,
        mask=mask,
        digest=content_digest(fg_data, mask_data),
    )


def mask_key(path: str) -> Optional[str]:
    """`mask_fg_1.png` -> 'fg_1'; None when the name does not follow the rule."""
    name = file_name(path)
    stem, suffix = posixpath.splitext(name)
    if not stem.startswith(MASK_PREFIX) or suffix.lower() not in MASK_SUFFIXES:
        return None
    return stem[len(MASK_PREFIX) :]


def mask_preference(path: str) -> Tuple[int, str]:
    return MASK_SUFFIXES.index(posixpath.splitext(path)[1].lower()), path


def name_key(stem: str) -> str:
    """The key that input names are matched and de-duplicated by: without
    case and in one Unicode normal form, because names that differ only in
    those ('Beach' and 'beach'; 'é' composed or not) are one folder on
    macOS and Windows disks and would overwrite each other there."""
    return unicodedata.normalize("NFC", stem).lower()


def keep_first(paths: Iterable[str], what: str, order=None) -> Tuple[Optional[str], List[Reject]]:
    """One file per output name: the first in a stable order wins."""
    ranked = sorted(paths, key=order)
    if not ranked:
        return None, []
    kept = ranked[0]
    return kept, [
        Reject(
            path,
            f"duplicate {what} name {file_stem(path)!r} (names are "
            f"compared without case); kept {kept}",
        )
        for path in ranked[1:]
    ]


class MatchPaths(beam.PTransform):
    """The file paths a glob matches (local or gs://), via Beam's fileio."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        return (
            pbegin
            | "Match"
            >> fileio.MatchFiles(
                self._pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Path" >> beam.Map(lambda metadata: metadata.path)
        )


class _ResolveBackgrounds(beam.DoFn):
    def process(self, keyed: Tuple[str, Iterable[str]]) -> Iterator:
        _, paths = keyed
        kept, rejects = keep_first(paths, "background")
        for reject in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, reject)
        stem = file_stem(kept)
        try:
            check_stem(stem, layout.ROOT_NAMES)
        except InputError as error:
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(kept, str(error)))
            return
        yield kept


class _PrepareBackground(beam.DoFn):
    """Check a background; its split waits for every background's name
    (transforms/splits.py). The image itself is reloaded where it is used,
    so that no stage holds every background at once."""

    def __init__(self, config: InputConfig):
        self._config = config
        self._accepted = beam.metrics.Metrics.counter("inputs", "backgrounds_accepted")
        self._rejected = beam.metrics.Metrics.counter("inputs", "backgrounds_rejected")

    def process(self, path: str) -> Iterator:
        try:
            data = read_file(path)
            opened = open_background(data, self._config)
        except (InputError, OSError) as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(path, str(error)))
            return
        self._accepted.inc()
        background = Background(
            stem=file_stem(path),
            source=path,
            split=UNASSIGNED,
            digest=content_digest(data),
            aspect=opened.size[0] / opened.size[1],
        )
        yield background, resize_background(opened, self._config.size)


class ReadBackgrounds(beam.PTransform):
    """Background paths -> (`Background`, resized image) pairs (+ rejects)."""

    def __init__(self, pattern: str, config: InputConfig):
        super().__init__()
        self._pattern = pattern
        self._config = config

    def expand(self, pbegin):
        resolved = (
            pbegin
            | "MatchBackgrounds" >> MatchPaths(self._pattern)
            | "KeyByName" >> beam.Map(lambda path: (name_key(file_stem(path)), path))
            | "GroupByName" >> beam.GroupByKey()
            | "OnePerName" >> beam.ParDo(_ResolveBackgrounds()).with_outputs(REJECTS, main="paths")
        )
        prepared = resolved.paths | "Prepare" >> beam.ParDo(
            _PrepareBackground(self._config)
        ).with_outputs(REJECTS, main="backgrounds")
        rejects = (resolved[REJECTS], prepared[REJECTS]) | "BackgroundRejects" >> beam.Flatten()
        return prepared.backgrounds, rejects


class _ResolveForeground(beam.DoFn):
    """Pair each foreground with at most one mask; report the leftovers."""

    def process(self, keyed) -> Iterator:
        _, grouped = keyed
        fg_path, rejects = keep_first(grouped["fg"], "foreground")
        mask_path, mask_rejects = keep_first(grouped["mask"], "mask", order=mask_preference)
        for reject in rejects + mask_rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, reject)
        if fg_path is None:
            yield beam.pvalue.TaggedOutput(
                REJECTS, Reject(mask_path, f"mask has no foreground named {mask_key(mask_path)!r}")
            )
            return
        stem = file_stem(fg_path)
        try:
            check_stem(stem)
        except InputError as error:
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(fg_path, str(error)))
            return
        yield stem, fg_path, mask_path


class _LoadForeground(beam.DoFn):
    def __init__(self, config: InputConfig):
        self._config = config
        self._accepted = beam.metrics.Metrics.counter("inputs", "foregrounds_accepted")
        self._rejected = beam.metrics.Metrics.counter("inputs", "foregrounds_rejected")

    def process(self, resolved: Tuple[str, str, Optional[str]]) -> Iterator:
        stem, fg_path, mask_path = resolved
        try:
            mask_data = read_file(mask_path) if mask_path else None
            foreground = build_foreground(
                stem, fg_path, read_file(fg_path), mask_path, mask_data, self._config
            )
        except (InputError, OSError) as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(fg_path, str(error)))
            return
        self._accepted.inc()
        yield foreground


def _key_mask(path: str) -> Iterator:
    key = mask_key(path)
    if key is None:
        yield beam.pvalue.TaggedOutput(
            REJECTS,
            Reject(path, f"mask file name must be {MASK_PREFIX}<foreground name>.png or .jpg"),
        )
    else:
        yield name_key(key), path


class ReadForegrounds(beam.PTransform):
    """Foreground (and optional mask) paths -> checked `Foreground`s (+ rejects)."""

    def __init__(self, pattern: str, mask_pattern: Optional[str], config: InputConfig):
        super().__init__()
        self._pattern = pattern
        self._mask_pattern = mask_pattern
        self._config = config

    def expand(self, pbegin):
        fgs = (
            pbegin
            | "MatchForegrounds" >> MatchPaths(self._pattern)
            | "KeyFgByName" >> beam.Map(lambda path: (name_key(file_stem(path)), path))
        )
        if self._mask_pattern:
            keyed_masks = (
                pbegin
                | "MatchMasks" >> MatchPaths(self._mask_pattern)
                | "KeyMaskByName" >> beam.FlatMap(_key_mask).with_outputs(REJECTS, main="keyed")
            )
            masks, mask_name_rejects = keyed_masks.keyed, keyed_masks[REJECTS]
        else:
            masks = pbegin | "NoMasks" >> beam.Create([])
            mask_name_rejects = pbegin | "NoMaskRejects" >> beam.Create([])
        resolved = (
            {"fg": fgs, "mask": masks}
            | "JoinMasks" >> beam.CoGroupByKey()
            | "OnePerName" >> beam.ParDo(_ResolveForeground()).with_outputs(REJECTS, main="pairs")
        )
        loaded = resolved.pairs | "Load" >> beam.ParDo(_LoadForeground(self._config)).with_outputs(
            REJECTS, main="foregrounds"
        )
        rejects = (
            mask_name_rejects,
            resolved[REJECTS],
            loaded[REJECTS],
        ) | "ForegroundRejects" >> beam.Flatten()
        return loaded.foregrounds, rejects
