"""The book's Sphinx extension: what the build does beyond Jupyter Book's defaults.

Listed in ``_config.yml`` under ``sphinx.extra_extensions``. Environment variables choose, at
build time and without editing a file, what a build produces:

``LORABOOK_REPOSITORY_URL``
    The public GitHub URL of the repository (overrides ``repository.url`` of ``_config.yml``,
    the one place it is set). With a URL, every chapter gets Binder and Colab launch buttons,
    the page header links to the repository, pages inside ``{only} launch_buttons`` blocks are
    shown, and the Colab install cell of every chapter installs ``lorabook`` from that URL.
``LORABOOK_EDITION``
    ``instructor`` (the default: solutions in dropdowns) or ``student`` (solutions removed from
    the pages, the search index and the downloadable notebooks).
``LORABOOK_EXECUTED_NOTEBOOKS``
    A folder of already executed copies of the chapters (``<folder>/<docname>.ipynb``, as
    myst-nb writes them to ``_build/jupyter_execute``). The build then shows those outputs and
    executes nothing; a stale copy fails the build.

Without it, a chapter whose executed copy in ``_build/jupyter_execute`` is fresh (the copy
strict nbval or an earlier build left there, see :mod:`lorabook.publishing.executed_copies`)
is shown from that copy, and every other chapter is executed.

The extension also makes the site self-contained (MathJax served from the site, from the copy
that the ``sphinx-mathjax-offline`` package ships), numbers chapters by their file names
(``ch09_*`` is chapter 9 even while chapter 8 is not written), keeps virtual environments out of
the sources, and provides the ``{chapter-guide}`` directive of the instructor's page.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import ConfigError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from lorabook.publishing import chapters, executed_copies
from lorabook.publishing.reexecute import (
    prepare_chapter_environment,
    repository_url,
    sync_install_cell,
    toc_notebooks,
    write_atomically,
)

__all__ = [
    "edition",
    "mathjax_folder",
    "virtual_environments",
    "package_layout",
    "ChapterGuide",
    "PackageAPI",
]

logger = logging.getLogger(__name__)

EDITIONS = ("instructor", "student")
EDITION_VARIABLE = "LORABOOK_EDITION"
EXECUTED_NOTEBOOKS_VARIABLE = "LORABOOK_EXECUTED_NOTEBOOKS"

GITHUB_URL = re.compile(r"^https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?$")
MATHJAX_SCRIPT = "mathjax/tex-chtml.js"


def edition() -> str:
    """The edition this build makes (``LORABOOK_EDITION``, default ``instructor``)."""
    value = os.environ.get(EDITION_VARIABLE, "instructor").strip() or "instructor"
    if value not in EDITIONS:
        raise ConfigError(
            f"{EDITION_VARIABLE}={value!r} is not an edition; choose one of {', '.join(EDITIONS)}"
        )
    return value


def mathjax_folder() -> Path:
    """The folder holding ``mathjax/`` in the installed ``sphinx-mathjax-offline`` package."""
    try:
        distribution = metadata.distribution("sphinx-mathjax-offline")
    except metadata.PackageNotFoundError as error:
        raise ConfigError(
            "the offline MathJax copy is missing: pip install -r requirements.txt "
            "(it pins sphinx-mathjax-offline)"
        ) from error
    folder = Path(str(distribution.locate_file("sphinx-mathjax-offline/static")))
    if not (folder / MATHJAX_SCRIPT).is_file():
        raise ConfigError(f"no {MATHJAX_SCRIPT} in {folder}")
    return folder


def virtual_environments(root: Path, depth: int = 2) -> list[str]:
    """Folders under ``root`` (to ``depth`` levels) that hold a Python or conda environment."""
    found = []

    def walk(folder: Path, level: int) -> None:
        for child in sorted(folder.iterdir()):
            if not child.is_dir() or child.is_symlink():
                continue
            if (child / "pyvenv.cfg").is_file() or (child / "conda-meta").is_dir():
                found.append(child.relative_to(root).as_posix())
            elif level < depth and child.name not in ("_build", ".git"):
                walk(child, level + 1)

    walk(root, 1)
    return found


def _configure(app: Any, config: Any) -> None:
    root = Path(app.srcdir)
    config.exclude_patterns.extend(virtual_environments(root))

    # Launch buttons, the repository link and the install cell follow one URL.
    url = repository_url(root)
    options = config.html_theme_options
    # Without a default the theme logs a console error on a reader's first visit.
    config.html_context = {"default_mode": "light", **(config.html_context or {})}
    if url:
        if not GITHUB_URL.match(url):
            raise ConfigError(
                f"repository URL {url!r}: Colab opens notebooks from GitHub only, so the URL "
                "must look like https://github.com/OWNER/REPOSITORY"
            )
        options["repository_url"] = url
        options["use_repository_button"] = True
        options["use_issues_button"] = True
        app.tags.add("launch_buttons")
    else:
        options.pop("launch_buttons", None)
        options.pop("repository_url", None)
    config.lorabook_repository_url = url

    # Editions: the student edition drops every solution (sphinx-exercise's hide_solutions).
    config.lorabook_edition = edition()
    app.tags.add(f"{config.lorabook_edition}_edition")
    if config.lorabook_edition == "student":
        config.hide_solutions = True

    executed = os.environ.get(EXECUTED_NOTEBOOKS_VARIABLE, "").strip()
    if executed and not (root / executed).is_dir():
        raise ConfigError(f"{EXECUTED_NOTEBOOKS_VARIABLE}={executed!r} is not a folder")
    config.lorabook_executed_notebooks = str((root / executed).resolve()) if executed else ""
    config.lorabook_fingerprint = executed_copies.fingerprint(root)

    # A self-contained site: MathJax, the book's stylesheet and every font come from _static.
    config.mathjax_path = MATHJAX_SCRIPT
    config.html_static_path = [*config.html_static_path, str(mathjax_folder())]
    book_static = root / "book" / "_static"
    if book_static.is_dir():
        config.html_static_path.append(str(book_static))
        for stylesheet in sorted(book_static.glob("*.css")):
            app.add_css_file(stylesheet.name)


def _read_source(app: Any, docname: str, source: list[str]) -> None:
    """Put the repository URL in the install cell; show a fresh executed copy's outputs.

    By default a chapter's executed copy (:mod:`lorabook.publishing.executed_copies`) is used
    when it is fresh, and the chapter is executed otherwise. With ``LORABOOK_EXECUTED_NOTEBOOKS``
    the copies of that folder must be used: a missing or stale one is a build warning (an error
    under ``-W``). Copies without a fingerprint there (the committed chapters) are taken as
    they are.
    """
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    url = app.config.lorabook_repository_url
    notebook = nbformat.reads(source[0], as_version=4)
    sync_install_cell(notebook, url)
    stamp = app.config.lorabook_fingerprint
    folder = app.config.lorabook_executed_notebooks
    path = Path(folder, f"{docname}.ipynb") if folder else executed_copies.copy_path(
        Path(app.srcdir), docname)
    copy = None
    if path.is_file():
        copy = nbformat.read(path, as_version=4)
        sync_install_cell(copy, url)
        reason = executed_copies.stale_reason(copy, notebook, stamp)
        if folder and reason == "it carries no fingerprint":
            reason = ""
        if reason:
            message = f"the executed copy {path} is stale ({reason})"
            if folder:
                logger.warning(f"{message}: rebuild it", location=docname)
            else:
                logger.info(f"{docname}: executing it, {message}")
            copy = None
    elif folder:
        logger.warning(f"no executed copy of {docname} in {folder}", location=docname)
    if copy is not None:
        _show_copy(app, docname, notebook, copy)
    source[0] = nbformat.writes(notebook)


def _show_copy(app: Any, docname: str, notebook: Any, copy: Any) -> None:
    """Give ``notebook`` the outputs of its executed ``copy`` and execute nothing."""
    from myst_nb.sphinx_ import NbMetadataCollector

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    executed = [cell for cell in copy.cells if cell.cell_type == "code"]
    for cell, executed_cell in zip(code, executed, strict=True):
        cell.outputs = executed_cell.outputs
        cell.execution_count = executed_cell.execution_count
    notebook.metadata.setdefault("mystnb", {})["execution_mode"] = "off"
    if executed_copies.METADATA_KEY in copy.metadata:
        notebook.metadata[executed_copies.METADATA_KEY] = copy.metadata[executed_copies.METADATA_KEY]
    data = executed_copies.execution_data(copy)
    if data:
        NbMetadataCollector.set_exec_data(app.env, docname, data)


def _number_chapters_by_file(app: Any, env: Any) -> list[str]:
    """Give every ``chNN_*`` document the number NN, in the sidebar, titles, figures, equations.

    Sphinx numbers the chapters of numbered toctrees consecutively; the book's chapters keep
    the numbers of its plan instead, so a chapter not yet written leaves a gap rather than
    renumbering every chapter after it (and the text's "chapter 10" stays chapter 10).
    """
    changed = []
    claimed: dict[int, str] = {}
    for docname in sorted(env.toc_secnumbers):
        wanted = chapters.chapter_number(f"{docname.rsplit('/', 1)[-1]}.ipynb")
        secnumbers = env.toc_secnumbers[docname]
        if wanted is None or not secnumbers.get(""):
            continue
        if wanted in claimed:
            logger.warning(f"{docname} and {claimed[wanted]} are both chapter {wanted}")
        claimed[wanted] = docname
        assigned = secnumbers[""][0]
        if assigned == wanted:
            continue

        def renumber(number: tuple[int, ...] | list[int] | None) -> Any:
            if number and number[0] == assigned:
                return type(number)([wanted, *number[1:]])
            return number

        env.toc_secnumbers[docname] = {key: renumber(value) for key, value in secnumbers.items()}
        for reference in env.tocs[docname].findall(nodes.reference):
            if reference.get("secnumber"):
                reference["secnumber"] = renumber(reference["secnumber"])
        title = env.titles.get(docname)
        if title is not None and title.get("secnumber"):
            title["secnumber"] = renumber(title["secnumber"])
        for numbers in env.toc_fignumbers.get(docname, {}).values():
            for target, number in numbers.items():
                numbers[target] = renumber(number)
        changed.append(docname)
    return changed


def _finish(app: Any, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    executed_folder = Path(app.outdir).parent / "jupyter_execute"
    # Stamp the chapters this build executed, so that the next build can show them as they are.
    for docname in sorted(app.env.found_docs):
        data = NbMetadataCollector.get_exec_data(app.env, docname)
        path = executed_folder / f"{docname}.ipynb"
        if not data or not data.get("succeeded") or not path.is_file():
            continue
        notebook = nbformat.read(path, as_version=4)
        if executed_copies.METADATA_KEY not in notebook.metadata:
            notebook.metadata[executed_copies.METADATA_KEY] = {
                "fingerprint": app.config.lorabook_fingerprint,
                "execution": {key: data.get(key) for key in ("mtime", "runtime", "method", "succeeded")},
            }
            write_atomically(notebook, path)
    if app.config.lorabook_edition == "student":
        # The pages lost their solutions at parse time; the notebooks readers download did not.
        for folder in (Path(app.outdir) / "_sources", executed_folder):
            for path in folder.rglob("*.ipynb"):
                notebook = nbformat.read(path, as_version=4)
                if chapters.strip_solutions(notebook):
                    nbformat.write(notebook, path)


class ChapterGuide(SphinxDirective):
    """``{chapter-guide}``: for every chapter of the book, what it assumes, what it teaches,
    how long it takes to read, and which exercises need running code."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        lines: list[str] = []
        book = [path for path in toc_notebooks(root) if chapters.chapter_number(path) is not None]
        overview = [
            "```{list-table} The chapters at a glance: reading time of the prose and equations "
            f"at {chapters.READING_SPEED} words per minute, and the exercises by kind.",
            ":header-rows: 1",
            ":name: tab-chapter-guide",
            "",
            "* - Chapter",
            "  - Reading time",
            "  - Exercises: pen and paper",
            "  - Exercises: running code",
        ]
        details: list[str] = []
        for path in book:
            self.env.note_dependency(str(path))
            chapter = chapters.read_chapter(path)
            by_kind = {
                kind: [exercise for exercise in chapter.exercises if exercise.kind == kind]
                for kind in chapters.EXERCISE_KINDS
            }

            def listing(exercises: list[chapters.Exercise]) -> str:
                return ", ".join(f"{{numref}}`{exercise.label}`" for exercise in exercises) or "none"

            overview += [
                f"* - {chapter.number}\\. {{ref}}`{chapter.label}`",  # not a numbered list
                f"  - about {chapter.reading_minutes} min",
                f"  - {len(by_kind['pen-and-paper'])}",
                f"  - {len(by_kind['computational'])}",
            ]
            details += [
                f"**Chapter {chapter.number}, {{ref}}`{chapter.label}`.** "
                f"About {chapter.reading_minutes} minutes of reading ({chapter.words} words).",
                "",
                f"- *Assumes:* {chapter.prerequisites}",
                "- *Learning objectives:* after the chapter a reader can",
                *[f"  - {objective}" for objective in chapter.objectives],
                f"- *Pen-and-paper exercises:* {listing(by_kind['pen-and-paper'])}.",
                f"- *Exercises that need running code:* {listing(by_kind['computational'])}.",
                "",
            ]
        lines = [*overview, "```", "", *details]
        container = nodes.container(classes=["chapter-guide"])
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return [container]


def package_layout(package: str = "lorabook") -> list[tuple[str, list[str]]]:
    """The subpackages of ``package`` and the public modules of each, in the order their
    docstrings list them.

    The top-level docstring must name every subpackage (``:mod:`lorabook.toolkit```) and each
    subpackage's docstring every public module it holds, so that the package's own index and
    the API page generated from it (:class:`PackageAPI`) can never leave a module out.

    Raises
    ------
    ValueError
        If a subpackage or a module is missing from the docstring that should list it.
    """
    import importlib
    import pkgutil

    def listed(module: Any, found: list[str]) -> list[str]:
        text = module.__doc__ or ""
        missing = [name for name in found if f":mod:`{name}`" not in text]
        if missing:
            raise ValueError(f"the docstring of {module.__name__} does not list {', '.join(missing)}")
        return sorted(found, key=lambda name: text.index(f":mod:`{name}`"))

    root = importlib.import_module(package)
    layout = []
    subpackages = [f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__) if info.ispkg]
    for subpackage in listed(root, subpackages):
        module = importlib.import_module(subpackage)
        public = [f"{subpackage}.{info.name}" for info in pkgutil.iter_modules(module.__path__)
                  if not info.name.startswith("_") and not info.ispkg]
        layout.append((subpackage, listed(module, public)))
    return layout


