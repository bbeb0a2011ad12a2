r"""Integration of overlap ODEs: stiff-capable, log-spaced output, solver-detected escape events.

The summary statistics of one-pass SGD in high dimension (overlaps, scales) follow autonomous
ODEs :math:`\dot y = f(y)` in time :math:`t = \eta \times \text{steps}`. Their search phases are
long (the state sits near an unstable fixed point for a time growing with :math:`d`) and their
descent phases short, so the output is log-spaced in time, the solver is adaptive and
stiff-capable (LSODA by default: it switches between an explicit Adams method and BDF as the
stiffness demands; Radau and BDF also available) with tight tolerances, and escapes are found by
the solver's event location rather than by scanning the output. On the one-overlap ODEs of
Chapter 2, LSODA at ``rtol = 1e-10`` agrees with Radau to about 1e-9 and is some 15 times
faster (``benchmarks/bench_ode.py``).

Overlap components (those listed in ``bounded_components``) are kept in :math:`[-1, 1]`: the
right-hand side is evaluated at the clipped state and the output is clipped, so a tolerance-level
overshoot never produces :math:`|m| > 1`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from lorabook.toolkit.validation import boolean, check_memory, choice, function, integer, real, real_array

SOLVER_METHODS: tuple[str, ...] = ("LSODA", "Radau", "BDF", "DOP853", "RK45")
"""Valid ``method`` names (the first three are stiff-capable)."""

SPACINGS: tuple[str, ...] = ("log", "linear")
"""Valid ``spacing`` names of :func:`output_times`."""


@dataclass(frozen=True)
class ODESolution:
    """Output of :func:`integrate_overlap_ode`.

    Attributes
    ----------
    time
        Output times, shape ``(n_times,)``; ends at the escape time when ``stop_at_escape``.
    state
        State at those times, shape ``(n_times, n_components)``.
    escape_time
        First time the escape event fired (``numpy.inf`` if it never did).
    """

    time: np.ndarray
    state: np.ndarray
    escape_time: float


def output_times(
    final_time: float, n_times: int = 200, spacing: str = "log", first_time: float | None = None
) -> np.ndarray:
    """Output grid from 0 to ``final_time``: ``0`` followed by log-spaced (or linear) times.

    With ``spacing="log"`` the grid is ``0`` and ``n_times - 1`` points geometrically spaced from
    ``first_time`` (default ``final_time * 1e-4``) to ``final_time``.

    Raises
    ------
    TypeError, ValueError
        For a non-positive or non-finite ``final_time``, ``n_times < 2`` (or too many to fit in
        memory), an unknown ``spacing`` or a ``first_time`` outside ``(0, final_time)``.
    """
    final_time = real(final_time, "final_time", minimum=0.0, strict_minimum=True)
    n_times = integer(n_times, "n_times", minimum=2)
    check_memory(n_times, "n_times", "the output times")
    choice(spacing, "spacing", SPACINGS)
    if first_time is not None:
        real(first_time, "first_time", minimum=0.0, strict_minimum=True, maximum=final_time, strict_maximum=True)
    if spacing == "linear":
        return np.linspace(0.0, final_time, n_times)
    first = final_time * 1e-4 if first_time is None else float(first_time)
    return np.concatenate([[0.0], np.geomspace(first, final_time, n_times - 1)])


def integrate_overlap_ode(
    rhs: Callable[[float, np.ndarray], np.ndarray],
    initial_state: float | Sequence[float] | np.ndarray,
    final_time: float,
    *,
    n_times: int = 200,
    spacing: str = "log",
    first_time: float | None = None,
    escape_threshold: float | None = None,
    escape_component: int = 0,
    escape_on_magnitude: bool = True,
    stop_at_escape: bool = False,
    bounded_components: Sequence[int] = (0,),
    method: str = "LSODA",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> ODESolution:
    r"""Integrate :math:`\dot y = f(t, y)` from :math:`y(0)` to ``final_time``.

    Parameters
    ----------
    rhs
        ``f(t, y)`` returning an array shaped like ``y`` (e.g.
        :func:`lorabook.single_index_lora.single_index.overlap_ode_rhs`).
    initial_state
        :math:`y(0)`, a scalar (one overlap) or a vector.
    final_time
        End of the integration, in units of :math:`t = \eta\times\text{steps}`.
    n_times, spacing, first_time
        Output grid, see :func:`output_times` (log-spaced by default, for long search phases).
    escape_threshold
        If given, the solver locates the first time the component ``escape_component`` reaches
        this value (its magnitude when ``escape_on_magnitude``), as an event root.
    stop_at_escape
        End the integration at the escape event (the output grid is cut there and the escape
        time appended).
    bounded_components
        Components kept in :math:`[-1, 1]` (overlaps).
    method, rtol, atol
        :func:`scipy.integrate.solve_ivp` settings; ``method`` one of :data:`SOLVER_METHODS`.

    Returns
    -------
    ODESolution

    Raises
    ------
    ValueError
        For invalid arguments, or an initial overlap outside :math:`[-1, 1]`.
    RuntimeError
        If the solver fails or produces non-finite values.
    """
    function(rhs, "rhs")
    state = np.atleast_1d(real_array(initial_state, "initial_state", ndim=(0, 1))).copy()
    if isinstance(bounded_components, (str, bytes)) or not hasattr(bounded_components, "__iter__"):
        raise TypeError(f"bounded_components must be a sequence of component indices, got {bounded_components!r}")
    bounded = [integer(index, "bounded_components", minimum=0, maximum=state.size - 1) for index in bounded_components]
    if np.any(np.abs(state[bounded]) > 1):
        raise ValueError(f"initial_state: the overlap components {bounded} must lie in [-1, 1], got {state[bounded]}")
    final_time = real(final_time, "final_time", minimum=0.0, strict_minimum=True)
    check_memory(integer(n_times, "n_times", minimum=2) * (2 * state.size + 1), "n_times", "the solution's states")
    times = output_times(final_time, n_times, spacing, first_time)
    if escape_threshold is not None:
        escape_threshold = real(escape_threshold, "escape_threshold")
        escape_component = integer(escape_component, "escape_component", minimum=0, maximum=state.size - 1)
    escape_on_magnitude = boolean(escape_on_magnitude, "escape_on_magnitude")
    stop_at_escape = boolean(stop_at_escape, "stop_at_escape")
    choice(method, "method", SOLVER_METHODS)
    rtol = real(rtol, "rtol", minimum=0.0, strict_minimum=True)
    atol = real(atol, "atol", minimum=0.0, strict_minimum=True)

    def clipped(y: np.ndarray) -> np.ndarray:
        y = np.array(y, dtype=float)
        y[bounded] = np.clip(y[bounded], -1.0, 1.0)
        return y

    def vector_field(t: float, y: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(rhs(t, clipped(y)), dtype=float))

    events = None
    if escape_threshold is not None:
        threshold = float(escape_threshold)

        def escape(t: float, y: np.ndarray) -> float:
            value = y[escape_component]
            return (abs(value) if escape_on_magnitude else value) - threshold

        escape.terminal = bool(stop_at_escape)
        escape.direction = 1.0
        events = [escape]

    solution = solve_ivp(
        vector_field,
        (0.0, float(final_time)),
        state,
        method=method,
        t_eval=times,
        events=events,
        rtol=rtol,
        atol=atol,
    )
    if solution.status < 0:
        raise RuntimeError(f"ODE solver {method} failed: {solution.message}")
    escape_time = np.inf
    output_time = solution.t
    output_state = solution.y.T
    if events is not None and solution.t_events[0].size:
        escape_time = float(solution.t_events[0][0])
        if stop_at_escape:
            output_time = np.append(output_time, escape_time)
            output_state = np.vstack([output_state, solution.y_events[0][:1]])
    if not np.all(np.isfinite(output_state)):
        raise RuntimeError("ODE solution contains non-finite values")
    output_state = np.array(output_state)
    output_state[:, bounded] = np.clip(output_state[:, bounded], -1.0, 1.0)
    return ODESolution(time=output_time, state=output_state, escape_time=escape_time)
