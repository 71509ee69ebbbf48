"""Fixtures: one real redis-server per test session; a fresh engine per test.

Each test gets its own key prefix, so tests share the server but never each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tarry.engine import Engine, EngineConfig, Registry, Workflow
from tarry.localredis import LocalRedis
from tarry.store import RedisStore
from tests.redis_procs import start_cluster

EngineFactory = Callable[..., Awaitable[Engine]]


CLUSTER = os.environ.get("TARRY_TEST_REDIS") == "cluster"
"""`TARRY_TEST_REDIS=cluster`: the session's Redis is a Redis Cluster of three primaries
(the Makefile runs the engine and API suites so too; tests marked `standalone` are left
out, as they need a redis-server of their own to restart or break)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CLUSTER:
        items[:] = [i for i in items if i.get_closest_marker("standalone") is None]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's Redis (its `url` is what the tests use): standalone, or a cluster."""
    if CLUSTER:
        with start_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
            yield cluster
        return
    with LocalRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:v2"


@pytest.fixture
async def make_engine(redis_server: LocalRedis, prefix: str) -> AsyncIterator[EngineFactory]:
    """Build and start engines sharing this test's prefix (several = several processes)."""
    made: list[Engine] = []

    async def make(*workflows: Workflow, lease_ttl: float = 10.0,
                   store_class: type[RedisStore] = RedisStore, **cfg: object) -> Engine:
        store = store_class(redis_server.url, prefix=prefix)
        await store.check_layout()
        engine = Engine(Registry(list(workflows)), store,
                        EngineConfig(lease_ttl=lease_ttl, **cfg))  # type: ignore[arg-type]
        await engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.stop()
        await engine.store.close()
