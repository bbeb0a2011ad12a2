"""Tests of lorabook.toolkit.ode: accuracy, solver-located escape events, bounds, failures."""

from __future__ import annotations

import numpy as np
import pytest

from lorabook.single_index_lora.single_index import overlap_ode_rhs
from lorabook.toolkit.ode import integrate_overlap_ode, output_times


def test_linear_drift_matches_tanh_solution() -> None:
    # dm/dt = 1 - m^2 has m(t) = tanh(t + artanh m0); escape to 1/2 at artanh(1/2) - artanh(m0).
    m0 = -0.05
    solution = integrate_overlap_ode(overlap_ode_rhs("linear", 0.0), m0, 5.0, escape_threshold=0.5,
                                     escape_on_magnitude=False)
    assert np.allclose(solution.state[:, 0], np.tanh(solution.time + np.arctanh(m0)), atol=1e-9)
    assert solution.escape_time == pytest.approx(np.arctanh(0.5) - np.arctanh(m0), rel=1e-8)


def test_he2_escape_time_closed_form() -> None:
    # He2 with delta: dm/dt = 4m(1-m^2) - 24 delta m (1-m^2) = c m (1 - m^2), c = 4 - 24 delta.
    # Then m^2/(1-m^2) grows like e^{2ct}: t = log(x(m_1)/x(m_0)) / (2c), x = m^2/(1-m^2).
    delta, m0 = 0.05, 1e-3
    c = 4 - 24 * delta
    solution = integrate_overlap_ode(overlap_ode_rhs("He2", delta), m0, 100.0, escape_threshold=0.5,
                                     stop_at_escape=True, method="Radau")
    def x(m):
        return m**2 / (1 - m**2)

    assert solution.escape_time == pytest.approx(np.log(x(0.5) / x(m0)) / (2 * c), rel=1e-7)
    assert solution.time[-1] == solution.escape_time and solution.state[-1, 0] == pytest.approx(0.5)


def test_overlap_stays_in_bounds_and_no_escape_is_inf() -> None:
    solution = integrate_overlap_ode(overlap_ode_rhs("He3", 0.0), 0.999, 1e3, escape_threshold=0.5)
    assert np.all(np.abs(solution.state) <= 1.0)
    assert solution.escape_time == 0.0 or np.isinf(solution.escape_time)  # starts above: no upward crossing
    stuck = integrate_overlap_ode(overlap_ode_rhs("He3", 0.1), 0.01, 10.0, escape_threshold=0.5)
    assert np.isinf(stuck.escape_time)


def test_output_times_and_validation() -> None:
    times = output_times(10.0, 5)
    assert times[0] == 0 and times[-1] == pytest.approx(10.0) and np.all(np.diff(times) > 0)
    with pytest.raises(ValueError, match="method"):
        integrate_overlap_ode(overlap_ode_rhs("He2"), 0.1, 1.0, method="Euler")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        integrate_overlap_ode(overlap_ode_rhs("He2"), 1.5, 1.0)
    with pytest.raises(ValueError, match="spacing"):
        output_times(1.0, 5, spacing="cubic")


def test_solver_failure_raises() -> None:
    def explosive(t, y):
        return np.array([0.0, y[1] ** 3])  # y1 blows up at t = 1/2: Radau cannot step past it

    with pytest.raises(RuntimeError):
        integrate_overlap_ode(explosive, [0.0, 1.0], 10.0, bounded_components=(0,), method="Radau")
