"""What the modules of service/tarry import, read from their source (nothing is imported).

Relative imports are resolved against the importing module's package, so that
`from ..store import RedisStore` in `tarry/engine/_x.py` counts as an import of `tarry.store`
exactly as `from tarry.store import RedisStore` does. `from package import name` counts as an
import of `package.name` when that is a module of service/tarry, else of `package`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SERVICE = Path(__file__).parents[2] / "service"
PACKAGE = SERVICE / "tarry"


@dataclass(frozen=True)
class Import:
    module: str
    """The absolute name of the module imported (`tarry.store`, `grpc`, `redis.asyncio`)."""
    line: int
    type_only: bool
    """Under `if TYPE_CHECKING:`: read by type checkers, never executed."""


def module_name(path: Path, root: Path = SERVICE) -> str:
    """`tarry.engine._driver` for service/tarry/engine/_driver.py; `tarry.engine` for its
    __init__.py."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package at `root`, by its absolute name."""
    return {module_name(p, root.parent): p for p in sorted(root.rglob("*.py"))}


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name that `from <level dots><module> import ...` in `importer` names."""
    if level == 0:
        assert module is not None
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 >= len(base):
        raise ValueError(f"{importer}: relative import beyond the top-level package")
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(source: str, importer: str, *, is_package: bool = False,
               known: frozenset[str] | set[str] = frozenset()) -> list[Import]:
    """Every import in `source`, the code of module `importer` (module level, inside
    functions, and under TYPE_CHECKING alike); `known` names the modules for which
    `from package import name` means the submodule `package.name`."""
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, True)
            for stmt in node.orelse:
                visit(stmt, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, type_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(importer, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, node.lineno, type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), False)
    return found


def imports(path: Path, known: frozenset[str] | set[str] = frozenset()) -> list[Import]:
    """Every import of the module at `path` (a file of service/)."""
    return imports_of(path.read_text(), module_name(path), is_package=path.name == "__init__.py",
                      known=known)


def graph(*, type_only: bool = False) -> dict[str, set[str]]:
    """The import graph of service/tarry: each module to the modules of service/tarry it
    imports (imports under TYPE_CHECKING only when `type_only`)."""
    found = modules()
    known = set(found)
    return {name: {i.module for i in imports(path, known)
                   if i.module in known and i.module != name and (type_only or not i.type_only)}
            for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `edges`: one per strongly connected component of more than one
    module (Tarjan's algorithm), as a path `a -> b -> ... -> a` through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_loop_through(sorted(c), edges) for c in components if len(c) > 1]


def _loop_through(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    start, inside = component[0], set(component)
    paths: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges.get(v, set()) & inside):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    raise AssertionError(f"no loop through {component}")
