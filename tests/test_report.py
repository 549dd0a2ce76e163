"""The dataset report: rendering functions, real builds, gs://, and a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.etree import ElementTree

import numpy as np
import pytest
from markupsafe import Markup
from PIL import Image

from fgbg import layout
from fgbg.layout import natural_key
from fgbg.report import charts, grid, palette, write_report
from fgbg.report.dataset import DEFAULT_ROWS, choose_samples, load_dataset, summarize_samples
from fgbg.report.page import escaped, normalization
from pipeline import build
from pipeline import report as report_cli
from tests.helpers import make_inputs, small_build_args

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_S = 60
# Unescaped, this name would add an <img> to the page, which the browser test counts.
HOSTILE_NAME = '<img src=x alt=injected> & "q".jpg'
HOSTILE_ESCAPED = "&lt;img src=x alt=injected&gt; &amp; &quot;q&quot;.jpg"
VIRIDIS_RAMP = palette.colormap(np.linspace(0, 1, 256)).astype(int)
# A desktop window and a phone's (an iPhone's CSS width).
PAGE_WIDTHS = (1280, 390)
# Every card of a page (a section, or a summary card) whose content is wider
# than the card (scrollWidth past clientWidth: content spilling out counts,
# a table scrolling inside its own overflow wrapper does not), or that runs
# past the page's edge.
CARD_CHECK = """
function cardOverflows(doc) {
  var page = doc.documentElement.clientWidth, cards = doc.querySelectorAll("section, .card");
  var found = [];
  cards.forEach(function (card) {
    var name = card.id || card.textContent.trim().slice(0, 40), box = card.getBoundingClientRect();
    if (card.scrollWidth > card.clientWidth) {
      found.push(name + ": " + card.scrollWidth + " px of content in " + card.clientWidth);
    }
    if (box.left < 0 || box.right > page) {
      found.push(name + ": spans " + Math.round(box.left) + " to " + Math.round(box.right) +
        " px of " + page);
    }
  });
  return {page: page, cards: cards.length, found: found};
}
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A real composites-only build with one rejected input whose name is HTML."""
    root = tmp_path_factory.mktemp("report")
    inputs = make_inputs(root / "inputs", backgrounds=3, foregrounds=2)
    (root / "inputs" / "bg" / HOSTILE_NAME).write_bytes(b"not an image")
    output = root / "out"
    build.run(small_build_args(inputs, output, "--seed=7"))
    write_report(str(output))
    return output


@pytest.fixture(scope="module")
def depth_dataset(tmp_path_factory) -> Path:
    """A real two-sample build with the untrained depth model (a warned build)."""
    root = tmp_path_factory.mktemp("report-depth")
    inputs = make_inputs(root / "inputs", backgrounds=2, foregrounds=1)
    output = root / "out"
    build.run(
        small_build_args(
            inputs,
            output,
            "--depth_model=untrained",
            "--depth_input_size=64x64",
            "--scales=1.0",
            "--placements_per_scale=1",
            "--no_mirror",
        )
    )
    write_report(str(output))
    return output


def html_of(root: Path) -> str:
    return (root / layout.REPORT_HTML).read_text(encoding="utf-8")


def grid_column(pixels: np.ndarray, index: int) -> np.ndarray:
    """One of samples.png's four columns (the depth column without its bar)."""
    left = grid.MARGIN + index * (grid.TILE + grid.GAP)
    top = grid.MARGIN + grid.HEADER_HEIGHT
    return pixels[top:, left : left + grid.TILE]


# --------------------------------------------------------------------------- pure functions


def test_choose_samples_is_seeded_stable_and_in_id_order():
    samples = [{"id": f"bg{i % 5}/fg_{i % 3}/{i}"} for i in range(40)]
    first = choose_samples(samples, seed=3, count=8)
    assert first == choose_samples(list(reversed(samples)), seed=3, count=8)
    assert [r["id"] for r in first] != [r["id"] for r in samples[:8]]
    assert first != choose_samples(samples, seed=4, count=8)
    keys = [natural_key(r["id"]) for r in first]
    assert keys == sorted(keys) and len(first) == 8
    assert len(choose_samples(samples, seed=3, count=100)) == 40


