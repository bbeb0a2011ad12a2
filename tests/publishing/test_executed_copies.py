"""Tests of lorabook.publishing.executed_copies and the nbval hooks of book/conftest.py: a
chapter is executed once (strict nbval leaves its run, the build shows it), and a change that
alters a printed result fails nbval and never reaches the website as an old output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_sphinx_extension import ROOT, _build, _tiny_book

from lorabook.publishing import executed_copies


def test_the_fingerprint_follows_python_sources_not_prose(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text("VALUE = 2\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("prose\n", encoding="utf-8")
    first = executed_copies.fingerprint(tmp_path)
    (tmp_path / "notes.md").write_text("other prose\n", encoding="utf-8")
    for ignored in ("_build", ".venv", ".git"):  # build output, environments, hidden folders
        (tmp_path / ignored).mkdir()
        (tmp_path / ignored / "x.py").write_text("changing = True\n", encoding="utf-8")
    assert executed_copies.fingerprint(tmp_path) == first
    (tmp_path / "pkg" / "module.py").write_text("VALUE = 3\n", encoding="utf-8")
    assert executed_copies.fingerprint(tmp_path) != first


def test_a_copy_is_stale_when_its_code_or_fingerprint_differs(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("1 + 1")]
    result = nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=9)
    path = executed_copies.write_copy(tmp_path, "book/t", notebook, [[result]], 1.5, "nbval", "F")
    copy = nbformat.read(path, as_version=4)
    assert copy.cells[1].outputs[0]["execution_count"] == 1 == copy.cells[1].execution_count
    assert executed_copies.execution_data(copy)["runtime"] == 1.5
    assert executed_copies.stale_reason(copy, notebook, "F") == ""
    assert "changed" in executed_copies.stale_reason(copy, notebook, "G")
    changed = nbformat.from_dict(notebook)
    changed.cells[1].source = "1 + 2"
    assert "code differs" in executed_copies.stale_reason(copy, changed, "F")
    with pytest.raises(ValueError, match="1 code cells but 2 lists of outputs"):
        executed_copies.write_copy(tmp_path, "book/t", notebook, [[], []], 1.0, "nbval", "F")
    executed_copies.remove_copy(tmp_path, "book/t")
    assert not path.exists()


def _book_with_a_package(folder: Path, value: int) -> Path:
    """The tiny book, whose chapter prints tinypkg.VALUE (committed output: 2)."""
    book = _tiny_book(folder)
    (book / "tinypkg").mkdir()
    (book / "tinypkg" / "__init__.py").write_text(f"VALUE = {value}\n", encoding="utf-8")
    shutil.copy(ROOT / "book" / "conftest.py", book / "book" / "conftest.py")
    path = book / "book" / "ch05_tiny.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[2].source = 'import sys\nsys.path.insert(0, "..")\nimport tinypkg\nprint(tinypkg.VALUE)'
    notebook.cells[2].outputs[0]["text"] = "2\n"
    notebook.cells[1].source = 'BOOK_REPOSITORY = ""  # the URL'
    nbformat.write(notebook, path)
    return book


# Hypothesis's pytest plugin takes about a second to import in every pytest process and has
# nothing to do with nbval or the book's conftest.
NO_HYPOTHESIS = ["-p", "no:hypothesispytest"]


def _nbval(book: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", *NO_HYPOTHESIS,
         "-o", "addopts=", "--rootdir", str(book), str(book / "book" / "ch05_tiny.ipynb")],
        capture_output=True, text=True, cwd=book, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def tested_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book with a package (VALUE = 2) after a passing strict nbval run: its executed copy
    is fresh. Tests change a copy of this folder (:func:`_copy_of`), never the folder itself."""
    book = _book_with_a_package(tmp_path_factory.mktemp("tested") / "book", value=2)
    tested = _nbval(book)
    assert tested.returncode == 0, tested.stdout[-2000:]
    return book


def _copy_of(book: Path, folder: Path) -> Path:
    """A copy of ``book`` in ``folder``; its executed copy stays fresh (the fingerprint hashes
    paths relative to the book, and the copy keeps every file's content)."""
    return Path(shutil.copytree(book, folder / "book", symlinks=True))


def _page_text(book: Path) -> str:
    return (book / "_build" / "html" / "book" / "ch05_tiny.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_nbval_leaves_the_run_that_the_build_shows_without_executing_again(
    tested_book: Path, tmp_path: Path
) -> None:
    book = _copy_of(tested_book, tmp_path)
    copy = executed_copies.copy_path(book, "book/ch05_tiny")
    assert executed_copies.execution_data(nbformat.read(copy, 4))["method"] == "nbval"
    built = _build(book, LORABOOK_EXECUTED_NOTEBOOKS="")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "Executing notebook" not in built.stdout + built.stderr  # executed once, by nbval
    assert ">2\n<" in _page_text(book)


@pytest.mark.slow
def test_a_change_that_alters_a_printed_result_fails_nbval_and_the_site_shows_the_new_one(
    tested_book: Path, tmp_path: Path
) -> None:
    book = _copy_of(tested_book, tmp_path)
    copy = executed_copies.copy_path(book, "book/ch05_tiny")
    chapter = nbformat.read(book / "book" / "ch05_tiny.ipynb", as_version=4)
    fresh = executed_copies.stale_reason(nbformat.read(copy, 4), chapter, executed_copies.fingerprint(book))
    assert fresh == "", fresh  # left fresh by the passing nbval run: only the change below stales it
    # The package now prints 3 where the chapter committed 2.
    (book / "tinypkg" / "__init__.py").write_text("VALUE = 3\n", encoding="utf-8")
    # Built before the tests run again, the site does not show the old copy: it executes.
    built = _build(book, LORABOOK_EXECUTED_NOTEBOOKS="")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "Executing notebook" in built.stdout + built.stderr
    page = _page_text(book)
    assert ">3\n<" in page and ">2\n<" not in page
    # And strict nbval fails, leaving no copy behind.
    tested = _nbval(book)
    assert tested.returncode != 0 and "Cell outputs differ" in tested.stdout
    assert not copy.exists()


def test_the_book_conftest_marks_chapter_cells_as_notebook_tests() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not notebook", *NO_HYPOTHESIS,
         str(ROOT / "book" / "ch01_gaussian_integrals.ipynb")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert "deselected" in listed.stdout and "Cell 0" not in listed.stdout, listed.stdout[-1500:]
