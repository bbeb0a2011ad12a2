"""Re-execute the book's chapters in place, safely.

Usage (from the repository root)::

    python -m lorabook.publishing.reexecute              # every notebook listed in _toc.yml
    python -m lorabook.publishing.reexecute book/ch01_gaussian_integrals.ipynb [...]

Each notebook is executed top to bottom in a fresh kernel, with the working directory set to the
notebook's folder (as the book build and nbval do). The executed notebook is written to a
temporary file beside the original and moved into place only when every cell succeeded, so a
failing cell never leaves a half-written chapter behind: the committed chapter stays untouched
and the failing cell and its error are reported. Before executing, the Colab install cell's
``BOOK_REPOSITORY`` is set to the repository URL (``repository.url`` from ``_config.yml``, or
``LORABOOK_REPOSITORY_URL`` if set). ``--install-cells-only`` sets that URL and executes nothing.

The tool reports progress (which chapter, how long it took) and exits with status 1 if any
chapter failed. Stopped at any moment (SIGTERM, SIGKILL), it leaves every notebook valid, either
as it was or fully re-executed; the temporary file that SIGKILL can leave beside a notebook is
removed by the next run (and is never collected as a chapter).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "execute_notebook",
    "toc_notebooks",
    "repository_url",
    "configured_repository_url",
    "find_book_root",
    "sync_install_cell",
    "sync_install_cell_in_place",
    "write_atomically",
    "prepare_chapter_environment",
    "SINGLE_THREADED_BLAS",
    "REPOSITORY_URL_VARIABLE",
]

REPOSITORY_PATTERN = re.compile(r'^BOOK_REPOSITORY = "[^"\n]*"', re.MULTILINE)

SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment under which chapters execute (re-execution, nbval and the book build).

The chapters' Monte Carlo runs many small linear-algebra operations (batched SVDs, small
matrix products), for which multi-threaded BLAS is much slower than one thread on a busy
2-core machine (measured: 23 s against 1.3 s for one Monte Carlo point of Chapter 9), and
thread scheduling can change the last bits of reductions. Values already set are kept.
"""


def prepare_chapter_environment() -> None:
    """Set up ``os.environ`` for executing chapters (kernels started later inherit it).

    Sets :data:`SINGLE_THREADED_BLAS` (values already set are kept) and removes
    ``MPLBACKEND``: chapters draw with Jupyter's inline backend, and a non-interactive backend
    such as ``Agg`` in the environment would make ``plt.show()`` produce no figure output.
    """
    for key, value in SINGLE_THREADED_BLAS.items():
        os.environ.setdefault(key, value)
    os.environ.pop("MPLBACKEND", None)


def find_book_root(start: Path | None = None) -> Path:
    """Return the repository root: the nearest folder at or above ``start`` with ``_config.yml``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_config.yml").is_file() and (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _config.yml and _toc.yml found at or above {start}")


REPOSITORY_URL_VARIABLE = "LORABOOK_REPOSITORY_URL"
"""Environment variable that overrides ``repository.url`` for one build or re-execution."""


def configured_repository_url(root: Path) -> str:
    """``repository.url`` in ``_config.yml`` (empty if unset): the one place the URL is set."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    return str((config.get("repository") or {}).get("url") or "").strip()


def repository_url(root: Path) -> str:
    """The book's repository URL: ``LORABOOK_REPOSITORY_URL`` if set, else ``_config.yml``'s."""
    override = os.environ.get(REPOSITORY_URL_VARIABLE, "").strip()
    return override or configured_repository_url(root)


def toc_notebooks(root: Path) -> list[Path]:
    """Every ``.ipynb`` document listed in ``_toc.yml``, in table-of-contents order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            if "root" in node:
                files.append(str(node["root"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    notebooks = []
    for name in files:
        path = root / name
        if path.suffix == "":
            path = path.with_suffix(".ipynb")
        if path.suffix == ".ipynb" and path.is_file():
            notebooks.append(path)
    return notebooks


def sync_install_cell(notebook: object, url: str) -> bool:
    """Set ``BOOK_REPOSITORY`` in the notebook's install cell to ``url``; return whether found."""
    for cell in notebook.cells:  # type: ignore[attr-defined]
        if cell.cell_type == "code" and REPOSITORY_PATTERN.search(cell.source):
            cell.source = REPOSITORY_PATTERN.sub(f'BOOK_REPOSITORY = "{url}"', cell.source)
            return True
    return False