def test_summarize_samples_streams_the_table_into_values_and_a_pick():
    rows = [
        {
            "id": f"bg{i % 4}/fg{i % 3}/{i}",
            "bg": f"bg{i % 4}",
            "fg": f"fg{i % 3}",
            "split": "val" if i % 4 == 3 else "train",
            "overlay_mean": f"{i}.5",
            "mask_coverage": "0.25",
            "depth_mean": "",
        }
        for i in range(30)
    ]
    table = summarize_samples(iter(rows), seed=1, count=5)
    assert table.count == 30
    assert table.overlay_mean.tolist() == [i + 0.5 for i in range(30)]
    assert table.mask_coverage.tolist() == [0.25] * 30 and len(table.depth_mean) == 0
    assert table.backgrounds_per_split == {"train": 3, "val": 1}
    assert table.foregrounds_per_split == {"train": 3, "val": 3}
    assert table.chosen == choose_samples(rows, seed=1, count=5)


def test_normalization_table_shows_the_train_splits_numbers():
    from fgbg.documents import Stats
    from transforms.stats import stats_document

    def moments(value: int):
        return 4, (4 * value,) * 3, (4 * value * value,) * 3

    stats = stats_document(
        {
            ("train", "overlay"): moments(10),
            ("val", "overlay"): moments(200),
            ("train", "background"): moments(20),
            ("val", "background"): moments(100),
        },
        255.0,
        "relative",
    )
    shown = normalization(stats)
    assert shown is not None and shown["splits"] == "train"
    means = {row[0]: row[2] for row in shown["rows"]}
    assert means == {"background": "20.00", "overlay": "10.00"}
    older = Stats.from_json({"notes": {"method": "older dataset"}})
    assert normalization(older) is None


def test_colormap_runs_from_purple_to_yellow_getting_brighter():
    ends = palette.colormap(np.array([0.0, 1.0, -1.0, 2.0]))
    assert ends.tolist() == [[68, 1, 84], [253, 231, 37], [68, 1, 84], [253, 231, 37]]
    steps = palette.colormap(np.linspace(0, 1, 32)).astype(float)
    luminance = steps @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)
    assert palette.colormap(np.zeros((3, 5))).shape == (3, 5, 3)


def test_depth_levels_label_minmax_near_far_and_metric_in_metres():
    levels, low, high = grid.depth_levels(np.array([[0, 51], [255, 255]], np.uint8), "minmax")
    assert (low, high) == ("near", "far")
    np.testing.assert_allclose(levels, [[0.0, 0.2], [1.0, 1.0]])
    metric = np.array([[1500, 2000], [3500, 2500]], np.uint16)
    levels, low, high = grid.depth_levels(metric, "metric")
    assert (low, high) == ("1.50 m", "3.50 m")
    np.testing.assert_allclose(levels, [[0.0, 0.25], [1.0, 0.5]])
    flat, _, _ = grid.depth_levels(np.full((2, 2), 700, np.uint16), "metric")
    assert not flat.any()


def test_depth_tile_and_color_bar_use_the_color_map():
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    tile, low, high = grid.depth_tile(Image.fromarray(ramp), "minmax", tile=32)
    pixels = np.asarray(tile).astype(int)
    assert (low, high) == ("near", "far") and tile.size == (32, 32)
    assert np.abs(pixels[16, 0] - [68, 1, 84]).max() <= 12
    assert np.abs(pixels[16, -1] - [253, 231, 37]).max() <= 12
    bar = np.asarray(grid.color_bar(100, "near", "far")).astype(int)
    assert bar[0, 0].tolist() == [253, 231, 37] and bar[-1, 0].tolist() == [68, 1, 84]


def test_outline_is_drawn_on_the_mask_boundary_only():
    overlay = Image.new("RGB", (40, 40), (10, 120, 10))
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (10, 10, 30, 30))  # at tile size 80: the square 20..59
    outlined = np.asarray(grid.outline_mask(overlay, mask, tile=80))
    is_outline = np.all(outlined == palette.OUTLINE_RGB, axis=-1)
    ys, xs = np.nonzero(is_outline)
    to_edge = np.minimum(
        np.minimum(abs(xs - 20), abs(xs - 59)), np.minimum(abs(ys - 20), abs(ys - 59))
    )
    assert is_outline.sum() > 4 * 40 and to_edge.max() <= 1
    assert outlined[5, 5].tolist() == [10, 120, 10]  # outside: untouched
    assert not is_outline[40, 40] and outlined[40, 40].tolist() != [10, 120, 10]  # tinted


