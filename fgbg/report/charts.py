"""The report's histograms: one standalone SVG per per-sample value, drawn by
hand (a few rectangles and labels) so the page needs no plotting library and
the same values give the same bytes."""

from __future__ import annotations

import html
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from fgbg.report.dataset import MILLIMETRES_PER_METRE, Dataset
from fgbg.report.palette import ACCENT_RGB, hex_color

HISTOGRAM_BINS = 24
FONT_SIZE = 11
# Width of a digit in DejaVu Sans, the widest font of the SVG's font-family
# list, as a fraction of the font size: what the count labels are sized by.
DIGIT_WIDTH_EM = 0.64
# Left of the plot: room for five-digit counts; more digits widen it.
MIN_LEFT = 40
# Between a count label's right end and the y axis.
TICK_GAP = 4


def tick(value: float) -> str:
    return f"{value:.3g}"


def label_width(text: str) -> float:
    """The estimated drawn width of a count label, in SVG pixels."""
    return len(text) * DIGIT_WIDTH_EM * FONT_SIZE


def plot_left(tallest_label: str) -> int:
    """Where the y axis goes: far enough right for the longest count label
    to be drawn whole, so a full-scale build's counts are not cut off."""
    return max(MIN_LEFT, TICK_GAP + math.ceil(label_width(tallest_label)))


def histogram_svg(
    values: Sequence[float],
    low: float,
    high: float,
    x_label: str,
    bins: int = HISTOGRAM_BINS,
    width: int = 340,
    height: int = 200,
) -> str:
    """A standalone SVG histogram of `values` over [low, high]."""
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=(low, high))
    tallest = max(int(counts.max()), 1)
    left, right, top, bottom = plot_left(str(tallest)), width - 12, 12, height - 40
    step = (right - left) / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="{FONT_SIZE}" fill="#5b6475">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for index, count in enumerate(counts):
        bar = (bottom - top) * int(count) / tallest
        parts.append(
            f'<rect x="{left + index * step + 1:.2f}" y="{bottom - bar:.2f}" '
            f'width="{step - 2:.2f}" height="{bar:.2f}" fill="{hex_color(ACCENT_RGB)}"/>'
        )
    parts += [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#1d2330"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#1d2330"/>',
        f'<text x="{left - TICK_GAP}" y="{top + 4}" text-anchor="end">{tallest}</text>',
        f'<text x="{left - TICK_GAP}" y="{bottom}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{bottom + 14}" text-anchor="start">{tick(low)}</text>',
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 14}" text-anchor="middle">'
        f"{tick((low + high) / 2)}</text>",
        f'<text x="{right}" y="{bottom + 14}" text-anchor="end">{tick(high)}</text>',
        f'<text x="{(left + right) / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'fill="#1d2330">{html.escape(x_label)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def histograms(dataset: Dataset) -> List[Tuple[str, Optional[str]]]:
    """(title, SVG or None when the build has no such values), per histogram."""
    brightness = dataset.table.overlay_mean.tolist()
    coverage = dataset.table.mask_coverage.tolist()
    result: List[Tuple[str, Optional[str]]] = [
        (
            "Mean brightness per overlay",
            histogram_svg(brightness, 0, 255, "mean pixel value (0-255)"),
        ),
        ("Mask coverage per sample", histogram_svg(coverage, 0, 1, "foreground fraction")),
    ]
    depth = dataset.table.depth_mean.tolist()
    if not depth:
        result.append(("Mean depth per sample", None))
    elif dataset.depth_encoding == "metric":
        metres = [value / MILLIMETRES_PER_METRE for value in depth]
        result.append(
            (
                "Mean depth per sample",
                histogram_svg(metres, min(metres), max(metres), "mean depth (m)"),
            )
        )
    else:
        result.append(
            (
                "Mean depth per sample",
                histogram_svg(depth, 0, 255, "mean grey level (per-image min-max: 0 near)"),
            )
        )
    return result
