"""Benchmark of the committee SGD-noise matrix G (run: ``python benchmarks/bench_committee_noise.py``).

Times :func:`lorabook.two_layer_lora.committee.committee_gradient_covariance` for one evaluation at
K = M = 4 (all 4 x 4 entries; ReLU: 90 four-unit terms by the 99-node rule, plus the closed-form
terms), at the pre-trained start W = DT (D = diag(0.9, 0.9, 1, 1), singular overlaps) and at a
generic student, for ReLU, erf and linear. For comparison it also times the sum of the same
terms by :func:`lorabook.toolkit.committee_integrals.four_point_with_error` (the slow Stein-Plackett
rule, 360 covariances), and prints the largest difference between the two in units of max |G| and
of the slow rule's own error estimate (summed over the terms: a ratio below 1 means agreement
within the slow rule's accuracy, which is the coarser of the two, about 1e-6 for a fully repeated
unit). Target of the project (the overlap ODE calls G in its right-hand side): at most 10 ms a
call for ReLU.

Timings are wall-clock medians of repeated calls after a warm-up; they are measurements, not tests.
"""

from __future__ import annotations

import argparse
import os
import time

for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_key, "1")  # same single-threaded BLAS as the chapters

import numpy as np  # noqa: E402

from lorabook.toolkit.committee_integrals import four_point_with_error  # noqa: E402
from lorabook.two_layer_lora.committee import (  # noqa: E402
    committee_gradient_covariance,
    orthonormal_teacher,
    pretrained_coefficients,
    readout_scale,
)

NEURONS = 4
DIMENSION = 12
TARGET = 10e-3


def overlaps(W: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return W @ W.T, W @ T.T, T @ T.T


def slow_sum(activation: str, W: np.ndarray, T: np.ndarray, readout: float) -> tuple[np.ndarray, np.ndarray]:
    """G and its error bound by four_point_with_error on every (k <= l, a <= b) covariance."""
    Z = np.vstack([W, T])
    joint = Z @ Z.T
    K, n = W.shape[0], Z.shape[0]
    sign = np.where(np.arange(n) < K, 1.0, -1.0)
    index = np.array([(k, m, a, b) for k in range(K) for m in range(k, K) for a in range(n) for b in range(a, n)])
    values, errors = four_point_with_error(activation, joint[index[:, :, None], index[:, None, :]])
    G, bound = np.zeros((K, K)), np.zeros((K, K))
    for (k, m, a, b), value, error in zip(index, values, errors, strict=True):
        weight = sign[a] * sign[b] * (1.0 if a == b else 2.0)
        G[k, m] += weight * value
        bound[k, m] += abs(weight) * error
    return readout**4 * (np.triu(G) + np.triu(G, 1).T), readout**4 * (np.triu(bound) + np.triu(bound, 1).T)


def median_time(function, repeats: int) -> float:
    function()  # warm-up (cached index tables and quadrature rule)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--slow-repeats", type=int, default=2, help="timed calls of the slow four_point sum")
    arguments = parser.parse_args(argv)
    T = orthonormal_teacher(NEURONS, DIMENSION, seed=0)
    rng = np.random.default_rng(1)
    students = {
        "W = DT": pretrained_coefficients(NEURONS, 0.9) @ T,
        "generic": 0.8 * T + 0.3 * rng.standard_normal((NEURONS, DIMENSION)),
    }
    met = True
    print(f"committee_gradient_covariance, K = M = {NEURONS} (median of {arguments.repeats} calls)")
    for activation in ("relu", "erf", "linear"):
        g = readout_scale(activation, NEURONS)
        for label, W in students.items():
            Q, R, T_overlap = overlaps(W, T)
            fast = median_time(lambda: committee_gradient_covariance(activation, Q, R, T_overlap, g),
                               arguments.repeats)
            line = f"  {activation:>6} {label:>8}: {1e3 * fast:7.2f} ms"
            if activation == "relu":
                met &= fast <= TARGET
                line += f" ({'met' if fast <= TARGET else 'NOT MET'}, target <= {1e3 * TARGET:.0f} ms)"
                G = committee_gradient_covariance(activation, Q, R, T_overlap, g)
                slow = median_time(lambda: slow_sum(activation, W, T, g), arguments.slow_repeats)
                reference, bound = slow_sum(activation, W, T, g)
                difference = np.abs(G - reference)
                relative = float(np.max(difference) / np.max(np.abs(G)))
                line += (f"; four_point sum {1e3 * slow:6.1f} ms, difference {relative:.1e} max|G| = "
                         f"{np.max(difference / bound):.2f} x its error estimate")
            print(line)
    print("all targets met" if met else "some targets not met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
