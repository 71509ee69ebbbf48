"""Behaviours 5, 6 and 13: durable sleeps, retry loops with a guard, steps that keep failing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from examples.pausing import delayed_notification, escalation_workflow, retry_with_backoff
from tarry import Flow, Output, RetryPolicy, StepContext
from tarry.engine import Engine, EngineConfig, Registry, Status
from tarry.localredis import LocalRedis, free_port
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration import fault_worker
from tests.integration.helpers import (
    all_events,
    count,
    eventually,
    settled,
    started,
    statuses,
    until,
)

ROOT = Path(__file__).parents[2]


async def test_sleep_completes_by_itself(make_engine: EngineFactory) -> None:
    engine = await make_engine(delayed_notification)
    ex = await settled(engine, (await engine.run("delayed-notification",
                                                 {"delay_seconds": 0.2})).id)
    assert ex.status is Status.AWAITING
    assert ex.waiting[0].node == "delay" and ex.waiting[0].kind == "sleep"
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "Notification sent"
    fired = [e for e in await all_events(engine, ex.id)
             if e.type == "node_finished" and e.data["node"] == "delay"]
    wake = ex.waiting[0].wake_at
    assert wake is not None and fired[0].time >= wake  # never early


async def test_the_guide_duration_is_an_hour(make_engine: EngineFactory) -> None:
    engine = await make_engine(delayed_notification)
    ex = await settled(engine, (await engine.run("delayed-notification")).id)
    wake = ex.waiting[0].wake_at
    assert wake is not None
    assert 3599_000 <= wake - ex.created_at <= 3601_000


@pytest.mark.standalone
async def test_sleep_survives_kill_9_of_its_server_and_of_redis(tmp_path: Path) -> None:
    """A real server process starts a 3 s sleep and is killed -9; its Redis (AOF on) is
    killed -9 too and restarted before the timer is due; a fresh server fires it, once."""
    port, data, log = free_port(), tmp_path / "redis", tmp_path / "steps.log"
    prefix = "kill9:v1"
    redis = LocalRedis(data, port=port, appendonly=True).start()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.fault_worker", redis.url, prefix, str(log),
        "worker-1", "long-nap:nap-1",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    engine: Engine | None = None
    try:
        await eventually(lambda: f"ready:{worker.pid}" in _lines(log),
                         "the worker to start the execution", timeout=20)
        reader = Engine(Registry(fault_worker.WORKFLOWS), RedisStore(redis.url, prefix=prefix))
        ex = await reader.get("nap-1")
        await reader.stop()
        await reader.store.close()
        assert ex.status is Status.AWAITING and [w.node for w in ex.waiting] == ["nap"]
        wake = ex.waiting[0].wake_at
        assert wake is not None
        worker.kill()  # kill -9 of the server that started the sleep
        assert await worker.wait() == -signal.SIGKILL
        assert redis.proc is not None
        redis.proc.kill()  # and kill -9 of Redis
        redis.proc.wait()
        redis.stop()  # (releases the data dir's lock)
        redis = LocalRedis(data, port=port, appendonly=True).start()
        assert time.time() * 1000 < wake - 500, "Redis came back too late for this test"
        engine = Engine(Registry(fault_worker.WORKFLOWS), RedisStore(redis.url, prefix=prefix),
                        EngineConfig(lease_ttl=1.0))
        store = engine.store
        assert isinstance(store, RedisStore)
        # What the AOF kept: the execution, still waiting, and its timer.
        assert (await engine.get("nap-1")).waiting == ex.waiting
        assert await count(store, store.keys.timers) == 1
        await engine.start()
        done = await until(engine, "nap-1", Status.COMPLETED, timeout=10)
        assert done.result == "woke"
        events = await all_events(engine, "nap-1")
        fired = [e for e in events if e.type == "node_finished" and e.data["node"] == "nap"]
        assert len(fired) == 1 and fired[0].time >= wake  # once, and never early
        assert len(started(events, "after")) == 1
        assert statuses(events) == ["RUNNING", "AWAITING", "RUNNING", "COMPLETED"]
        assert await count(store, store.keys.timers) == 0
        assert not [x for x in _lines(log) if x.startswith("after:")]  # not the dead worker
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()
        if engine is not None:
            await engine.stop()
            await engine.store.close()
        redis.stop()


def _lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_timer_due_while_nothing_ran_fires_at_startup(make_engine: EngineFactory) -> None:
    first = await make_engine(delayed_notification)
    ex = await settled(first, (await first.run("delayed-notification",
                                               {"delay_seconds": 0.1})).id)
    await first.stop()
    await asyncio.sleep(0.4)  # the timer falls due while no engine runs
    second = await make_engine(delayed_notification, timer_poll=30.0)
    done = await until(second, ex.id, Status.COMPLETED, timeout=5)
    assert done.result == "Notification sent"


async def test_sleep_reached_after_a_resume(make_engine: EngineFactory) -> None:
    engine = await make_engine(escalation_workflow)
    ex = await settled(engine, (await engine.run("escalation-workflow",
                                                 {"escalate_after_seconds": 0.2})).id)
    await engine.resume(ex.id, {"note": "looking"}, action="pending")
    mid = await settled(engine, ex.id)
    assert mid.status is Status.AWAITING and mid.waiting[0].node == "escalation-timer"
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "Ticket escalated to manager"


async def test_escalation_not_pending_ends_without_escalating(make_engine: EngineFactory) -> None:
    engine = await make_engine(escalation_workflow)
    ex = await settled(engine, (await engine.run("escalation-workflow")).id)
    await engine.resume(ex.id, {"answer": "fixed"}, action="resolved")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert started(await all_events(engine, ex.id), "escalate") == []


async def test_two_sleeps_in_a_row_and_absolute_time(make_engine: EngineFactory) -> None:
    wf = (
        Flow("two-sleeps")
        .sleep("first", 0.1)
        .sleep("second", lambda ctx: datetime.now(UTC) + timedelta(seconds=0.1))
        .step("done", lambda ctx: ctx.node_input)
        .edge("first", "second").edge("second", "done")
        .build()
    )
    engine = await make_engine(wf)
    ex = await engine.run("two-sleeps", {"v": 1})
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == {"v": 1}
    # The first sleep hands over to the second without leaving AWAITING.
    assert statuses(await all_events(engine, ex.id)) == [
        "RUNNING", "AWAITING", "RUNNING", "COMPLETED"]


async def test_timers_fire_once_with_two_engines(make_engine: EngineFactory) -> None:
    a = await make_engine(delayed_notification)
    b = await make_engine(delayed_notification)
    ids = [(await a.run("delayed-notification", {"delay_seconds": 0.2})).id for _ in range(20)]
    for i in ids:
        await until(b, i, Status.COMPLETED)
    for i in ids:
        assert len(started(await all_events(a, i), "send")) == 1


async def test_retry_loop_runs_as_many_times_as_asked(make_engine: EngineFactory) -> None:
    engine = await make_engine(retry_with_backoff)
    ex = await engine.run("retry-with-backoff", {"fail_times": 3, "backoff_seconds": 0.02})
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "Success"
    assert done.state["attempts"] == 4
    events = await all_events(engine, ex.id)
    assert len(started(events, "attempt")) == 4


async def test_runaway_loop_fails_with_a_clear_error(make_engine: EngineFactory) -> None:
    wf = (
        Flow("runaway", max_visits=5)
        .step("spin", lambda ctx: Output("again", action="loop"))
        .sleep("pause", 0)
        .edge("spin", "pause", action="loop").edge("pause", "spin")
        .build()
    )
    engine = await make_engine(wf)
    ex = await engine.run("runaway")
    done = await until(engine, ex.id, Status.FAILED)
    assert done.error is not None
    assert done.error.type == "MaxVisitsExceeded"
    assert "'spin'" in done.error.message and "5" in done.error.message
    assert len(started(await all_events(engine, ex.id), "spin")) == 5


async def test_failing_step_ends_failed_with_details(make_engine: EngineFactory) -> None:
    calls: list[int] = []

    def flaky(ctx: StepContext) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError(f"upstream down (try {ctx.attempt})")

    wf = (Flow("flaky")
          .step("call", flaky, retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
          .build())
    engine = await make_engine(wf)
    ex = await engine.run("flaky")
    done = await until(engine, ex.id, Status.FAILED)
    assert calls == [1, 2, 3]
    assert done.error is not None
    assert (done.error.type, done.error.node, done.error.attempt) == ("ConnectionError", "call", 3)
    assert done.error.message == "upstream down (try 3)"
    failed = [e for e in await all_events(engine, ex.id) if e.type == "node_failed"]
    assert [e.data["attempt"] for e in failed] == [1, 2, 3]
    assert "retry_at" in failed[0].data and "retry_at" not in failed[2].data


async def test_non_retryable_errors_fail_at_once(make_engine: EngineFactory) -> None:
    calls: list[int] = []

    async def bad(ctx: StepContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError("bad input")

    wf = (Flow("bad")
          .step("call", bad, retry=RetryPolicy(max_attempts=5, initial_interval=0.01,
                                               non_retryable=("ValueError",)))
          .build())
    engine = await make_engine(wf)
    done = await until(engine, (await engine.run("bad")).id, Status.FAILED)
    assert calls == [1]
    assert done.error is not None and done.error.type == "ValueError"


async def test_retry_backoff_is_a_durable_timer(make_engine: EngineFactory) -> None:
    """The backoff wait is recorded in Redis: another engine finishes it after a crash."""
    calls: list[int] = []

    def once_fails(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return "ok"

    wf = (Flow("backoff")
          .step("call", once_fails, retry=RetryPolicy(max_attempts=2, initial_interval=0.5))
          .build())
    first = await make_engine(wf, lease_ttl=0.5)
    ex = await first.run("backoff")
    await first.wait(ex.id, timeout=5, until=lambda e: bool(e.waiting))
    snap = await first.get(ex.id)
    assert snap.status is Status.RUNNING
    assert snap.waiting[0].kind == "retry" and snap.waiting[0].attempt == 2
    await first.stop()  # the backoff is not kept in this process's memory only
    second = await make_engine(wf, lease_ttl=0.5)
    done = await until(second, ex.id, Status.COMPLETED)
    assert done.result == "ok" and calls == [1, 2]


@pytest.mark.parametrize("delay", [0.0])
async def test_no_timer_is_left_behind(make_engine: EngineFactory, delay: float) -> None:
    engine = await make_engine(delayed_notification)
    ex = await engine.run("delayed-notification", {"delay_seconds": delay})
    await until(engine, ex.id, Status.COMPLETED)
    store = engine.store
    assert isinstance(store, RedisStore)
    assert await count(store, store.keys.timers) == 0
    assert await count(store, store.keys.leases) == 0



async def test_a_timer_set_by_another_server_wakes_this_one(make_engine: EngineFactory) -> None:
    """Server A polls the timer set only every 30 s; the commit notification of server B's
    timer must wake it, so the sleep fires although B stops before it is due."""
    a = await make_engine(delayed_notification, timer_poll=30.0)
    await asyncio.sleep(0.2)  # A's first look at the (empty) timer set is done
    b = await make_engine(delayed_notification, timer_poll=30.0)
    ex = await settled(b, (await b.run("delayed-notification", {"delay_seconds": 0.3})).id)
    await b.stop()
    done = await until(a, ex.id, Status.COMPLETED, timeout=10)
    assert done.result == "Notification sent"


def _wait_and_sleep() -> Flow:
    return (
        Flow("wait-and-sleep")
        .step("fan", lambda ctx: "go")
        .wait("ask")
        .sleep("nap", 0.3)
        .step("after-ask", lambda ctx: "asked")
        .step("after-nap", lambda ctx: "napped")
        .edge("fan", "ask").edge("fan", "nap")
        .edge("ask", "after-ask").edge("nap", "after-nap")
    )


async def test_resume_while_a_timer_is_claimed_ahead(make_engine: EngineFactory) -> None:
    engine = await make_engine(_wait_and_sleep().build(), timer_horizon=1.0)
    ex = await settled(engine, (await engine.run("wait-and-sleep")).id)
    await asyncio.sleep(0.1)  # the timer is now claimed ahead, its driver waiting
    await engine.resume(ex.id, {"x": 1}, node="ask")
    done = await until(engine, ex.id, Status.COMPLETED)
    events = await all_events(engine, ex.id)
    assert len(started(events, "after-nap")) == 1 and len(started(events, "after-ask")) == 1
    assert done.waiting == ()


async def test_cancel_while_a_timer_is_claimed_ahead(make_engine: EngineFactory) -> None:
    engine = await make_engine(delayed_notification, timer_horizon=1.0)
    ex = await settled(engine, (await engine.run("delayed-notification",
                                                 {"delay_seconds": 0.4})).id)
    await asyncio.sleep(0.1)
    await engine.cancel(ex.id, "stop")
    await asyncio.sleep(0.6)
    assert (await engine.get(ex.id)).status is Status.CANCELLED
    assert started(await all_events(engine, ex.id), "send") == []


async def test_suspend_while_a_timer_is_claimed_ahead(make_engine: EngineFactory) -> None:
    engine = await make_engine(delayed_notification, timer_horizon=1.0)
    ex = await settled(engine, (await engine.run("delayed-notification",
                                                 {"delay_seconds": 0.3})).id)
    await asyncio.sleep(0.1)
    await engine.suspend(ex.id, "hold")
    await asyncio.sleep(0.5)
    assert (await engine.get(ex.id)).status is Status.SUSPENDED
    assert started(await all_events(engine, ex.id), "send") == []
    await engine.resume(ex.id)
    assert (await until(engine, ex.id, Status.COMPLETED)).result == "Notification sent"


async def test_a_far_timer_is_not_held(make_engine: EngineFactory) -> None:
    """Only timers within the horizon are claimed ahead: a later one leaves no lease held."""
    engine = await make_engine(delayed_notification, timer_horizon=0.2)
    ex = await settled(engine, (await engine.run("delayed-notification",
                                                 {"delay_seconds": 30})).id)
    await asyncio.sleep(0.3)
    store = engine.store
    assert isinstance(store, RedisStore)
    assert await store.redis.zscore(store.keys.leases(store.keys.partition(ex.id)), ex.id) is None
    assert (await engine.get(ex.id)).status is Status.AWAITING
