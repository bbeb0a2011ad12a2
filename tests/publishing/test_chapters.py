"""Tests of lorabook.publishing.chapters: what a chapter says about itself, and the solutions
that the student edition removes."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from lorabook.publishing import chapters
from lorabook.publishing.reexecute import toc_notebooks

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = [path for path in toc_notebooks(ROOT) if chapters.chapter_number(path) is not None]

OPENING = """(ch-tiny)=
# A tiny chapter

Some prose with $x$.

**Learning objectives.** After this chapter you can
- do one thing that spans
  two lines;
- do another.

**Prerequisites.** Nothing but {ref}`ch-other`.

More prose.
"""

EXERCISES = """## Exercises

```{exercise}
:label: ex-tiny-1
:class: pen-and-paper
Prove it.
```

````{solution} ex-tiny-1
:class: dropdown
It is true; with a code block inside:

```python
print("nested fence")
```
````

```{exercise}
:label: ex-tiny-2
:class: computational
Compute it.
```

```{solution} ex-tiny-2
:class: dropdown
Run `print(42)`.
```
After the solutions."""


def _chapter(tmp_path: Path, name: str = "ch05_tiny.ipynb", exercises: str = EXERCISES) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(OPENING),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell(exercises),
    ]
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


def test_chapter_number_comes_from_the_file_name() -> None:
    assert chapters.chapter_number("book/ch05_search_phase.ipynb") == 5
    assert chapters.chapter_number("ch13_synthesis.ipynb") == 13
    for name in ("intro.md", "notation.ipynb", "ch5_short.ipynb", "ch05_search_phase.md"):
        assert chapters.chapter_number(name) is None, name


def test_read_chapter_parses_objectives_prerequisites_and_exercises(tmp_path: Path) -> None:
    chapter = chapters.read_chapter(_chapter(tmp_path))
    assert (chapter.number, chapter.label, chapter.title) == (5, "ch-tiny", "A tiny chapter")
    assert chapter.objectives == ("do one thing that spans two lines;", "do another.")
    assert chapter.prerequisites == "Nothing but {ref}`ch-other`."
    assert [(e.label, e.kind) for e in chapter.exercises] == [
        ("ex-tiny-1", "pen-and-paper"),
        ("ex-tiny-2", "computational"),
    ]
    # Solutions do not count towards the reading time; the prose and the exercises do.
    prose = OPENING + EXERCISES
    assert chapter.words < len(prose.split())
    assert chapter.reading_minutes == 5


def test_read_chapter_rejects_an_exercise_without_a_kind(tmp_path: Path) -> None:
    unclassified = EXERCISES.replace(":class: pen-and-paper\n", "")
    with pytest.raises(ValueError, match="pen-and-paper, computational"):
        chapters.read_chapter(_chapter(tmp_path, exercises=unclassified))


def test_read_chapter_rejects_a_file_that_is_not_a_chapter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chNN_topic.ipynb"):
        chapters.read_chapter(_chapter(tmp_path, name="notes.ipynb"))


def test_strip_solutions_removes_whole_directives_with_nested_fences(tmp_path: Path) -> None:
    notebook = nbformat.read(_chapter(tmp_path), as_version=4)
    assert chapters.strip_solutions(notebook) == 2
    text = notebook.cells[2].source
    assert "{solution}" not in text and "nested fence" not in text and "print(42)" not in text
    assert "Prove it." in text and "Compute it." in text and text.endswith("After the solutions.")
    assert notebook.cells[0].source == OPENING  # other cells untouched
    assert chapters.strip_solutions(notebook) == 0


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_every_chapter_of_the_book_reads(path: Path) -> None:
    chapter = chapters.read_chapter(path)
    assert chapter.number == int(path.name[2:4])
    assert chapter.objectives and chapter.prerequisites and chapter.exercises
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    # Every exercise declares its kind and is followed by exactly one solution.
    assert markdown.count("{exercise}") == len(chapter.exercises)
    assert chapters.strip_solutions(notebook) == len(chapter.exercises)
