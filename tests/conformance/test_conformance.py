"""The conformance suite: every scenario of scenarios/ through each language's client,
against one real server process (the example workflows) on the test Redis.

The TypeScript and Go runners are built by `make test` (`make clients`) before pytest runs;
a missing one fails its test, naming the command that builds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tarry.localredis import LocalRedis, free_port
from tarry_client import Client
from tests.conformance import runner
from tests.integration.helpers import until_serving

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = runner.load()
RUNNERS: dict[str, tuple[list[str], str]] = {
    "typescript": (["node", str(ROOT / "clients/typescript/dist/conformance/main.js")],
                   "make clients (npm ci and npm run build in clients/typescript)"),
    "go": ([str(ROOT / "clients/go/.bin/conformance")],
           "make clients (go build in clients/go)"),
}


@pytest.fixture(scope="module")
def address(redis_server: LocalRedis) -> Iterator[str]:
    """A `tarry serve` process of its own (its own key prefix on the test Redis)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tarry", "serve", "--address", f"127.0.0.1:{port}",
         "--redis-url", redis_server.url, "--log-level", "WARNING",
         "--workflows", ",".join(runner.WORKFLOWS)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                       "TARRY_KEY_PREFIX": f"conformance{uuid.uuid4().hex[:8]}:v1"})
    try:
        until_serving(f"127.0.0.1:{port}", server)
        yield f"127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[Client]:
    with Client(address, timeout=runner.DEFAULT_TIMEOUT) as c:
        yield c


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_python(client: Client, scenario: dict[str, Any]) -> None:
    assert runner.run_scenario(client, scenario) is None


@pytest.mark.timeout(240)
@pytest.mark.parametrize("language", sorted(RUNNERS))
def test_language(address: str, language: str) -> None:
    command, build = RUNNERS[language]
    if not Path(command[-1]).exists():
        pytest.fail(f"the {language} runner is not built: {build}")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=220, cwd=ROOT,
        env={**os.environ, "TARRY_ADDRESS": address, "TARRY_SCENARIOS": str(runner.SCENARIOS)})
    assert done.returncode == 0, f"the {language} runner failed:\n{done.stderr[-4000:]}"
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    reported = [r["scenario"] for r in results]
    missing = [s["name"] for s in SCENARIOS if s["name"] not in reported]
    failed = [f"{r['scenario']}: {r.get('error')}" for r in results if not r["ok"]]
    assert not missing, f"{language} did not run: {missing}"
    assert not failed, f"{language} failed {len(failed)}:\n" + "\n".join(failed)
    assert len(reported) == len(SCENARIOS)
