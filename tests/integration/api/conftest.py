"""Fixtures: a real Tarry server on 127.0.0.1 port 0 against the session redis-server, and
the generated async stub over a real loopback channel.

The shared server lives for the session (its own key prefix); tests that need a server of
their own (isolated listings, other settings, a Redis to kill) use `make_server`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tarry.config import Config
from tarry.localredis import LocalRedis
from tarry.server import Server
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub

MODULES = ("examples.pausing", "examples.suspend_resume", "tests.integration.api.workflows")

ServerFactory = Callable[..., Awaitable[Server]]


def server_config(redis_url: str | None, data_dir: Path, **overrides: object) -> Config:
    values: dict[str, object] = {
        "address": "127.0.0.1:0", "redis_url": redis_url, "data_dir": str(data_dir),
        "workflow_modules": MODULES, "key_prefix": f"api{uuid.uuid4().hex[:10]}:v1",
        "shutdown_grace": 1.0, "log_level": "WARNING",
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def api_server(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
                     ) -> AsyncIterator[Server]:
    server = Server(server_config(redis_server.url, tmp_path_factory.mktemp("api")))
    await server.start()
    yield server
    await server.stop(1.0)


@pytest.fixture(scope="session")
async def channel(api_server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{api_server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> WorkflowServiceAsyncStub:
    return WorkflowServiceStub(channel)


@pytest.fixture
async def make_server(redis_server: LocalRedis, tmp_path: Path
                      ) -> AsyncIterator[ServerFactory]:
    """Start servers of this test's own (own key prefix; settings as given); all are
    stopped after the test."""
    made: list[Server] = []

    async def make(**overrides: object) -> Server:
        redis_url = overrides.pop("redis_url", redis_server.url)
        assert redis_url is None or isinstance(redis_url, str)
        server = Server(server_config(redis_url, tmp_path, **overrides))
        made.append(server)
        await server.start()
        return server

    yield make
    for server in reversed(made):
        await server.stop(0.5)


def connect(server: Server) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
