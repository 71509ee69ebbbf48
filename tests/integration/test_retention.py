"""Finished executions are removed whole when their retention ends, or at once by delete;
unfinished ones never."""

from __future__ import annotations

import asyncio

import pytest

from tarry import Chain, Flow
from tarry.engine import ExecutionNotFound, Status, WrongState
from tarry.engine.namespaces import DEFAULT
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import settled

SHORT = Chain("short-lived", retention=0.3).then("s", lambda ctx: "done").build()
KEPT = Chain("kept", retention=0).then("s", lambda ctx: "done").build()
WAITS = Flow("waits", retention=0.3).wait("w").build()


async def keys_of(store: RedisStore, execution_id: str) -> int:
    k, p, ns = store.keys, store.keys.partition(execution_id), DEFAULT
    found = [int(await store.redis.exists(key)) for key in (k.state(execution_id),
                                                              k.events(execution_id))]
    for index in (k.all(ns, p), k.expiry(p), k.by_status("COMPLETED", ns, p),
                  k.by_workflow("short-lived", ns, p),
                  k.by_workflow_status("short-lived", "COMPLETED", ns, p)):
        found.append(int(await store.redis.zscore(index, execution_id) is not None))
    return sum(found)


async def test_retention_removes_finished_executions_whole(make_engine: EngineFactory) -> None:
    one = await make_engine(SHORT, KEPT, WAITS, retention_interval=0.1)
    await make_engine(SHORT, KEPT, WAITS, retention_interval=0.1)  # two sweepers, one Redis
    store = one.store
    assert isinstance(store, RedisStore)
    short = [await settled(one, (await one.run("short-lived")).id) for _ in range(5)]
    kept = await settled(one, (await one.run("kept")).id)
    waiting = await settled(one, (await one.run("waits")).id)
    assert all(e.status is Status.COMPLETED for e in short)
    assert await keys_of(store, short[0].id) == 7  # state, events and five index entries
    for _ in range(100):
        if not any([await keys_of(store, e.id) for e in short]):
            break
        await asyncio.sleep(0.05)
    for e in short:
        assert await keys_of(store, e.id) == 0
        with pytest.raises(ExecutionNotFound):
            await one.get(e.id)
    rows, _ = await one.list(workflow="short-lived")
    assert rows == []
    assert (await one.get(kept.id)).status is Status.COMPLETED  # retention 0: kept
    assert (await one.get(waiting.id)).status is Status.AWAITING  # not finished: kept


async def test_delete_removes_a_finished_execution_now(make_engine: EngineFactory) -> None:
    engine = await make_engine(KEPT, WAITS)
    done = await settled(engine, (await engine.run("kept")).id)
    waiting = await settled(engine, (await engine.run("waits")).id)
    with pytest.raises(WrongState) as err:
        await engine.delete(waiting.id)
    assert err.value.metadata == {"execution_id": waiting.id, "status": "AWAITING"}
    assert (await engine.get(waiting.id)).version == waiting.version
    await engine.delete(done.id)
    with pytest.raises(ExecutionNotFound):
        await engine.get(done.id)
    with pytest.raises(ExecutionNotFound):  # deleting it again: it is gone
        await engine.delete(done.id)
    cancelled = await engine.cancel(waiting.id, "no more")
    await engine.delete(cancelled.id)
    assert (await engine.list(workflow="waits"))[0] == []
