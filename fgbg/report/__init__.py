"""The dataset report: `report.html` (one self-contained page) and `samples.png`.

People judge a dataset by looking at it, so every build ends with a page that
shows it: a grid of samples (background | overlay | mask outlined on the
overlay | colour-mapped depth with its scale bar), histograms of per-sample
brightness, foreground coverage and depth, the per-channel mean/std table,
counts per split, rejected inputs, the depth model (a red banner when its
maps are not real depth), options, versions and time per stage; a build
that blends (--blend) also shows its samples per mode and one example of
each mode side by side; a build placed by depth shows how (placement.py),
and beside another build of the same inputs the same samples of both.

One module per job: dataset.py reads the built dataset back, grid.py draws
samples.png, charts.py the histograms, page.py fills the page's template and
palette.py holds the colours they share. Nothing reads a clock or an unseeded
random source: a rebuild of the same dataset writes the same bytes.
"""

from __future__ import annotations

from typing import Optional

from fgbg import layout
from fgbg.report.dataset import DEFAULT_ROWS, load_dataset
from fgbg.report.grid import png_bytes, render_blends, render_grid
from fgbg.report.page import report_html
from fgbg.report.placement import (
    beside_random_rows,
    compared_rows,
    render_beside_random,
    render_comparison,
)
from fgbg.storage import write_file


def write_report(output: str, rows: int = DEFAULT_ROWS, compare: Optional[str] = None) -> None:
    """Write samples.png and report.html at the root of the dataset `output`;
    with `compare`, another build of the same inputs, the page shows both
    builds' samples side by side (placement.py); without it, a build placed
    by depth shows a few of its samples beside their random placement.

    Raises ReportError (fgbg/report/dataset.py) when `output` is not a finished build.
    """
    dataset = load_dataset(output, rows)
    chosen = dataset.table.chosen
    grid_png = png_bytes(render_grid(dataset, chosen))
    examples = dataset.table.blend_examples
    blends_png = png_bytes(render_blends(dataset, examples)) if examples else None
    other = load_dataset(compare, rows) if compare else None
    compared = compared_rows(dataset, other) if other else []
    comparison_png = png_bytes(render_comparison(other, dataset, compared)) if compared else None
    beside = beside_random_rows(dataset) if other is None else []
    beside_png = png_bytes(render_beside_random(dataset, beside)) if beside else None
    write_file(layout.resolve(dataset.root, layout.SAMPLES_PNG), grid_png)
    write_file(
        layout.resolve(dataset.root, layout.REPORT_HTML),
        report_html(
            dataset, chosen, grid_png, blends_png, other, comparison_png, beside_png
        ).encode("utf-8"),
    )
