"""Input checks shared by several modules (private)."""

from __future__ import annotations

import numpy as np


def real_array(value: object, name: str) -> np.ndarray:
    """``value`` as a float array; TypeError for non-numbers (and bools), ValueError if not finite."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.dtype == bool):
        raise TypeError(f"{name} must be a real number or array of real numbers, got {value!r}")
    try:
        values = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real number or array of real numbers, got {value!r}") from error
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return values
