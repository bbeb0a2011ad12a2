"""Printing results so that they fit the page column of the book (88 characters)."""

from __future__ import annotations

import textwrap

PAGE_WIDTH = 88
"""Characters per line of the book's code and printed outputs."""

LONG_LABEL = 24
"""Labels longer than this put the expression on lines of its own."""


def wrapped(label: str, expression: object, width: int = PAGE_WIDTH) -> str:
    """``f"{label} {expression}"``, broken at spaces into lines of at most ``width`` characters.

    Continuation lines are indented under the expression; after a label longer than
    ``LONG_LABEL`` characters the expression starts on a line of its own, indented by four
    spaces more than the label. A single word longer than ``width`` is never split.

    Raises
    ------
    TypeError
        If ``label`` is not a string or ``width`` not an integer.
    ValueError
        If ``width`` is smaller than 20.
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a string, got {type(label).__name__}")
    if isinstance(width, bool) or not isinstance(width, int):
        raise TypeError(f"width must be an integer, got {type(width).__name__}")
    if width < 20:
        raise ValueError(f"width must be at least 20 characters, got {width}")
    line = f"{label} {expression}"
    if len(line) <= width:
        return line
    options = dict(break_long_words=False, break_on_hyphens=False)
    if len(label) <= LONG_LABEL:
        return textwrap.fill(line, width, subsequent_indent=" " * (len(label) + 1), **options)
    indent = " " * (len(label) - len(label.lstrip()) + 4)
    body = textwrap.fill(str(expression), width, initial_indent=indent, subsequent_indent=indent,
                         **options)
    return f"{label}\n{body}"


def print_wrapped(label: str, expression: object, width: int = PAGE_WIDTH) -> None:
    """Print :func:`wrapped` ``(label, expression, width)``."""
    print(wrapped(label, expression, width))
