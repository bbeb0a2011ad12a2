"""Printable per-chapter handouts: each chapter page printed to PDF by headless Chromium.

``python -m lorabook.publishing handouts [SITE]`` prints every chapter of a built site (by
default the student edition, so the handouts carry no solutions) to
``_build/handouts/chNN_topic.pdf``, once every equation is typeset and every figure decoded, and
checks each handout: in the print layout no line may be cut off at the page edge, every equation
must be typeset and no TeX left in the prose; the PDF must hold as many images as the page has
figures and carry the chapter's title; its first page, rendered to ``chNN_topic-page1.png``,
must not be blank.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from lorabook.publishing import browser, chapters

__all__ = [
    "print_handouts",
    "check_handout",
    "chapter_pages",
    "Handout",
    "HandoutError",
]

PRINT_SCALE = 0.8
"""The handouts are printed at 80%: the page column then holds about 100 characters of code."""
PRINT_WIDTH = round((210 - 28) / 25.4 * 96 / PRINT_SCALE)
"""CSS pixels across the printed column: A4 less 2 x 14 mm margins, at the print scale."""
CUT_OFF = r"""() => [...document.querySelectorAll("article div.math, article pre, article img")]
  .filter((element) => element.offsetParent !== null
    && (element.scrollWidth > element.clientWidth + 1
        || element.getBoundingClientRect().right
           > document.querySelector("article").getBoundingClientRect().right + 2))
  .map((element) => (element.id ? "#" + element.id + " " : "") + element.tagName.toLowerCase() + ": "
    + element.textContent.replace(/\s+/g, " ").trim().slice(0, 60))"""

UNRENDERED_MATH = (
    "() => { const found = [];"
    " const snippet = (text) => text.replace(/\\s+/g, ' ').trim().slice(0, 60);"
    f" ({browser.MATH_PROBLEMS})((element, message) => found.push(message), snippet);"
    " return found; }"
)
"""Equations not typeset and TeX left in the prose, in the print layout (code is not prose)."""


@dataclass(frozen=True)
class Handout:
    """A printed chapter: its PDF, page and image counts, and the PNG of its first page."""

    chapter: str
    pdf: Path
    pages: int
    images: int
    preview: Path


class HandoutError(RuntimeError):
    """A handout lost figures or equations, or came out blank."""


def chapter_pages(site: Path) -> list[str]:
    """The chapter pages of a built site (``book/chNN_*.html``), in order."""
    return sorted(
        path.relative_to(site).as_posix()
        for path in (site / "book").glob("ch*.html")
        if chapters.chapter_number(f"{path.stem}.ipynb") is not None
    )


def print_handouts(site: Path | str, output: Path | str) -> list[Handout]:
    """Print every chapter page of ``site`` to a checked PDF in ``output``.

    Raises
    ------
    ValueError
        If ``site`` holds no chapter pages.
    HandoutError
        If a handout lost figures or equations or its first page is blank; every chapter is
        printed and checked first, and the error names every failed handout, one a line.
    """
    site, output = Path(site).resolve(), Path(output)
    pages = chapter_pages(site)
    if not pages:
        raise ValueError(f"site={str(site)!r} has no chapter pages (book/chNN_*.html): build it first")
    output.mkdir(parents=True, exist_ok=True)
    printed = asyncio.run(_print_all(site, pages, output))
    checked: list[Handout] = []
    failures: list[str] = []
    for facts in printed:
        try:
            checked.append(check_handout(*facts))
        except HandoutError as error:  # check the others too: one run names every bad chapter
            failures.append(str(error))
    if failures:
        raise HandoutError("\n".join(failures))
    return checked


PRINT_CONCURRENCY = 3
"""Chapters printed at once: Chromium lays out one page while it prints another."""


async def _print_all(site: Path, pages: list[str], output: Path) -> list[tuple]:
    limit = asyncio.Semaphore(PRINT_CONCURRENCY)
    async with browser.chromium() as context:
        with browser.serve(site) as server:

            async def one(name: str) -> tuple:
                async with limit:
                    return await _print_page(context, server + name, output / f"{Path(name).stem}.pdf")

            printed = await asyncio.gather(*(one(name) for name in pages))
    if context.external_requests:
        raise HandoutError(f"printing requested external resources: {context.external_requests}")
    return list(printed)


async def _print_page(context, url: str, pdf: Path) -> tuple:  # noqa: ANN001
    """Print the page at ``url`` to ``pdf``; return what :func:`check_handout` needs."""
    page = await context.new_page()
    try:
        # Lay the page out at the printed column's width, so that what overflows here is what
        # the PDF would cut off.
        await page.set_viewport_size({"width": PRINT_WIDTH, "height": 1200})
        await page.emulate_media(media="print")
        await page.goto(url, wait_until="load")
        await page.evaluate(browser.WAIT_FOR_PAGE)
        figures = await page.evaluate("document.querySelectorAll('article img').length")
        cut = _describe_cut_off(await page.evaluate(CUT_OFF))
        cut += await page.evaluate(UNRENDERED_MATH)
        title = await page.evaluate("document.querySelector('article h1').textContent")
        await page.pdf(
            path=str(pdf),
            format="A4",
            scale=PRINT_SCALE,
            print_background=True,
            margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
            display_header_footer=True,
            header_template="<span></span>",
            footer_template=(
                '<div style="font-size:8px;width:100%;text-align:center">'
                '<span class="title"></span> - page <span class="pageNumber"></span>'
                ' of <span class="totalPages"></span></div>'
            ),
        )
    finally:
        await page.close()
    return pdf, figures, title.replace("#", "").strip(), cut


def check_handout(pdf: Path, figures: int, title: str, layout_problems: list[str] = ()) -> Handout:
    """Check a printed chapter and render its first page to PNG (see the module docstring).

    ``layout_problems`` are what the print layout showed before printing: lines cut off at the
    page edge, equations not typeset, TeX left in the prose.
    """
    import numpy as np
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    document = pypdfium2.PdfDocument(pdf)
    try:
        images = 0
        text = []
        for page in document:
            images += sum(1 for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
            text.append(page.get_textpage().get_text_range())
        bitmap = document[0].render(scale=1.5).to_pil()
        preview = pdf.with_name(f"{pdf.stem}-page1.png")
        bitmap.save(preview)
        pixels = np.asarray(bitmap.convert("L"), dtype=float)
        pages = len(document)
    finally:
        document.close()
    whole = "\n".join(text)
    problems = list(layout_problems)
    if images < figures:
        problems.append(f"{images} images printed, the page has {figures} figures")
    if " ".join(title.split()) not in " ".join(whole.split()):
        problems.append(f"the title {title!r} is not in the text")
    if pixels.std() < 5 or (pixels < 128).mean() < 0.005:
        problems.append("the first page is blank")
    if problems:
        raise HandoutError(f"{pdf}: " + "; ".join(problems))
    return Handout(pdf.stem, pdf, pages, images, preview)


def _describe_cut_off(elements: list[str]) -> list[str]:
    return [f"cut off at the page edge: {element}" for element in elements]
