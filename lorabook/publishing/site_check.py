"""Check the built website in a real browser, page by page.

``python -m lorabook.publishing check-site _build/html`` opens every page of the site in
headless Chromium (a window of 1366 x 768 pixels), served from 127.0.0.1 and again from disk
(``file://``), and fails, naming the page and the element, when

* an equation is not rendered (TeX left as text, a MathJax error, ``$...$`` left in the prose);
* an image does not load (zero natural size) or any request fails or leaves the machine;
* the page logs a JavaScript error;
* a cell output shows an error, a traceback or a warning;
* a code block is wider than the page column (cut off, needs a horizontal scroll);
* an internal link or its anchor does not resolve;
* a chapter's number in the sidebar differs from the number in its file name;
* the launch buttons are missing (or, without a repository URL, present), or point elsewhere;
* the edition is wrong (a student page with a solution, an instructor page without);
* the reproducibility page's execution table misses a chapter, or a chapter took longer than
  ``CHAPTER_SECONDS`` (the introduction promises about a minute).

Screenshots of every page are saved under the report folder (``_build/site-check/<edition>/`` by
default), with ``report.json``: the first screen as PNG and, with ``screenshots="full"`` (the
default), the whole page as JPEG too. The whole-page pictures take most of a check's time (about
2 s a page), so a second check of the same pages (the student edition) takes the first screen
only (``--screenshots first``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

from lorabook.publishing import browser, chapters

__all__ = [
    "check_site",
    "Problem",
    "Report",
    "site_pages",
    "expected_launch_links",
]

EDITIONS = ("instructor", "student")
SCREENSHOT_MODES = ("full", "first", "none")
"""``"full"``: first screen (PNG) and whole page (JPEG); ``"first"``: first screen; ``"none"``."""
CHAPTER_SECONDS = 90.0
"""The longest a chapter may take to execute (the book's target: about a minute, at most 90 s)."""
EXECUTION_TABLE_PAGE = "book/reproducibility.html"

COLLECT = r"""() => {
  const describe = (element) => {
    let name = element.tagName.toLowerCase();
    if (element.id) { name += "#" + element.id; }
    const classes = [...element.classList].slice(0, 3);
    if (classes.length) { name += "." + classes.join("."); }
    const section = element.closest("section[id]");
    if (section && section !== element) { name += " in section #" + section.id; }
    return name;
  };
  const snippet = (text) => text.replace(/\s+/g, " ").trim().slice(0, 100);
  const problems = [];
  const add = (element, message) => problems.push([describe(element), message]);

  (""" + browser.MATH_PROBLEMS + r""")(add, snippet);
  for (const image of document.images) {
    if (!(image.complete && image.naturalWidth > 0)) {
      add(image, "image not loaded: " + image.getAttribute("src"));
    }
  }
  // Cell outputs: error outputs, stderr streams, and warning or traceback text.
  for (const output of document.querySelectorAll(".cell_output .stderr, .cell_output .traceback, .output.error, .output.traceback, .output.stderr")) {
    add(output, "error or stderr output: " + snippet(output.textContent));
  }
  const warning = /Traceback \(most recent call last\)|\b[A-Z][A-Za-z]*(Warning|Error|Exception):|\bWARNING\b/;
  for (const output of document.querySelectorAll(".cell_output")) {
    const match = output.textContent.match(warning);
    if (match) { add(output, "warning or error text in an output: " + match[0]); }
  }
  for (const block of document.querySelectorAll("article pre")) {
    if (block.scrollWidth > block.clientWidth + 1 && block.offsetParent !== null) {
      add(block, `code wider than the column (${block.scrollWidth} > ${block.clientWidth} px): `
          + snippet(block.textContent.split("\n").sort((a, b) => b.length - a.length)[0]));
    }
  }
  const links = [...document.querySelectorAll("a[href]")].map(
    (a) => [describe(a), a.href, a.getAttribute("href"), snippet(a.textContent)]);
  const ids = [...document.querySelectorAll("[id]")].map((e) => e.id)
    .concat([...document.querySelectorAll("a[name]")].map((e) => e.getAttribute("name")));
  const sidebar = [...document.querySelectorAll("nav.bd-docs-nav a.reference")].map(
    (a) => [snippet(a.textContent), a.getAttribute("href")]);
  const launch = [...document.querySelectorAll("a[href*='mybinder.org'], a[href*='colab.research.google.com']")]
    .map((a) => a.href);
  const timings = [...document.querySelectorAll("section#execution-times table tbody tr")].map(
    (row) => [...row.querySelectorAll("td")].map((cell) => snippet(cell.textContent)));
  const exercises = document.querySelectorAll("div.exercise").length;
  const solutions = document.querySelectorAll("div.solution").length;
  return {problems, links, ids, sidebar, launch, timings, exercises, solutions, title: document.title};
}"""


@dataclass(frozen=True)
class Problem:
    """One failed check: the page, the element (tag#id.class, its section) and what is wrong."""

    page: str
    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.page}: {self.element}: {self.message}"


