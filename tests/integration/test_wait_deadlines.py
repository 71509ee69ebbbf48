"""Wait deadlines (a wait node's `timeout` and `on_timeout`), and timer lateness in the log:
every timer that fires records when it was due and how late it fired."""

from __future__ import annotations

import asyncio

import pytest

from tarry import Flow, StepContext
from tarry.api._convert import workflow_to_pb
from tarry.engine import DefinitionError, Status, WaitKind
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, count, settled, until


def answered(ctx: StepContext) -> str:
    return f"answered: {ctx.get('response')}"


def ticket(timeout: float) -> Flow:
    return (Flow("ticket")
            .step("submit", lambda ctx: "submitted")
            .wait("response", key="response", timeout=timeout, on_timeout="escalate")
            .step("close", answered)
            .step("escalate", lambda ctx: "escalated to a manager")
            .edge("submit", "response")
            .edge("response", "close")
            .edge("response", "escalate", action="escalate"))


async def test_a_wait_that_gets_no_answer_takes_its_timeout_action(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(ticket(0.3).build())
    ex = await settled(engine, (await engine.run("ticket")).id)
    assert ex.status is Status.AWAITING
    [point] = ex.waiting
    assert point.kind == WaitKind.WAIT and point.wake_at is not None
    assert point.wake_at - ex.created_at >= 300  # the deadline, shown with the waiting point
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "escalated to a manager"
    assert "response" not in done.state  # no data came
    [fired] = [e for e in await all_events(engine, ex.id)
               if e.type == "node_finished" and e.data["node"] == "response"]
    assert fired.data["action"] == "escalate" and fired.data["timed_out"] is True
    assert fired.data["due"] == point.wake_at and fired.data["late_ms"] >= 0
    assert fired.time >= point.wake_at  # never early


async def test_an_answer_in_time_clears_the_deadline(make_engine: EngineFactory,
                                                     prefix: str) -> None:
    engine = await make_engine(ticket(5.0).build())
    ex = await settled(engine, (await engine.run("ticket")).id)
    await engine.resume(ex.id, "on it")
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "answered: on it"
    store = engine.store
    assert isinstance(store, RedisStore)
    assert await count(store, store.keys.timers) == 0  # the deadline's timer is gone
    events = await all_events(engine, ex.id)
    assert not any(e.data.get("timed_out") for e in events)


async def test_a_wait_deadline_survives_a_restart(make_engine: EngineFactory) -> None:
    first = await make_engine(ticket(0.8).build())
    ex = await settled(first, (await first.run("ticket")).id)
    await first.stop()  # nothing in memory carries the deadline on
    second = await make_engine(ticket(0.8).build())
    done = await until(second, ex.id, Status.COMPLETED, timeout=10)
    assert done.result == "escalated to a manager"


async def test_suspended_waits_time_out_after_the_resume(make_engine: EngineFactory) -> None:
    engine = await make_engine(ticket(1.0).build())
    ex = await settled(engine, (await engine.run("ticket")).id)
    await engine.suspend(ex.id, "hold")
    await until(engine, ex.id, Status.SUSPENDED)
    await asyncio.sleep(1.2)
    held = await engine.get(ex.id)
    assert held.status is Status.SUSPENDED  # the deadline passed; it stays suspended
    await engine.resume(ex.id)
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "escalated to a manager"


async def test_a_sleep_and_a_retry_record_how_late_they_fired(
        make_engine: EngineFactory) -> None:
    calls = {"n": 0}

    def flaky(ctx: StepContext) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("once")
        return "ok"

    from tarry import RetryPolicy
    wf = (Flow("late").sleep("nap", 0.1)
          .step("call", flaky, retry=RetryPolicy(max_attempts=2, initial_interval=0.1))
          .edge("nap", "call").build())
    engine = await make_engine(wf)
    ex = await engine.run("late")
    await until(engine, ex.id, Status.COMPLETED)
    events = await all_events(engine, ex.id)
    [nap] = [e for e in events if e.type == "node_finished" and e.data["node"] == "nap"]
    [retry] = [e for e in events if e.type == "node_started" and e.data["attempt"] == 2]
    for event in (nap, retry):
        assert event.data["late_ms"] >= 0 and event.time >= event.data["due"]
        assert event.data["late_ms"] == event.time - event.data["due"]


def test_wait_deadlines_are_checked_when_the_workflow_is_built() -> None:
    with pytest.raises(DefinitionError, match="on_timeout needs a timeout"):
        Flow("x").wait("w", on_timeout="late")
    with pytest.raises(DefinitionError, match="no edge or end takes its on_timeout"):
        (Flow("x").wait("w", timeout=1, on_timeout="late").step("s", lambda ctx: 1)
         .edge("w", "s", action="ok").build())
    with pytest.raises(DefinitionError, match="positive number of seconds"):
        Flow("x").wait("w", timeout=-1)
    wf = ticket(60).build()
    assert wf.nodes["response"].timeout == 60 and wf.nodes["response"].on_timeout == "escalate"
    assert ticket(60).build().fingerprint != ticket(61).build().fingerprint
    shown = workflow_to_pb(wf).nodes
    [response] = [n for n in shown if n.id == "response"]
    assert response.timeout.seconds == 60 and response.on_timeout == "escalate"
