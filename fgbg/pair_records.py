"""Pair records: `<bg>/<fg>/.pair.json`, what makes builds resumable and
incremental, and what every stage after the writer reads a pair's rows from.

When every sample of a (background, foreground) pair is written, the build
records the pair (transforms/writers.py, RecordPairs): a key over the pair's
input bytes and the options that shape its samples, plus the samples' rows
(paths and pixel moments). A rerun into the same output reads the record
(transforms/resume.py); if the key still matches, the pair's samples are
reused as they are (no compositing, no depth inference, no rewrite).

Recording waits for a count of samples per pair, which batch runners finish
only when every sample of the build is written. So that a build killed
before then still keeps its work, the writer also leaves each sample's row,
with the pair key, in `<bg>/<fg>/.rows/<n>.json`; a rerun that finds all of
a pair's rows under its key records the pair without making it again, and
recording deletes them. A killed run thus loses at most the pairs in
flight, and adding inputs computes only the new pairs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from fgbg import layout
from fgbg.hashing import text_digest
from fgbg.moments import add_to_totals
from fgbg.storage import (
    delete_files,
    exists,
    list_folder,
    read_file,
    read_files,
    remove_empty_folder,
    write_file,
)
from fgbg.types import Background, Foreground, Moments, Placement, SampleRow, WrittenPair

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
    )


def write_pair_record(root: str, key: str, rows: List[SampleRow]) -> None:
    ordered = sorted(rows, key=lambda row: row.placement.number)
    first = ordered[0].placement
    document = {"pair_key": key, "rows": [row_to_dict(row) for row in ordered]}
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


def delete_sample_rows(root: str, rows: Sequence[SampleRow]) -> None:
    """Delete a recorded pair's row files, and locally their folder."""
    delete_files([sample_row_path(root, row.placement) for row in rows])
    if rows:
        remove_empty_folder(
            layout.resolve(root, f"{layout.pair_folder(rows[0].placement)}/{SAMPLE_ROWS}")
        )


def unrecorded_rows(
    root: str, bg_stem: str, fg_stem: str, key: str, expected: int
) -> Optional[List[SampleRow]]:
    """The rows of a pair whose `expected` samples were all written under
    `key` by a build that stopped before recording it, in number order;
    None otherwise. Row files of other keys (an earlier build with other
    options) and unreadable ones do not count."""
    folder = layout.resolve(root, f"{bg_stem}/{fg_stem}/{SAMPLE_ROWS}")
    names = [name for name in list_folder(folder) if name.endswith(".json")]
    if len(names) < expected:
        return None
    rows: Dict[int, SampleRow] = {}
    for data in read_files([layout.resolve(folder, name) for name in names]):
        try:
            document = json.loads(data)
            if document["pair_key"] == key:
                row = row_from_dict(document["row"])
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
    path = record_path(root, bg_stem, fg_stem)
    if not exists(path):
        return None
    try:
        return parse_record(read_file(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished_rows(
    recorded: Optional[Tuple[str, List[SampleRow]]], key: str, expected: int
) -> Optional[List[SampleRow]]:
    """The rows of a pair record (`read_record`'s answer) when it holds `key`
    and all `expected` samples, else None."""
    if recorded is None:
        return None
    recorded_key, rows = recorded
    return rows if recorded_key == key and len(rows) == expected else None


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
    )
