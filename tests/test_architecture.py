"""The layering of docs/architecture.md, read from the source's own imports and functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastgc

PACKAGE = Path(fastgc.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
KERNELS = {"fastgc._core", "fastgc.engines._numba_kernels", "fastgc.engines._reference"}
ENGINE_NAMES = {"numba", "cython", "python"}


def module_name(path: Path) -> str:
    parts = ("fastgc",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every fastgc module ``path`` imports, relative imports resolved, lazy ones included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fastgc"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "fastgc":
                continue
            if node.module:
                found.add(target)
            # `from .. import _core` imports the module fastgc._core, not the package; the
            # names of `from ._cost import Cost` are kept too, harmlessly, as fastgc._cost.Cost.
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def test_the_source_tree_is_read():
    names = {module_name(path) for path in MODULES}
    assert {"fastgc._check", "fastgc.engines.numba", "fastgc.executors.local"} <= names
    assert "fastgc._core" in imported_modules(PACKAGE / "engines" / "cython.py")


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_imports_the_package_itself(path):
    if path.name == "__init__.py" and path.parent == PACKAGE:
        return
    assert "fastgc" not in imported_modules(path), f"{module_name(path)} imports fastgc itself"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_only_engines_import_kernels(path):
    name = module_name(path)
    if name.startswith("fastgc.engines") or name in KERNELS:
        return
    assert not imported_modules(path) & KERNELS, f"{name} reaches past the engine layer"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_branches_on_an_engine_name(path):
    """Engine differences are methods of the engine objects: above the engines nothing
    compares a value with an engine's name."""
    if module_name(path).startswith("fastgc.engines"):
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            constants = [n.value for n in [node.left, *node.comparators]
                         if isinstance(n, ast.Constant)]
            assert not ENGINE_NAMES & set(map(str, constants)), (
                f"{module_name(path)} line {node.lineno} branches on an engine name"
            )


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of code of each function, its docstring excluded."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            lengths[node.name] = body[-1].end_lineno - body[0].lineno + 1 if body else 0
    return lengths


def test_check_is_a_short_orchestrator():
    assert function_lengths(PACKAGE / "_check.py")["check"] <= 60


@pytest.mark.parametrize("path", sorted((PACKAGE / "diagnosis").glob("*.py")), ids=module_name)
def test_no_diagnosis_function_is_long(path):
    long = {name: n for name, n in function_lengths(path).items() if n > 60}
    assert not long, f"{module_name(path)}: functions over 60 lines of code: {long}"
