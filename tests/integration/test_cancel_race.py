"""Behaviours 11 and 12: cancellation, racing resumes, repeated request ids."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from examples.pausing import delayed_notification, expense_approval, parallel_review
from examples.suspend_resume import simple_approval
from tarry import Chain, StepContext
from tarry.engine import Conflict, Execution, Status, TarryError, WrongState
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.conftest import PeerFactory
from tests.integration.helpers import all_events, count, settled, started, statuses, until


async def test_cancel_a_running_async_step(make_engine: EngineFactory) -> None:
    entered = asyncio.Event()
    seen: list[str] = []

    async def work(ctx: StepContext) -> str:
        seen.append("started")
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")  # the coroutine itself is told, and stops here
            raise
        seen.append("finished")
        return "finished"

    wf = Chain("cancellable").then("work", work).then("after", lambda ctx: "after").build()
    engine = await make_engine(wf)
    ex = await engine.run("cancellable")
    async with asyncio.timeout(5):
        await entered.wait()
    driver = engine._drivers[ex.id]
    assert driver.task is not None
    gone = await engine.cancel(ex.id, "User requested stop")
    assert gone.status is Status.CANCELLED
    assert gone.cancellation is not None and gone.cancellation["reason"] == "User requested stop"
    async with asyncio.timeout(5):
        await asyncio.shield(driver.task)  # the driver is done, and with it the step
    assert seen == ["started", "cancelled"]
    assert ex.id not in engine._drivers
    after = await engine.get(ex.id)
    assert after.status is Status.CANCELLED and after.result is None and after.running == ()
    events = await all_events(engine, ex.id)
    assert [e.data["node"] for e in events if e.type == "node_cancelled"] == ["work"]
    assert statuses(events)[-1] == "CANCELLED"
    assert not [e for e in events if e.type == "node_finished"]
    assert started(events, "after") == []
    with pytest.raises(WrongState):
        await engine.resume(ex.id, {})
    with pytest.raises(WrongState):
        await engine.suspend(ex.id, "no")


async def test_cancelled_plain_step_is_not_started_again(make_engine: EngineFactory) -> None:
    calls: list[int] = []
    entered = threading.Event()

    def blocking(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        entered.set()
        time.sleep(0.3)
        return "finished anyway"

    wf = Chain("blocking").then("work", blocking).then("after", lambda ctx: "after").build()
    engine = await make_engine(wf, lease_ttl=0.3)
    ex = await engine.run("blocking")
    await asyncio.to_thread(entered.wait, 5)
    await engine.cancel(ex.id, "stop")
    await asyncio.sleep(1.0)  # past the thread's end and past a lease period
    after = await engine.get(ex.id)
    assert after.status is Status.CANCELLED
    assert calls == [1]
    assert started(await all_events(engine, ex.id), "after") == []


async def test_a_plain_step_waiting_on_stop_requested_hears_a_cancel(
        make_engine: EngineFactory) -> None:
    seen: list[tuple[bool, bool]] = []
    entered = threading.Event()

    def watchful(ctx: StepContext) -> str:
        entered.set()
        stopped = ctx.stop_requested.wait(10)
        seen.append((stopped, ctx.cancel_requested))
        return "stopped"

    wf = Chain("watchful").then("work", watchful).build()
    engine = await make_engine(wf)
    ex = await engine.run("watchful")
    await asyncio.to_thread(entered.wait, 5)
    await engine.cancel(ex.id, "stop")
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [(True, True)]


async def test_a_plain_step_asks_for_stop_requested_after_a_suspend_request(
        make_engine: EngineFactory) -> None:
    go_on = threading.Event()
    entered = threading.Event()

    def late(ctx: StepContext) -> str:
        entered.set()
        go_on.wait(5)
        # The request came before the step looked: the event is set all the same.
        if ctx.stop_requested.is_set():
            ctx.suspend_if_requested({"left": "early"})
        return "ran to the end"

    wf = Chain("late").then("work", late).build()
    engine = await make_engine(wf)
    ex = await engine.run("late")
    await asyncio.to_thread(entered.wait, 5)
    await engine.suspend(ex.id, "pause")
    await asyncio.sleep(0.1)
    go_on.set()
    paused = await until(engine, ex.id, Status.SUSPENDED)
    assert paused.suspension is not None and paused.suspension.data == {"left": "early"}


async def test_cancel_suspended_and_awaiting(make_engine: EngineFactory) -> None:
    engine = await make_engine(simple_approval, delayed_notification)
    sus = await settled(engine, (await engine.run("simple-approval", {"item": "laptop"})).id)
    assert sus.status is Status.SUSPENDED
    assert (await engine.cancel(sus.id, "No longer needed")).status is Status.CANCELLED

    sleeping = await settled(engine, (await engine.run("delayed-notification",
                                                       {"delay_seconds": 0.3})).id)
    assert sleeping.status is Status.AWAITING
    done = await engine.cancel(sleeping.id, "not needed")
    assert done.status is Status.CANCELLED and done.waiting == ()
    store = engine.store
    assert isinstance(store, RedisStore)
    assert await count(store, store.keys.timers) == 0  # the timer is dropped
    await asyncio.sleep(0.5)
    assert (await engine.get(sleeping.id)).status is Status.CANCELLED
    assert started(await all_events(engine, sleeping.id), "send") == []


async def test_cancel_keeps_state_and_is_idempotent(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await settled(engine, (await engine.run("expense-approval")).id)
    first = await engine.cancel(ex.id, "changed my mind")
    second = await engine.cancel(ex.id, "again")
    assert first.state["request"] == {"user": "Alice", "amount": 1500}
    assert second.cancellation == first.cancellation  # unchanged, first reason kept
    assert second.version == first.version


async def test_completed_cannot_be_cancelled(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await settled(engine, (await engine.run("expense-approval")).id)
    await engine.resume(ex.id, {"approved": True})
    await settled(engine, ex.id)
    with pytest.raises(WrongState):
        await engine.cancel(ex.id, "late")


def assert_lost_the_race(err: BaseException, execution_id: str) -> None:
    """The documented refusals of a Resume that lost to another: CONCURRENT_UPDATE (it read
    the execution before the winner committed), or WRONG_STATE (it read it after: RUNNING
    the step after the wait node, or COMPLETED already)."""
    if type(err) is Conflict:
        assert err.reason == "CONCURRENT_UPDATE"
        assert err.metadata == {"execution_id": execution_id}
        return
    assert type(err) is WrongState, f"not a documented refusal: {err!r}"
    assert err.reason == "WRONG_STATE"
    assert err.metadata["execution_id"] == execution_id
    assert err.metadata["status"] in ("RUNNING", "COMPLETED"), err.metadata
    assert f"cannot resume execution {execution_id!r}" in err.message


async def test_two_racing_resumes_exactly_one_applies(make_engine: EngineFactory,
                                                      peer: PeerFactory) -> None:
    a = await make_engine(expense_approval)
    b = await peer()  # a second server process on the same Redis
    sent = [{"approved": True, "who": "a"}, {"approved": False, "who": "b"}]
    for n in range(10):
        ex = await settled(a, (await a.run("expense-approval")).id)
        at = time.time() + 0.05  # both processes send their Resume about this moment
        # This process answers from memory (it left the execution AWAITING) and so is
        # quicker: starting it later by up to 4 ms lets either one win the race.
        late = (n % 5) / 1000

        async def here(execution_id: str, at: float) -> Execution:
            await asyncio.sleep(at - time.time())
            return await a.resume(execution_id, sent[0], node="manager-approval")

        results = await asyncio.gather(
            here(ex.id, at + late), b.resume(ex.id, sent[1], node="manager-approval", at=at),
            return_exceptions=True)
        ok = [(data, r) for data, r in zip(sent, results, strict=True)
              if isinstance(r, Execution)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(ok) == 1 and len(refused) == 1, results
        assert_lost_the_race(refused[0], ex.id)
        data, answer = ok[0]
        assert answer.id == ex.id and answer.state["approval"] == data
        # What the execution holds is the winner's data, applied once.
        done = await until(a, ex.id, Status.COMPLETED)
        assert done.state["approval"] == data
        assert done.result == ("Expense approved and processed" if data["approved"]
                               else "Expense rejected")
        events = await all_events(a, ex.id)
        finished = [e.data["node"] for e in events if e.type == "node_finished"]
        assert finished == ["submit", "manager-approval", "process"]
        assert len(started(events, "process")) == 1


async def test_repeated_request_id_returns_the_first_answer(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    first = await engine.resume(ex.id, {"approved": True, "comments": "ok"},
                                node="technical-review", request_id="req-1")
    assert first.state["reviews"]["technical"] == {"approved": True, "comments": "ok"}
    await settled(engine, ex.id)
    before = await all_events(engine, ex.id)
    again = await engine.resume(ex.id, {"approved": True, "comments": "ok"},
                                node="technical-review", request_id="req-1")
    assert again == first  # every field of the Execution
    assert await all_events(engine, ex.id) == before  # nothing applied twice
    assert (await engine.get(ex.id)).version == first.version


async def test_run_with_the_same_request_id_is_one_execution(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    one = await engine.run("expense-approval", request_id="order-42")
    now = await settled(engine, one.id)
    before = await all_events(engine, one.id)
    two = await engine.run("expense-approval", request_id="order-42")
    # The same execution, as it stands now: every field; and nothing ran again.
    assert two == now
    assert await all_events(engine, one.id) == before
    other = await engine.run("expense-approval", request_id="order-43")
    assert other.id != one.id
    rows, _ = await engine.list(workflow="expense-approval")
    assert sorted(r.id for r in rows) == sorted({one.id, other.id})


async def test_execution_id_taken_by_another_workflow(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval, parallel_review)
    await engine.run("expense-approval", execution_id="order-1")
    same = await engine.run("expense-approval", execution_id="order-1")
    assert same.id == "order-1"
    with pytest.raises(TarryError) as err:
        await engine.run("parallel-review", execution_id="order-1")
    assert err.value.reason == "EXECUTION_EXISTS"


async def test_racing_suspend_and_cancel(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await settled(engine, (await engine.run("expense-approval")).id)
    results = await asyncio.gather(engine.suspend(ex.id, "s"), engine.cancel(ex.id, "c"),
                                   return_exceptions=True)
    final = await engine.get(ex.id)
    assert final.status is Status.CANCELLED
    assert all(not isinstance(r, BaseException) or isinstance(r, WrongState) for r in results)


async def test_list_by_status_and_pages(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ids = [(await engine.run("expense-approval")).id for _ in range(7)]
    for i in ids:
        await settled(engine, i)
    await engine.cancel(ids[0], "x")
    awaiting, _ = await engine.list(status=Status.AWAITING, limit=100)
    assert sorted(e.id for e in awaiting) == sorted(ids[1:])
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await engine.list(workflow="expense-approval", limit=3, cursor=cursor)
        seen += [e.id for e in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    await until(engine, ids[0], Status.CANCELLED)


async def test_cancelled_execution_is_no_longer_suspended(make_engine: EngineFactory) -> None:
    engine = await make_engine(simple_approval)
    ex = await settled(engine, (await engine.run("simple-approval", {"item": "x"})).id)
    assert ex.suspension is not None
    gone = await engine.cancel(ex.id, "no")
    assert gone.suspension is None and gone.status is Status.CANCELLED
