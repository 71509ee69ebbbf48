"""Bad data never gets stored: actions that lead nowhere, coerced schema values, sleeps out
of range, step outputs nested too deep; and a failed step keeps its traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from examples.pausing import conditional_workflow, escalation_workflow
from tarry import Chain, Flow, StepContext
from tarry.engine import InvalidArgument, InvalidResumeData, Status
from tarry.limits import MAX_DEPTH, MAX_WAKE_MS
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started, until


def nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_an_action_no_edge_takes_is_refused_and_changes_nothing(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(conditional_workflow)
    ex = await settled(engine, (await engine.run("conditional-workflow")).id)
    for action in ("choose-d", None):
        with pytest.raises(InvalidArgument) as err:
            await engine.resume(ex.id, {}, action=action)
        assert err.value.metadata == {"node": "decision-point",
                                      "actions": "choose-a,choose-b,choose-c"}
        assert [v.field for v in err.value.violations] == ["action"]
    after = await engine.get(ex.id)
    assert (after.status, after.version, after.last_sequence) == (
        ex.status, ex.version, ex.last_sequence)
    await engine.resume(ex.id, {}, action="choose-c")
    assert (await settled(engine, ex.id)).result == "Executed path C"


async def test_a_declared_end_takes_any_other_action(make_engine: EngineFactory) -> None:
    engine = await make_engine(escalation_workflow)
    ex = await settled(engine, (await engine.run("escalation-workflow")).id)
    await engine.resume(ex.id, {"answer": "fixed"}, action="resolved")
    assert (await settled(engine, ex.id)).status is Status.COMPLETED
    wf = (Flow("named-end").wait("ask").step("next", lambda ctx: "next")
          .edge("ask", "next", action="go").end("ask", action="stop").build())
    engine = await make_engine(wf)
    ex = await settled(engine, (await engine.run("named-end")).id)
    assert wf.actions("ask") == ["go", "stop"]
    with pytest.raises(InvalidArgument):
        await engine.resume(ex.id, {}, action="other")
    await engine.resume(ex.id, {}, action="stop")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED and started(await all_events(engine, ex.id),
                                                       "next") == []


class Decision(BaseModel):
    approved: bool
    amount: float = 0


async def test_resume_data_is_checked_strictly(make_engine: EngineFactory) -> None:
    wf = (Chain("strict", resume=Decision)
          .then("ask", lambda ctx: ctx.resume_data or ctx.suspend("why")).build())
    engine = await make_engine(wf)
    ex = await settled(engine, (await engine.run("strict")).id)
    for bad in ({"approved": "yes"}, {"approved": "on"}, {"approved": 1},
                {"approved": True, "amount": "1.5"}):
        with pytest.raises(InvalidResumeData):
            await engine.resume(ex.id, bad)
    assert (await engine.get(ex.id)).version == ex.version
    await engine.resume(ex.id, {"approved": True, "amount": 2})
    done = await settled(engine, ex.id)
    assert done.result == {"approved": True, "amount": 2.0}


async def test_sleep_durations_are_bounded(make_engine: EngineFactory) -> None:
    wf = (Flow("sleep-input").sleep("nap", lambda ctx: ctx.input["seconds"])
          .step("after", lambda ctx: "woke").edge("nap", "after").build())
    engine = await make_engine(wf)
    for seconds in (-1, float("nan"), float("inf"), 3e11, 1e18, 10**400, "soon", True):
        ex = await until(engine, (await engine.run("sleep-input", {"seconds": 0.0})).id,
                         Status.COMPLETED)
        ex = await engine.run("sleep-input", {"seconds": seconds})
        ex = await settled(engine, ex.id)
        assert ex.status is Status.FAILED, seconds
        assert ex.error is not None and ex.error.type == "InvalidSleep", ex.error
        assert ex.waiting == ()
    assert await engine.store.due_timers(2**62, 10) == ([], None)
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    wf2 = Flow("far").sleep("nap", late).build()
    engine2 = await make_engine(wf2)
    ex = await settled(engine2, (await engine2.run("far")).id)
    assert ex.status is Status.AWAITING and ex.waiting[0].wake_at is not None
    assert ex.waiting[0].wake_at <= MAX_WAKE_MS


async def test_step_outputs_too_deep_fail_the_step(make_engine: EngineFactory) -> None:
    def deep_output(ctx: StepContext) -> object:
        return nested(ctx.input["levels"])

    def deep_state(ctx: StepContext) -> str:
        ctx.set("k", nested(ctx.input["levels"]))
        return "ok"

    def deep_suspend(ctx: StepContext) -> object:
        ctx.suspend("deep", nested(ctx.input["levels"]))

    engine = await make_engine(Chain("deep-out").then("s", deep_output).build(),
                               Chain("deep-state").then("s", deep_state).build(),
                               Chain("deep-suspend").then("s", deep_suspend).build())
    for name, kind in (("deep-out", "InvalidOutput"), ("deep-state", "InvalidOutput"),
                       ("deep-suspend", "InvalidSuspendData")):
        ok = await settled(engine, (await engine.run(name, {"levels": MAX_DEPTH})).id)
        assert ok.status in (Status.COMPLETED, Status.SUSPENDED)
        bad = await settled(engine, (await engine.run(name, {"levels": MAX_DEPTH + 1})).id)
        assert bad.status is Status.FAILED and bad.error is not None
        assert bad.error.type == kind and f"{MAX_DEPTH} levels" in bad.error.message
        assert "k" not in bad.state


async def test_input_and_resume_data_too_deep_are_refused(make_engine: EngineFactory) -> None:
    engine = await make_engine(Flow("w").wait("w").build())
    with pytest.raises(InvalidArgument) as err:
        await engine.run("w", nested(MAX_DEPTH + 1))
    assert [v.field for v in err.value.violations] == ["input"]
    ex = await settled(engine, (await engine.run("w", nested(MAX_DEPTH - 1))).id)
    with pytest.raises(InvalidArgument):
        await engine.resume(ex.id, nested(MAX_DEPTH + 1))
    assert (await engine.get(ex.id)).status is Status.AWAITING


async def test_a_failed_step_keeps_its_traceback(make_engine: EngineFactory) -> None:
    def explode(ctx: StepContext) -> None:
        raise RuntimeError("boom " * 2000)

    engine = await make_engine(Chain("explode").then("s", explode).build())
    ex = await settled(engine, (await engine.run("explode")).id)
    assert ex.error is not None and ex.error.type == "RuntimeError"
    assert ex.error.message.endswith("(cut)") and len(ex.error.message) < 4200
    assert ex.error.traceback is not None
    assert "in explode" in ex.error.traceback and "RuntimeError" in ex.error.traceback
    assert "tarry/engine" not in ex.error.traceback  # the workflow's frames, not the server's


async def test_one_unreadable_stored_execution_does_not_fail_a_listing(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(Flow("w").wait("w").build())
    good = await settled(engine, (await engine.run("w")).id)
    bad = await settled(engine, (await engine.run("w")).id)
    store = engine.store
    assert isinstance(store, RedisStore)
    broken = json.dumps({"id": bad.id, "waits": 7})  # not a document any server writes
    await store.redis.hset(store.keys.state(bad.id), "doc", broken)
    rows, _ = await engine.list()
    by_id = {r.id: r for r in rows}
    assert by_id[good.id].waiting and by_id[bad.id].status is Status.AWAITING
    assert by_id[bad.id].waiting == ()  # listed bare, without what could not be read
