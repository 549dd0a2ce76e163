"""A pair's bookkeeping files, and the only module that touches them: each
written sample's row file `<bg>/<fg>/.rows/<n>.json`, the pair record
`<bg>/<fg>/.pair.json`, and the files an earlier build left in the pair's
folder. They are what makes builds resumable and incremental, and what
every stage after the writer reads a pair's rows from.

A library, not a stage, because several stages and readers share these
files: the stages of transforms/pairs.py decide when each step happens, in
the order that keeps a killed build safe (docs/guarantees.md, Guarantees 2 and 3); this
module decides where the files are and what they hold.

A pair's files live through these steps:
- key: a pair's key hashes its input bytes and the options that shape its
  samples (`options_fingerprint`, `pair_key`);
- skip: a rerun reads the pair's record (`read_record`); when it holds the
  key and every sample, with depth made in the precision this run's
  workers run (`--depth_precision auto` resolves by hardware), the pair is
  reused as it is (`finished_rows`: no compositing, no depth inference, no
  rewrite);
- remove an outdated record: a record with another key or precision
  describes files of an earlier build, and goes before any of them is
  rewritten (`is_outdated`, `remove_outdated_record`);
- write rows: each written sample leaves its row (paths and pixel moments)
  and the pair key in a row file (`write_sample_row`), because recording
  waits for a count of samples per pair, which batch runners finish only
  when every sample of the build is written;
- read rows back: once a pair's rows are all there under its key
  (`unrecorded_rows`), by the count or by a rerun after a kill;
- record: the record is written, then the row files and whatever else the
  pair's folder holds removed (`record_pair`); a second attempt of the same
  work (a retried or duplicated bundle) finds the record and only finishes
  the removals (`recorded_rows`, `finish_recording`);
- read records: the tables and shards read a recorded pair's rows
  (`pair_rows`), and pass it on as a small handle (`written_pair`).
- remove: a pair the split options no longer make (its foreground held
  out of its background's split) loses its record, then its files
  (`remove_pair`).

A killed run thus loses at most the pairs in flight, and adding inputs
computes only the new pairs.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import posixpath
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from fgbg import layout
from fgbg.blend_modes import NONE
from fgbg.depth.models import FP32
from fgbg.hashing import text_digest
from fgbg.moments import add_to_totals
from fgbg.storage import (
    TEMPORARY_SUFFIX,
    delete_files,
    list_folder,
    read_file,
    read_files,
    remove_empty_folder,
    write_file,
)
from fgbg.types import (
    Background,
    Foreground,
    Moments,
    Placement,
    SampleRow,
    ScenePoint,
    WrittenPair,
)

PAIR_RECORD = ".pair.json"
SAMPLE_ROWS = ".rows"  # a pair's per-sample rows, until the pair is recorded


def options_fingerprint(options: Dict[str, object]) -> str:
    """Hash of the options that decide what a pair's samples contain."""
    return text_digest(json.dumps(options, sort_keys=True))


def pair_key(fingerprint: str, background: Background, foreground: Foreground) -> str:
    return text_digest(
        "\x1f".join(
            (
                fingerprint,
                background.stem,
                background.digest,
                background.split,
                foreground.stem,
                foreground.digest,
            )
        )
    )


def record_path(root: str, bg_stem: str, fg_stem: str) -> str:
    return layout.resolve(root, f"{bg_stem}/{fg_stem}/{PAIR_RECORD}")


def row_to_dict(row: SampleRow) -> Dict[str, object]:
    return {
        "placement": dataclasses.asdict(row.placement),
        "split": row.split,
        "bg_path": row.bg_path,
        "overlay_path": row.overlay_path,
        "mask_path": row.mask_path,
        "depth_path": row.depth_path,
        "moments": {
            kind: [m[0], list(m[1]), list(m[2])] for kind, m in sorted(row.moments.items())
        },
        # Null for depth no model made (labels composed from given maps:
        # transforms/scene_placement.py); absent, as before, without depth.
        **(
            {"depth_precision": row.depth_precision}
            if row.depth_precision or row.depth_path
            else {}
        ),
        # Left out for mode none, so records of builds without --blend keep their bytes.
        **({"blend": row.blend} if row.blend != NONE else {}),
        # Only with --placement depth, likewise.
        **({"scene": dataclasses.asdict(row.scene)} if row.scene else {}),
    }


def row_from_dict(data: Dict[str, object]) -> SampleRow:
    return SampleRow(
        placement=Placement(**data["placement"]),
        split=data["split"],
        bg_path=data["bg_path"],
        overlay_path=data["overlay_path"],
        mask_path=data["mask_path"],
        depth_path=data["depth_path"],
        moments={kind: (m[0], tuple(m[1]), tuple(m[2])) for kind, m in data["moments"].items()},
        # Depth of builds from before precision was recorded ran in fp32.
        depth_precision=data.get("depth_precision", FP32 if data["depth_path"] else None),
        blend=data.get("blend", NONE),
        scene=ScenePoint(**data["scene"]) if "scene" in data else None,
    )


