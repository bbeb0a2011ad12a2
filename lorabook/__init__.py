"""lorabook: exactly solvable models of LoRA fine-tuning.

The package behind the lorabook Jupyter Book. Modules are named after concepts:

* :mod:`lorabook.gaussian`: Gaussian integrals (Hermite polynomials, exact moments);
* :mod:`lorabook.activations`: the named activations the book uses;
* :mod:`lorabook.lora`: the rank-one LoRA single-index model (search phase);
* :mod:`lorabook.plotting`: the book's single figure style;
* :mod:`lorabook.reexecute`: re-execute the book's chapters in place.
"""

from lorabook.activations import ACTIVATION_NAMES, activation, activation_derivative, check_activation
from lorabook.lora import linearization, search_time

__all__ = [
    "ACTIVATION_NAMES",
    "activation",
    "activation_derivative",
    "check_activation",
    "linearization",
    "search_time",
]

__version__ = "0.1.0"
