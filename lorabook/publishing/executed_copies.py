"""Executed copies of the chapters: each chapter executed once, its outputs shown by the site.

Strict nbval (``python -m pytest``) executes every chapter in a fresh kernel and compares its
printed outputs with the committed ones. When every cell of a chapter has passed, the run is
kept as the chapter's *executed copy*, ``_build/jupyter_execute/<docname>.ipynb`` (where the
book build keeps the notebooks it executes), stamped with its execution time and a
*fingerprint* of everything its outputs depend on besides its code: the Python sources of the
repository (``lorabook`` above all), the book's figure style and the installed versions of every
package pinned in ``requirements.txt``.

The book build shows an executed copy instead of executing the chapter again only when the copy
is fresh: its code cells equal the chapter's and its fingerprint equals the current one. Any
change to ``lorabook``, to a pinned package or to a chapter's code makes the copy stale, and the
build executes that chapter itself; a failed nbval run leaves no copy. The website therefore
never shows outputs that a fresh run would not produce, and a newcomer's build, with no copies,
executes everything.
"""

from __future__ import annotations

import hashlib
import time
from copy import deepcopy
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat

from lorabook.publishing.binder import pinned_requirements
from lorabook.publishing.reexecute import write_atomically

COPIES = Path("_build") / "jupyter_execute"
METADATA_KEY = "lorabook"
"""Notebook metadata key holding ``{"execution": {...}, "fingerprint": ...}`` of a copy."""

_SKIPPED_FOLDERS = {"_build", "node_modules", "__pycache__"}


def _sources(root: Path) -> list[Path]:
    """The repository files a chapter's outputs may depend on (Python sources, figure style)."""
    found = []

    def walk(folder: Path) -> None:
        for child in sorted(folder.iterdir()):
            if child.is_dir():
                hidden = child.name.startswith(".") or child.name in _SKIPPED_FOLDERS
                environment = (child / "pyvenv.cfg").is_file() or (child / "conda-meta").is_dir()
                if not (hidden or environment or child.is_symlink()):
                    walk(child)
            elif child.suffix in (".py", ".mplstyle"):
                found.append(child)

    walk(root)
    return found


def fingerprint(root: Path) -> str:
    """A SHA-256 of the repository's Python sources and the installed pinned packages."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0" + path.read_bytes() + b"\0")
    requirements = root / "requirements.txt"
    pins = pinned_requirements(requirements.read_text("utf-8")) if requirements.is_file() else {}
    for name in sorted(pins):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "missing"
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()


def copy_path(root: Path, docname: str) -> Path:
    """Where the executed copy of document ``docname`` (``book/ch05_search_phase``) lives."""
    return Path(root) / COPIES / f"{docname}.ipynb"


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    """The sources of a notebook's code cells, in order."""
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def write_copy(
    root: Path,
    docname: str,
    notebook: nbformat.NotebookNode,
    outputs: list[list[Any]],
    seconds: float,
    method: str,
    stamp: str,
) -> Path:
    """Write the executed copy of ``notebook``: its code cells get ``outputs`` (one list per
    code cell, in order) and execution counts 1..n; the copy is stamped with the run's time,
    the method that executed it and the fingerprint ``stamp``. Written atomically."""
    copy = deepcopy(notebook)
    code = [cell for cell in copy.cells if cell.cell_type == "code"]
    if len(code) != len(outputs):
        raise ValueError(f"{docname}: {len(code)} code cells but {len(outputs)} lists of outputs")
    for count, (cell, cell_outputs) in enumerate(zip(code, outputs, strict=True), start=1):
        cell.outputs = [nbformat.from_dict(dict(output)) for output in cell_outputs]
        cell.execution_count = count
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = count
    copy.metadata[METADATA_KEY] = {
        "fingerprint": stamp,
        "execution": {"mtime": time.time(), "runtime": seconds, "method": method, "succeeded": True},
    }
    path = copy_path(root, docname)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(copy, path)
    return path


def remove_copy(root: Path, docname: str) -> None:
    """Remove the executed copy of ``docname`` (after a failed run), if there is one."""
    copy_path(root, docname).unlink(missing_ok=True)


def stale_reason(copy: nbformat.NotebookNode, notebook: nbformat.NotebookNode, stamp: str) -> str:
    """Why ``copy`` cannot stand for a fresh run of ``notebook`` now ("" if it can)."""
    if code_sources(copy) != code_sources(notebook):
        return "its code differs from the chapter's"
    recorded = copy.metadata.get(METADATA_KEY, {}).get("fingerprint")
    if recorded is None:
        return "it carries no fingerprint"
    if recorded != stamp:
        return "lorabook, another source or a pinned package changed since it was executed"
    return ""


def execution_data(copy: nbformat.NotebookNode) -> dict | None:
    """The execution data stamped on a copy (time, method, success), or ``None``."""
    return copy.metadata.get(METADATA_KEY, {}).get("execution")
