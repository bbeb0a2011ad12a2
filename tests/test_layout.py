"""The package's layout: subpackages by role and model, old paths kept working, no private
imports across modules, a clean linter, raw docstrings."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lorabook
from lorabook.deprecation import MOVED
from lorabook.publishing.sphinx_extension import package_layout

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = sorted((ROOT / "lorabook").rglob("*.py"))


def _lorabook_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(lorabook.__path__, "lorabook."))


def test_every_module_lives_in_a_subpackage_that_lists_it() -> None:
    layout = package_layout()  # raises if a docstring leaves a subpackage or a module out
    listed = {module for _, modules in layout for module in modules}
    top_level = {name for name in _lorabook_modules() if name.count(".") == 1}
    assert [subpackage for subpackage, _ in layout] == [
        "lorabook.toolkit", "lorabook.single_index_lora", "lorabook.two_layer_lora", "lorabook.linear_regression",
        "lorabook.publishing"]
    assert top_level == {"lorabook.deprecation", *(subpackage for subpackage, _ in layout)}
    nested = {name for name in _lorabook_modules()
              if name.count(".") == 2 and not name.rsplit(".", 1)[1].startswith("_")}
    assert nested == listed


def test_a_docstring_that_leaves_a_module_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    toolkit = importlib.import_module("lorabook.toolkit")
    monkeypatch.setattr(toolkit, "__doc__", toolkit.__doc__.replace(":mod:`lorabook.toolkit.ode`", "ode"))
    with pytest.raises(ValueError, match="lorabook.toolkit.ode"):
        package_layout()


# Book tooling tested elsewhere than tests/publishing/test_<module>.py: the file that does, and
# the text in it that shows it.
TESTED_ELSEWHERE = {
    # The README's CI steps build the student edition and check Binder; test_book checks the
    # README has those steps, and CI runs them.
    "lorabook.publishing.editions": ("tests/test_book.py", "python -m lorabook.publishing student-edition"),
    "lorabook.publishing.binder": ("tests/test_book.py", "python -m lorabook.publishing check-binder"),
    "lorabook.publishing.browser": ("tests/publishing/test_site_check.py", "browser"),
}


def test_the_tests_mirror_the_layout() -> None:
    expected = set()
    for subpackage, modules in package_layout():
        folder = ROOT / "tests" / subpackage.removeprefix("lorabook.")
        for module in modules:
            name = module.rsplit(".", 1)[1]
            if module in TESTED_ELSEWHERE:
                where, evidence = TESTED_ELSEWHERE[module]
                assert evidence in (ROOT / where).read_text(encoding="utf-8"), f"{where} does not test {module}"
                continue
            expected.add(folder / f"test_{name}.py")
    found = {path for path in (ROOT / "tests").glob("*/test_*.py")}
    assert found == expected, (sorted(map(str, expected - found)), sorted(map(str, found - expected)))


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_still_imports_as_the_new_module_and_warns(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=re.escape(MOVED[old])):
        module = importlib.import_module(old)
    assert module is new
    name = old.removeprefix("lorabook.")
    assert getattr(importlib.import_module("lorabook"), name) is new


def test_old_style_imports_of_names_keep_working() -> None:
    code = ("import warnings; warnings.simplefilter('error')\n"
            "try:\n    from lorabook.lora import search_time\nexcept FutureWarning as w:\n    print(w)\n"
            "warnings.simplefilter('ignore')\n"
            "from lorabook.lora import search_time\n"
            "from lorabook import sgd, kernels\n"
            "import lorabook\nimport lorabook.single_index_lora.lora as new\n"
            "assert search_time is new.search_time and sgd.simulate_sgd is lorabook.simulate_sgd\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "lorabook.lora moved to lorabook.single_index_lora.lora; the old path will be removed in lorabook 0.3",
        "ok"]


def test_python_dash_m_on_an_old_path_runs_the_new_module() -> None:
    result = subprocess.run([sys.executable, "-m", "lorabook.reexecute", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m lorabook" in result.stdout
    assert "FutureWarning" in result.stderr and "lorabook.publishing.reexecute" in result.stderr


def test_unknown_top_level_names_still_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_module"):
        lorabook.no_such_module  # noqa: B018


def _imported_private_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    aliases = {}  # local name -> lorabook module it refers to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lorabook"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if alias.name.startswith("_") and node.module != own:
                    found.append(f"{own}: from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lorabook"):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            found.append(f"{own}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another_module() -> None:
    found = [name for path in PACKAGE_FILES for name in _imported_private_names(path)]
    assert not found, found


def test_the_private_name_check_can_fail(tmp_path: Path) -> None:
    fake = ROOT / "lorabook" / "toolkit" / "_probe_for_the_private_name_check.py"
    source = "from lorabook.single_index_lora.sgd import _check_settings\nfrom lorabook import toolkit\ntoolkit._x\n"
    try:
        fake.write_text(source)
        assert len(_imported_private_names(fake)) == 2
    finally:
        fake.unlink()


def test_docstrings_with_backslashes_are_raw_strings() -> None:
    # A docstring with TeX is written r"""...""" so that it reads in the source as it renders.
    cooked = []
    for path in PACKAGE_FILES:
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                continue
            literal = ast.get_source_segment(source, body[0].value) or ""
            if "\\" in literal and not literal.lstrip("bBuU").lower().startswith("r"):
                cooked.append(f"{path.relative_to(ROOT)}:{body[0].lineno}")
    assert not cooked, cooked


def test_the_linter_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None, "ruff is pinned in requirements.txt"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