def execute_notebook(path: Path, url: str, timeout: int = 600) -> float:
    """Execute ``path`` in a fresh kernel and replace it atomically; return the seconds taken.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        If a cell fails; the file on disk is then left untouched.
    """
    import nbclient
    import nbformat

    prepare_chapter_environment()
    notebook = nbformat.read(path, as_version=4)
    sync_install_cell(notebook, url)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    started = time.perf_counter()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        client.execute()
    finally:
        # nbclient handles SIGTERM while it runs, then resets it to the default action (instant
        # death: a write in progress would leave its temporary file); give back the handler.
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    elapsed = time.perf_counter() - started
    write_atomically(notebook, path)
    return elapsed


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """Hold SIGTERM until the block is over, then deliver it to the handler that was in place.

    A signal mask would not do: a signal sent to the process goes to any thread that does not
    block it. Python runs signal handlers in the main thread only, so elsewhere the block runs
    as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if received:
            signal.raise_signal(signal.SIGTERM)


def write_atomically(notebook: object, path: Path) -> None:
    """Write ``notebook`` to ``path`` whole or not at all (a temporary file, then a rename).

    SIGTERM waits until the write is over (the notebook is then whole and new, and no temporary
    file is left, even if it came between creating the file and the clean-up being armed);
    SIGKILL cannot wait, and leaves the temporary file for ``remove_temporaries``.
    """
    with _sigterm_held():
        _write_atomically(notebook, path)


def _write_atomically(notebook: object, path: Path) -> None:
    import nbformat

    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ipynb", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            nbformat.write(notebook, stream)
        # mkstemp makes the file private: keep the old file's mode, or the usual one for a new file.
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def sync_install_cell_in_place(path: Path, url: str) -> bool:
    """Set the install cell's ``BOOK_REPOSITORY`` of the notebook at ``path``, without executing.

    The install cell prints nothing where ``lorabook`` is installed, so its outputs (and those of
    every other cell) stay valid. Returns whether the file changed.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    sync_install_cell(notebook, url)
    if nbformat.writes(notebook) == before:
        return False
    write_atomically(notebook, path)
    return True


def remove_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that an interrupted write of ``path`` may have left.

    :func:`write_atomically` writes ``.<stem>.<random>.ipynb`` beside the notebook and renames
    it into place; a process killed outright (SIGKILL) between the two leaves the temporary
    file, never a half-written notebook. Returns the files removed.
    """
    removed = []
    for leftover in path.parent.glob(f".{path.stem}.*.ipynb"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds normally: the kernel is shut down and a temporary file removed.
    raise SystemExit(128 + signum)


def _describe_failure(error: BaseException) -> str:
    """A short description of a failed cell from nbclient's error."""
    text = str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-12:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lorabook.publishing.reexecute",
        description="Re-execute book chapters in place (atomically; failures leave files untouched).",
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: all in _toc.yml)")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    parser.add_argument(
        "--install-cells-only",
        action="store_true",
        help="only write the repository URL into each chapter's install cell; execute nothing",
    )
    arguments = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = find_book_root()
    notebooks = [path.resolve() for path in arguments.notebooks] or toc_notebooks(root)
    missing = [str(path) for path in notebooks if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    for path in notebooks:
        remove_temporaries(path)
    url = repository_url(root)
    if arguments.install_cells_only:
        for path in notebooks:
            changed = sync_install_cell_in_place(path, url)
            print(f"{os.path.relpath(path, root)}: {'updated' if changed else 'unchanged'}")
        return 0
    failures = []
    for index, path in enumerate(notebooks, start=1):
        name = os.path.relpath(path, root)
        print(f"[{index}/{len(notebooks)}] {name} ...", end=" ", flush=True)
        try:
            elapsed = execute_notebook(path, url, timeout=arguments.timeout)
        except Exception as error:  # report and go on with the other chapters
            print("FAILED (file left untouched)")
            print(_describe_failure(error), file=sys.stderr)
            failures.append(name)
            continue
        print(f"ok, {elapsed:.1f} s")
    if failures:
        print(f"{len(failures)} chapter(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
