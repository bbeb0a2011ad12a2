"""Tests of lorabook.publishing.plotting: the book's one figure style, shipped with the package."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt

from lorabook.publishing.plotting import STYLE_FILE, book_colors, use_book_style

OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def test_the_style_file_ships_inside_the_package() -> None:
    assert STYLE_FILE.is_file() and STYLE_FILE.parent.name == "publishing"


def test_book_colors_are_the_colour_blind_safe_palette_and_leave_the_settings_alone() -> None:
    before = dict(matplotlib.rcParams)
    assert [color.upper() for color in book_colors()] == OKABE_ITO
    assert dict(matplotlib.rcParams) == before


def test_use_book_style_sets_the_figure_defaults() -> None:
    with matplotlib.rc_context():
        use_book_style()
        assert list(plt.rcParams["figure.figsize"]) == [6.4, 4.0]
        assert plt.rcParams["axes.spines.top"] is False and plt.rcParams["axes.grid"] is True
        assert [entry["color"].upper() for entry in plt.rcParams["axes.prop_cycle"]] == OKABE_ITO
