"""The documentation stays whole: every relative link in README.md,
BENCHMARKS.md and docs/ resolves (the file exists, and an #anchor names a
heading of its target, by GitHub's rules), and README.md stays a front door
of at most 250 lines."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import List, Set, Tuple
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
DOCUMENTS = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
# [text](target) and ![alt](target), with an optional "title" after the target.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
INLINE_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def prose(markdown: str) -> str:
    """The text outside fenced code, code spans and HTML comments."""
    return CODE_SPAN.sub("", COMMENT.sub("", FENCE.sub("", markdown)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, every character
    but letters, digits, spaces, - and _ dropped, spaces turned into -."""
    text = INLINE_LINK.sub(r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> Set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: Counter = Counter()
    found = set()
    for _, heading in HEADING.findall(COMMENT.sub("", FENCE.sub("", markdown))):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def relative_links(markdown: str) -> List[str]:
    return [target for target in LINK.findall(prose(markdown)) if not EXTERNAL.match(target)]


def broken_links(document: Path) -> List[Tuple[str, str]]:
    """(link, why) for each relative link of the document that does not resolve."""
    broken = []
    for link in relative_links(document.read_text(encoding="utf-8")):
        path, _, anchor = link.partition("#")
        target = (document.parent / unquote(path)).resolve() if path else document
        if not target.exists():
            broken.append((link, f"{os.path.relpath(target, REPO)} does not exist"))
        elif anchor and target.suffix == ".md":
            if unquote(anchor) not in anchors(target.read_text(encoding="utf-8")):
                broken.append((link, f"no heading of {target.name} has the anchor #{anchor}"))
    return broken


def test_slugs_follow_githubs_rules():
    assert slug("Depth Anything V2 Small against DenseDepth's default") == (
        "depth-anything-v2-small-against-densedepths-default"
    )
    assert slug("GPU variant (L4)") == "gpu-variant-l4"
    assert slug("A current depth model: Depth Anything V2") == (
        "a-current-depth-model-depth-anything-v2"
    )
    assert slug("`--blend` and [its modes](blending.md)") == "--blend-and-its-modes"
    assert anchors("# Notes\n\n## Notes\n\n```\n# not a heading\n```\n### Notes\n") == {
        "notes",
        "notes-1",
        "notes-2",
    }


def test_links_are_found_outside_code_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[here](#page), [gone](missing.md), ![img](pic.png) and "
        "[web](https://example.com).\n\n`[code](nowhere.md)`\n\n```\n[fenced](nowhere.md)\n```\n"
        "<!-- [comment](nowhere.md) -->\n[bad anchor](#nothing)\n",
        encoding="utf-8",
    )
    assert relative_links(page.read_text()) == ["#page", "missing.md", "pic.png", "#nothing"]
    assert [link for link, _ in broken_links(page)] == ["missing.md", "pic.png", "#nothing"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(document):
    broken = broken_links(document)
    assert not broken, "\n".join(f"{link}: {why}" for link, why in broken)


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    lines = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"
