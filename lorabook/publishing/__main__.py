"""``python -m lorabook.publishing``: the book's publishing commands (see the README).

``check-site [SITE]``
    Check a built site in headless Chromium (:mod:`lorabook.publishing.site_check`).
``student-edition``
    Build the student edition, without solutions, into ``_build/student/html``
    (:mod:`lorabook.publishing.editions`).
``handouts [SITE]``
    Print every chapter of a built site to a PDF handout (:mod:`lorabook.publishing.handouts`).
``check-binder``
    Check that this environment is what Binder builds: the interpreter of ``runtime.txt`` and
    every pin of ``requirements.txt`` installed, with consistent dependencies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lorabook.publishing.reexecute import REPOSITORY_URL_VARIABLE, find_book_root, repository_url
from lorabook.publishing.site_check import EDITIONS, SCREENSHOT_MODES


def _check_site(arguments: argparse.Namespace) -> int:
    from lorabook.publishing.site_check import check_site

    report = check_site(
        arguments.site,
        edition=arguments.edition,
        repository_url=arguments.repository_url,
        report_folder=arguments.report_folder,
        from_disk=not arguments.http_only,
        screenshots=arguments.screenshots,
    )
    for problem in report.problems:
        print(f"FAIL {problem}")
    print(
        f"checked {len(report.pages)} pages of {arguments.site} ({arguments.edition} edition) "
        f"over http{'' if arguments.http_only else ' and from disk'} in {report.seconds:.0f} s: "
        f"{len(report.problems)} problem(s); {len(report.screenshots)} screenshots and "
        f"report.json in {Path(report.screenshots[0]).parent if report.screenshots else '-'}"
    )
    return 0 if report.ok else 1


def _student_edition(arguments: argparse.Namespace) -> int:
    from lorabook.publishing.editions import build_student_edition

    return build_student_edition(find_book_root(), strict=True)


def _handouts(arguments: argparse.Namespace) -> int:
    from lorabook.publishing.handouts import print_handouts

    handouts = print_handouts(arguments.site, arguments.output)
    for handout in handouts:
        print(f"{handout.pdf}: {handout.pages} pages, {handout.images} images; first page {handout.preview}")
    return 0


def _check_binder(arguments: argparse.Namespace) -> int:
    from lorabook.publishing.binder import check_binder_environment

    problems = check_binder_environment(find_book_root())
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print("Binder environment: runtime.txt's Python and every pin of requirements.txt, consistent")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorabook.publishing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-site", help="check a built site in headless Chromium")
    check.add_argument("site", nargs="?", default="_build/html", type=Path)
    check.add_argument("--edition", choices=EDITIONS, default="instructor")
    check.add_argument(
        "--repository-url",
        default=None,
        help=f"the URL the site was built with (default: {REPOSITORY_URL_VARIABLE} or _config.yml)",
    )
    check.add_argument("--report-folder", type=Path, default=None)
    check.add_argument("--http-only", action="store_true", help="skip the file:// pass")
    check.add_argument(
        "--screenshots",
        choices=SCREENSHOT_MODES,
        default="full",
        help="first screen and whole page (default), first screen only, or none",
    )
    check.set_defaults(run=_check_site)

    student = commands.add_parser("student-edition", help="build the edition without solutions")
    student.set_defaults(run=_student_edition)

    handouts = commands.add_parser("handouts", help="print every chapter to a PDF handout")
    handouts.add_argument("site", nargs="?", default="_build/student/html", type=Path)
    handouts.add_argument("--output", type=Path, default=Path("_build/handouts"))
    handouts.set_defaults(run=_handouts)

    binder = commands.add_parser("check-binder", help="check the environment Binder would build")
    binder.set_defaults(run=_check_binder)

    arguments = parser.parse_args(argv)
    if getattr(arguments, "repository_url", "") is None:
        arguments.repository_url = repository_url(find_book_root())
    return arguments.run(arguments)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
