"""The layering of ARCHITECTURE.md, enforced by reading every module's imports (like a linter, no import run).

models <- converters <- library <- jobs <- cli; benchmarks beside them, never imported by the package.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ifgan_jax", "converters", "benchmarks")
MAX_LINES = 600
MAX_LINES_EXCEPTIONS = {"converters/torch_checkpoint.py": 800}  # the hardened torch reader
MAX_LOCAL_IMPORTS = 8  # function-local imports of project modules outside the CLI, each a deliberate one
MAX_TOP_LEVEL_MODULES = 12  # .py files directly in ifgan_jax/ (__init__ included); the rest lives in packages
MAX_FUNCTION_LINES = 100  # in ifgan_jax/ and converters/: a longer function is several ideas


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Project modules an import statement loads (a `from pkg import mod` names the submodule)."""
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    else:
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        found = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
    return [t for t in found if t.split(".")[0] in PACKAGES]


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(imports at module level, function-local imports) of project modules; TYPE_CHECKING blocks count too."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    top: set[str] = set()
    local: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (local if in_function else top).update(_targets(name, path, child))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, local


IMPORTS = {name: _imports(name) for name in MODULES}


def _edges(name: str) -> set[str]:
    """Modules `name` loads: its imports, plus the packages above an imported module outside its own package
    (importing `ifgan_jax.models.dcgan` from converters runs `ifgan_jax/__init__.py` first)."""
    top, local = IMPORTS[name]
    edges = set()
    for target in top | local:
        edges.add(target)
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in MODULES and not (name == parent or name.startswith(parent + ".")):
                edges.add(parent)
    return {e for e in edges if e in MODULES and e != name}


def _layer(name: str) -> str:
    if name.startswith("benchmarks"):
        return "benchmarks"
    if name.startswith("converters"):
        return "converters"
    if name in ("ifgan_jax", "ifgan_jax.errors"):
        return "base"  # the leaf errors module, and the package top (eagerly it imports only errors)
    for layer in ("models", "jobs", "cli"):
        if name == f"ifgan_jax.{layer}" or name.startswith(f"ifgan_jax.{layer}."):
            return layer
    return "library"


# layer -> the layers it may import (its own included)
ALLOWED = {
    "base": {"base"},
    "models": {"base", "models"},
    "converters": {"base", "models", "converters"},
    "library": {"base", "models", "converters", "library"},
    "jobs": {"base", "models", "converters", "library", "jobs"},
    "cli": {"base", "models", "converters", "library", "jobs", "cli", "benchmarks"},
    "benchmarks": {"base", "models", "converters", "library", "jobs", "benchmarks"},
}


def test_every_package_is_seen():
    assert {"ifgan_jax", "ifgan_jax.models", "converters", "ifgan_jax.jobs", "benchmarks"} <= set(MODULES)
    assert sum(len(a) + len(b) for a, b in IMPORTS.values()) > 100  # the reader finds the imports


def test_layers_import_only_downwards():
    bad = [f"{name} ({_layer(name)}) imports {t} ({_layer(t)})"
           for name in MODULES for t in sorted(_edges(name)) if _layer(t) not in ALLOWED[_layer(name)]]
    assert not bad, "\n".join(bad)


def test_cli_imports_benchmarks_only_lazily():
    bad = [n for n in MODULES if _layer(n) == "cli" and any(t.startswith("benchmarks") for t in IMPORTS[n][0])]
    assert not bad, bad


def test_no_import_cycle():
    graph = {name: _edges(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_few_function_local_project_imports_outside_the_cli():
    local = sorted(f"{n}: {t}" for n, (_, loc) in IMPORTS.items() if _layer(n) != "cli" for t in loc)
    assert len(local) <= MAX_LOCAL_IMPORTS, "\n".join(local)


def test_no_file_over_the_line_limit():
    files = [p for pkg in (*PACKAGES, "tests") for p in (ROOT / pkg).rglob("*.py")] + [ROOT / "run.py"]
    long = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES_EXCEPTIONS.get(rel, MAX_LINES):
            long.append(f"{rel}: {lines} lines")
    assert not long, long


def test_few_top_level_modules():
    top = sorted(p.name for p in (ROOT / "ifgan_jax").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_long_function():
    long = []
    for pkg in ("ifgan_jax", "converters"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_library_errors_name_arguments_not_flags():
    """Flags are the CLI's: a library InputError names its keyword (argument=...), and the CLI says it as a flag."""
    flag = re.compile(r"(^|[\s(])--[a-z]")
    bad = []
    for name, path in MODULES.items():
        if _layer(name) not in ("library", "models", "converters"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InputError":
                texts = ["".join(c.value for c in ast.walk(arg) if isinstance(c, ast.Constant)
                                 and isinstance(c.value, str)) for arg in node.args]
                commands = ("pip install", "run.py ")  # a whole command to run is no flag of ours
                if any(flag.search(t) and not any(c in t for c in commands) for t in texts):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad


def test_no_module_shadows_the_standard_library():
    shadowing = sorted(n for n in MODULES if n.rpartition(".")[2] in sys.stdlib_module_names)
    assert not shadowing, shadowing


@pytest.mark.parametrize("first", ["converters.dcgan", "ifgan_jax.models.stylegan", "ifgan_jax.jobs.sample"])
def test_any_module_imports_first(first):
    """Whatever is imported first, the graph resolves (no half-initialized module is read)."""
    code = f"import {first}, ifgan_jax; ifgan_jax.load_generator; ifgan_jax.invert; ifgan_jax.train_boundaries"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_public_api_at_the_package_top():
    import ifgan_jax

    for name in ("load_generator", "load_predictor", "score_codes", "train_boundaries", "project_boundary",
                 "edit_codes", "invert"):
        assert callable(getattr(ifgan_jax, name)), name
    for name in ("InputError", "CheckpointError", "MissingWheelError"):
        assert issubclass(getattr(ifgan_jax, name), Exception), name
    with pytest.raises(AttributeError):
        ifgan_jax.no_such_name  # noqa: B018
