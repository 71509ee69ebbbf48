"""The Redis adapter under conditions the engine tests do not reach."""

from __future__ import annotations

import asyncio

from examples.pausing import expense_approval
from tarry.engine import Status
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started


async def test_commits_survive_redis_losing_its_scripts(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    first = await settled(engine, (await engine.run("expense-approval")).id)
    store = engine.store
    assert isinstance(store, RedisStore)
    await store.redis.script_flush()
    await engine.resume(first.id, {"approved": True})
    assert (await settled(engine, first.id)).status is Status.COMPLETED


async def test_many_concurrent_commits_each_apply_once(make_engine: EngineFactory) -> None:
    """Commits of many executions travel in shared batches; each is still checked alone."""
    engine = await make_engine(expense_approval)
    ids = [e.id for e in await asyncio.gather(
        *(engine.run("expense-approval") for _ in range(300)))]
    for i in ids:
        await settled(engine, i)
    results = await asyncio.gather(
        *(engine.resume(i, {"approved": n % 2 == 0}) for n, i in enumerate(ids)),
        *(engine.resume(i, {"approved": True}) for i in ids[:50]),  # racing second resumes
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 300
    for n, i in enumerate(ids):
        done = await settled(engine, i)
        assert done.status is Status.COMPLETED
        assert len(started(await all_events(engine, i), "process")) == 1
        if n >= 50:
            assert done.state["approval"] == {"approved": n % 2 == 0}