def test_histogram_svg_bars_are_proportional_and_labels_escaped():
    svg = charts.histogram_svg([0.1, 0.1, 0.1, 0.9], 0, 1, "a < b & c", bins=2)
    bar = r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"'
    heights = [float(height) for height in re.findall(bar, svg)]
    assert len(heights) == 2 and heights[0] == pytest.approx(3 * heights[1], rel=0.01)
    assert "a &lt; b &amp; c" in svg and "a < b" not in svg


def tallest_count_label(svg: str) -> Tuple[str, float, float]:
    """The y axis's top label: (its text, x of its right end, x of the axis)."""
    namespace = "{http://www.w3.org/2000/svg}"
    root = ElementTree.fromstring(svg)
    axis = next(line for line in root.iter(f"{namespace}line") if line.get("x1") == line.get("x2"))
    right_anchored = [
        text for text in root.iter(f"{namespace}text") if text.get("text-anchor") == "end"
    ]
    top = min(right_anchored, key=lambda text: float(text.get("y")))
    return top.text, float(top.get("x")), float(axis.get("x1"))


@pytest.mark.parametrize("tallest", [1, 99_999, 161_154, 3_000_000])
def test_histogram_count_labels_are_drawn_whole(tallest):
    """A 400,000-sample build's bins hold six-digit counts: the axis moves right
    for them, and only for them, so smaller builds keep their bytes."""
    svg = charts.histogram_svg(np.full(tallest, 0.05), 0, 1, "foreground fraction")
    label, right_end, axis = tallest_count_label(svg)
    assert label == str(tallest) and right_end - charts.label_width(label) >= 0
    assert axis == (charts.MIN_LEFT if tallest < 100_000 else right_end + charts.TICK_GAP)


def test_page_values_are_escaped_as_html_escape_does():
    assert escaped("<a href='x'>\"&\"</a>") == (
        "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;&quot;&lt;/a&gt;"
    )
    assert escaped(Markup("<b>")) == "<b>" and escaped(3) == "3"


# --------------------------------------------------------------------------- real builds


@pytest.mark.e2e
def test_report_is_self_contained_and_escapes_input_names(dataset):
    page = html_of(dataset)
    assert "<link" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    sources = [part.split('"', 1)[0] for part in page.split(' src="')[1:]]
    assert len(sources) == 3 and all(src.startswith("data:image/") for src in sources)
    assert HOSTILE_NAME not in page and HOSTILE_ESCAPED in page
    for table_id in (
        "stats-table",
        "normalisation-table",
        "splits-table",
        "timings-table",
        "counters-table",
        "rejects-table",
        "options-table",
        "versions-table",
        "depth-table",
    ):
        assert f'id="{table_id}"' in page
    assert 'id="depth-warning"' not in page and "no depth in this build" in page
    # Placed at random with nothing to compare: no placement section at all.
    assert 'id="placement"' not in page and 'id="placement-beside-random"' not in page
    # One line after the doctype, but for the stylesheet's and the script's own lines.
    doctype, rest = page.split("\n", 1)
    assert (
        doctype == "<!DOCTYPE html>" and "\n" not in rest.split("</style>")[1].split("<script>")[0]
    )


@pytest.mark.e2e
def test_samples_png_has_the_grid_layout_and_outline_column(dataset):
    image = Image.open(dataset / layout.SAMPLES_PNG)
    assert image.size == grid.grid_size(DEFAULT_ROWS, depth=False)
    pixels = np.asarray(image.convert("RGB"))
    outline = [
        int(np.all(grid_column(pixels, i) == palette.OUTLINE_RGB, axis=-1).sum()) for i in range(3)
    ]
    assert outline[0] == outline[1] == 0 and outline[2] > 100


