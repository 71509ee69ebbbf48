"""Two engines on one Redis: requests served by one reach executions the other runs."""

from __future__ import annotations

import asyncio

from examples.pausing import expense_approval
from examples.suspend_resume import long_process
from tarry.engine import Status
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, until


async def test_cancel_from_another_process_stops_the_step(make_engine: EngineFactory) -> None:
    a = await make_engine(long_process)
    b = await make_engine(long_process)
    ex = await a.run("long-process", {"items": 200, "seconds_per_item": 0.02})
    await asyncio.sleep(0.1)
    await b.cancel(ex.id, "from b")
    await a.wait(ex.id, timeout=5, until=lambda e: not e.running)
    await asyncio.sleep(0.2)
    events = await all_events(a, ex.id)
    assert (await a.get(ex.id)).status is Status.CANCELLED
    assert not [e for e in events if e.type == "node_finished"]
    assert ex.id not in a._drivers  # A's driver noticed and stopped


async def test_suspend_from_another_process_reaches_the_step(make_engine: EngineFactory) -> None:
    a = await make_engine(long_process)
    b = await make_engine(long_process)
    ex = await a.run("long-process", {"items": 200, "seconds_per_item": 0.02})
    await asyncio.sleep(0.1)
    await b.suspend(ex.id, "from b")
    paused = await until(b, ex.id, Status.SUSPENDED, timeout=5)
    assert paused.suspension is not None and paused.suspension.reason == "from b"
    assert 0 < paused.suspension.data["processed"] < 200  # the step stopped early
    await b.resume(ex.id)
    assert (await until(a, ex.id, Status.COMPLETED, timeout=15)).result == {"processed": 200}


async def test_waiting_in_one_process_for_an_execution_run_by_another(
        make_engine: EngineFactory) -> None:
    a = await make_engine(expense_approval)
    b = await make_engine(expense_approval)
    ex = await settled(a, (await a.run("expense-approval")).id)
    waiter = asyncio.create_task(b.wait(ex.id, timeout=10,
                                        until=lambda e: e.status is Status.COMPLETED))
    await asyncio.sleep(0.1)
    await a.resume(ex.id, {"approved": True})
    done = await waiter
    assert done.status is Status.COMPLETED


async def test_waiters_catch_up_after_the_notification_channel_drops(
        make_engine: EngineFactory) -> None:
    a = await make_engine(expense_approval)
    b = await make_engine(expense_approval)
    ex = await settled(a, (await a.run("expense-approval")).id)
    waiter = asyncio.create_task(b.wait(ex.id, timeout=15,
                                        until=lambda e: e.status is Status.COMPLETED))
    await asyncio.sleep(0.1)
    store = a.store
    assert isinstance(store, RedisStore)
    await store.redis.client_kill_filter(_type="pubsub")  # every notification channel drops
    await a.resume(ex.id, {"approved": True})  # committed while B may not be listening
    assert (await waiter).status is Status.COMPLETED
