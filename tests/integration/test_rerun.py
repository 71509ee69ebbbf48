"""Re-running a FAILED execution from a step: Resume of a FAILED execution runs the step that
failed (or `from_step`) again, in the same execution, keeping what the steps had stored."""

from __future__ import annotations

import asyncio

import pytest

from tarry import Chain, Flow, RetryPolicy, StepContext
from tarry.engine import InvalidArgument, Status, WrongState
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started, until

BROKEN = {"charge": True}


def reserve(ctx: StepContext) -> dict[str, object]:
    ctx.set("reserved", ctx.data["item"])
    return {**ctx.data, "reservation": "r-1"}


def charge(ctx: StepContext) -> dict[str, object]:
    if BROKEN["charge"]:
        raise ConnectionError("the payment service is down")
    return {**ctx.data, "charged": True}


ORDER = (Chain("order").then("reserve", reserve)
         .then("charge", charge, retry=RetryPolicy(max_attempts=1))
         .then("ship", lambda ctx: {**ctx.data, "shipped": True}).build())


@pytest.fixture(autouse=True)
def broken() -> None:
    BROKEN["charge"] = True


async def test_a_failed_execution_runs_again_from_the_step_that_failed(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(ORDER)
    ex = await engine.run("order", {"item": "book"})
    failed = await until(engine, ex.id, Status.FAILED)
    assert failed.error is not None and failed.error.node == "charge"
    BROKEN["charge"] = False  # the payment service is back
    again = await engine.resume(ex.id, request_id="rerun-1")
    assert again.id == ex.id and again.status is Status.RUNNING and again.error is None
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == {"item": "book", "reservation": "r-1", "charged": True,
                           "shipped": True}
    assert done.state["reserved"] == "book"  # what the steps stored is kept
    events = await all_events(engine, ex.id)
    assert len(started(events, "reserve")) == 1  # not run again
    assert len(started(events, "charge")) == 2
    [resumed] = [e for e in events if e.type == "resumed"]
    assert resumed.data["rerun"] is True and resumed.data["node"] == "charge"
    assert resumed.data["error"]["type"] == "ConnectionError"
    # The same request again is answered, not applied again.
    repeat = await engine.resume(ex.id, request_id="rerun-1")
    assert repeat.version == again.version
    assert len(started(await all_events(engine, ex.id), "charge")) == 2


async def test_from_step_picks_an_earlier_step(make_engine: EngineFactory) -> None:
    engine = await make_engine(ORDER)
    ex = await engine.run("order", {"item": "lamp"})
    await until(engine, ex.id, Status.FAILED)
    BROKEN["charge"] = False
    await engine.resume(ex.id, from_step="reserve")
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result["item"] == "lamp"  # the step ran with the input it had
    assert len(started(await all_events(engine, ex.id), "reserve")) == 2


async def test_a_step_that_never_ran_cannot_be_the_restart(make_engine: EngineFactory) -> None:
    engine = await make_engine(ORDER)
    ex = await engine.run("order", {"item": "pen"})
    failed = await until(engine, ex.id, Status.FAILED)
    with pytest.raises(InvalidArgument) as err:
        await engine.resume(ex.id, from_step="ship")
    assert [v.field for v in err.value.violations] == ["from_step"]
    after = await engine.get(ex.id)
    assert after.status is Status.FAILED and after.version == failed.version


async def test_a_timed_out_execution_needs_from_step_and_gets_its_time_again(
        make_engine: EngineFactory) -> None:
    async def slow(ctx: StepContext) -> str:
        await asyncio.sleep(float(ctx.input))
        return "slow"

    wf = Flow("slowpoke", timeout=0.4).step("work", slow).build()
    engine = await make_engine(wf)
    ex = await engine.run("slowpoke", 1.0)
    failed = await until(engine, ex.id, Status.FAILED)
    assert failed.error is not None and failed.error.type == "ExecutionTimeout"
    with pytest.raises(InvalidArgument):
        await engine.resume(ex.id)  # no step failed: which one to run is not known
    again = await engine.resume(ex.id, from_step="work")
    assert again.deadline is not None and again.deadline > failed.deadline  # type: ignore[operator]
    assert (await until(engine, ex.id, Status.FAILED)).error.type == "ExecutionTimeout"  # type: ignore[union-attr]


async def test_its_retention_waits_for_the_new_end(make_engine: EngineFactory) -> None:
    engine = await make_engine(ORDER)
    ex = await engine.run("order", {"item": "cup"})
    await until(engine, ex.id, Status.FAILED)
    store = engine.store
    assert isinstance(store, RedisStore)
    expiry = store.keys.expiry(store.keys.partition(ex.id))
    assert await store._redis.zscore(expiry, ex.id) is not None
    BROKEN["charge"] = False
    await engine.resume(ex.id)
    running = await engine.get(ex.id)
    if running.status is Status.RUNNING:
        assert await store._redis.zscore(expiry, ex.id) is None
    await until(engine, ex.id, Status.COMPLETED)
    assert await store._redis.zscore(expiry, ex.id) is not None


async def test_completed_and_cancelled_executions_still_refuse_a_resume(
        make_engine: EngineFactory) -> None:
    BROKEN["charge"] = False
    engine = await make_engine(ORDER)
    ex = await settled(engine, (await engine.run("order", {"item": "hat"})).id)
    assert ex.status is Status.COMPLETED
    with pytest.raises(WrongState):
        await engine.resume(ex.id, from_step="charge")
