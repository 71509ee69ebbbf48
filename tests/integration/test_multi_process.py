"""Two server processes on one Redis: requests served by one reach executions the other runs.

The other process is a real one (tests/integration/peer.py): its own interpreter, event loop,
Redis connections and notification channel. The step runs here, under the test's control
(`Items`), so that what it saw is known exactly, with no sleep to guess how far it got.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.pausing import expense_approval
from tarry.engine import Status
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.conftest import PeerFactory
from tests.integration.helpers import Items, all_events, started, until
from tests.integration.peer import items_workflow


class WatchfulStore(RedisStore):
    """A RedisStore that tells when a waiter following an execution has read it: from then
    on that waiter sleeps until a notification wakes it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.following: set[str] = set()
        self.read_while_following = asyncio.Event()

    async def follow(self, execution_id: str) -> None:
        await super().follow(execution_id)
        self.following.add(execution_id)

    async def load(self, execution_id: str, request_id: str | None = None
                   ) -> Any:
        found = await super().load(execution_id, request_id)
        if execution_id in self.following:
            # Set in the waiter's task, which runs on to its wait before this test goes on.
            self.read_while_following.set()
        return found


async def test_cancel_from_another_process_stops_the_step(make_engine: EngineFactory,
                                                          peer: PeerFactory) -> None:
    items = Items()
    a = await make_engine(items_workflow(items.step))
    b = await peer()
    ex = await a.run("items", {"items": 200})
    items.give(2)
    await items.waiting_after(2)  # running here, waiting for its third item
    driver = a._drivers[ex.id]
    assert driver.task is not None
    gone = await b.cancel(ex.id, "from b")
    assert gone.status is Status.CANCELLED
    assert gone.cancellation is not None and gone.cancellation["reason"] == "from b"
    async with asyncio.timeout(5):
        await items.cancelled.wait()  # the coroutine here was cancelled
        await asyncio.shield(driver.task)  # and A's driver ended
    assert items.outcomes == ["cancelled"] and items.checked == [0, 1, 2]
    assert items.contexts[0].cancel_requested
    assert ex.id not in a._drivers
    assert (await a.get(ex.id)).status is Status.CANCELLED
    events = await all_events(a, ex.id)
    assert [e.data["node"] for e in events if e.type == "node_cancelled"] == ["process-items"]
    assert not [e for e in events if e.type == "node_finished"]
    assert await b.drivers() == []  # the other process did not take the step over


async def test_suspend_from_another_process_reaches_the_step(make_engine: EngineFactory,
                                                             peer: PeerFactory) -> None:
    items = Items()
    a = await make_engine(items_workflow(items.step))
    b = await peer()
    ex = await a.run("items", {"items": 200})
    items.give(3)
    await items.waiting_after(3)
    asked = await b.suspend(ex.id, "from b")
    assert asked.status is Status.RUNNING and asked.suspend_requested == "from b"
    await items.hears_suspend_request()  # the request has reached the step, here
    items.give(1)  # item 3 done, the step checks again before item 4: it stops there
    paused = await until(a, ex.id, Status.SUSPENDED, timeout=5)
    assert paused.suspension is not None and paused.suspension.reason == "from b"
    assert paused.suspension.data == {"processed": 4}  # the step stopped early, here
    assert items.checked == [0, 1, 2, 3, 4] and items.outcomes == ["SuspendSignal"]
    resumed = await b.resume(ex.id)
    assert resumed.status is Status.RUNNING
    # B committed the Resume, so B runs the step again, from the progress A kept.
    done = await until(a, ex.id, Status.COMPLETED, timeout=15)
    assert done.result == {"processed": 200, "from": 4, "pid": b.pid}
    assert len(items.contexts) == 1
    assert len(started(await all_events(a, ex.id), "process-items")) == 2


async def test_waiting_in_one_process_for_an_execution_run_by_another(
        make_engine: EngineFactory, peer: PeerFactory) -> None:
    b = await make_engine(expense_approval, store_class=WatchfulStore)
    store = b.store
    assert isinstance(store, WatchfulStore)
    a = await peer()
    ex = await a.wait((await a.run("expense-approval")).id)
    assert ex.status is Status.AWAITING
    waiter = asyncio.create_task(b.wait(ex.id, timeout=10,
                                        until=lambda e: e.status is Status.COMPLETED))
    async with asyncio.timeout(5):
        await store.read_while_following.wait()  # B waits, listening, having read it
    assert not waiter.done()
    approved = await a.resume(ex.id, {"approved": True})
    assert approved.state["approval"] == {"approved": True}
    done = await waiter
    assert done.status is Status.COMPLETED and done.result == "Expense approved and processed"
    assert done == await a.get(ex.id)


async def test_waiters_catch_up_after_the_notification_channel_drops(
        make_engine: EngineFactory, peer: PeerFactory) -> None:
    b = await make_engine(expense_approval, store_class=WatchfulStore)
    store = b.store
    assert isinstance(store, WatchfulStore)
    a = await peer()
    ex = await a.wait((await a.run("expense-approval")).id)
    waiter = asyncio.create_task(b.wait(ex.id, timeout=15,
                                        until=lambda e: e.status is Status.COMPLETED))
    async with asyncio.timeout(5):
        await store.read_while_following.wait()
    await store.redis.client_kill_filter(_type="pubsub")  # every notification channel drops
    await a.resume(ex.id, {"approved": True})  # committed while B may not be listening
    done = await waiter
    assert done.status is Status.COMPLETED and done == await a.get(ex.id)
