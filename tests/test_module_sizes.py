"""The graph's own package stays readable: no module under pipeline/ passes
400 lines (options live by topic in pipeline/options/)."""

from __future__ import annotations

from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
MAX_LINES = 400


@pytest.mark.parametrize(
    "module", sorted(PIPELINE.rglob("*.py")), ids=lambda path: str(path.relative_to(PIPELINE))
)
def test_no_pipeline_module_passes_400_lines(module: Path):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module.relative_to(PIPELINE.parent)} has {lines} lines"
