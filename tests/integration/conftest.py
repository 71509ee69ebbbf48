"""Fixtures of the integration tests: `peer`, other server processes on this test's prefix."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tarry.localredis import LocalRedis
from tests.integration.peer import Peer

ROOT = Path(__file__).parents[2]
PeerFactory = Callable[[], Awaitable[Peer]]


@pytest.fixture
async def peer(redis_server: LocalRedis, prefix: str) -> AsyncIterator[PeerFactory]:
    """Start `tests.integration.peer` processes on this test's Redis and key prefix; each is
    stopped (killed if it will not stop) after the test, pass or fail."""
    started: list[Peer] = []

    async def start() -> Peer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.peer", redis_server.url, prefix,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        one = Peer(proc)
        started.append(one)
        return await one.started()

    yield start
    for one in started:
        await one.close()
