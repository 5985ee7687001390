"""The code's shape as habits a test keeps: imports point one way (no cycle among the harness, evals
and reports modules, counting imports inside functions), no module imports another's `_private`
name, no function longer than 80 lines, and ruff is clean."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "evals", "reports")
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it), at module level and inside functions alike."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for module, names in _imports(tree):
            targets = [module] + [f"{module}.{n}" for n in names]
            graph[name] |= {t for t in targets if t in MODULES and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    # the graph is small (a few dozen modules): the default recursion limit is enough, and raising it
    # here would leak into later tests (deeply nested inputs must still hit it)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_harness_evals_and_reports():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_name():
    private = [f"{name} imports {module}.{n}" for name, tree in TREES.items() for module, names in _imports(tree)
               if module.split(".")[0] in PACKAGES for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_no_function_is_longer_than_80_lines():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for name, tree in TREES.items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (make install installs it with the dev extra)")
    result = subprocess.run([ruff, "check", "--quiet", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_is_listed_in_the_readme_layout():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):readme.index("## Extending")]
    missing = [str(path.relative_to(REPO)) for path in MODULES.values()
               if path.name != "__init__.py" and f"`{path.relative_to(REPO)}`" not in layout]
    assert missing == []


def test_mypy_is_clean_on_the_gate_config_and_pipeline():
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (make install installs it with the dev extra)")
    result = subprocess.run([mypy], capture_output=True, text=True, cwd=REPO)  # files: [tool.mypy] in pyproject
    assert result.returncode == 0, result.stdout + result.stderr
