"""Same seed, same output: every seeded simulator and sampler of lorabook, run in two separate
Python processes, gives bit-identical results for the same seed, and different results for
different seeds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Each entry: a name and a call with the placeholder SEED, small enough to run in a fraction
# of a second. Together they cover every public function of lorabook that takes a seed.
CALLS = {
    "sgd.simulate_full": "sgd.simulate_full('erf', dimension=50, learning_rate=0.05, batch_size=4,"
    " n_steps=30, n_seeds=3, seed=SEED, pretraining_strength=0.5, initial_scale=0.1,"
    " train_scale=True, n_records=5)",
    "sgd.simulate_reduced": "sgd.simulate_reduced('He3', dimension=50, learning_rate=0.05,"
    " batch_size=4, n_steps=30, n_seeds=3, seed=SEED, n_records=5)",
    "sgd.simulate_reduced (antithetic)": "sgd.simulate_reduced('erf', dimension=50,"
    " learning_rate=0.05, batch_size=4, n_steps=30, n_seeds=3, seed=SEED,"
    " pretraining_strength=0.5, initial_scale=0.1, train_scale=True, n_records=5, antithetic=True)",
    "full_finetuning.simulate_full_finetuning": "full_finetuning.simulate_full_finetuning('erf',"
    " dimension=50, learning_rate=0.05, batch_size=4, n_steps=30, n_seeds=3, seed=SEED,"
    " pretraining_strength=0.5, n_records=5)",
    "non_aligned.simulate": "non_aligned.simulate('full', 'erf', dimension=50, learning_rate=0.05,"
    " batch_size=4, n_steps=30, n_seeds=3, seed=SEED, pretraining_strength=0.5,"
    " offset_strength=0.3, initial_scale=0.1, n_records=5)",
    "curriculum.simulate_curriculum": "curriculum.simulate_curriculum('reduced', 'He3',"
    " [('He3^2', 20), ('He3', 20)], seed=SEED, initial_scale=0.1, dimension=50,"
    " learning_rate=0.001, batch_size=4, n_seeds=3, pretraining_strength=0.5)",
    "search_phase.measure_search_time": "search_phase.measure_search_time('linear', 0.5,"
    " n_seeds=2, seed=SEED, dimension=200)",
    "gaussian.monte_carlo_expectation_2d": "gaussian.monte_carlo_expectation_2d(lambda a, b: a * b,"
    " 1.0, 0.3, 1.0, 2000, seed=SEED)",
    "linear_finetuning.finetuning_problem": "lf.finetuning_problem(8, 6, 20, 2, 0.5, seed=SEED)",
    "linear_finetuning.pretrained_weights": "lf.pretrained_weights(6, 8, seed=SEED)",
    "linear_finetuning.gaussian_task_shift": "lf.gaussian_task_shift(6, 8, 2, seed=SEED)",
    "linear_finetuning.spectral_task_shift": "lf.spectral_task_shift(6, 8, [3.0, 1.0], seed=SEED)",
    "linear_finetuning.regression_data": "lf.regression_data(np.ones((6, 8)), 20, 0.5, seed=SEED)",
    "linear_finetuning.lora_gradient_descent": "lf.lora_gradient_descent(P.X, P.Y, P.pretrained, 2,"
    " 20, seed=SEED)",
    "linear_finetuning.lora_alternating_least_squares": "lf.lora_alternating_least_squares(P.X, P.Y,"
    " P.pretrained, 2, 5, seed=SEED)",
    "linear_finetuning.excess_risk_monte_carlo": "lf.excess_risk_monte_carlo(P.pretrained,"
    " np.ones((6, 8)) * 0.1, 20, 0.5, [1, 2], 3, seed=SEED)",
}

SCRIPT = textwrap.dedent(
    """
    import dataclasses, hashlib, json, sys
    import numpy as np
    from lorabook.single_index_lora import curriculum, full_finetuning, non_aligned, search_phase, sgd
    from lorabook.toolkit import gaussian
    from lorabook.linear_regression import linear_finetuning as lf

    P = lf.finetuning_problem(8, 6, 20, 2, 0.5, seed=0)  # fixed data for the estimators

    def digest(value, sha):
        if dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                digest(getattr(value, field.name), sha)
        elif isinstance(value, (tuple, list)):
            for item in value:
                digest(item, sha)
        elif isinstance(value, dict):
            for key in sorted(value):
                digest(value[key], sha)
        else:
            array = np.asarray(value)
            sha.update(str(array.dtype).encode() + str(array.shape).encode())
            sha.update(np.ascontiguousarray(array).tobytes() if array.dtype != object else repr(value).encode())

    calls = json.loads(sys.argv[1])
    hashes = {}
    for name, call in calls.items():
        for seed in (1, 2):
            sha = hashlib.sha256()
            digest(eval(call.replace("SEED", str(seed))), sha)
            hashes[f"{name} seed {seed}"] = sha.hexdigest()
    print(json.dumps(hashes))
    """
)


def _run_twice() -> tuple[dict[str, str], dict[str, str]]:
    """The hashes of every call for seeds 1 and 2, from two separate Python processes.

    The two processes run at the same time (each is mostly imports): nothing but the seed may
    decide a result, so running them together proves the same as one after the other.
    """
    command = [sys.executable, "-c", SCRIPT, json.dumps(CALLS)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:  # a failed or timed-out run leaves no process behind
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs[0], outputs[1]


def test_same_seed_same_output_across_processes_and_different_seeds_differ() -> None:
    first, second = _run_twice()
    assert first == second, [key for key in first if first[key] != second[key]]
    for name in CALLS:
        assert first[f"{name} seed 1"] != first[f"{name} seed 2"], f"{name}: seeds 1 and 2 agree"


def test_every_seeded_public_function_is_covered() -> None:
    import importlib
    import inspect
    import pkgutil

    import lorabook

    seeded = set()
    for module in pkgutil.iter_modules(lorabook.__path__):
        if module.name.startswith("_") or module.ispkg:
            continue
        imported = importlib.import_module(f"lorabook.{module.name}")
        for name, function in inspect.getmembers(imported, inspect.isfunction):
            if name.startswith("_") or function.__module__ != imported.__name__:
                continue
            if "seed" in inspect.signature(function).parameters:
                seeded.add(f"{module.name}.{name}")
    covered = {name.split(" ")[0] for name in CALLS}
    assert seeded <= covered, sorted(seeded - covered)
