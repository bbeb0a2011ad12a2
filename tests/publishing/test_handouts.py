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


def test_a_chapter_prints_with_its_figure_and_equations(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", {"index.html": _page(""), "book/ch05_tiny.html": CHAPTER})
    (site / "_images" / "figure.png").write_bytes(_figure_png())
    (handout,) = handouts.print_handouts(site, tmp_path / "handouts")
    assert handout.pdf == tmp_path / "handouts" / "ch05_tiny.pdf" and handout.pages == 1
    assert handout.images >= 1
    assert handout.preview.is_file() and handout.preview.stat().st_size > 1000


def test_lost_figures_and_tex_source_are_caught(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", {"index.html": _page(""), "book/ch05_tiny.html": CHAPTER})
    (site / "_images" / "figure.png").write_bytes(_figure_png())
    (handout,) = handouts.print_handouts(site, tmp_path / "handouts")
    with pytest.raises(handouts.HandoutError, match="1 images printed, the page has 3 figures"):
        handouts.check_handout(handout.pdf, 3, "A page")
    with pytest.raises(handouts.HandoutError, match="title 'Another title' is not in the text"):
        handouts.check_handout(handout.pdf, 1, "Another title")
    raw = _page("<p>\\(\\frac{1}{2}\\) left as source</p>", depth=1).replace("tex-chtml.js", "none.js")
    site = _site(tmp_path / "raw", {"index.html": _page(""), "book/ch05_tiny.html": raw})
    with pytest.raises(handouts.HandoutError, match="raw TeX in the text"):
        handouts.print_handouts(site, tmp_path / "raw-handouts")


def test_lines_cut_off_at_the_page_edge_are_caught(tmp_path: Path) -> None:
    wide = _page('<div class="math notranslate nohighlight">\\[' + " + ".join(["x_{1}"] * 80) + "\\]</div>", 1)
    site = _site(tmp_path / "html", {"index.html": _page(""), "book/ch05_tiny.html": wide})
    with pytest.raises(handouts.HandoutError, match="cut off at the page edge: div"):
        handouts.print_handouts(site, tmp_path / "handouts")


def test_a_site_without_chapters_is_refused(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", {"index.html": _page("")})
    with pytest.raises(ValueError, match="no chapter pages"):
        handouts.print_handouts(site, tmp_path / "handouts")
