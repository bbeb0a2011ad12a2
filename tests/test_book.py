"""Invariants of the book itself: table of contents, notebook hygiene, chapter standard, tooling."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from lorabook.publishing import reexecute

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC_NOTEBOOKS = reexecute.toc_notebooks(ROOT)
CHAPTERS = [path for path in TOC_NOTEBOOKS if re.match(r"ch\d\d_", path.name)]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_toc_entry_exists() -> None:
    for name in _toc_files():
        candidates = [ROOT / f"{name}{suffix}" for suffix in (".md", ".ipynb")]
        assert any(path.is_file() for path in candidates), f"{name} is in _toc.yml but missing"


def test_every_chapter_notebook_is_in_the_toc() -> None:
    # A chapter left out of the toc would be skipped by the build but still run by nbval.
    listed = {path.resolve() for path in TOC_NOTEBOOKS}
    for path in (ROOT / "book").glob("*.ipynb"):
        assert path.resolve() in listed, f"{path.name} is not listed in _toc.yml"


def test_toc_has_chapters() -> None:
    assert len(CHAPTERS) >= 2, CHAPTERS


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_executed_in_order_without_errors(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..n; re-run `python -m lorabook.publishing.reexecute`"
    )
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} has an error output"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_meets_the_standard(path: Path) -> None:
    """The structural part of a finished chapter (the README's "How the book is checked")."""
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert re.search(r"^\(ch-[a-z0-9-]+\)=\s*\n# ", markdown, re.MULTILINE), "label + title"
    assert "Learning objectives" in markdown and "Prerequisites" in markdown
    assert re.search(r"^#+ Summary", markdown, re.MULTILINE), "a Summary section"
    exercises = re.findall(r"```\{exercise\}", markdown)
    solutions = re.findall(r"```\{solution\}[^\n]*\n:class: dropdown", markdown)
    assert 2 <= len(exercises) <= 6 and len(solutions) == len(exercises), (exercises, solutions)
    assert re.search(r"```\{math\}\n:label: eq-", markdown), "labelled equations"
    assert "{eq}`" in markdown and "{numref}`" in markdown and "{cite" in markdown
    figures = [cell for cell in code_cells if "figure" in cell.metadata.get("mystnb", {})]
    assert figures, "numbered, captioned figures (mystnb figure metadata)"
    for cell in figures:
        figure = cell.metadata["mystnb"]["figure"]
        assert figure.get("name", "").startswith("fig-") and len(figure.get("caption", "")) > 20
        assert "hide-input" in cell.metadata.get("tags", []), "plot code is folded"
    assert any("assert " in cell.source for cell in code_cells), "agreement asserted in code"
    assert any("sympy" in cell.source or "sp." in cell.source for cell in code_cells)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_install_cell_matches_config(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    url = reexecute.configured_repository_url(ROOT)
    assert f'BOOK_REPOSITORY = "{url}"' in first_code.source, (
        "the first code cell must be the Colab install cell, in sync with _config.yml "
        "(run `python -m lorabook.publishing.reexecute --install-cells-only`)"
    )
    assert 'f"lorabook @ git+{BOOK_REPOSITORY}"' in first_code.source
    assert first_code.outputs == [], "the install cell is silent when lorabook is installed"
    assert "hide-input" in first_code.metadata.get("tags", []), "the install cell is folded away"


CODE_WIDTH = 88
"""Chapter code fits the page column: lines of at most 88 characters."""


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda path: path.name)
def test_code_fits_the_page_column(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    long = [
        f"cell {index}: {line[:60]}... ({len(line)} characters)"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > CODE_WIDTH
    ]
    assert not long, f"{path.name}: code lines over {CODE_WIDTH} characters:\n" + "\n".join(long)


def test_install_cells_sync_without_executing(tmp_path: Path) -> None:
    chapter = tmp_path / "ch01_x.ipynb"
    _write_notebook(chapter, ['BOOK_REPOSITORY = ""  # the URL', "print(6 * 7)"])
    notebook = nbformat.read(chapter, as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nbformat.write(notebook, chapter)
    assert reexecute.sync_install_cell_in_place(chapter, "https://github.com/owner/lorabook")
    synced = nbformat.read(chapter, as_version=4)
    assert synced.cells[0].source == 'BOOK_REPOSITORY = "https://github.com/owner/lorabook"  # the URL'
    assert synced.cells[1].outputs == notebook.cells[1].outputs  # nothing was executed
    assert not reexecute.sync_install_cell_in_place(chapter, "https://github.com/owner/lorabook")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ch01_x.ipynb"]


def test_the_repository_url_can_be_given_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(reexecute.REPOSITORY_URL_VARIABLE, raising=False)
    assert reexecute.repository_url(ROOT) == reexecute.configured_repository_url(ROOT)
    monkeypatch.setenv(reexecute.REPOSITORY_URL_VARIABLE, "https://github.com/owner/lorabook")
    assert reexecute.repository_url(ROOT) == "https://github.com/owner/lorabook"


def test_config_fails_on_errors_and_numbers_figures() -> None:
    assert CONFIG["execute"]["execute_notebooks"] == "force"
    assert CONFIG["execute"]["allow_errors"] is False
    assert CONFIG["execute"]["timeout"] > 0
    sphinx_config = CONFIG["sphinx"]["config"]
    assert sphinx_config["nb_execution_raise_on_error"] is True
    assert sphinx_config["bibtex_reference_style"] == "author_year"
    assert {"sphinx_exercise", "sphinx_proof"} <= set(CONFIG["sphinx"]["extra_extensions"])
    assert CONFIG["only_build_toc_files"] is True


def test_citations_resolve_to_the_bibliography() -> None:
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.MULTILINE))
    sources = [(ROOT / "book" / "intro.md").read_text(encoding="utf-8")]
    for path in TOC_NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        sources += [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    cited = set()
    for text in sources:
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
            cited.update(key.strip() for key in group.split(","))
    assert cited, "no citations found"
    assert cited <= keys, f"unknown citation keys: {sorted(cited - keys)}"


def _write_notebook(path: Path, sources: list[str]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)


def test_reexecute_replaces_a_notebook_only_on_success(tmp_path: Path) -> None:
    good = tmp_path / "good.ipynb"
    _write_notebook(good, ['BOOK_REPOSITORY = "old"', "print(6 * 7)"])
    reexecute.execute_notebook(good, "https://example.org/repo", timeout=60)
    executed = nbformat.read(good, as_version=4)
    assert [cell.execution_count for cell in executed.cells] == [1, 2]
    assert executed.cells[1].outputs[0]["text"] == "42\n"
    assert executed.cells[0].source == 'BOOK_REPOSITORY = "https://example.org/repo"'

    bad = tmp_path / "bad.ipynb"
    _write_notebook(bad, ["x = 1", "raise RuntimeError('boom')", "print(x)"])
    before = bad.read_bytes()
    with pytest.raises(Exception, match="boom"):
        reexecute.execute_notebook(bad, "", timeout=60)
    assert bad.read_bytes() == before, "a failed execution must leave the notebook untouched"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.ipynb", "good.ipynb"]


def test_reexecute_cli_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (tmp_path / "_config.yml").write_text("repository:\n  url: ''\n", encoding="utf-8")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: a\n", encoding="utf-8")
    bad = tmp_path / "a.ipynb"
    _write_notebook(bad, ["1 / 0"])
    monkeypatch.chdir(tmp_path)
    assert reexecute.main([str(bad)]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "ZeroDivisionError" in captured.err


def test_reexecute_keeps_figures_under_a_non_interactive_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MPLBACKEND=Agg in the environment used to make plt.show() silent in the kernels.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = tmp_path / "figure.ipynb"
    _write_notebook(notebook, ["import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()"])
    reexecute.execute_notebook(notebook, "", timeout=60)
    outputs = nbformat.read(notebook, as_version=4).cells[0].outputs
    assert any("image/png" in output.get("data", {}) for output in outputs), outputs
    assert reexecute.SINGLE_THREADED_BLAS.keys() <= set(__import__("os").environ)


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda path: path.name)
def test_markdown_has_no_control_characters(path: Path) -> None:
    # A LaTeX command written with a single backslash in a Python string ("\theta", "\tau")
    # becomes a tab or another control character and silently breaks the rendered math.
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        texts = [cell.source] if cell.cell_type == "markdown" else []
        figure = cell.metadata.get("mystnb", {}).get("figure")
        if figure:
            texts.append(figure.get("caption", ""))
        for text in texts:
            bad = re.search(r"[\t\x07\x08\x0b\x0c\r]", text)
            near = text[max(0, bad.start() - 20):bad.end() + 10] if bad else ""
            assert bad is None, f"{path.name}, cell {index}: control character near {near!r}"


def test_package_docstrings_have_no_control_characters() -> None:
    # A TeX command with one backslash in a plain docstring ("\approx") loses its backslash to a
    # control character, and the API page shows a MathJax error.
    import ast

    bad = []
    for path in sorted((ROOT / "lorabook").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node, clean=False) or ""
                if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", docstring):
                    bad.append(f"{path.relative_to(ROOT)}: {getattr(node, 'name', 'module')}")
    assert not bad, bad


def _readme_ci_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- ci: begin") : text.index("<!-- ci: end -->")]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.strip().splitlines()]


def test_ci_runs_the_readme_commands_in_a_venv_in_the_repository_root() -> None:
    commands = _readme_ci_commands()
    assert commands[0].startswith("apt-get") and "chromium" in commands[0]
    assert "python3 -m venv .venv && . .venv/bin/activate" in commands
    expected = [
        "python -m pip install -r requirements.txt && python -m pytest",
        "python -m pip install -r requirements.txt && jupyter-book build . -W -n --keep-going",
        "python -m lorabook.publishing check-site _build/html --screenshots first",
        "python -m lorabook.publishing student-edition",
        "python -m lorabook.publishing check-site _build/student/html --edition student --http-only"
        " --screenshots first",
        "python -m lorabook.publishing handouts",
        "python -m lorabook.publishing check-binder",
    ]
    assert [command for command in commands if command in expected] == expected
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run reads its commands from the README and sets nothing up on its own.
    assert "ci: begin" in ci and "README.md" in ci
    assert "-m venv" not in ci and "pip install" not in ci and "jupyter-book" not in ci


def test_readme_lists_exactly_the_chapters_of_the_toc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(book/ch\d\d_[a-z0-9_]+\.ipynb)`", readme))
    assert listed == {path.relative_to(ROOT).as_posix() for path in CHAPTERS}


def test_intro_plan_names_only_chapters_still_to_come() -> None:
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    planned = {int(number) for number in re.findall(r"chapter (\d+), \*", intro)}
    written = {int(path.name[2:4]) for path in CHAPTERS}
    assert planned and not planned & written, (planned, written)
    labels = set(re.findall(r"\{ref\}`(ch-[a-z0-9-]+)`", intro))
    for path in CHAPTERS:
        first = nbformat.read(path, as_version=4).cells[0].source
        assert re.match(r"\((ch-[a-z0-9-]+)\)=", first).group(1) in labels, f"{path.name} not in the intro"


def test_licence_is_an_spdx_expression() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").is_file()


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=lambda path: path.name)
def test_no_line_of_inline_math_starts_a_list(path: Path) -> None:
    # Markdown reads a line that starts with "+ " or "- " as a list item, even in the middle of
    # a paragraph: inline math broken before a "+" or "-" is then shown as raw TeX.
    notebook = nbformat.read(path, as_version=4)
    bad = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        paragraph = ""
        for line in cell.source.splitlines():
            if not line.strip():
                paragraph = ""
                continue
            dollars = len(re.findall(r"(?<![\\$])\$(?!\$)", paragraph))
            if paragraph and dollars % 2 == 1 and re.match(r"^\s*([-+*]|\d+[.)])\s", line):
                bad.append(f"cell {index}: {line[:60]!r}")
            paragraph += line + "\n"
    assert not bad, f"{path.name}: a list marker inside inline math: {bad}"


def _interrupt_reexecution(tmp_path: Path, signum: int, delay: float) -> tuple[Path, bytes]:
    (tmp_path / "_config.yml").write_text("repository:\n  url: ''\n", encoding="utf-8")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: ch01_x\n", encoding="utf-8")
    chapter = tmp_path / "ch01_x.ipynb"
    _write_notebook(chapter, ["import time", "print('a' * 100000)", "time.sleep(0.3)", "print(2)"])
    before = chapter.read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "lorabook.publishing.reexecute", str(chapter)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    process.send_signal(signum)
    process.wait(timeout=60)
    return chapter, before


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_reexecution_leaves_every_notebook_old_or_new(tmp_path: Path, signum: int) -> None:
    # Killed at moments spread over the run (start-up, kernel, execution, writing): the chapter
    # is always a valid notebook, either untouched or completely executed.
    outcomes = set()
    for index, delay in enumerate([0.3, 1.2, 2.0, 2.8, 6.0]):
        folder = tmp_path / str(index)
        folder.mkdir()
        chapter, before = _interrupt_reexecution(folder, signum, delay)
        after = chapter.read_bytes()
        notebook = nbformat.reads(after.decode("utf-8"), as_version=4)
        nbformat.validate(notebook)
        if after == before:
            outcomes.add("old")
        else:
            counts = [cell.execution_count for cell in notebook.cells]
            assert counts == [1, 2, 3, 4] and notebook.cells[3].outputs[0]["text"] == "2\n"
            outcomes.add("new")
        leftovers = sorted(path.name for path in folder.glob(".*.ipynb"))
        if signum == signal.SIGTERM:
            assert not leftovers, leftovers  # SIGTERM unwinds and removes its temporary file
        if leftovers:  # SIGKILL can leave one; the next run removes it
            reexecute.remove_temporaries(chapter)
            assert not list(folder.glob(".*.ipynb"))
    assert outcomes == {"old", "new"}, outcomes  # the kills did land before and after the write


def test_the_next_run_removes_what_a_killed_write_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "_config.yml").write_text("repository:\n  url: ''\n", encoding="utf-8")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: ch01_x\n", encoding="utf-8")
    chapter = tmp_path / "ch01_x.ipynb"
    _write_notebook(chapter, ['BOOK_REPOSITORY = ""'])
    (tmp_path / ".ch01_x.k3j2h1.ipynb").write_text('{"cells": [', encoding="utf-8")  # half written
    (tmp_path / ".other.k3j2h1.ipynb").write_text("{}", encoding="utf-8")  # another notebook's
    monkeypatch.chdir(tmp_path)
    assert reexecute.main(["--install-cells-only", str(chapter)]) == 0
    assert sorted(path.name for path in tmp_path.glob(".*.ipynb")) == [".other.k3j2h1.ipynb"]
