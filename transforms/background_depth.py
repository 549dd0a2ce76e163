"""Each background's depth, once: `bg_depth/<name>.png` in the build's metric
encoding, for placement by depth and composed labels
(transforms/scene_placement.py reads it back).

Two sources. With --bg_depth the user's maps (an RGB-D frame's sensor
depth, say) are matched to backgrounds by file name without suffix, read,
checked (fgbg/scene.py: one channel, the background's aspect, mostly
measured) and resized by nearest neighbour; a background whose map is
missing or unusable is rejected with the reason, and the rest goes on.
Without it the build's depth model runs once on each background, through
the depth stage's own handler (transforms/depth.py): one forward pass per
background, not per sample.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Tuple

import apache_beam as beam
import numpy as np

from fgbg import layout
from fgbg.depth import families, maps
from fgbg.depth.config import DepthConfig
from fgbg.depth.shared_model_files import stage_tag
from fgbg.hashing import content_digest
from fgbg.scene import DepthMapError, check_depth_map, decode_depth_png, resize_nearest
from fgbg.storage import read_file, write_file
from fgbg.types import Background, Reject
from transforms.inputs import REJECTS, MatchPaths, file_stem, keep_first, name_key
from transforms.scene_placement import SceneConfig, stored_map

Prepared = Tuple[Background, np.ndarray]  # a background and its resized image


def given_map(data: bytes, background: Background, size: int, config: SceneConfig) -> np.ndarray:
    """A --bg_depth file as the build stores it (`stored_map`) at size x
    size; DepthMapError says why it cannot be used."""
    metres = decode_depth_png(data, config.bg_depth_scale)
    check_depth_map(metres, background.aspect)
    return stored_map(resize_nearest(metres, size), config.stored_per_metre)


def with_depth_digest(background: Background, data: bytes) -> Background:
    """The background with its map's bytes in its digest, so a changed map
    remakes the background's pairs (fgbg/pair_records.pair_key)."""
    return dataclasses.replace(background, digest=content_digest(background.digest.encode(), data))


class _AttachGivenMap(beam.DoFn):
    """(name, {"backgrounds": [(Background, image)], "maps": [paths]}) ->
    the background, once its map is written; or a reject saying why not.
    Backgrounds are unique by name (transforms/inputs.py); of two maps
    with one name the first in path order is used and the other rejected."""

    def __init__(self, root: str, size: int, config: SceneConfig):
        self._root = root
        self._size = size
        self._config = config
        self._rejected = beam.metrics.Metrics.counter("scene", "backgrounds_without_depth")

    def process(self, keyed) -> Iterator:
        _, grouped = keyed
        # A map of no background (or of a rejected one) is not read.
        backgrounds = list(grouped["backgrounds"])
        path, duplicates = keep_first(grouped["maps"] if backgrounds else (), "depth map")
        for reject in duplicates:
            yield beam.pvalue.TaggedOutput(REJECTS, reject)
        for prepared in backgrounds:
            background, _ = prepared
            try:
                if path is None:
                    raise DepthMapError(
                        f"no depth map named {background.stem}.* matches --bg_depth "
                        f"{self._config.bg_depth!r}"
                    )
                data = read_file(path)
                stored = given_map(data, background, self._size, self._config)
            except (DepthMapError, OSError) as error:
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(
                    REJECTS, Reject(background.source, f"depth map: {error}")
                )
                continue
            write_map(self._root, background.stem, stored)
            yield with_depth_digest(background, data), prepared[1]


def write_map(root: str, stem: str, stored: np.ndarray) -> None:
    write_file(layout.resolve(root, layout.background_depth_path(stem)), maps.encode_stored(stored))


class _WriteModelMap(beam.DoFn):
    """((background, image), model output) -> the background, once the
    model's map, in the build's metric encoding, is written."""

    def __init__(self, root: str, depth: DepthConfig):
        self._root = root
        self._depth = depth

    def process(self, keyed: Tuple[Prepared, np.ndarray]) -> Iterator[Prepared]:
        prepared, depth = keyed
        content = families.family(self._depth).content
        stored, _ = maps.metric_stored(depth, self._depth.out_size, content)
        write_map(self._root, prepared[0].stem, stored)
        yield prepared


def _keyed_by_background(prepared: Prepared) -> Tuple[Prepared, np.ndarray]:
    return prepared, prepared[1]


class BackgroundDepth(beam.PTransform):
    """(Background, image) -> the same, once bg_depth/<name>.png is written;
    and the backgrounds rejected for their maps (--bg_depth only).

    `depth` is the build's depth configuration, whose model runs on each
    background when `config.bg_depth` is None."""

    def __init__(self, root: str, size: int, config: SceneConfig, depth: Optional[DepthConfig]):
        super().__init__()
        self._root = root
        self._size = size
        self._config = config
        self._depth = depth

    def expand(self, prepared):
        if self._config.bg_depth is None:
            return self._estimated(prepared), prepared.pipeline | "NoDepthRejects" >> beam.Create(
                []
            )
        keyed_maps = (
            prepared.pipeline
            | "MatchDepthMaps" >> MatchPaths(self._config.bg_depth)
            | "KeyMapByName" >> beam.Map(lambda path: (name_key(file_stem(path)), path))
        )
        keyed_backgrounds = prepared | "KeyBackgroundByName" >> beam.Map(
            lambda item: (name_key(item[0].stem), item)
        )
        attached = (
            {"backgrounds": keyed_backgrounds, "maps": keyed_maps}
            | "JoinDepthMaps" >> beam.CoGroupByKey()
            | "AttachDepthMap"
            >> beam.ParDo(_AttachGivenMap(self._root, self._size, self._config)).with_outputs(
                REJECTS, main="backgrounds"
            )
        )
        return attached.backgrounds, attached[REJECTS]

    def _estimated(self, prepared):
        # Imported here, as pipeline/build.py imports the depth stage, and
        # from it: it imports Beam's RunInference without PyTorch
        # (fgbg/beam_compat.py).
        from transforms.depth import (
            DEPTH_METRICS_NAMESPACE,
            DepthModelHandler,
            KeyedModelHandler,
            RunInference,
        )

        handler = KeyedModelHandler(DepthModelHandler(self._depth))
        return (
            prepared
            | "KeyByBackground" >> beam.Map(_keyed_by_background)
            | "BackgroundInference"
            >> RunInference(
                handler,
                metrics_namespace=DEPTH_METRICS_NAMESPACE,
                model_identifier=stage_tag(self._depth.model_tag, "backgrounds"),
            )
            | "WriteBackgroundDepth" >> beam.ParDo(_WriteModelMap(self._root, self._depth))
        )
