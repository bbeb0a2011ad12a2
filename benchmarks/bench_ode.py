"""Benchmark of the overlap-ODE right-hand side (run: ``python benchmarks/bench_ode.py``).

The drift that :func:`lorabook.single_index_lora.lora.overlap_ode_rhs` evaluates is lambdified from the sympy
derivation of :mod:`lorabook.toolkit.overlap_equations`. Before, lorabook evaluated a hand-typed copy of
the same chain rule; that copy is kept here (and only here) as the speed reference:

    du/dt = -(F_q (2u + 2 mu m) + F_rho m),   dm/dt = -(1 - m^2) u (2 mu F_q + F_rho).

For the erf model at mu = 0.5 the script times, as medians of repetitions:

* the drift alone, lambdified against hand-typed, for one state (how the ODE solver calls it)
  and for 10^4 states (how chapters evaluate fields);
* the whole right-hand side ``overlap_ode_rhs`` (validation, covariances, Price's forms, drift);
* one integration :func:`lorabook.single_index_lora.lora_dynamics.integrate_lora_ode` to t = 40;
* the solvers of :func:`lorabook.toolkit.ode.integrate_overlap_ode` on Chapter 2's one-overlap
  ODE (He2, delta = 1/8, 16 initial overlaps m0 ~ d^-1/2, to t = 6 with the escape event), each
  against Radau: the time and the largest difference of the trajectories. LSODA is the default.

Target (issue "One overlap-ODE pipeline"): the lambdified drift within 1.5x of the hand-typed
one, or faster. It also checks that both give the same numbers (to rounding). Timings are
measurements, not tests, and vary between machines.
"""

from __future__ import annotations

import os
import time

for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_key, "1")

import numpy as np  # noqa: E402

from lorabook.single_index_lora import lora, single_index  # noqa: E402
from lorabook.single_index_lora.lora_dynamics import integrate_lora_ode  # noqa: E402
from lorabook.toolkit.ode import SOLVER_METHODS, integrate_overlap_ode  # noqa: E402
from lorabook.toolkit.overlap_equations import overlap_equations  # noqa: E402

MU = 0.5


def hand_typed_drift(u, m, mu, risk_q, risk_rho):
    """The pre-pipeline formula, for speed comparison only."""
    return -(risk_q * (2.0 * u + 2.0 * mu * m) + risk_rho * m), -(1.0 - m**2) * u * (2.0 * mu * risk_q + risk_rho)


def median_time(function, repeats: int, inner: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            function()
        times.append((time.perf_counter() - start) / inner)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    lambdified = overlap_equations(lora.MODEL).drift_function
    rows = []
    for label, size in (("one state", None), ("10^4 states", 10_000)):
        shape = () if size is None else (size,)
        u, m = rng.uniform(-1, 1, shape), rng.uniform(-0.99, 0.99, shape)
        risk_q, risk_rho = rng.uniform(0.1, 1, shape), rng.uniform(-1, 0, shape)
        new = lambdified(u, m, MU, risk_q, risk_rho)
        old = hand_typed_drift(u, m, MU, risk_q, risk_rho)
        assert all(np.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(new, old, strict=True))
        inner = 20_000 if size is None else 200
        t_new = median_time(lambda: lambdified(u, m, MU, risk_q, risk_rho), 7, inner)
        t_old = median_time(lambda: hand_typed_drift(u, m, MU, risk_q, risk_rho), 7, inner)
        rows.append((f"drift, {label}", t_old, t_new))
    t_rhs = median_time(lambda: lora.overlap_ode_rhs("erf", MU, 0.3, 0.2), 7, 2000)
    t_ode = median_time(lambda: integrate_lora_ode("erf", MU, 1e-3, 1e-2, 40.0), 5, 3)
    print(f"{'quantity':28s} {'hand-typed':>12s} {'lambdified':>12s} {'ratio':>7s}  target")
    for label, t_old, t_new in rows:
        ratio = t_new / t_old
        print(f"{label:28s} {t_old * 1e6:10.2f}us {t_new * 1e6:10.2f}us {ratio:7.2f}  "
              f"<= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"{'overlap_ode_rhs, one state':28s} {'':>12s} {t_rhs * 1e6:10.1f}us")
    print(f"{'integrate_lora_ode to t=40':28s} {'':>12s} {t_ode * 1e3:10.1f}ms")
    compare_solvers(rng)


def compare_solvers(rng: np.random.Generator) -> None:
    """Chapter 2's ODE, 16 seeds, with every solver: time and largest difference from Radau."""
    rhs = single_index.overlap_ode_rhs("He2", 1 / 8)
    initial = rng.normal(0.0, 500**-0.5, 16)

    def solve(method: str) -> np.ndarray:
        return np.array([integrate_overlap_ode(rhs, m0, 6.0, n_times=81, spacing="linear", escape_threshold=0.5,
                                               method=method).state[:, 0] for m0 in initial])

    reference = solve("Radau")
    print(f"\n{'solver (16 ODEs, He2)':28s} {'time':>12s} {'max |m - m_Radau|':>18s}")
    for method in SOLVER_METHODS:
        seconds = median_time(lambda method=method: solve(method), 3, 1)
        difference = np.abs(solve(method) - reference).max()
        print(f"{method:28s} {seconds * 1e3:10.1f}ms {difference:18.1e}")


if __name__ == "__main__":
    main()
