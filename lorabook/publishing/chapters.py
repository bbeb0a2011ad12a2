"""What a chapter notebook says about itself: number, title, objectives, exercises, reading time.

The instructor's guide, the student edition and the book's tests read chapters through these
functions, so each fact about a chapter is parsed in one place. A chapter is a notebook named
``chNN_topic.ipynb`` whose first markdown cell opens with a label and a title, then
``**Learning objectives.**`` (a list) and ``**Prerequisites.**`` (a paragraph); its exercises are
``{exercise}`` directives with a ``:label:`` and a ``:class:`` of ``pen-and-paper`` or
``computational``, each followed by a ``{solution}`` directive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

CHAPTER_FILE = re.compile(r"^ch(\d\d)_[a-z0-9_]+\.ipynb$")

EXERCISE_KINDS = ("pen-and-paper", "computational")
"""The ``:class:`` every exercise declares: whether its solution needs running code."""

READING_SPEED = 150
"""Words per minute assumed for the reading-time estimate (mathematical prose, equations
counted as their TeX words; the usual 200-250 for plain prose is too fast for derivations)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: its label, its kind and its statement (MyST markdown)."""

    label: str
    kind: str
    statement: str


@dataclass(frozen=True)
class Chapter:
    """The facts about one chapter that the instructor's guide lists."""

    path: Path
    number: int
    label: str
    title: str
    objectives: tuple[str, ...]
    prerequisites: str
    exercises: tuple[Exercise, ...]
    words: int

    @property
    def reading_minutes(self) -> int:
        """Reading time in minutes, rounded up to a multiple of five."""
        return 5 * max(1, -(-self.words // (5 * READING_SPEED)))


def chapter_number(path: Path | str) -> int | None:
    """The number in a chapter's file name (``ch05_search_phase.ipynb`` is 5), or ``None``."""
    match = CHAPTER_FILE.match(Path(path).name)
    return int(match.group(1)) if match else None


def _markdown_parser():  # noqa: ANN202 - a markdown-it parser with MyST's block syntax
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    config = MdParserConfig(enable_extensions={"colon_fence", "dollarmath", "amsmath"})
    return create_md_parser(config, RendererHTML)


def directive_blocks(markdown: str, name: str) -> list[tuple[int, int, str]]:
    """The ``{name}`` directives of a MyST text, as ``(first line, end line, body)``.

    Fences are matched by markdown-it with MyST's syntax, so nested code blocks and longer
    fences are handled as the book build handles them. ``end line`` is exclusive.
    """
    blocks = []
    for token in _markdown_parser().parse(markdown):
        if token.type in ("fence", "colon_fence") and token.info.strip().startswith(f"{{{name}}}"):
            first, end = token.map
            blocks.append((first, end, token.content))
        # directives are parsed lazily by MyST, so nested ones appear as the parent's content
    return blocks


def strip_directives(markdown: str, name: str) -> str:
    """``markdown`` without its ``{name}`` directives (and the blank line after each)."""
    lines = markdown.split("\n")
    for first, end, _ in reversed(directive_blocks(markdown, name)):
        if end < len(lines) and not lines[end].strip():
            end += 1
        del lines[first:end]
    return "\n".join(lines)


def strip_solutions(notebook: nbformat.NotebookNode) -> int:
    """Remove every ``{solution}`` directive from the notebook's markdown cells, in place.

    Returns the number of solutions removed.
    """
    removed = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            removed += len(directive_blocks(cell.source, "solution"))
            cell.source = strip_directives(cell.source, "solution")
    return removed


def _options(body: str) -> tuple[dict[str, str], str]:
    """Split a directive body into its ``:key: value`` options and its content."""
    options: dict[str, str] = {}
    lines = body.split("\n")
    while lines and (match := re.match(r"^:([a-z-]+):\s*(.*)$", lines[0])):
        options[match.group(1)] = match.group(2).strip()
        lines.pop(0)
    return options, "\n".join(lines).strip()


def _between(markdown: str, start: str, stop: str) -> str:
    begin = markdown.find(start)
    if begin < 0:
        raise ValueError(f"no {start!r} found")
    begin += len(start)
    end = markdown.find(stop, begin)
    return markdown[begin:] if end < 0 else markdown[begin:end]


def read_chapter(path: Path | str) -> Chapter:
    """Read the facts of the chapter notebook at ``path``.

    Raises
    ------
    ValueError
        If the file is not named ``chNN_*.ipynb`` or lacks the label and title, the learning
        objectives or the prerequisites, or if an exercise has no label or no valid kind.
    """
    path = Path(path)
    number = chapter_number(path)
    if number is None:
        raise ValueError(f"{path.name}: a chapter file is named chNN_topic.ipynb")
    notebook = nbformat.read(path, as_version=4)
    markdown_cells = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    heading = re.match(r"^\((ch-[a-z0-9-]+)\)=\s*\n# (.+)$", markdown_cells[0], re.MULTILINE)
    if heading is None:
        raise ValueError(f"{path.name}: the first cell must open with (ch-label)= and a # title")
    opening = markdown_cells[0]
    objectives_text = _between(opening, "**Learning objectives.**", "**Prerequisites.**")
    objectives = tuple(
        " ".join(item.split())
        for item in re.split(r"^- ", objectives_text, flags=re.MULTILINE)[1:]
    )
    if not objectives:
        raise ValueError(f"{path.name}: no learning objectives (a list after the heading)")
    prerequisites = " ".join(_between(opening, "**Prerequisites.**", "\n\n").split())
    exercises = []
    markdown = "\n\n".join(markdown_cells)
    for _, _, body in directive_blocks(markdown, "exercise"):
        options, statement = _options(body)
        if "label" not in options:
            raise ValueError(f"{path.name}: an exercise without a :label:")
        kind = options.get("class", "")
        if kind not in EXERCISE_KINDS:
            raise ValueError(
                f"{path.name}, exercise {options['label']}: :class: must be one of "
                f"{', '.join(EXERCISE_KINDS)} (got {kind!r})"
            )
        exercises.append(Exercise(options["label"], kind, statement))
    prose = strip_directives(markdown, "solution")
    return Chapter(
        path=path,
        number=number,
        label=heading.group(1),
        title=heading.group(2).strip(),
        objectives=objectives,
        prerequisites=prerequisites,
        exercises=tuple(exercises),
        words=len(prose.split()),
    )