def made_in(rows: Sequence[SampleRow], precision: Optional[str]) -> bool:
    """Whether every row's depth map was made in `precision` (None: no depth)."""
    return all(row.depth_precision == precision for row in rows)


def write_pair_record(
    root: str, key: str, rows: List[SampleRow], model: Optional[Dict[str, str]] = None
) -> None:
    """The pair's record: its key, its rows and, for a transformers
    checkpoint, the model its depth came from (`model`)."""
    ordered = sorted(rows, key=lambda row: row.placement.number)
    first = ordered[0].placement
    document: Dict[str, object] = {"pair_key": key, "rows": [row_to_dict(row) for row in ordered]}
    if model:
        document["depth_model"] = model
    write_file(
        record_path(root, first.bg_stem, first.fg_stem),
        (json.dumps(document, sort_keys=True) + "\n").encode(),
    )


def sample_row_path(root: str, placement: Placement) -> str:
    return layout.resolve(
        root, f"{layout.pair_folder(placement)}/{SAMPLE_ROWS}/{placement.number}.json"
    )


def write_sample_row(root: str, key: str, row: SampleRow) -> None:
    """One written sample's row and its pair's key, for `unrecorded_rows`."""
    document = {"pair_key": key, "row": row_to_dict(row)}
    write_file(
        sample_row_path(root, row.placement),
        (json.dumps(document, sort_keys=True) + "\n").encode(),
    )


def unrecorded_rows(
    root: str, bg_stem: str, fg_stem: str, key: str, expected: int, precision: Optional[str]
) -> Optional[List[SampleRow]]:
    """The rows of a pair whose `expected` samples were all written under
    `key`, with depth made in `precision`, by a build that stopped before
    recording it, in number order; None otherwise (also when another
    attempt of the same work is recording it at this moment). Row files of other keys
    or precisions (an earlier build with other options or hardware) and
    unreadable ones do not count."""
    folder = layout.resolve(root, f"{bg_stem}/{fg_stem}/{SAMPLE_ROWS}")
    names = [name for name in list_folder(folder) if name.endswith(".json")]
    if len(names) < expected:
        return None
    rows: Dict[int, SampleRow] = {}
    # A row file deleted since the listing (another attempt recorded the
    # pair meanwhile) reads as empty, and so does not count.
    for data in read_files([layout.resolve(folder, name) for name in names], missing=b""):
        try:
            document = json.loads(data)
            row = row_from_dict(document["row"])
            if document["pair_key"] == key and row.depth_precision == precision:
                rows[row.placement.number] = row
        except (ValueError, KeyError, TypeError):
            continue
    return [rows[number] for number in sorted(rows)] if len(rows) == expected else None


def parse_record(data: bytes) -> Tuple[str, List[SampleRow]]:
    """A pair record's key and rows; ValueError, KeyError or TypeError when
    it is not a record."""
    document = json.loads(data)
    return document["pair_key"], [row_from_dict(row) for row in document["rows"]]


