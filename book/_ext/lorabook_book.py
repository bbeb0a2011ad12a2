"""Sphinx extension with the book's build-time settings.

* Launch buttons only when the book's repository URL is set: sphinx-book-theme builds Binder
  and Colab links from ``repository.url`` in ``_config.yml`` and fails when launch buttons are
  configured without it. Setting that one value turns the buttons on; while it is empty they are
  left out, so the book builds before the repository is published.
* Chapters execute with single-threaded BLAS and Jupyter's inline figure backend, as in
  re-execution and nbval
  (see :data:`lorabook.reexecute.SINGLE_THREADED_BLAS`): the kernels that myst-nb starts
  inherit this process's environment.
"""

from __future__ import annotations

from typing import Any

from lorabook.reexecute import prepare_chapter_environment


def _launch_buttons_need_a_repository(app: Any, config: Any) -> None:
    options = config.html_theme_options
    if not str(options.get("repository_url") or "").strip():
        options.pop("launch_buttons", None)
        options.pop("repository_url", None)


def setup(app: Any) -> dict[str, Any]:
    prepare_chapter_environment()
    app.connect("config-inited", _launch_buttons_need_a_repository)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
