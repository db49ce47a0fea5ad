"""No import cycles among the project's modules (tinyjit/, codegen/, runtime/).

Every `.py` file is parsed with `ast` (nothing is imported) and each import of a project module becomes an edge
of a graph, wherever it stands: at module level, inside a function (a function-local import that only hides a
cycle from the interpreter is still a cycle for the reader) or under `if TYPE_CHECKING:`. `from pkg import name`
is an edge to `pkg.name` when that is a module, else to `pkg` itself. Importing `a.b.c` also runs `a/__init__.py`
and `a/b/__init__.py`; those implicit edges are left out (a package's `__init__` re-exporting its submodules would
otherwise close a loop with every submodule). Imports of third-party packages are not edges.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tinyjit", "codegen", "runtime")


def project_modules(root: str = ROOT) -> dict[str, str]:
    """Dotted module name -> file path for every .py file under the project's packages."""
    modules = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(root, package)):
            for file in files:
                if not file.endswith(".py"):
                    continue
                path = os.path.join(directory, file)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: str, modules: dict[str, str]) -> dict[str, int]:
    """The project modules that `module` imports anywhere in its file -> the line of the first such import."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    is_package = os.path.basename(path) == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in modules else base, node.lineno)
    return found


def import_graph(root: str = ROOT) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    modules = project_modules(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}, modules


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative), each sorted:
    the groups of modules that import each other, directly or through others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _cycle_through(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth-first search)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in a strongly connected component")


def describe(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, str]) -> str:
    """One cycle through the component, each import with its file and line, then every module in the component."""
    cycle = _cycle_through(graph, set(component))
    steps = [f"{a} imports {b} ({os.path.relpath(modules[a], ROOT)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps) + \
        f"\n    ({len(component)} modules import each other: {', '.join(component)})"


# Cycles being removed, each with its reason, so that this test guards everything else meanwhile. Strict both ways: a
# cycle not listed fails, and so does a listed one that is gone (then delete its entry). None today.
KNOWN_CYCLES: list[set] = []


def test_no_import_cycles():
    graph, modules = import_graph()
    assert len(modules) > 50, f"found only {len(modules)} project modules under {ROOT}"
    components = find_cycles(graph)
    new = [c for c in components if set(c) not in KNOWN_CYCLES]
    assert not new, "import cycles among the project's modules:\n" + "\n".join(describe(c, graph, modules) for c in new)
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in [set(c) for c in components]]
    assert not gone, f"these cycles are gone: delete them from KNOWN_CYCLES in {__file__}: {gone}"


def _write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


@pytest.mark.parametrize("b_text", [
    "from tinyjit.a import x\n",                                    # module level
    "def f():\n    from tinyjit import a\n    return a\n",          # function-local, `from package import module`
    "import typing\nif typing.TYPE_CHECKING:\n    import tinyjit.a\n",   # only for type checkers
    "def f():\n    from . import a\n",                              # relative
])
def test_detects_cycle(tmp_path, b_text):
    """The checker sees a two-module cycle however the import back is written."""
    _write(tmp_path, {"tinyjit/__init__.py": "", "tinyjit/a.py": "from tinyjit.b import y\nx = 1\n",
                      "tinyjit/b.py": b_text, "codegen/__init__.py": "", "runtime/__init__.py": ""})
    graph, _ = import_graph(str(tmp_path))
    assert find_cycles(graph) == [["tinyjit.a", "tinyjit.b"]]
    assert _cycle_through(graph, {"tinyjit.a", "tinyjit.b"}) == ["tinyjit.a", "tinyjit.b", "tinyjit.a"]


def test_no_false_cycles(tmp_path):
    """A package importing its submodules, submodules importing siblings one way, and third-party imports are not
    cycles."""
    _write(tmp_path, {"tinyjit/__init__.py": "from tinyjit.a import x\nimport numpy\n",
                      "tinyjit/a.py": "from tinyjit.b import y\nimport os\nx = 1\n",
                      "tinyjit/b.py": "from tinyjit.c import z\ny = 1\n",
                      "tinyjit/c.py": "z = 1\n", "codegen/__init__.py": "", "runtime/__init__.py": ""})
    graph, _ = import_graph(str(tmp_path))
    assert find_cycles(graph) == []
