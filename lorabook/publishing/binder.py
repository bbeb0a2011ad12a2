"""Binder readiness: the environment Binder builds from ``runtime.txt`` and ``requirements.txt``.

Binder (repo2docker) installs ``requirements.txt`` on the Python that ``runtime.txt`` pins. In a
fresh virtual environment made with that Python, after the README's install command,
:func:`check_binder_environment` confirms that the interpreter is the pinned one, that every pin
of ``requirements.txt`` is installed at its version, and that ``pip check`` finds the installed
dependencies consistent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RUNTIME = re.compile(r"^python-(\d+)\.(\d+)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pinned_requirements(requirements: str) -> dict[str, str]:
    """The ``name==version`` pins of a requirements file's text (other lines are skipped)."""
    pins = {}
    for line in requirements.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def check_binder_environment(root: Path) -> list[str]:
    """Problems that would make Binder's environment differ from this one (empty: none)."""
    problems = []
    runtime = (root / "runtime.txt").read_text(encoding="utf-8").strip()
    match = RUNTIME.match(runtime)
    if match is None:
        problems.append(f"runtime.txt says {runtime!r}; Binder expects python-X.Y")
    elif tuple(map(int, match.groups())) != sys.version_info[:2]:
        problems.append(
            f"this interpreter is Python {sys.version.split()[0]}, runtime.txt pins {runtime}: "
            "check Binder's environment with the pinned interpreter"
        )
    pins = pinned_requirements((root / "requirements.txt").read_text(encoding="utf-8"))
    if not pins:
        problems.append("requirements.txt pins nothing")
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is pinned but not installed")
            continue
        if installed != version:
            problems.append(f"{name}=={version} is pinned but {installed} is installed")
    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        problems.append("pip check: " + " | ".join(check.stdout.strip().splitlines()))
    return problems
