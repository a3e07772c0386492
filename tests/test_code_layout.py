"""The layout the README's Architecture section promises: dependencies point one way
(inference <- autoencoders <- datasets <- activation_server; inside it, http -> engine and
cli -> http), read from the import statements of the source, not from a hand-kept list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("inference", "autoencoders", "datasets", "activation_server")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "mechscope." + ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved), at any depth of the file."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


FORBIDDEN = {
    # (importing folder or package, what it must not import)
    "inference": ("mechscope.autoencoders", "mechscope.datasets", "mechscope.activation_server"),
    "autoencoders": ("mechscope.datasets", "mechscope.activation_server"),
    "datasets": ("mechscope.activation_server",),
    "activation_server/engine": ("mechscope.activation_server.http", "mechscope.activation_server.cli", "fastapi",
                                 "starlette", "uvicorn"),
    "activation_server/http": ("mechscope.activation_server.cli",),
}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependencies_point_one_way(folder):
    bad = [f"{path.relative_to(ROOT)} imports {name}" for path in _sources(folder) for name in sorted(_imports(path))
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder])]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_imports(tmp_path):
    # the check above would pass vacuously if relative imports were not resolved
    engine_file = ROOT / "activation_server" / "engine" / "shared_passes.py"
    assert "mechscope.activation_server.schemas" in _imports(engine_file)
    assert "mechscope.activation_server.engine.node_values" in _imports(engine_file)
    routes = _imports(ROOT / "activation_server" / "http" / "routes" / "debugger.py")
    assert "mechscope.activation_server.engine.graph" in routes


MAX_MODULE_LINES = 425      # "no module over ~400 lines"
MAX_FUNCTION_LINES = 65     # "no function over ~60" (docstring included)
DATA_MODULES = {"datasets/task_suite_data.py", "datasets/task_suite_names.py"}   # word lists and fact tables, not code


def _python_sources() -> list[Path]:
    return [p for folder in (*FOLDERS, "scripts") for p in _sources(folder)]


def test_modules_and_functions_stay_readable_in_one_sitting():
    long_modules = [f"{p.relative_to(ROOT)}: {n} lines" for p in _python_sources()
                    if (n := p.read_text().count("\n")) > MAX_MODULE_LINES
                    and p.relative_to(ROOT).as_posix() not in DATA_MODULES]
    long_functions = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                      for p in _python_sources() for node in ast.walk(ast.parse(p.read_text()))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_modules + long_functions, "\n".join(long_modules + long_functions)
