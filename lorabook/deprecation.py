"""Old module paths of lorabook, kept working after the package was laid out by role and model.

Until version 0.2 every module sat at the top level (``lorabook.lora``, ``lorabook.sgd``, ...).
They now live in subpackages (:mod:`lorabook.toolkit`, :mod:`lorabook.single_index_lora`,
:mod:`lorabook.linear_regression`, :mod:`lorabook.publishing`). The old paths have no files:
:class:`MovedModuleFinder`, installed when :mod:`lorabook` is imported, answers for them.
Importing an old path warns once with a :class:`FutureWarning` (shown to readers by default,
unlike a ``DeprecationWarning`` raised inside an import) and hands back the very module object
of the new path, so code written against the old layout keeps working unchanged, monkeypatching
included; ``python -m`` on an old path runs the new module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

MOVED = {
    "lorabook.validation": "lorabook.toolkit.validation",
    "lorabook.gaussian": "lorabook.toolkit.gaussian",
    "lorabook.activations": "lorabook.toolkit.activations",
    "lorabook.hermite": "lorabook.toolkit.hermite",
    "lorabook.kernels": "lorabook.toolkit.kernels",
    "lorabook.ode": "lorabook.toolkit.ode",
    "lorabook.overlap_equations": "lorabook.toolkit.overlap_equations",
    "lorabook.single_index": "lorabook.single_index_lora.single_index",
    "lorabook.sgd": "lorabook.single_index_lora.sgd",
    "lorabook.lora": "lorabook.single_index_lora.lora",
    "lorabook.lora_dynamics": "lorabook.single_index_lora.lora_dynamics",
    "lorabook.search_phase": "lorabook.single_index_lora.search_phase",
    "lorabook.task_difficulty": "lorabook.single_index_lora.task_difficulty",
    "lorabook.remedies": "lorabook.single_index_lora.remedies",
    "lorabook.non_aligned": "lorabook.single_index_lora.non_aligned",
    "lorabook.curriculum": "lorabook.single_index_lora.curriculum",
    "lorabook.full_finetuning": "lorabook.single_index_lora.full_finetuning",
    "lorabook.linear_finetuning": "lorabook.linear_regression.linear_finetuning",
    "lorabook.factor_dynamics": "lorabook.linear_regression.factor_dynamics",
    "lorabook.plotting": "lorabook.publishing.plotting",
    "lorabook.printing": "lorabook.publishing.printing",
    "lorabook.reexecute": "lorabook.publishing.reexecute",
}
"""Each old module path and the module that replaces it."""


def _message(old: str) -> str:
    return f"{old} moved to {MOVED[old]}; the old path will be removed in lorabook 0.3"


class MovedModuleLoader(importlib.abc.Loader):
    """Loads an old module path as the module that replaces it (see :data:`MOVED`)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a blank module, replaced in exec_module

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        warnings.warn(_message(old), FutureWarning, stacklevel=3)
        # The import system returns whatever sys.modules holds once exec_module is done.
        sys.modules[old] = importlib.import_module(MOVED[old])

    def get_code(self, fullname: str) -> types.CodeType:
        """Code that ``python -m`` runs for an old path: the new module, as ``__main__``."""
        return compile(
            f"import runpy, warnings\n"
            f"warnings.warn({_message(fullname)!r}, FutureWarning)\n"
            f"runpy.run_module({MOVED[fullname]!r}, run_name='__main__', alter_sys=True)\n",
            f"<moved module {fullname}>", "exec")

    def is_package(self, fullname: str) -> bool:
        return False


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old module paths of :data:`MOVED`, and nothing else."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, MovedModuleLoader())


def install() -> None:
    """Put one :class:`MovedModuleFinder` on ``sys.meta_path`` (called by :mod:`lorabook`)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
