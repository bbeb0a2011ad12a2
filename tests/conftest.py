"""Shared test configuration: tests marked ``browser`` need the system's Chromium."""

from __future__ import annotations

import os

import pytest

from lorabook.publishing.browser import find_chromium


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        find_chromium()
        return
    except FileNotFoundError as error:
        missing = str(error)
    if os.environ.get("LORABOOK_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"LORABOOK_REQUIRE_BROWSER=1 but {missing}")
    skip = pytest.mark.skip(reason=missing)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
