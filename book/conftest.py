"""pytest configuration for the chapters (collected by nbval from this folder).

* Kernels started by nbval inherit this process's environment: the chapters execute with
  single-threaded BLAS and the inline figure backend, exactly as ``python -m lorabook.publishing.reexecute``
  and the book build do.
* Every chapter cell is marked ``notebook`` (``python -m pytest -m "not notebook"`` skips them).
* A chapter whose every cell passed strict nbval leaves its run as the chapter's executed copy
  (:mod:`lorabook.publishing.executed_copies`), which the book build then shows instead of
  executing the chapter a second time; a chapter with a failed cell leaves none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lorabook.publishing import executed_copies
from lorabook.publishing.reexecute import find_book_root, prepare_chapter_environment

prepare_chapter_environment()

# Temporary files of an interrupted re-execution (.<chapter>.<random>.ipynb) are not chapters.
collect_ignore_glob = [".*.ipynb"]

_runs: dict[Path, dict] = {}


def _is_chapter_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_chapter_cell(item):
            item.add_marker(pytest.mark.notebook)


def _run_of(item: pytest.Item) -> dict:
    path = Path(str(item.parent.fspath)).resolve()
    if path not in _runs:
        root = find_book_root(path.parent)
        _runs[path] = {
            "root": root,
            "docname": path.relative_to(root).with_suffix("").as_posix(),
            "stamp": executed_copies.fingerprint(root),
            "outputs": {},
            "seconds": 0.0,
            "failed": False,
        }
    return _runs[path]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    if not _is_chapter_cell(item):
        return
    report = outcome.get_result()
    run = _run_of(item)
    run["seconds"] += report.duration if report.when in ("setup", "call") else 0.0
    if report.failed:
        run["failed"] = True
    elif report.when == "call" and report.passed and item.test_outputs is not None:
        run["outputs"][item.cell_num] = list(item.test_outputs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ANN201
    yield
    if not _is_chapter_cell(item) or (nextitem is not None and nextitem.parent is item.parent):
        return
    run = _runs.pop(Path(str(item.parent.fspath)).resolve(), None)
    if run is None:
        return
    notebook = item.parent.nb
    cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    if run["failed"]:
        executed_copies.remove_copy(run["root"], run["docname"])
    elif len(run["outputs"]) == cells and run["stamp"] == executed_copies.fingerprint(run["root"]):
        outputs = [run["outputs"][number] for number in range(cells)]
        executed_copies.write_copy(
            run["root"], run["docname"], notebook, outputs, run["seconds"], "nbval", run["stamp"]
        )
