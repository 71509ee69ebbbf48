"""A pause that freezes the clock: Suspend(freeze=True) stops an execution's timers while it
is suspended, and the Resume gives each the time it had left."""

from __future__ import annotations

import asyncio
import time

from tarry import Flow
from tarry.engine import Status
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import count, settled, until

NAP = Flow("nap").sleep("nap", 1.5).step("after", lambda ctx: "woke").edge("nap", "after")


async def timers(store: object) -> int:
    assert isinstance(store, RedisStore)
    return await count(store, store.keys.timers)


async def test_a_frozen_sleep_gets_the_time_it_had_left(make_engine: EngineFactory) -> None:
    engine = await make_engine(NAP.build())
    ex = await settled(engine, (await engine.run("nap")).id)
    await asyncio.sleep(0.3)
    held = await engine.suspend(ex.id, "lunch", freeze=True)
    assert held.status is Status.SUSPENDED
    assert held.suspension is not None and held.suspension.frozen
    [point] = held.waiting
    assert point.wake_at is None and point.remaining is not None
    assert 300 <= point.remaining <= 1200  # about 1.2 s of the 1.5 s were left
    assert await timers(engine.store) == 0
    await asyncio.sleep(1.6)  # past the original wake time: nothing fires
    assert (await engine.get(ex.id)).status is Status.SUSPENDED
    resumed_at = time.monotonic()
    back = await engine.resume(ex.id)
    assert back.status is Status.AWAITING and back.suspension is None
    [point] = back.waiting
    assert point.remaining is None and point.wake_at is not None
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "woke"
    assert time.monotonic() - resumed_at >= 0.29  # it slept the rest, not at once


async def test_without_freeze_the_timer_runs_on_and_fires_after_the_resume(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(NAP.build())
    ex = await settled(engine, (await engine.run("nap")).id)
    held = await engine.suspend(ex.id, "lunch")
    assert held.suspension is not None and not held.suspension.frozen
    await asyncio.sleep(1.7)
    resumed_at = time.monotonic()
    await engine.resume(ex.id)
    await until(engine, ex.id, Status.COMPLETED)
    assert time.monotonic() - resumed_at < 0.9  # it was due already


async def test_a_running_execution_freezes_at_its_next_node_boundary(
        make_engine: EngineFactory) -> None:
    async def work(ctx: object) -> str:
        await asyncio.sleep(0.3)
        return "worked"

    wf = (Flow("work-then-nap").step("work", work).sleep("nap", 0.5)
          .step("after", lambda ctx: "woke").edge("work", "nap").edge("nap", "after").build())
    engine = await make_engine(wf)
    ex = await engine.run("work-then-nap")
    asked = await engine.suspend(ex.id, "maintenance", freeze=True)
    assert asked.status is Status.RUNNING and asked.suspend_requested == "maintenance"
    held = await until(engine, ex.id, Status.SUSPENDED)
    assert held.suspension is not None and held.suspension.reason == "maintenance"
    assert held.suspension.frozen
    [point] = held.waiting
    assert point.remaining is not None and point.remaining >= 450  # all of it is left
    await asyncio.sleep(0.7)
    assert (await engine.get(ex.id)).status is Status.SUSPENDED
    await engine.resume(ex.id)
    assert (await until(engine, ex.id, Status.COMPLETED)).result == "woke"


async def test_a_frozen_suspension_survives_a_restart(make_engine: EngineFactory) -> None:
    first = await make_engine(NAP.build())
    ex = await settled(first, (await first.run("nap")).id)
    await first.suspend(ex.id, "hold", freeze=True)
    await first.stop()
    await asyncio.sleep(1.6)
    second = await make_engine(NAP.build())
    held = await second.get(ex.id)
    assert held.status is Status.SUSPENDED and held.waiting[0].remaining is not None
    resumed_at = time.monotonic()
    await second.resume(ex.id)
    await until(second, ex.id, Status.COMPLETED)
    assert time.monotonic() - resumed_at >= 0.29


async def test_the_execution_timeout_and_wait_deadlines_freeze_too(
        make_engine: EngineFactory) -> None:
    wf = (Flow("slow-answer", timeout=2.0)
          .wait("answer", timeout=1.5, on_timeout="late")
          .step("late", lambda ctx: "too late").step("ok", lambda ctx: "answered")
          .edge("answer", "ok").edge("answer", "late", action="late").build())
    engine = await make_engine(wf)
    ex = await settled(engine, (await engine.run("slow-answer")).id)
    held = await engine.suspend(ex.id, "weekend", freeze=True)
    assert held.deadline is None and held.deadline_left is not None
    assert held.waiting[0].remaining is not None
    await asyncio.sleep(2.2)  # past both: neither fires
    still = await engine.get(ex.id)
    assert still.status is Status.SUSPENDED and still.error is None
    back = await engine.resume(ex.id)
    assert back.status is Status.AWAITING and back.deadline is not None
    done = await engine.resume(ex.id, "here")
    assert (await settled(engine, done.id)).result == "answered"
