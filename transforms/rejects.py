"""rejects.csv: every rejected input file and why, sorted."""

from __future__ import annotations

from typing import List

import apache_beam as beam

from fgbg import layout
from fgbg.storage import write_file
from fgbg.types import Reject
from transforms.tables import render_csv


class WriteRejects(beam.PTransform):
    """rejects.csv (path, reason), sorted; outputs the rejects as a sorted list."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, rejects):
        root = self._root

        def write(items: List[Reject]) -> List[Reject]:
            ordered = sorted(items, key=lambda reject: (reject.path, reject.reason))
            write_file(
                layout.resolve(root, layout.REJECTS_CSV),
                render_csv(
                    [(reject.path, reject.reason) for reject in ordered], header=("path", "reason")
                ),
            )
            return ordered

        return (
            rejects
            | "GatherRejects" >> beam.combiners.ToList()
            | "WriteRejectsCsv" >> beam.Map(write)
        )