@dataclass
class Report:
    """The outcome of a site check."""

    pages: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    external_links: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the built site, relative to ``site`` (assets and sources excluded)."""
    return sorted(
        path.relative_to(site).as_posix()
        for path in site.rglob("*.html")
        if not {"_static", "_sources", "_images"} & set(path.relative_to(site).parts)
    )


def expected_launch_links(repository_url: str, page: str, branch: str = "main") -> list[str]:
    """The Binder and Colab links of a chapter page built with ``repository_url``."""
    match = re.match(r"^https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", repository_url)
    if match is None:
        raise ValueError(
            f"repository_url must look like https://github.com/OWNER/REPOSITORY, got {repository_url!r}"
        )
    owner, name = match.groups()
    notebook = page.removesuffix(".html") + ".ipynb"
    return [
        f"https://mybinder.org/v2/gh/{owner}/{name}/{branch}?urlpath=lab/tree/{notebook}",
        f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{notebook}",
    ]


def _target_file(site: Path, url: str, base: str) -> tuple[Path, str] | None:
    """The file and anchor a same-site link points at (``None`` for links that leave it)."""
    address, fragment = urldefrag(url)
    if base.startswith("file://"):
        if not address.startswith("file://"):
            return None
        path = Path(unquote(urlparse(address).path))
    else:
        if not address.startswith(base):
            return None
        path = site / unquote(urlparse(address).path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path, unquote(fragment)


def _check_links(site: Path, base: str, page: str, links: list, ids: dict) -> list[Problem]:
    problems = []
    for element, url, written, text in links:
        if url.startswith(("mailto:", "javascript:")) or written.startswith("#") and written == "#":
            continue
        target = _target_file(site, url, base)
        if target is None:
            continue
        path, anchor = target
        if not path.is_file():
            problems.append(Problem(page, element, f"broken link {written!r} ({text!r}): no such file"))
            continue
        if anchor and path.suffix == ".html":
            known = ids.get(path.resolve())
            if known is not None and anchor not in known:
                problems.append(
                    Problem(page, element, f"broken anchor {written!r} ({text!r}): no id {anchor!r}")
                )
    return problems


def _chapter_of(path: str) -> int | None:
    """The chapter number of a page (``book/ch05_search_phase.html`` is 5), or ``None``."""
    return chapters.chapter_number(f"{Path(path).stem}.ipynb")


def _check_sidebar(page: str, sidebar: list) -> list[Problem]:
    problems = []
    for text, href in sidebar:
        number = _chapter_of(urlparse(href).path)
        if number is None:
            continue
        shown = re.match(r"^(\d+)\.", text)
        if shown is None or int(shown.group(1)) != number:
            problems.append(
                Problem(page, f"sidebar link {href}", f"chapter {number} is numbered {text!r}")
            )
    return problems


def check_site(
    site: Path | str,
    *,
    edition: str = "instructor",
    repository_url: str = "",
    report_folder: Path | str | None = None,
    from_disk: bool = True,
    screenshots: str = "full",
    concurrency: int = 3,
) -> Report:
    """Check every page of the built site at ``site`` in headless Chromium.

    Parameters
    ----------
    site
        The built HTML folder (``_build/html``).
    edition
        ``"instructor"`` (every exercise has its solution) or ``"student"`` (none has).
    repository_url
        The URL the site was built with; empty means the site must have no launch buttons.
    report_folder
        Where screenshots and ``report.json`` go (default ``<site>/../site-check/<edition>``).
    from_disk
        Also open every page from ``file://`` and run the same checks there.
    screenshots
        One of ``SCREENSHOT_MODES``: save the first screen and the whole page (``"full"``), the
        first screen only (``"first"``) or nothing (``"none"``) of every page served over HTTP.
    concurrency
        Pages loaded at once.

    Raises
    ------
    ValueError
        If ``site`` has no ``index.html``, ``edition`` is not one of ``EDITIONS``,
        ``screenshots`` not one of ``SCREENSHOT_MODES`` or ``concurrency`` is not a positive
        integer.
    """
    started = time.perf_counter()
    site = Path(site).resolve()
    if not (site / "index.html").is_file():
        raise ValueError(f"site={str(site)!r} has no index.html: build the book first")
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {', '.join(EDITIONS)}, got {edition!r}")
    if not isinstance(screenshots, str) or screenshots not in SCREENSHOT_MODES:
        raise ValueError(
            f"screenshots must be one of {', '.join(SCREENSHOT_MODES)}, got {screenshots!r}"
        )
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    report_folder = Path(report_folder) if report_folder else site.parent / "site-check" / edition
    report_folder.mkdir(parents=True, exist_ok=True)
    for old in report_folder.glob("*.*"):
        old.unlink()
    report = Report(pages=site_pages(site))
    options = dict(edition=edition, repository_url=repository_url, folder=report_folder)
    asyncio.run(_check_all(site, report, options, from_disk, screenshots, concurrency))
    report.seconds = time.perf_counter() - started
    (report_folder / "report.json").write_text(
        json.dumps(
            {**asdict(report), "problems": [asdict(problem) for problem in report.problems]},
            indent=1,
        ),
        encoding="utf-8",
    )
    return report


async def _check_all(site, report, options, from_disk, screenshots, concurrency):  # noqa: ANN001
    limit = asyncio.Semaphore(concurrency)
    external: set[str] = set()
    async with browser.chromium() as context:
        with browser.serve(site) as server:
            bases = [server] + ([site.as_uri() + "/"] if from_disk else [])
            for base in bases:
                shots = screenshots if base == server else "none"

                async def one(page_name: str) -> tuple[str, dict | None, list[Problem]]:
                    label = page_name if base == server else f"{page_name} (from disk)"
                    async with limit:
                        return await _check_page(
                            context, site, base, page_name, label, options, shots, report
                        )

                results = await asyncio.gather(*(one(name) for name in report.pages))
                ids = {
                    (site / name).resolve(): set(collected["ids"])
                    for name, (_, collected, _) in zip(report.pages, results, strict=True)
                    if collected
                }
                for label, collected, problems in results:
                    report.problems += problems
                    if collected:
                        report.problems += _check_links(site, base, label, collected["links"], ids)
                        external.update(
                            url for _, url, _, _ in collected["links"] if url.startswith("http")
                        )
            if (site / "search.html").is_file() and (site / "searchindex.js").is_file():
                report.problems += await _check_search(context, server)
        report.problems += [
            Problem("(any page)", "request", f"request left the machine: {url}")
            for url in sorted(set(context.external_requests))
        ]
    report.external_links = sum(not browser.is_local(url) for url in external)


async def _check_page(context, site, base, page_name, label, options, shots, report):  # noqa: ANN001
    """Visit one page; return its label, what it collected and its problems."""
    target = browser.redirect_target(site / page_name)
    if target is not None:
        return label, None, await _check_redirect(context, site, base, page_name, label, target)
    collected, errors, saved = await _visit(context, base + page_name, page_name, options["folder"], shots)
    report.screenshots += saved
    problems = [Problem(label, element, message) for element, message in errors]
    problems += [Problem(label, element, message) for element, message in collected["problems"]]
    problems += _check_sidebar(label, collected["sidebar"])
    problems += _check_launch(label, page_name, collected, options["repository_url"])
    problems += _check_edition(label, collected, options["edition"])
    if page_name == EXECUTION_TABLE_PAGE:
        problems += _check_execution_times(label, collected["timings"], report.pages)
    return label, collected, problems


async def _check_redirect(context, site, base, page_name, label, target):  # noqa: ANN001
    """A redirect stub must lead, in the browser, to a page that exists."""
    destination = (site / page_name).parent / target
    if not destination.is_file():
        return [Problem(label, "meta refresh", f"redirects to {target}, which does not exist")]
    page = await context.new_page()
    try:
        await page.goto(base + page_name)
        await page.wait_for_url(f"**/{Path(target).name}", timeout=15000)
    except Exception as error:  # noqa: BLE001 - any failure to arrive is the problem reported
        return [Problem(label, "meta refresh", f"did not arrive at {target}: {error}")]
    finally:
        await page.close()
    return []


async def _visit(context, url: str, page_name: str, folder: Path, shots: str):  # noqa: ANN001, ANN201
    """Load ``url``, wait until it is rendered, collect its facts and its browser errors, and
    save its screenshots (``shots``, one of ``SCREENSHOT_MODES``) in ``folder``; return (facts,
    errors, screenshot paths)."""
    errors: list[tuple[str, str]] = []
    page = await context.new_page()
    page.on("console", lambda message: message.type == "error" and errors.append(
        ("console", f"JavaScript console error: {message.text}")))
    page.on("pageerror", lambda error: errors.append(("script", f"uncaught JavaScript error: {error}")))
    page.on("requestfailed", lambda request: browser.is_local(request.url) and errors.append(
        ("request", f"failed to load {request.url}: {request.failure}")))
    page.on("response", lambda response: response.status >= 400 and errors.append(
        ("request", f"HTTP {response.status} for {response.url}")))
    saved: list[str] = []
    try:
        await page.goto(url, wait_until="load")
        if not await page.evaluate(browser.WAIT_FOR_PAGE):
            errors.append(("page", "not rendered within 30 s (MathJax, images or fonts)"))
        collected = await page.evaluate(COLLECT)
        if shots != "none":
            saved = await _screenshots(page, page_name, folder, whole_page=shots == "full")
    finally:
        await page.close()
    return collected, errors, saved


SCREENSHOT_HEIGHT = 30000
"""Tallest piece of a full-page screenshot (JPEG allows at most 65535 pixels)."""


async def _screenshots(page, page_name: str, folder: Path, whole_page: bool) -> list[str]:  # noqa: ANN001
    """The first screen as PNG and, if ``whole_page``, the whole page as JPEG, in pieces for very
    long pages."""
    stem = page_name.removesuffix(".html").replace("/", "__")
    await page.evaluate("window.scrollTo(0, 0)")
    first = folder / f"{stem}.png"
    await page.screenshot(path=str(first))
    saved = [str(first)]
    if not whole_page:
        return saved
    height = await page.evaluate("document.documentElement.scrollHeight")
    width = page.viewport_size["width"]
    pieces = -(-height // SCREENSHOT_HEIGHT)
    for index in range(pieces):
        top = index * SCREENSHOT_HEIGHT
        suffix = "" if pieces == 1 else f"-{index + 1}"
        whole = folder / f"{stem}-full{suffix}.jpg"
        clip = dict(x=0, y=top, width=width, height=min(SCREENSHOT_HEIGHT, height - top))
        await page.screenshot(path=str(whole), full_page=True, clip=clip, type="jpeg", quality=60)
        saved.append(str(whole))
    return saved


def _check_launch(label: str, page_name: str, collected: dict, repository_url: str) -> list[Problem]:
    is_chapter = _chapter_of(page_name) is not None
    launch = collected["launch"]
    if not repository_url:
        return [Problem(label, "header", f"launch button without a repository URL: {url}") for url in launch]
    if not is_chapter:
        return []
    return [
        Problem(label, "header launch buttons", f"missing launch link {expected}")
        for expected in expected_launch_links(repository_url, page_name)
        if expected not in launch
    ]


def _check_execution_times(label: str, rows: list, pages: list[str]) -> list[Problem]:
    """Every chapter is in the execution table, succeeded, and took at most CHAPTER_SECONDS."""
    times = {row[0]: row for row in rows if row}
    problems = []
    for page in pages:
        if _chapter_of(page) is None:
            continue
        document = page.removesuffix(".html")
        row = times.get(document)
        if row is None:
            problems.append(Problem(label, "execution table", f"{document} is not in the table"))
            continue
        try:
            seconds = float(row[3])
        except (IndexError, ValueError):
            problems.append(Problem(label, "execution table", f"{document}: no run time in {row}"))
            continue
        if seconds > CHAPTER_SECONDS:
            problems.append(Problem(
                label, "execution table", f"{document} took {seconds:.0f} s (> {CHAPTER_SECONDS:.0f} s)"
            ))
        if row[-1] != "\u2705":
            problems.append(Problem(label, "execution table", f"{document} did not succeed: {row}"))
    return problems


def _check_edition(label: str, collected: dict, edition: str) -> list[Problem]:
    if edition == "student" and collected["solutions"]:
        return [Problem(label, "div.solution", f"{collected['solutions']} solution(s) in the student edition")]
    if edition == "instructor" and collected["solutions"] != collected["exercises"]:
        return [
            Problem(
                label,
                "div.exercise",
                f"{collected['exercises']} exercises but {collected['solutions']} solutions",
            )
        ]
    return []


async def _check_search(context, server: str) -> list[Problem]:  # noqa: ANN001
    """The search page finds the book's subject (Sphinx's index is loaded and used)."""
    page = await context.new_page()
    try:
        await page.goto(server + "search.html?q=search+phase", wait_until="load")
        try:
            await page.wait_for_selector("#search-results ul.search li", timeout=15000)
        except Exception:  # noqa: BLE001 - a timeout is the failure being reported
            return [Problem("search.html", "#search-results", "a search for 'search phase' found nothing")]
        return []
    finally:
        await page.close()
