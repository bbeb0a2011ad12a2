"""Tests of lorabook.publishing.printing: results printed to fit the page column."""

from __future__ import annotations

import pytest
import sympy as sp

from lorabook.publishing.printing import PAGE_WIDTH, wrapped


def test_short_lines_are_printed_as_they_are() -> None:
    assert wrapped("A(mu) =", "1 - mu") == "A(mu) = 1 - mu"


def test_long_expressions_wrap_under_the_expression_and_lose_nothing() -> None:
    mu = sp.Symbol("mu")
    expression = sp.expand((1 + mu) ** 14)
    text = wrapped("He5 A(mu) =", expression)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= PAGE_WIDTH for line in lines)
    assert all(line.startswith(" " * len("He5 A(mu) = ")) for line in lines[1:])
    assert "".join(text.split()) == "".join(f"He5 A(mu) = {expression}".split())


def test_a_long_label_puts_the_expression_on_its_own_lines() -> None:
    label = "  the correction term of the drift ="
    text = wrapped(label, " + ".join(["x"] * 60), width=40)
    first, *rest = text.splitlines()
    assert first == label and rest and all(line.startswith(" " * 6) for line in rest)
    assert all(len(line) <= 40 for line in rest)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(label=3, expression="x"), TypeError, "label must be a string"),
        (dict(label="a", expression="x", width=10), ValueError, "width must be at least 20"),
        (dict(label="a", expression="x", width=88.0), TypeError, "width must be an integer"),
        (dict(label="a", expression="x", width=True), TypeError, "width must be an integer"),
    ],
)
def test_bad_arguments_are_refused(arguments: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        wrapped(**arguments)
