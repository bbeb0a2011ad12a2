"""Tests of lorabook.publishing.handouts: a chapter page prints to a PDF that keeps its figure
and its equations, with a first-page preview; lost figures, TeX source, cut-off lines and blank
pages are caught."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from test_site_check import _page, _site

from lorabook.publishing import handouts

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _figure_png() -> bytes:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:120, 0:200]
    pixels = (127 + 120 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


CHAPTER = _page(
    '<p>Text with <span class="math notranslate nohighlight">\\(\\mu^2\\)</span>.</p>'
    '<div class="math notranslate nohighlight">\\[\\tau(\\mu) = \\frac{2}{\\sqrt{1 + 4(1-\\mu)^2} - 1}\\]</div>'
    '<figure><img src="../_images/figure.png" alt="a figure"></figure>',
    depth=1,
)


@pytest.fixture(scope="module")
def handout(tmp_path_factory: pytest.TempPathFactory) -> handouts.Handout:
    """The sound chapter printed once; the tests only read its PDF."""
    folder = tmp_path_factory.mktemp("sound")
    site = _site(folder / "html", {"index.html": _page(""), "book/ch05_tiny.html": CHAPTER})
    (site / "_images" / "figure.png").write_bytes(_figure_png())
    (printed,) = handouts.print_handouts(site, folder / "handouts")
    return printed


@pytest.fixture(scope="module")
def defects(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The error of printing one site with two bad chapters: TeX left as source (MathJax did
    not load) in chapter 5, an equation wider than the page in chapter 6. One Chromium for
    both; the error names every failed handout, one a line."""
    folder = tmp_path_factory.mktemp("defects")
    raw = _page("<p>\\(\\frac{1}{2}\\) left as source</p>", depth=1).replace("tex-chtml.js", "none.js")
    wide = _page('<div class="math notranslate nohighlight">\\[' + " + ".join(["x_{1}"] * 80) + "\\]</div>", 1)
    site = _site(folder / "html", {
        "index.html": _page(""), "book/ch05_raw.html": raw, "book/ch06_wide.html": wide})
    with pytest.raises(handouts.HandoutError) as raised:
        handouts.print_handouts(site, folder / "handouts")
    return str(raised.value)


def _failure_of(defects: str, chapter: str) -> str:
    """The line of ``defects`` about ``chapter``'s PDF (exactly one)."""
    (line,) = [line for line in defects.splitlines() if f"/{chapter}.pdf: " in line]
    return line


def test_a_chapter_prints_with_its_figure_and_equations(handout: handouts.Handout) -> None:
    assert handout.pdf.name == "ch05_tiny.pdf" and handout.pdf.parent.name == "handouts"
    assert handout.pages == 1 and handout.images >= 1
    assert handout.preview.is_file() and handout.preview.stat().st_size > 1000


def test_lost_figures_and_tex_source_are_caught(handout: handouts.Handout, defects: str) -> None:
    with pytest.raises(handouts.HandoutError, match="1 images printed, the page has 3 figures"):
        handouts.check_handout(handout.pdf, 3, "A page")
    with pytest.raises(handouts.HandoutError, match="title 'Another title' is not in the text"):
        handouts.check_handout(handout.pdf, 1, "Another title")
    raw = _failure_of(defects, "ch05_raw")
    assert "raw TeX in the text" in raw and "cut off" not in raw, defects


def test_lines_cut_off_at_the_page_edge_are_caught(defects: str) -> None:
    wide = _failure_of(defects, "ch06_wide")
    assert "cut off at the page edge: div" in wide and "raw TeX" not in wide, defects


def test_a_site_without_chapters_is_refused(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", {"index.html": _page("")})
    with pytest.raises(ValueError, match="no chapter pages"):
        handouts.print_handouts(site, tmp_path / "handouts")
