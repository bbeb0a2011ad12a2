"""Seeds: every random function of lorabook takes an int seed or a numpy Generator."""

from __future__ import annotations

import numpy as np


def as_generator(seed: int | np.random.Generator) -> np.random.Generator:
    """Return ``seed`` itself if it is a :class:`numpy.random.Generator`, else ``default_rng(seed)``.

    Raises
    ------
    TypeError
        If ``seed`` is neither an integer nor a Generator.
    ValueError
        If ``seed`` is a negative integer.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed}")
    return np.random.default_rng(int(seed))
