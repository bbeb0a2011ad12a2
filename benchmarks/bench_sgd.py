"""Benchmark of the SGD simulators (run: ``python benchmarks/bench_sgd.py``).

In one run, for rank-one LoRA fine-tuning of an erf single-index model (mu = 0.5, u trained) at
d = 1000 with 32 seeds, batch sizes B = 1 and B = 500, it measures seed-steps per second of

* a plain per-seed loop (one seed at a time, numpy on d-vectors): the naive implementation;
* the vectorised full simulator :func:`lorabook.single_index_lora.sgd.simulate_full` (leading seed axis);
* the exact reduced simulator :func:`lorabook.single_index_lora.sgd.simulate_reduced` (O(B) per step);

and the Gaussian-sampling limit of any full simulator on this machine, 1 / (B d t_normal),
with t_normal the measured time to draw one standard normal with numpy's default generator
(the full simulator needs B d fresh normals per seed-step). It also times the reduced simulator
at d = 10^6 to show that its cost per step does not depend on d. The table reports the ratios and
the targets of the project (issue "Part II core"):

* vectorised full simulator >= 1/2 of the sampling limit, at both batch sizes;
* reduced >= 20x full at B = 1 and >= 100x full at B = 500;
* reduced cost per step within 1.5x between d = 10^3 and d = 10^6.

Timings are wall-clock medians of a few repetitions on an otherwise idle machine; they are
measurements, not tests, and vary between machines.
"""

from __future__ import annotations

import argparse
import os
import time

for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_key, "1")  # same single-threaded BLAS as the chapters

import numpy as np  # noqa: E402

from lorabook.single_index_lora import sgd  # noqa: E402
from lorabook.toolkit.activations import activation, activation_derivative  # noqa: E402

ACTIVATION = "erf"
MU = 0.5
N_SEEDS = 32
DIMENSION = 1000
LARGE_DIMENSION = 10**6


def learning_rate_for(batch_size: int, dimension: int) -> float:
    """eta = delta B / d with delta = 0.4, the authors' eta d / B."""
    return 0.4 * batch_size / dimension


def median_time(function, repeats: int) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls (after one warm-up)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_per_normal(repeats: int = 5) -> float:
    """Seconds to draw one standard normal with numpy's default generator (in large blocks)."""
    rng = np.random.default_rng(0)
    count = 2**22
    return median_time(lambda: rng.standard_normal(count), repeats) / count


def plain_loop(batch_size: int, dimension: int, n_steps: int, n_seeds: int, seed: int) -> None:
    """The naive reference: one seed at a time, one step at a time, numpy on d-vectors."""
    s, s_prime = activation(ACTIVATION), activation_derivative(ACTIVATION)
    rng = np.random.default_rng(seed)
    eta = learning_rate_for(batch_size, dimension)
    for _ in range(n_seeds):
        w_star = rng.standard_normal(dimension)
        w_star /= np.linalg.norm(w_star)
        v = rng.standard_normal(dimension)
        v /= np.linalg.norm(v)
        u = dimension**-2.0
        for _ in range(n_steps):
            x = rng.standard_normal((batch_size, dimension))
            along_v = x @ v
            lam_star = x @ w_star
            lam = MU * lam_star + u * along_v
            h = (s(lam) - s(lam_star)) * s_prime(lam)
            grad_v = u * (h @ x) / batch_size
            grad_u = float(h @ along_v) / batch_size
            v = v - eta * grad_v
            v /= np.linalg.norm(v)
            u -= eta * grad_u


def simulator_run(simulator: str, batch_size: int, dimension: int, n_steps: int) -> None:
    sgd.simulate_sgd(
        simulator, ACTIVATION, dimension=dimension, learning_rate=learning_rate_for(batch_size, dimension),
        batch_size=batch_size, n_steps=n_steps, n_seeds=N_SEEDS, seed=1, pretraining_strength=MU,
        initial_scale=dimension**-2.0, train_scale=True, n_records=2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per measurement")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test, noisier)")
    arguments = parser.parse_args(argv)
    scale = 0.2 if arguments.quick else 1.0

    def steps(count: float) -> int:
        return max(2, int(count * scale))

    t_normal = time_per_normal()
    rows = []
    for batch_size, plain_steps, full_steps, reduced_steps in ((1, 400, 2000, 20000), (500, 2, 10, 2000)):
        limit = 1.0 / (batch_size * DIMENSION * t_normal)
        n_plain_seeds = 4
        plain = median_time(lambda: plain_loop(batch_size, DIMENSION, steps(plain_steps), n_plain_seeds, 0),
                            arguments.repeats)
        full = median_time(lambda: simulator_run("full", batch_size, DIMENSION, steps(full_steps)), arguments.repeats)
        reduced = median_time(lambda: simulator_run("reduced", batch_size, DIMENSION, steps(reduced_steps)),
                              arguments.repeats)
        reduced_large = median_time(lambda: simulator_run("reduced", batch_size, LARGE_DIMENSION, steps(reduced_steps)),
                                    arguments.repeats)
        rows.append(dict(
            batch=batch_size, limit=limit,
            plain=n_plain_seeds * steps(plain_steps) / plain,
            full=N_SEEDS * steps(full_steps) / full,
            reduced=N_SEEDS * steps(reduced_steps) / reduced,
            reduced_large=N_SEEDS * steps(reduced_steps) / reduced_large,
        ))

    print(f"erf LoRA, mu = {MU}, u trained, d = {DIMENSION}, {N_SEEDS} seeds; "
          f"t_normal = {t_normal * 1e9:.1f} ns per standard normal")
    print("seed-steps per second:")
    header = f"{'B':>5} {'plain loop':>12} {'full':>12} {'limit':>12} {'reduced':>12} {'reduced d=1e6':>14}"
    print(header)
    for row in rows:
        print(f"{row['batch']:>5} {row['plain']:>12.4g} {row['full']:>12.4g} {row['limit']:>12.4g} "
              f"{row['reduced']:>12.4g} {row['reduced_large']:>14.4g}")
    print("\nratios and targets:")
    all_met = True
    for row in rows:
        reduced_target = 20 if row["batch"] == 1 else 100
        checks = [
            ("full / plain loop", row["full"] / row["plain"], None),
            ("full / sampling limit (target >= 0.5)", row["full"] / row["limit"], 0.5),
            (f"reduced / full (target >= {reduced_target})", row["reduced"] / row["full"], reduced_target),
            ("reduced d=1e3 / d=1e6 cost ratio (target <= 1.5)", row["reduced"] / row["reduced_large"], None),
        ]
        for label, value, target in checks:
            status = "" if target is None else ("  met" if value >= target else "  NOT MET")
            all_met &= target is None or value >= target
            print(f"  B = {row['batch']:>3}: {label:<48} {value:8.3g}{status}")
        independent = max(row["reduced"], row["reduced_large"]) / min(row["reduced"], row["reduced_large"]) <= 1.5
        all_met &= independent
        verdict = "met" if independent else "NOT MET"
        print(f"  B = {row['batch']:>3}: reduced cost independent of d within 1.5x:{'':>8}{verdict}")
    print("\nall targets met" if all_met else "\nsome targets not met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
