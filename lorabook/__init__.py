"""lorabook: exactly solvable models of LoRA fine-tuning.

The package behind the lorabook Jupyter Book. Modules are named after concepts:

* :mod:`lorabook.gaussian`: Gaussian integrals (Hermite polynomials, exact moments, quadrature);
* :mod:`lorabook.activations`: the named activations the book uses;
* :mod:`lorabook.hermite`: Hermite coefficients and information exponents;
* :mod:`lorabook.kernels`: closed-form Gaussian kernels of activation pairs;
* :mod:`lorabook.single_index`: the single-index model learned from scratch on the sphere;
* :mod:`lorabook.sgd`: one-pass SGD simulators (full d-dimensional and exact reduced);
* :mod:`lorabook.ode`: integration of overlap ODEs with escape events;
* :mod:`lorabook.overlap_equations`: a model described once, its overlap ODE derived with sympy;
* :mod:`lorabook.lora`: the LoRA single-index model (its description, risk layer, search phase);
* :mod:`lorabook.linear_finetuning`: full fine-tuning versus LoRA in linear regression;
* :mod:`lorabook.plotting`: the book's single figure style;
* :mod:`lorabook.printing`: printed results that fit the page column;
* :mod:`lorabook.validation`: the input checks at the public boundary of every function;
* :mod:`lorabook.reexecute`: re-execute the book's chapters in place;
* :mod:`lorabook.publishing`: the book's build extension, site check, editions and handouts.
"""

from lorabook.activations import ACTIVATION_NAMES, activation, activation_derivative, check_activation
from lorabook.linear_finetuning import fft_estimator, fft_excess_risk, lora_estimator
from lorabook.lora import linearization, overlap_ode_rhs, population_risk, search_time
from lorabook.ode import integrate_overlap_ode
from lorabook.sgd import simulate_full, simulate_reduced, simulate_sgd

__all__ = [
    "ACTIVATION_NAMES",
    "activation",
    "activation_derivative",
    "check_activation",
    "fft_estimator",
    "fft_excess_risk",
    "integrate_overlap_ode",
    "linearization",
    "lora_estimator",
    "overlap_ode_rhs",
    "population_risk",
    "search_time",
    "simulate_full",
    "simulate_reduced",
    "simulate_sgd",
]

__version__ = "0.1.0"
