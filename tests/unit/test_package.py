"""The house rules a reader cannot see at a glance, read from the sources with ``ast``: every
test asserts something, and the package's modules import each other without a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: source folder -> the package its modules are imported as (pyproject's package-dir)
PACKAGES = {"airflow_bigfile": "airflow_bigfile", "operators": "airflow_bigfile.operators",
            "hooks": "airflow_bigfile.hooks"}


# -- every test asserts -------------------------------------------------------------------

def _test_functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level ``test_*`` functions and the ``test_*`` methods of ``Test*`` classes."""
    for node in tree.body:
        scope = node.body if isinstance(node, ast.ClassDef) and node.name.startswith("Test") \
            else [node]
        for item in scope:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    item.name.startswith("test_"):
                yield item


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def asserts(function: ast.AST) -> bool:
    """Whether ``function`` has an ``assert``, a ``pytest.raises`` or a call to a helper
    named ``assert_*`` or ``check_*`` anywhere in its body."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call) and (
                _called_name(node) == "raises" or
                _called_name(node).startswith(("assert_", "check_"))):
            return True
    return False


def test_every_test_asserts() -> None:
    silent = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        for function in _test_functions(ast.parse(path.read_text(), str(path))):
            if not asserts(function):
                silent.append(f"{path.relative_to(REPO)}:{function.lineno} {function.name}")
    assert silent == [], "tests that assert nothing:\n" + "\n".join(silent)


def test_the_assertion_finder_sees_each_kind() -> None:
    """The rule above, on small examples: what counts as asserting and what does not."""
    def first(source: str) -> ast.AST:
        return ast.parse(source).body[0]

    assert asserts(first("def test_a():\n    assert 1"))
    assert asserts(first("def test_a():\n    with pytest.raises(E):\n        f()"))
    assert asserts(first("def test_a():\n    assert_one_error_line(run())"))
    assert asserts(first("def test_a():\n    self.check_bytes(x)"))
    assert not asserts(first("def test_a():\n    f()\n    print('done')"))


# -- no import cycle ----------------------------------------------------------------------

def _modules() -> dict[str, Path]:
    """Every module of the package by its import name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _runtime_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import time: not function bodies, not ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _runtime_statements(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                yield from _runtime_statements(block)
        else:
            yield node


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = graph[name] = set()
        for node in _runtime_statements(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = name.split(".")[:len(name.split(".")) - node.level + is_package]
                    base = ".".join([*parent, *([base] if base else [])])
                if base in modules:
                    edges.add(base)
                edges.update(f"{base}.{alias.name}" for alias in node.names
                             if f"{base}.{alias.name}" in modules)
        edges.discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    graph = import_graph(_modules())
    assert "airflow_bigfile.edits" in graph["airflow_bigfile"]     # the graph is read at all
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
