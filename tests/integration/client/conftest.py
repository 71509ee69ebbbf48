"""A real Tarry server for the client tests, on its own event loop in a thread.

The server cannot share the test session's event loop: that loop is idle while a sync test
runs, so the blocking `Client` and the CLI would wait forever for it. On its own loop it
serves the blocking client, the CLI (in process and as a subprocess) and the `AsyncClient`
(on the session loop) alike, as a separate process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from tarry.config import Config
from tarry.localredis import LocalRedis
from tarry.server import Server
from tarry_client import AsyncClient, Client

T = TypeVar("T")

WORKFLOWS = ("examples.pausing", "examples.suspend_resume")


class LoopThread:
    """An event loop running in a daemon thread; `run()` a coroutine on it and wait."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class TarryServer:
    """Servers on one Redis key prefix: `restart()` replaces the running one with a fresh one
    on the same port, as a redeploy would."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop = LoopThread("tarry-server")
        self.server: Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> int:
        config = self.config if not self.port else replace(self.config,
                                                           address=self.target)
        self.server = Server(config)
        self.port = self._loop.run(self.server.start())
        return self.port

    def stop(self, grace: float = 0) -> None:
        if self.server is not None:
            self._loop.run(self.server.stop(grace))
            self.server = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        threading.Event().wait(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        self._loop.close()


def server_config(redis: LocalRedis, prefix: str, **overrides: Any) -> Config:
    return Config(address="127.0.0.1:0", redis_url=redis.url, key_prefix=prefix,
                  workflow_modules=WORKFLOWS, reflection=False, shutdown_grace=1.0,
                  **overrides)


@contextlib.contextmanager
def running(config: Config) -> Iterator[TarryServer]:
    server = TarryServer(config)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def server(redis_server: LocalRedis, prefix: str) -> Iterator[TarryServer]:
    """A running server serving examples.pausing and examples.suspend_resume."""
    with running(server_config(redis_server, prefix)) as server:
        yield server


@pytest.fixture
def client(server: TarryServer) -> Iterator[Client]:
    with Client(server.target, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(server: TarryServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.target, timeout=10) as c:
        yield c