def read_record(root: str, bg_stem: str, fg_stem: str) -> Optional[Tuple[str, List[SampleRow]]]:
    """The pair's recorded key and rows; None when there is no record, or one
    that cannot be read or parsed (it counts as absent: the pair is simply
    made again)."""
    try:
        return parse_record(read_file(record_path(root, bg_stem, fg_stem)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished_rows(
    recorded: Optional[Tuple[str, List[SampleRow]]],
    key: str,
    expected: int,
    precision: Optional[str],
) -> Optional[List[SampleRow]]:
    """The rows of a pair record (`read_record`'s answer) when it holds `key`
    and all `expected` samples, their depth made in `precision`, else None."""
    if recorded is None or is_outdated(recorded, key, precision):
        return None
    _, rows = recorded
    return rows if len(rows) == expected else None


def is_outdated(
    recorded: Optional[Tuple[str, List[SampleRow]]], key: str, precision: Optional[str]
) -> bool:
    """Whether a pair record describes files of an earlier build: another
    key (inputs or options), or depth made in another precision."""
    if recorded is None:
        return False
    recorded_key, rows = recorded
    return recorded_key != key or not made_in(rows, precision)


def remove_outdated_record(root: str, bg_stem: str, fg_stem: str) -> None:
    """Delete a pair record that `is_outdated`: it describes files of an
    earlier build with other inputs, options or depth precision. Done
    before any of the pair's files is rewritten, so a build killed half-way
    through the remake never leaves a record that a later run would reuse
    over a mix of old and new files."""
    delete_files([record_path(root, bg_stem, fg_stem)])


def remove_pair(root: str, bg_stem: str, fg_stem: str) -> None:
    """Delete everything of a pair that the build no longer makes (its
    foreground is held out of its background's split, or no longer is):
    the record first, so that a build killed half-way never leaves a record
    over missing files, then every other file in the pair's folder."""
    delete_files([record_path(root, bg_stem, fg_stem)])
    folder = layout.resolve(root, f"{bg_stem}/{fg_stem}")
    names = list_folder(folder)
    delete_files([layout.resolve(folder, name) for name in names])
    for subfolder in sorted({posixpath.dirname(name) for name in names}, reverse=True):
        if subfolder:
            remove_empty_folder(layout.resolve(folder, subfolder))
    remove_empty_folder(folder)


def record_pair(
    root: str, key: str, rows: List[SampleRow], model: Optional[Dict[str, str]] = None
) -> None:
    """Record a pair whose rows are all written (`unrecorded_rows`), then
    remove its row files and whatever else its folder holds.

    The record goes first, so that at every point the pair's rows are in
    its record or its row files: an attempt stopped anywhere, or a second
    attempt at the same time, leaves what the next attempt records or
    finishes (`recorded_rows`, `finish_recording`), and a build stopped
    between the steps leaves row files that its rerun removes when it
    resumes the pair."""
    write_pair_record(root, key, rows, model)
    finish_recording(root, rows)


def finish_recording(root: str, rows: Sequence[SampleRow]) -> None:
    """The steps after a recorded pair's record is written: delete its row
    files (also those a duplicate attempt wrote after the record) and
    whatever else its folder holds (row files are not among the files it
    keeps). Repeating them is harmless."""
    _remove_stale_files(root, rows)
    remove_empty_folder(
        layout.resolve(root, f"{layout.pair_folder(rows[0].placement)}/{SAMPLE_ROWS}")
    )


def recorded_rows(
    root: str, bg_stem: str, fg_stem: str, key: str, expected: int, precision: Optional[str]
) -> Optional[List[SampleRow]]:
    """The rows of a pair already recorded with `key` and all `expected`
    samples in `precision` (by an earlier attempt of the same work), else
    None."""
    return finished_rows(read_record(root, bg_stem, fg_stem), key, expected, precision)


def has_leftover_rows(root: str, bg_stem: str, fg_stem: str) -> bool:
    """Whether a recorded pair still has row files: its build stopped
    between writing the record and deleting them, or a duplicate attempt
    wrote one after the record."""
    return bool(list_folder(layout.resolve(root, f"{bg_stem}/{fg_stem}/{SAMPLE_ROWS}")))


def _remove_stale_files(root: str, rows: Sequence[SampleRow]) -> None:
    """Once a pair is written and recorded, delete whatever else its folder
    holds: files an earlier build with other options made (another mask or
    depth format, higher sample numbers), which no table would describe.
    Only after writing and only what is not this pair's, so a duplicate
    attempt of the same work stays harmless; temporary files of writes in
    flight are left alone."""
    folder = layout.pair_folder(rows[0].placement)
    keep = {
        path[len(folder) + 1 :]
        for row in rows
        for path in (row.overlay_path, row.mask_path, row.depth_path)
        if path
    }
    keep.add(PAIR_RECORD)
    folder_path = layout.resolve(root, folder)
    delete_files(
        [
            layout.resolve(folder_path, name)
            for name in list_folder(folder_path)
            if name not in keep and not name.endswith(TEMPORARY_SUFFIX)
        ]
    )


def pair_rows(root: str, pairs: Sequence[WrittenPair]) -> Iterator[List[SampleRow]]:
    """Written pairs' rows (each pair's in number order), pair by pair in the
    order given, read back from their records."""
    paths = [record_path(root, pair.bg_stem, pair.fg_stem) for pair in pairs]
    for pair, path, data in zip(pairs, paths, read_files(paths)):
        try:
            _, rows = parse_record(data)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}: unreadable pair record ({error!r}); was the output "
                "changed during the build?"
            ) from error
        if len(rows) != pair.samples:
            raise ValueError(
                f"{path}: {len(rows)} rows recorded, {pair.samples} written; "
                "was the output changed during the build?"
            )
        yield rows


def written_pair(rows: Sequence[SampleRow]) -> WrittenPair:
    """The handle of a pair whose rows are all written and recorded."""
    first = rows[0]
    totals: Dict[str, Moments] = {}
    for row in rows:
        for kind, moments in row.moments.items():
            add_to_totals(totals, kind, moments)
    return WrittenPair(
        bg_stem=first.placement.bg_stem,
        fg_stem=first.placement.fg_stem,
        split=first.split,
        samples=len(rows),
        moments=totals,
        depth_precisions=tuple(sorted({r.depth_precision for r in rows if r.depth_precision})),
        blends=tuple(sorted(collections.Counter(row.blend for row in rows).items())),
        redraws=sum(max(0, row.scene.tries - 1) for row in rows if row.scene),
        fallbacks=sum(row.scene.fallback for row in rows if row.scene),
    )
