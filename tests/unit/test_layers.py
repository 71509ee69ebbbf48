"""The layers: the engine imports neither grpc nor redis nor generated code (api -> engine ->
store), nor metrics or tracing libraries (tarry.observe implements its hooks), and no module
of service/tarry imports in a circle.

Imports are read from the source with relative imports resolved (tests/unit/imports.py), so
`from ..store import RedisStore` inside the engine is caught like `from tarry.store import`.
"""

from __future__ import annotations

import pytest

from tests.unit.imports import PACKAGE, Import, cycles, graph, imports, imports_of, modules

ENGINE = PACKAGE / "engine"
FORBIDDEN = ("grpc", "redis", "tarry_api", "google.protobuf", "tarry.store", "tarry.api",
             # Metrics and traces reach the engine only through its Observer hooks.
             "prometheus_client", "opentelemetry", "tarry.observe")


def _forbidden(name: str) -> bool:
    return any(name == x or name.startswith(x + ".") for x in FORBIDDEN)


def _bad(found: list[Import]) -> list[str]:
    return [f"line {i.line}: {i.module}" for i in found if _forbidden(i.module)]


def test_engine_imports_no_infrastructure() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    known = set(modules())
    for f in files:
        bad = _bad(imports(f, known))
        assert not bad, f"{f.name} imports {bad}"


@pytest.mark.parametrize("source", [
    "from ..store import RedisStore",
    "from .. import store",
    "from ..store._redis import RedisStore",
    "from ..api import execution_to_pb",
    "import redis.asyncio",
    "from grpc import aio",
    "from google.protobuf import struct_pb2",
    "from prometheus_client import Counter",
    "from opentelemetry import trace",
    "from ..observe import Observability",
    "def lazy():\n    from ..store import RedisStore",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..store import RedisStore",
])
def test_the_check_sees_every_way_of_importing_a_layer(source: str) -> None:
    """The layering check can fail: each of these, inside the engine, is caught."""
    found = imports_of(source, "tarry.engine._driver", known=set(modules()))
    assert _bad(found), f"not caught: {source!r} -> {[i.module for i in found]}"


def test_relative_imports_resolve_against_the_package() -> None:
    known = set(modules())
    assert [i.module for i in imports_of("from . import _errors\nfrom ._model import Doc",
                                         "tarry.engine._driver", known=known)] == [
        "tarry.engine._errors", "tarry.engine._model"]
    assert [i.module for i in imports_of("from ._context import Output", "tarry.engine",
                                         is_package=True, known=known)] == [
        "tarry.engine._context"]
    assert [i.module for i in imports_of("from ..engine import Engine", "tarry.api._watch",
                                         known=known)] == ["tarry.engine"]
    with pytest.raises(ValueError, match="beyond the top-level package"):
        imports_of("from ... import x", "tarry.engine._driver")


def test_no_module_imports_in_a_circle() -> None:
    """What runs: module-level and function-level imports. (Imports under TYPE_CHECKING are
    never executed; see the test below.)"""
    edges = graph()
    assert "tarry.engine._engine" in edges["tarry.engine"]  # the graph is not empty
    found = cycles(edges)
    assert not found, "import cycles in service/tarry: " + "; ".join(
        " -> ".join(c) for c in found)


def test_the_cycle_check_can_fail() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_through_type_only_imports_either() -> None:
    """With the annotations' imports too there is no circle: the driver and the supervisor
    name what they need of the engine as a Protocol (`Port`, `Host`), not the Engine."""
    found = cycles(graph(type_only=True))
    assert found == [], (
        "import cycles through TYPE_CHECKING imports: "
        + "; ".join(" -> ".join(c) for c in found))
