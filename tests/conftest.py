"""Fixtures: one real redis-server per test session; a fresh engine per test.

Each test gets its own key prefix, so tests share the server but never each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tarry.engine import Engine, EngineConfig, Registry, Workflow
from tarry.localredis import LocalRedis
from tarry.store import RedisStore

EngineFactory = Callable[..., Awaitable[Engine]]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    with LocalRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:v1"


@pytest.fixture
async def make_engine(redis_server: LocalRedis, prefix: str) -> AsyncIterator[EngineFactory]:
    """Build and start engines sharing this test's prefix (several = several processes)."""
    made: list[Engine] = []

    async def make(*workflows: Workflow, lease_ttl: float = 10.0,
                   store_class: type[RedisStore] = RedisStore, **cfg: object) -> Engine:
        store = store_class(redis_server.url, prefix=prefix)
        await store.migrate()
        engine = Engine(Registry(list(workflows)), store,
                        EngineConfig(lease_ttl=lease_ttl, **cfg))  # type: ignore[arg-type]
        await engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.stop()
        await engine.store.close()
