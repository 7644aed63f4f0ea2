"""The installed packages (dmr_core and the engine plugins) import each other without loops.

The graph is read from the source with ``ast``: every ``import``/``from … import`` between modules
of these packages, wherever it stands. Which imports count:

- **module-level** (run when the module is imported, inside module-level ``if``/``try`` and class
  bodies too) and **typing** (under ``if TYPE_CHECKING:``: not run, but a dependency of the
  module's definitions all the same, and one ``from __future__`` import away from running): these
  must form no cycle at all. A cycle here makes import order matter, and is the bug.
- **function-level** (inside a function: deferred on purpose, for heavy libraries or for a facade
  that hands work to its own implementation modules, as ``ModelStore.delete`` does to
  ``store.removal``): a cycle through them is allowed only within one package (all its modules
  in one directory). A loop across packages, such as test-only code in a runtime package
  importing the test plugin that imports it back, fails.

And nothing installed imports dmr's own test support (``tests``), which does not ship.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

INSTALLED = ("dmr_core", "dmr_llamacpp", "dmr_ctransformers", "dmr_diffusers")
STRICT = frozenset({"module", "typing"})
ALL = STRICT | {"function"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    kind: str  # "module", "typing" or "function"
    path: Path  # of the source, with the line: where the import is
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.kind}, {self.path}:{self.line})"


def modules_of(package: str, root: Path | None = None) -> dict[str, Path]:
    """Every module of ``package`` (found where it is installed, unless ``root`` is given) → its file."""
    root = root or Path(importlib.util.find_spec(package).origin).parent
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, modules: dict[str, Path]) -> None:
        self.module, self.path, self.modules = module, path, modules
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.kind, self.found, self.external = "module", [], []

    def visit_FunctionDef(self, node: ast.AST) -> None:  # noqa: N802 (ast's naming)
        with self._kind("function"):
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:  # noqa: N802
        test = node.test
        if self.kind != "module" or getattr(test, "id", getattr(test, "attr", None)) != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        with self._kind("typing"):
            for child in node.body:
                self.visit(child)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        base = node.module or ""
        if node.level:
            package = self.package.rsplit(".", node.level - 1)[0] if node.level > 1 else self.package
            base = f"{package}.{base}".rstrip(".")
        for alias in node.names:
            self._add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in self.modules else base, node)

    @contextlib.contextmanager
    def _kind(self, kind: str):
        outer, self.kind = self.kind, kind
        try:
            yield
        finally:
            self.kind = outer

    def _add(self, name: str, node: ast.stmt) -> None:
        if name.split(".")[0] == "tests":
            self.external.append(Import(self.module, name, self.kind, self.path, node.lineno))
        while name and name not in self.modules:
            name = name.rpartition(".")[0]  # `import a.b.name`: the module a.b
        if name and name != self.module:
            self.found.append(Import(self.module, name, self.kind, self.path, node.lineno))


def import_graph(modules: dict[str, Path]) -> tuple[list[Import], list[Import]]:
    """(imports between ``modules``, imports of dmr's test support ``tests``)."""
    edges, of_tests = [], []
    for module, path in modules.items():
        visitor = _ImportVisitor(module, path, modules)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges += visitor.found
        of_tests += visitor.external
    return edges, of_tests


def _strongly_connected(nodes: set[str], successors: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(successors.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root), on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while not component or member != node:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                    if len(component) > 1:
                        components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child), on_stack.add(child)
                work.append((child, iter(sorted(successors.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _one_cycle(component: set[str], edges: list[Import]) -> list[Import]:
    """A shortest loop through the component's first module, as the imports that make it."""
    start = min(component)
    inside = [edge for edge in edges if edge.source in component and edge.target in component]
    paths = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in (e for e in inside if e.source == node):
                if edge.target == start:
                    return paths[node] + [edge]
                if edge.target not in paths:
                    paths[edge.target] = paths[node] + [edge]
                    following.append(edge.target)
        frontier = following
    raise AssertionError("a strongly connected component always holds a cycle")


def cycles(edges: list[Import], kinds: frozenset[str]) -> list[list[Import]]:
    """One loop per group of modules that import each other, through imports of ``kinds``."""
    counted = [edge for edge in edges if edge.kind in kinds]
    successors: dict[str, set[str]] = {}
    for edge in counted:
        successors.setdefault(edge.source, set()).add(edge.target)
    nodes = set(successors) | {edge.target for edge in counted}
    return [_one_cycle(component, counted) for component in _strongly_connected(nodes, successors)]


def across_packages(loops: list[list[Import]]) -> list[list[Import]]:
    """The loops whose modules are not all in one package (one directory)."""
    return [loop for loop in loops if len({edge.path.parent for edge in loop}) > 1]


def _report(loops: list[list[Import]]) -> str:
    return "\n\n".join("\n".join(f"  {edge}" for edge in loop) for loop in loops)


def _installed_graph() -> tuple[list[Import], list[Import]]:
    modules = {}
    for package in INSTALLED:
        modules |= modules_of(package)
    return import_graph(modules)


def test_no_cycle_among_module_level_imports():
    edges, _ = _installed_graph()
    assert len(edges) > 100  # the packages were found and read
    loops = cycles(edges, STRICT)
    assert not loops, "module-level import cycles among the installed packages:\n" + _report(loops)


def test_deferred_imports_loop_only_within_one_package():
    edges, _ = _installed_graph()
    loops = across_packages(cycles(edges, ALL))
    assert not loops, "import cycles across packages (function-level imports included):\n" + _report(loops)


def test_nothing_installed_imports_the_test_support():
    _, of_tests = _installed_graph()
    assert not of_tests, "installed modules importing dmr's test support:\n" + "\n".join(map(str, of_tests))


def test_the_checker_finds_each_kind_of_loop(tmp_path):
    """The checker itself: loops through module-level, typing and deferred imports, within a
    package and across packages, and an import of the test support."""
    package = tmp_path / "loopy"
    (package / "sub").mkdir(parents=True)
    files = {"__init__.py": "", "a.py": "from loopy import b\n", "b.py": "import loopy.a\n",
             "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loopy.sub import d\n",
             "sub/__init__.py": "", "sub/d.py": "from .. import c\n",
             "e.py": "def f():\n    from loopy.sub import g\n",
             "sub/g.py": "from loopy import e\nimport tests.support\n"}  # fmt: skip
    for name, text in files.items():
        (package / name).write_text(text)
    edges, of_tests = import_graph(modules_of("loopy", package))
    strict = sorted(sorted(edge.source for edge in loop) for loop in cycles(edges, STRICT))
    assert strict == [["loopy.a", "loopy.b"], ["loopy.c", "loopy.sub.d"]]
    every = sorted(sorted(edge.source for edge in loop) for loop in cycles(edges, ALL))
    assert every == [["loopy.a", "loopy.b"], ["loopy.c", "loopy.sub.d"], ["loopy.e", "loopy.sub.g"]]
    assert sorted(sorted(edge.source for edge in loop) for loop in across_packages(cycles(edges, ALL))) == [
        ["loopy.c", "loopy.sub.d"], ["loopy.e", "loopy.sub.g"]]  # fmt: skip
    assert [edge.target for edge in of_tests] == ["tests.support"]
