"""The classroom editions of the website.

The **instructor's edition** is the website the README's build command makes
(``_build/html``): every exercise is followed by its solution, folded in a dropdown. The
**student edition** (``_build/student/html``) is the same book with every solution removed, from
the pages, from the search index and from the notebooks a reader downloads. It is built by
``python -m lorabook.publishing student-edition`` and executes nothing: it shows the outputs of
the instructor's build (``_build/jupyter_execute``) when that build is there, else the outputs
committed with the chapters (which strict nbval checks against a fresh run).
"""

from __future__ import annotations

import os
from pathlib import Path

from lorabook.publishing.reexecute import toc_notebooks
from lorabook.publishing.sphinx_extension import EDITION_VARIABLE, EXECUTED_NOTEBOOKS_VARIABLE

STUDENT_OUTPUT = Path("_build") / "student" / "html"


def executed_notebooks_folder(root: Path) -> Path:
    """Where the student edition takes its outputs from (see the module docstring)."""
    build = root / "_build" / "jupyter_execute"
    chapters = [path.relative_to(root) for path in toc_notebooks(root)]
    if chapters and all((build / chapter).is_file() for chapter in chapters):
        return build
    return root


def build_student_edition(root: Path, strict: bool = True) -> int:
    """Build the student edition of the book at ``root`` into ``_build/student/html``.

    With ``strict``, warnings fail the build and every cross-reference must resolve, as in the
    README's build command. Returns the build's exit status (0 on success).
    """
    from jupyter_book.sphinx import build_sphinx

    root = Path(root).resolve()
    source = executed_notebooks_folder(root)
    print(
        "student edition: outputs from "
        + ("the instructor's build (_build/jupyter_execute)" if source != root
           else "the committed chapters (no instructor's build found)")
    )
    saved = {key: os.environ.get(key) for key in (EDITION_VARIABLE, EXECUTED_NOTEBOOKS_VARIABLE)}
    os.environ[EDITION_VARIABLE] = "student"
    os.environ[EXECUTED_NOTEBOOKS_VARIABLE] = str(source)
    try:
        status = build_sphinx(
            root,
            root / STUDENT_OUTPUT,
            use_external_toc=True,
            noconfig=True,
            path_config=str(root / "_config.yml"),
            confoverrides={
                "external_toc_path": (root / "_toc.yml").as_posix(),
                "nitpicky": strict,
                "latex_individualpages": False,
            },
            builder="html",
            warningiserror=strict,
            keep_going=strict,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if status == 0:
        print(f"student edition written to {root / STUDENT_OUTPUT / 'index.html'}")
    return int(status) if isinstance(status, int) else 1
