"""Tests of lorabook.publishing.site_check: a small hand-written site passes, and each defect
introduced on purpose (broken link or anchor, missing image, unrendered equation, raw TeX,
external request, script error, warning in an output, code wider than the column, wrong chapter
number, a solution in the student edition) fails the check with the page and element named."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from lorabook.publishing import site_check
from lorabook.publishing.sphinx_extension import mathjax_folder

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A 2 x 2 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


def _page(body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title>'
        f'<script defer src="{up}_static/mathjax/tex-chtml.js"></script></head>'
        f'<body><article class="bd-article"><section id="top"><h1>A page</h1>{body}'
        f"</section></article></body></html>"
    )


GOOD = {
    "index.html": _page(
        '<p>Inline <span class="math notranslate nohighlight">\\(x^2 + \\frac{1}{2}\\)</span>.</p>'
        '<div class="math notranslate nohighlight">\\[\\int_0^1 t\\,dt = \\tfrac12\\]</div>'
        '<p><img src="_images/dot.png" alt="a dot"> <a href="book/ch05_tiny.html#anchor">go</a>'
        ' <a href="https://example.org/elsewhere">an external link</a></p>'
        '<div class="cell_output"><pre>relative error 1e-3</pre></div>'
    ),
    "book/ch05_tiny.html": _page(
        '<nav class="bd-docs-nav"><a class="reference" href="ch05_tiny.html">5. A chapter</a></nav>'
        '<section id="anchor"><p>Here.</p></section><pre>short code</pre>',
        depth=1,
    ),
}

def _timings(rows: str) -> str:
    return _page(
        '<section id="execution-times"><table><thead><tr><th>Document</th><th>Modified</th>'
        f"<th>Method</th><th>Run Time (s)</th><th>Status</th></tr></thead><tbody>{rows}</tbody>"
        "</table></section>",
        depth=1,
    )


def _row(document: str, seconds: float, status: str = "\u2705") -> str:
    return f"<tr><td>{document}</td><td>2026-12-07</td><td>force</td><td>{seconds}</td><td>{status}</td></tr>"


GOOD["book/reproducibility.html"] = _timings(_row("book/ch05_tiny", 12.3))

DEFECTS = {  # page: (its body, a phrase of the element, a phrase of the message)
    "broken_link.html": ('<a href="missing.html">gone</a>', "a", "broken link 'missing.html'"),
    "broken_anchor.html": ('<a href="index.html#nowhere">x</a>', "a", "no id 'nowhere'"),
    "missing_image.html": ('<img src="_images/none.png">', "img", "image not loaded: _images/none.png"),
    "unrendered.html": ('<span class="math" id="eq-x">x^2</span>', "span#eq-x", "equation not rendered"),
    "tex_error.html": ('<span class="math">\\(\\frac{1}\\)</span>', "mjx-merror", "MathJax error"),
    "raw_tex.html": ("<p>where $\\alpha$ is small</p>", "p", "raw TeX in the text"),
    "external.html": ('<script src="https://cdn.example.org/x.js"></script>', "request", "left the machine"),
    "script_error.html": ("<script>console.error('boom')</script>", "console", "boom"),
    "warning.html": (
        '<div class="cell_output"><pre>RuntimeWarning: overflow in exp</pre></div>',
        "div.cell_output",
        "RuntimeWarning:",
    ),
    "wide.html": ('<pre style="width: 200px">' + "x = 1  # " * 40 + "</pre>", "pre", "wider than the column"),
    "book/ch07_wrong.html": (
        '<nav class="bd-docs-nav"><a class="reference" href="ch07_wrong.html">6. Wrong</a></nav>',
        "sidebar link ch07_wrong.html",
        "chapter 7 is numbered '6. Wrong'",
    ),
    "with_solution.html": (
        '<div class="exercise">Do it.</div><div class="solution">Done.</div>',
        "div.solution",
        "in the student edition",
    ),
}


def _site(folder: Path, pages: dict[str, str]) -> Path:
    (folder / "_static").mkdir(parents=True)
    os.symlink(mathjax_folder() / "mathjax", folder / "_static" / "mathjax")
    (folder / "_images").mkdir()
    (folder / "_images" / "dot.png").write_bytes(PNG)
    for name, html in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(html, encoding="utf-8")
    return folder


def test_a_sound_site_passes_over_http_and_from_disk(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", GOOD)
    report = site_check.check_site(site, report_folder=tmp_path / "report")
    assert report.ok, "\n".join(map(str, report.problems))
    assert report.pages == ["book/ch05_tiny.html", "book/reproducibility.html", "index.html"]
    assert report.external_links == 1
    # A screenshot of every page: the first screen (PNG) and the whole page (JPEG).
    assert sorted(Path(path).name for path in report.screenshots) == [
        "book__ch05_tiny-full.jpg", "book__ch05_tiny.png", "book__reproducibility-full.jpg",
        "book__reproducibility.png", "index-full.jpg", "index.png"]
    assert all(Path(path).stat().st_size > 1000 for path in report.screenshots)
    assert (tmp_path / "report" / "report.json").is_file()


def test_first_screen_mode_saves_one_png_a_page_and_no_whole_page(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", GOOD)
    report = site_check.check_site(site, report_folder=tmp_path / "report", from_disk=False,
                                   screenshots="first")
    assert report.ok, "\n".join(map(str, report.problems))
    assert sorted(Path(path).name for path in report.screenshots) == [
        "book__ch05_tiny.png", "book__reproducibility.png", "index.png"]
    assert sorted(path.name for path in (tmp_path / "report").glob("*.jpg")) == []


def test_every_defect_fails_the_check_naming_page_and_element(tmp_path: Path) -> None:
    pages = dict(GOOD)
    for name, (body, _, _) in DEFECTS.items():
        pages[name] = _page(body, depth=name.count("/"))
    pages["book/reproducibility.html"] = _timings(
        _row("book/ch05_tiny", 12.3) + _row("book/ch07_wrong", 1.0))
    site = _site(tmp_path / "html", pages)
    # No screenshots: they are taken after a page's facts are collected and add no problem
    # (the sound-site tests check them); every defect is still checked over HTTP and from disk.
    report = site_check.check_site(
        site, edition="student", report_folder=tmp_path / "report", screenshots="none"
    )
    assert not report.ok
    found = {(problem.page, problem.element, problem.message) for problem in report.problems}
    for name, (_, element, message) in DEFECTS.items():
        for page in (name, f"{name} (from disk)"):
            if name == "external.html" and page != name:
                continue  # the aborted request is reported once, for the whole site
            matches = [
                found_element for found_page, found_element, found_message in found
                if (found_page == page or name == "external.html") and element in found_element
                and message in found_message
            ]
            assert matches, f"{page}: no problem with {element!r} and {message!r} in\n" + "\n".join(
                map(str, report.problems))
    # The sound pages stay clean; only the defects are reported.
    assert not [problem for problem in report.problems
                if problem.page.startswith(("index.html", "book/ch05", "book/reproducibility"))]


def test_launch_buttons_are_required_when_a_url_is_given(tmp_path: Path) -> None:
    site = _site(tmp_path / "html", GOOD)
    report = site_check.check_site(
        site, repository_url="https://github.com/owner/lorabook", report_folder=tmp_path / "r",
        from_disk=False, screenshots="none",
    )
    messages = [str(problem) for problem in report.problems]
    assert len(messages) == 2 and all("book/ch05_tiny.html" in message for message in messages)
    assert "mybinder.org/v2/gh/owner/lorabook/main?urlpath=lab/tree/book/ch05_tiny.ipynb" in messages[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(edition="teacher"), "edition must be one of instructor, student"),
        (dict(concurrency=0), "concurrency must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, arguments: dict, message: str) -> None:
    site = _site(tmp_path / "html", GOOD)
    with pytest.raises(ValueError, match=message):
        site_check.check_site(site, **arguments)


def test_a_folder_without_a_site_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no index.html"):
        site_check.check_site(tmp_path)


def test_expected_launch_links_need_a_github_url() -> None:
    with pytest.raises(ValueError, match="github.com/OWNER/REPOSITORY"):
        site_check.expected_launch_links("https://gitlab.com/owner/lorabook", "book/ch05.html")


@pytest.fixture(scope="module")
def execution_table_problems(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The problems of one site with three chapters and one execution-table defect each: too
    slow, missing from the table (which lists another document instead), failed. One check
    (one Chromium) for the three defects."""
    folder = tmp_path_factory.mktemp("execution-table")
    rows = (
        _row("book/ch05_tiny", 120.5)
        + _row("book/ch04_other", 10.0)
        + _row("book/ch07_failed", 10.0, status="\u274c")
    )
    pages = {
        **GOOD,
        "book/ch06_missing.html": _page("<p>Not in the table.</p>", depth=1),
        "book/ch07_failed.html": _page("<p>Failed.</p>", depth=1),
        "book/reproducibility.html": _timings(rows),
    }
    site = _site(folder / "html", pages)
    report = site_check.check_site(site, report_folder=folder / "r", from_disk=False, screenshots="none")
    return [str(problem) for problem in report.problems]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("book/ch05_tiny", "book/ch05_tiny took 120 s (> 90 s)"),
        ("book/ch06_missing", "book/ch06_missing is not in the table"),
        ("book/ch07_failed", "book/ch07_failed did not succeed"),
    ],
)
def test_the_execution_table_must_list_every_chapter_within_its_time(
    execution_table_problems: list[str], document: str, message: str
) -> None:
    problems = execution_table_problems
    assert len(problems) == 3, problems  # one for each defective chapter, nothing else
    prefix = "book/reproducibility.html: execution table: "
    own = [problem for problem in problems if problem.startswith(f"{prefix}{document} ")]
    assert len(own) == 1 and own[0].startswith(prefix + message), problems
