"""Tests of lorabook.publishing.sphinx_extension, on a tiny book built with the book's own
``_config.yml``: launch buttons and the install cell follow the repository URL given at build
time, virtual environments are not read, chapters keep their file numbers, the student edition
has no solutions, the instructor's guide is generated, and a stale executed copy fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_URL = "https://github.com/example-owner/lorabook"

pytestmark = pytest.mark.slow

INTRO = """(intro)=
# A tiny book

Inline $x^2$ and a link to {ref}`ch-tiny`.

```{only} launch_buttons
BUTTONS-ON
```
```{only} not launch_buttons
BUTTONS-OFF
```
"""

CHAPTER = """(ch-tiny)=
# A tiny chapter

**Learning objectives.** After this chapter you can
- add two numbers.

**Prerequisites.** Arithmetic.

```{math}
:label: eq-tiny
1 + 1 = 2
```

As {eq}`eq-tiny` says.
"""

EXERCISES = """## Exercises

```{exercise}
:label: ex-tiny
:class: computational
Print six times seven.
```

```{solution} ex-tiny
:class: dropdown
SOLUTION-TEXT: `print(6 * 7)`.
```
"""

INSTALL_CELL = 'BOOK_REPOSITORY = ""  # the repository URL\nimport lorabook'


def _tiny_book(folder: Path) -> Path:
    """A book with the real _config.yml: an intro, a guide page and chapter 5, executed."""
    (folder / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", folder / "_config.yml")
    shutil.copy(ROOT / "book" / "references.bib", folder / "book" / "references.bib")
    shutil.copytree(ROOT / "book" / "_static", folder / "book" / "_static")
    (folder / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: Front\n    chapters:\n      - file: book/guide\n"
        "  - caption: Part II\n    numbered: true\n    chapters:\n      - file: book/ch05_tiny\n",
        encoding="utf-8",
    )
    (folder / "book" / "intro.md").write_text(INTRO, encoding="utf-8")
    (folder / "book" / "guide.md").write_text(
        "# Guide\n\n```{chapter-guide}\n```\n\n```{nb-exec-table}\n```\n", "utf-8"
    )

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    install = nbformat.v4.new_code_cell(INSTALL_CELL, execution_count=1)
    answer = nbformat.v4.new_code_cell("print(6 * 7)", execution_count=2)
    answer.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    notebook.cells = [
        nbformat.v4.new_markdown_cell(CHAPTER),
        install,
        answer,
        nbformat.v4.new_markdown_cell(EXERCISES),
    ]
    # Execution data as a run that executed the chapter stamps it (here without a fingerprint,
    # which a folder of copies given explicitly accepts, as for the committed chapters).
    notebook.metadata["lorabook"] = {
        "execution": {"mtime": 1.7e9, "runtime": 12.34, "method": "force", "succeeded": True}
    }
    nbformat.write(notebook, folder / "book" / "ch05_tiny.ipynb")
    # Virtual environments in the repository, with documents Sphinx would otherwise read.
    for name in (".venv", "my-env"):
        (folder / name / "lib").mkdir(parents=True)
        (folder / name / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
        (folder / name / "lib" / "README.md").write_text("# A package README\n", "utf-8")
    return folder


def _build(folder: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LORABOOK_EXECUTED_NOTEBOOKS": str(folder), **environment}
    for key in ("LORABOOK_REPOSITORY_URL", "LORABOOK_EDITION"):
        if key not in environment:
            env.pop(key, None)
    return subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(folder), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def with_url(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _tiny_book(tmp_path_factory.mktemp("with-url"))
    result = _build(folder, LORABOOK_REPOSITORY_URL=SAMPLE_URL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder / "_build" / "html"


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _tiny_book(tmp_path_factory.mktemp("student"))
    result = _build(folder, LORABOOK_EDITION="student")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder / "_build" / "html"


def test_launch_buttons_and_install_cell_follow_the_url_given_at_build_time(with_url: Path) -> None:
    page = (with_url / "book" / "ch05_tiny.html").read_text(encoding="utf-8")
    binder = "https://mybinder.org/v2/gh/example-owner/lorabook/main?urlpath=lab/tree/book/ch05_tiny.ipynb"
    colab = "https://colab.research.google.com/github/example-owner/lorabook/blob/main/book/ch05_tiny.ipynb"
    assert f'href="{binder}"' in page and f'href="{colab}"' in page
    assert f'href="{SAMPLE_URL}"' in page  # the repository button
    # The install cell shown on the page and in the downloadable notebook carries the URL.
    assert f"{SAMPLE_URL}" in re.sub(r"<[^>]+>", "", page).replace("&quot;", '"')
    executed = nbformat.read(with_url.parent / "jupyter_execute" / "book" / "ch05_tiny.ipynb", 4)
    assert executed.cells[1].source.startswith(f'BOOK_REPOSITORY = "{SAMPLE_URL}"')
    intro = (with_url / "book" / "intro.html").read_text(encoding="utf-8")
    assert "BUTTONS-ON" in intro and "BUTTONS-OFF" not in intro


def test_no_launch_buttons_without_a_url(student: Path) -> None:
    page = (student / "book" / "ch05_tiny.html").read_text(encoding="utf-8")
    assert "mybinder.org" not in page and "colab.research.google.com" not in page
    intro = (student / "book" / "intro.html").read_text(encoding="utf-8")
    assert "BUTTONS-OFF" in intro and "BUTTONS-ON" not in intro


def test_virtual_environments_are_not_read(with_url: Path) -> None:
    built = {path.relative_to(with_url).as_posix() for path in with_url.rglob("*.html")}
    assert not [name for name in built if "README" in name or name.startswith(("my-env", ".venv"))]
    assert {"book/intro.html", "book/guide.html", "book/ch05_tiny.html"} <= built


def test_chapters_keep_the_numbers_of_their_files(with_url: Path) -> None:
    page = (with_url / "book" / "ch05_tiny.html").read_text(encoding="utf-8")
    assert '<span class="section-number">5. </span>A tiny chapter' in page
    assert "(5.1)" in page and "Exercise 5.1" in page
    intro = (with_url / "book" / "intro.html").read_text(encoding="utf-8")
    assert re.search(r'href="ch05_tiny.html">\s*5\. A tiny chapter', intro)


def test_the_instructor_edition_keeps_solutions_and_the_guide_lists_chapters(with_url: Path) -> None:
    page = (with_url / "book" / "ch05_tiny.html").read_text(encoding="utf-8")
    assert "SOLUTION-TEXT" in page
    guide = re.sub(r"<[^>]+>", " ", (with_url / "book" / "guide.html").read_text(encoding="utf-8"))
    guide = " ".join(guide.split())
    assert "Chapter 5, A tiny chapter" in guide and "Arithmetic." in guide
    assert "add two numbers." in guide and "Exercises that need running code: Exercise 5.1" in guide


def test_the_student_edition_has_no_solutions_anywhere(student: Path) -> None:
    page = (student / "book" / "ch05_tiny.html").read_text(encoding="utf-8")
    assert "SOLUTION-TEXT" not in page and "Print six times seven." in page
    assert "SOLUTION-TEXT" not in (student / "searchindex.js").read_text(encoding="utf-8")
    for copy in [*student.rglob("*.ipynb"), *(student.parent / "jupyter_execute").rglob("*.ipynb")]:
        assert "SOLUTION-TEXT" not in copy.read_text(encoding="utf-8"), copy


def test_a_stale_executed_copy_fails_the_build(tmp_path: Path) -> None:
    folder = _tiny_book(tmp_path / "book")
    executed = tmp_path / "executed" / "book"
    executed.mkdir(parents=True)
    chapter = folder / "book" / "ch05_tiny.ipynb"
    notebook = nbformat.read(chapter, as_version=4)
    # Having rejected the copy, the build would execute the chapter: a kernel started for
    # nothing (seconds). The stale copy is reported while the chapter is read, before that.
    notebook.metadata["mystnb"] = {"execution_mode": "off"}
    nbformat.write(notebook, chapter)
    notebook.cells[2].source = "print(6 * 8)"
    nbformat.write(notebook, executed / "ch05_tiny.ipynb")
    result = _build(folder, LORABOOK_EXECUTED_NOTEBOOKS=str(tmp_path / "executed"))
    assert result.returncode != 0
    assert "stale" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"LORABOOK_EDITION": "teacher"}, "choose one of instructor, student"),
        ({"LORABOOK_REPOSITORY_URL": "https://gitlab.com/owner/lorabook"}, "github.com/OWNER/REPOSITORY"),
    ],
)
def test_bad_build_settings_fail_with_a_clear_message(tmp_path: Path, environment: dict, message: str) -> None:
    result = _build(_tiny_book(tmp_path), **environment)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_execution_data_of_the_executed_copies_reaches_the_execution_table(with_url: Path) -> None:
    guide = re.sub(r"<[^>]+>", " ", (with_url / "book" / "guide.html").read_text(encoding="utf-8"))
    assert "12.34" in guide.split("Run Time")[1]
