"""The engine imports neither grpc nor redis nor generated code (api -> engine -> store)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).parents[2] / "service" / "tarry" / "engine"
FORBIDDEN = ("grpc", "redis", "tarry_api", "google.protobuf", "tarry.store", "tarry.api")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_imports_no_infrastructure() -> None:
    files = sorted(ENGINE.glob("*.py"))
    assert files
    for f in files:
        bad = {n for n in _imports(f) if n.split(".")[0] in {x.split(".")[0] for x in
                                                             FORBIDDEN if "." not in x}
               or any(n == x or n.startswith(x + ".") for x in FORBIDDEN)}
        assert not bad, f"{f.name} imports {bad}"
