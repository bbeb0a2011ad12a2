"""SIGTERM and the re-execution of chapters (lorabook.publishing.reexecute): a SIGTERM that comes
while a notebook is written waits until the write is over, and executing a notebook gives back
the SIGTERM handler that nbclient resets. Without both, a SIGTERM during the write killed the
command outright and left its temporary file (the kill tests of tests/test_book.py only hit
that moment by chance; these tests hit it every time)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import nbformat
import pytest

from lorabook.publishing import reexecute

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="Python sets and runs signal handlers in the main thread only",
)


class Stopped(Exception):
    """Raised by the test's SIGTERM handler (the command raises SystemExit)."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


@pytest.fixture
def sigterm_raises() -> object:
    """SIGTERM raises :class:`Stopped` in this process during the test (never its default
    action, which would kill the test run); the previous handler is put back afterwards."""
    previous = signal.signal(signal.SIGTERM, _stop)
    yield _stop
    signal.signal(signal.SIGTERM, previous)


def _notebook(sources: list[str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return notebook


def test_a_sigterm_during_the_write_waits_until_the_notebook_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_raises: object
) -> None:
    path = tmp_path / "ch01_x.ipynb"
    nbformat.write(_notebook(["old = 1"]), path)
    write = nbformat.write

    def write_and_be_stopped(notebook: object, stream: object, *args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the temporary file is half written
        write(notebook, stream, *args, **kwargs)

    monkeypatch.setattr(nbformat, "write", write_and_be_stopped)
    with pytest.raises(Stopped):  # delivered, once the write is over
        reexecute.write_atomically(_notebook(["new = 2"]), path)
    assert nbformat.read(path, as_version=4).cells[0].source == "new = 2"
    assert sorted(child.name for child in tmp_path.iterdir()) == ["ch01_x.ipynb"]


def test_executing_a_notebook_gives_back_the_sigterm_handler(tmp_path: Path, sigterm_raises: object) -> None:
    # nbclient handles SIGTERM while it executes and then resets it to the default action.
    path = tmp_path / "ch01_x.ipynb"
    nbformat.write(_notebook(["print(6 * 7)"]), path)
    reexecute.execute_notebook(path, "", timeout=60)
    assert signal.getsignal(signal.SIGTERM) is sigterm_raises
    assert nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] == "42\n"
