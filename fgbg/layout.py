"""Where every output lives, relative to the dataset root (`--output`).

The layout is the original dataset's, so existing consumers keep working:
`bg/<bg>.jpg` and `<bg>/<fg>/{overlay,mask,depth}/<n>.<ext>`.
"""

import os
import posixpath
import re
from typing import Tuple

from fgbg.types import Placement

BACKGROUND_DIR = "bg"
# Each background's depth, as placement by depth reads it (--placement depth,
# --depth_labels composed): bg_depth/<bg>.png, the build's metric encoding.
BACKGROUND_DEPTH_DIR = "bg_depth"
LABEL_CSV = "label_data.csv"
SAMPLES_CSV = "samples.csv"
REJECTS_CSV = "rejects.csv"
STATS_JSON = "stats.json"
MANIFEST_JSON = "manifest.json"
TIMINGS_JSON = "timings.json"
REPORT_HTML = "report.html"
SAMPLES_PNG = "samples.png"
TFRECORD_DIR = "tfrecords"
TRANSFORM_DIR = "transform"
# Held by the one build writing this output (fgbg/lease.py).
LEASE_JSON = ".lease.json"
# Everything at the root besides the background folders (which are named
# after the backgrounds), so that no background can take one of these names.
ROOT_NAMES = (
    BACKGROUND_DIR,
    BACKGROUND_DEPTH_DIR,
    LABEL_CSV,
    SAMPLES_CSV,
    REJECTS_CSV,
    STATS_JSON,
    MANIFEST_JSON,
    TIMINGS_JSON,
    REPORT_HTML,
    SAMPLES_PNG,
    TFRECORD_DIR,
    TRANSFORM_DIR,
    LEASE_JSON,
)


def background_path(stem: str) -> str:
    return f"{BACKGROUND_DIR}/{stem}.jpg"


def background_depth_path(stem: str) -> str:
    return f"{BACKGROUND_DEPTH_DIR}/{stem}.png"


def pair_folder(placement: Placement) -> str:
    """Everything of one (background, foreground) pair lives under here."""
    return f"{placement.bg_stem}/{placement.fg_stem}"


def sample_path(placement: Placement, kind: str, extension: str) -> str:
    """kind is 'overlay', 'mask' or 'depth'."""
    return f"{pair_folder(placement)}/{kind}/{placement.number}.{extension}"


def tfrecord_path(split: str, shard: int, num_shards: int) -> str:
    return f"{TFRECORD_DIR}/{split}-{shard:05d}-of-{num_shards:05d}"


def resolve(root: str, relative: str) -> str:
    """Join a relative output path onto a local or gs:// root, as Beam's
    FileSystems.join does (no Beam import, so readers can use it)."""
    if "://" not in root:
        return os.path.join(root, *relative.split("/"))
    return root + ("" if root.endswith("/") else "/") + relative


def natural_key(text: str) -> Tuple:
    """'bg10' after 'bg9': digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def label_base_dir(csv_path: str, first_path: str) -> str:
    """What label_data.csv's paths are relative to: the dataset's parent
    folder, the folder above the CSV's (fgbg writes the CSV inside the
    dataset), or the CSV's own folder when the paths do not start with its
    folder's name (the original kept the CSV beside `Dataset/`)."""
    folder = posixpath.dirname(csv_path.rstrip("/"))
    inside = first_path.split("/", 1)[0] == posixpath.basename(folder)
    return posixpath.dirname(folder) if inside else folder