@pytest.mark.e2e
def test_rebuilding_through_the_cli_is_byte_identical(dataset, capsys):
    names = (layout.REPORT_HTML, layout.SAMPLES_PNG)
    before = {name: (dataset / name).read_bytes() for name in names}
    assert report_cli.main([str(dataset) + "/"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert {name: (dataset / name).read_bytes() for name in names} == before
    assert report_cli.main([str(dataset), "--rows", "2"]) == 0
    assert Image.open(dataset / layout.SAMPLES_PNG).size == grid.grid_size(2, depth=False)
    assert report_cli.main([str(dataset)]) == 0
    assert (dataset / layout.SAMPLES_PNG).read_bytes() == before[layout.SAMPLES_PNG]


def test_cli_refuses_what_is_not_a_dataset(tmp_path, capsys):
    assert report_cli.main([str(tmp_path)]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert report_cli.main([str(tmp_path), "--rows", "0"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        report_cli.main(["--help"])
    assert exit_info.value.code == 0 and "OUTPUT" in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.gcs
def test_report_of_a_gcs_dataset(dataset, monkeypatch):
    from tests.depth_fixtures import gcs_emulator

    with gcs_emulator(monkeypatch, "reports") as bucket:
        for path in dataset.rglob("*"):
            if path.is_file() and path.name not in (layout.REPORT_HTML, layout.SAMPLES_PNG):
                bucket.blob(f"ds/{path.relative_to(dataset)}").upload_from_filename(str(path))
        assert report_cli.main(["gs://reports/ds"]) == 0
        samples = bucket.blob(f"ds/{layout.SAMPLES_PNG}").download_as_bytes()
        page = bucket.blob(f"ds/{layout.REPORT_HTML}").download_as_bytes().decode()
    assert samples == (dataset / layout.SAMPLES_PNG).read_bytes()
    assert "gs://reports/ds" in page and 'id="stats-table"' in page


@pytest.mark.e2e
def test_untrained_depth_is_color_mapped_and_warned_about(depth_dataset):
    pixels = np.asarray(Image.open(depth_dataset / layout.SAMPLES_PNG).convert("RGB")).astype(int)
    assert pixels.shape[:2][::-1] == grid.grid_size(2, depth=True)
    depth = grid_column(pixels, 3)[: grid.TILE].reshape(-1, 1, 3)
    off_ramp = np.abs(depth - VIRIDIS_RAMP[None]).sum(axis=-1).min(axis=1)
    assert np.percentile(off_ramp, 95) <= 12  # every depth pixel is a colour-map colour
    page = html_of(depth_dataset)
    assert 'id="depth-warning"' in page and "RANDOM weights" in page
    assert "no depth" not in page and page.count(' src="data:image/') == 4
    # The precision that ran (auto: fp32 at --size 64, where the rule was not measured)
    assert re.search(r"<td>precision</td>\s*<td>fp32</td>", page)


# --------------------------------------------------------------------------- browser


class DomSummary(HTMLParser):
    """What the browser's DOM says: <body> attributes, rows per table id, text."""

    def __init__(self) -> None:
        super().__init__()
        self.body: Dict[str, Optional[str]] = {}
        self.table_rows: Dict[str, int] = {}
        self.text: List[str] = []
        self._table: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag == "body":
            self.body = dict(attrs)
        elif tag == "table":
            self._table = dict(attrs).get("id")
            self.table_rows[self._table] = 0
        elif tag == "tr" and self._table:
            self.table_rows[self._table] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def chromium() -> str:
    """Chromium's path, installing it if it is missing; skipped only outside CI."""
    if not os.path.exists(CHROMIUM):
        subprocess.run(
            ["bash", str(REPO / "scripts" / "install_chromium.sh")],
            capture_output=True,
            timeout=600,
            check=False,
        )
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = (
        f"{CHROMIUM} is missing and scripts/install_chromium.sh could not install it "
        "(it needs apt-get and root or sudo)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(page: Path, work: Path, *mode: str) -> str:
    """Runs headless chromium on a local page with a fresh profile; returns stdout."""
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        *mode,
        page.as_uri(),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=True
    ).stdout


def render(root: Path, work: Path) -> Tuple[DomSummary, np.ndarray]:
    """The report's DOM after load (scripts run) and its 1280x2000 screenshot."""
    page = root / layout.REPORT_HTML
    dom = DomSummary()
    dom.feed(run_chromium(page, work, "--virtual-time-budget=5000", "--dump-dom"))
    screenshot = work / "report.png"
    run_chromium(page, work, f"--screenshot={screenshot}")
    return dom, np.asarray(Image.open(screenshot).convert("RGB"))


def framed(page_html: str, width: int) -> str:
    """A page that shows page_html in a frame `width` px wide, then writes what
    CARD_CHECK finds in it onto its own <body> (a frame, because headless
    chromium's window is never narrower than 500 px)."""
    source = json.dumps(page_html).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html><body><script>" + CARD_CHECK + "var frame = "
        f"document.createElement('iframe'); frame.style.cssText = 'width:{width}px;"
        "height:2000px;border:0'; frame.addEventListener('load', function () {"
        " var result = cardOverflows(frame.contentDocument), body = document.body.dataset;"
        " body.page = result.page; body.cards = result.cards;"
        " body.overflows = result.found.join(' | '); });"
        f" frame.srcdoc = {source}; document.body.appendChild(frame);</script></body></html>"
    )


def card_overflows(page_html: str, work: Path, width: int) -> Dict[str, Optional[str]]:
    """The framed page's <body> attributes: data-page (the frame's width as the
    page sees it), data-cards (how many) and data-overflows (what spills)."""
    work.mkdir(parents=True, exist_ok=True)
    page = work / f"framed-{width}.html"
    page.write_text(framed(page_html, width), encoding="utf-8")
    dom = DomSummary()
    dom.feed(
        run_chromium(page, work, "--hide-scrollbars", "--virtual-time-budget=5000", "--dump-dom")
    )
    return dom.body


def color_pixels(image: np.ndarray, rgb: Tuple[int, int, int], tolerance: int = 6) -> int:
    return int(np.all(np.abs(image.astype(int) - rgb) <= tolerance, axis=-1).sum())


@pytest.mark.e2e
@pytest.mark.browser
def test_report_renders_in_a_real_browser(dataset, tmp_path):
    dom, pixels = render(dataset, tmp_path)
    assert dom.body.get("data-images-total") == "3"
    assert dom.body.get("data-images-ok") == "3"  # the grid and two histograms decoded
    stats = load_dataset(str(dataset)).stats
    channels = sum(len(kind.mean) for kind in stats.kinds.values())
    assert dom.table_rows["stats-table"] == 1 + channels
    assert dom.table_rows["normalisation-table"] == 1 + 3 + 3  # background and overlay RGB
    assert dom.table_rows["rejects-table"] == 2 and HOSTILE_NAME in "".join(dom.text)
    assert dom.table_rows["splits-table"] >= 3 and dom.table_rows["options-table"] > 20

    assert pixels.shape == (2000, 1280, 3) and pixels.std() > 20
    assert color_pixels(pixels, palette.OUTLINE_RGB) > 200  # the samples grid is drawn
    assert color_pixels(pixels, palette.ACCENT_RGB) > 2000  # cards and histogram bars
    assert color_pixels(pixels, palette.BANNER_RGB) == 0  # no warning, no banner


@pytest.mark.e2e
@pytest.mark.browser
def test_untrained_depth_report_shows_its_red_banner_in_the_browser(depth_dataset, tmp_path):
    dom, pixels = render(depth_dataset, tmp_path)
    assert dom.body.get("data-images-ok") == dom.body.get("data-images-total") == "4"
    assert color_pixels(pixels, palette.BANNER_RGB) > 20_000  # the banner spans the page


@pytest.mark.browser
def test_the_card_check_sees_content_spilling_out_but_not_a_table_scrolling_inside(tmp_path):
    wide_table = "<table style='width:600px'><tr><td>x</td></tr></table>"
    page = (
        "<style>section{width:300px}.table-scroll{overflow-x:auto}</style>"
        f"<section id='spills'>{wide_table}</section>"
        f"<section id='scrolls'><div class='table-scroll'>{wide_table}</div></section>"
        "<div class='card' style='width:500px'>wide card</div>"
    )
    body = card_overflows(page, tmp_path, 390)
    assert body["data-page"] == "390" and body["data-cards"] == "3"
    found = body["data-overflows"].split(" | ")
    assert [entry.split(":")[0] for entry in found] == ["spills", "wide card"], found


@pytest.mark.e2e
@pytest.mark.browser
@pytest.mark.parametrize("width", PAGE_WIDTHS)
def test_every_card_holds_its_tables_at_desktop_and_phone_widths(
    dataset, depth_dataset, tmp_path, width
):
    for root in (dataset, depth_dataset):
        body = card_overflows(html_of(root), tmp_path / root.parent.name, width)
        assert body["data-page"] == str(width)
        assert int(body["data-cards"]) >= 16  # ten sections and six summary cards
        assert body["data-overflows"] == "", f"{root.parent.name}: {body['data-overflows']}"