class PackageAPI(SphinxDirective):
    """``{package-api}``: the API reference of lorabook, generated from the package itself.

    One section per subpackage (its docstring), one subsection per public module (its
    docstring and its public members, those of ``__all__`` where a module defines it), in the
    order of :func:`package_layout`; then the top-level names and where each comes from.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        import importlib

        from sphinx.util.nodes import nested_parse_with_titles

        import lorabook

        layout = package_layout()
        lines = ["## Top level", "",
                 "The package's top level re-exports the entry points readers use most:", ""]
        for name in lorabook.__all__:
            value = getattr(lorabook, name)
            home = getattr(value, "__module__", None)
            if home is None or not hasattr(value, "__qualname__"):  # a constant
                home = next(module for _, modules in layout for module in modules
                            if name in vars(importlib.import_module(module)))
                lines.append(f"- `lorabook.{name}` is {{py:data}}`{home}.{name}`;")
            else:
                lines.append(f"- `lorabook.{name}` is {{py:func}}`{home}.{name}`;")
        lines[-1] = lines[-1].rstrip(";") + "."
        lines.append("")
        for subpackage, modules in layout:
            summary = (importlib.import_module(subpackage).__doc__ or "").strip().splitlines()[0]
            lines += [f"## `{subpackage}`: {summary.rstrip('.').rstrip(':')}", "",
                      "```{eval-rst}", f".. automodule:: {subpackage}", "```", ""]
            for module in modules:
                self.env.note_dependency(importlib.import_module(module).__file__)
                lines += [f"### `{module}`", "", "```{eval-rst}", f".. automodule:: {module}",
                          "   :members:", "```", ""]
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(lines), container)
        return list(container.children)


def _drop_thebe_scripts(app: Any) -> None:
    """Keep sphinx-thebe's scripts off the pages.

    Jupyter Book always loads sphinx-thebe, whose scripts declare the same constants twice on a
    page (a JavaScript error on every page) and point at a CDN. The book has no live-code
    button (launch buttons open Binder or Colab instead), so the scripts are not added at all.
    """
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        if getattr(listener.handler, "__name__", "") == "init_thebe_core":
            app.disconnect(listener.id)


def setup(app: Any) -> dict[str, Any]:
    prepare_chapter_environment()
    # Registered with rebuild="env" so that a change between builds re-reads every document.
    app.add_config_value("lorabook_repository_url", "", "env")
    app.add_config_value("lorabook_edition", "instructor", "env")
    app.add_config_value("lorabook_executed_notebooks", "", "env")
    # A change to lorabook or a pinned package re-reads (re-executes) every chapter.
    app.add_config_value("lorabook_fingerprint", "", "env")
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _drop_thebe_scripts)
    app.connect("source-read", _read_source)
    app.connect("env-get-updated", _number_chapters_by_file)
    app.connect("build-finished", _finish)
    app.add_directive("chapter-guide", ChapterGuide)
    app.add_directive("package-api", PackageAPI)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
