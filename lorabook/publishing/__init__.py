"""The book's tooling: figures, printing, re-execution, and the book as readers get it.

Modules:

* :mod:`lorabook.publishing.plotting`: the book's single figure style;
* :mod:`lorabook.publishing.printing`: printed results that fit the page column;
* :mod:`lorabook.publishing.reexecute`: re-execute the book's chapters in place
  (``python -m lorabook.publishing.reexecute``);
* :mod:`lorabook.publishing.sphinx_extension`: the Sphinx extension of the book's build (launch
  buttons from the repository URL, offline MathJax, chapters numbered by file, the student
  edition, the instructor's guide);
* :mod:`lorabook.publishing.chapters`: what a chapter notebook says about itself (number,
  objectives, prerequisites, exercises, reading time) and the removal of solutions;
* :mod:`lorabook.publishing.executed_copies`: the run strict nbval leaves of each chapter, which
  the build shows instead of executing it again while it is fresh;
* :mod:`lorabook.publishing.editions`: the student edition, built without executing;
* :mod:`lorabook.publishing.site_check`: every page of a built site checked in headless Chromium;
* :mod:`lorabook.publishing.handouts`: chapters printed to checked PDF handouts;
* :mod:`lorabook.publishing.browser`: the system's Chromium and a local static server;
* :mod:`lorabook.publishing.binder`: the environment Binder builds.

The commands are ``python -m lorabook.publishing check-site | student-edition | handouts |
check-binder`` (see the README).
"""
