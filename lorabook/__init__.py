"""lorabook: exactly solvable models of LoRA fine-tuning.

The package behind the lorabook Jupyter Book, laid out by role and by model:

* :mod:`lorabook.toolkit`: what every model is built from: Gaussian integrals, activations,
  Hermite coefficients, closed-form kernels, the overlap-ODE pipeline from a model's
  description to its sympy drift, the ODE integrator and the input checks;
* :mod:`lorabook.single_index_lora`: Part II, the single-index model learned from scratch and
  fine-tuned with LoRA: its risk layer, SGD simulators, search phase, task difficulty and the
  variants (non-aligned pre-training, remedies, curriculum, full fine-tuning);
* :mod:`lorabook.two_layer_lora`: Chapter 8, rank-r LoRA on pre-trained two-layer (committee)
  networks: the model, its overlaps and risk, and the full SGD simulator;
* :mod:`lorabook.linear_regression`: Part III, full fine-tuning versus LoRA in linear
  regression, and the gradient flow of the LoRA factors;
* :mod:`lorabook.publishing`: the book's tooling: figure style, printing to the page column,
  re-execution of chapters, the build extension, site check, editions and handouts.

The names below are the top-level API. The modules' old top-level paths (``lorabook.lora``,
``lorabook.sgd``, ...) still import, with a :class:`FutureWarning`, as the modules that
replaced them (:mod:`lorabook.deprecation`).
"""

from lorabook import deprecation

deprecation.install()

from lorabook.linear_regression.linear_finetuning import (  # noqa: E402
    fft_estimator,
    fft_excess_risk,
    lora_estimator,
)
from lorabook.single_index_lora.lora import (  # noqa: E402
    linearization,
    overlap_ode_rhs,
    population_risk,
    search_time,
)
from lorabook.single_index_lora.sgd import simulate_full, simulate_reduced, simulate_sgd  # noqa: E402
from lorabook.toolkit.activations import (  # noqa: E402
    ACTIVATION_NAMES,
    activation,
    activation_derivative,
    check_activation,
)
from lorabook.toolkit.ode import integrate_overlap_ode  # noqa: E402

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

__version__ = "0.2.0"


def __getattr__(name: str) -> object:
    # `import lorabook; lorabook.lora` worked when every module sat at the top level.
    if f"lorabook.{name}" in deprecation.MOVED:
        import importlib

        return importlib.import_module(f"lorabook.{name}")
    raise AttributeError(f"module 'lorabook' has no attribute {name!r}")
