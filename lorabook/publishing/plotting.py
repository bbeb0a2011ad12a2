"""The book's single plotting style and small plotting helpers.

Every chapter calls :func:`use_book_style` once, so all figures share fonts, sizes and the
colour-blind-safe palette defined in ``book.mplstyle``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

STYLE_FILE = Path(__file__).with_name("book.mplstyle")


def use_book_style() -> None:
    """Apply the book's matplotlib style (fonts, palette, grid) to all later figures."""
    import matplotlib.pyplot as plt

    plt.style.use(str(STYLE_FILE))


def book_colors() -> list[str]:
    """Return the book's colour cycle (Okabe-Ito palette) as a list of hex strings."""
    with matplotlib.rc_context():
        import matplotlib.pyplot as plt

        plt.style.use(str(STYLE_FILE))
        return [entry["color"] for entry in matplotlib.rcParams["axes.prop_cycle"]]
