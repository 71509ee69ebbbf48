"""Cleanup hooks on Cancel: a step's `on_cancel` for the step the Cancel cut off, then the
workflow's; each within the grace, its outcome recorded in a `cleanup` event; and the step
sees the Cancel's reason."""

from __future__ import annotations

import asyncio

from tarry import CancelContext, Flow, StepContext
from tarry.engine import Status
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, eventually, until

SEEN: list[tuple[str, str | None, object, str]] = []


async def charge(ctx: StepContext) -> str:
    ctx.set("charged", ctx.node_input)
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        SEEN.append(("step saw", ctx.node_id, None, ctx.cancel_reason or ""))
        raise
    return "charged"


async def refund(ctx: CancelContext) -> None:
    SEEN.append(("refund", ctx.node_id, ctx.node_input, ctx.reason))


def notify(ctx: CancelContext) -> None:
    SEEN.append(("notify", ctx.node_id, ctx.state.get("charged"), ctx.reason))
    raise RuntimeError("the mail server is down")


def order(hook_seconds: float = 0.0) -> Flow:
    async def slow_refund(ctx: CancelContext) -> None:
        await asyncio.sleep(hook_seconds)
        await refund(ctx)

    return (Flow("order", on_cancel=notify)
            .step("charge", charge, on_cancel=slow_refund if hook_seconds else refund))


async def test_a_cancel_runs_the_hooks_and_records_how_they_ended(
        make_engine: EngineFactory) -> None:
    SEEN.clear()
    engine = await make_engine(order().build())
    ex = await engine.run("order", {"amount": 12})
    await until(engine, ex.id, Status.RUNNING)
    await asyncio.sleep(0.2)  # the step is under way
    done = await engine.cancel(ex.id, "customer changed their mind")
    assert done.status is Status.CANCELLED

    async def recorded() -> list[dict[str, object]]:
        return [e.data for e in await all_events(engine, ex.id) if e.type == "cleanup"]

    for _ in range(100):
        if len(await recorded()) == 2:
            break
        await asyncio.sleep(0.05)
    assert await recorded() == [
        {"node": "charge", "outcome": "done"},
        {"node": None, "outcome": "failed",
         "error": {"type": "RuntimeError", "message": "the mail server is down"}}]
    assert ("refund", "charge", {"amount": 12}, "customer changed their mind") in SEEN
    assert ("notify", None, None, "customer changed their mind") in SEEN
    await eventually(lambda: any(s[0] == "step saw" for s in SEEN), "the step's cancellation")
    assert ("step saw", "charge", None, "customer changed their mind") in SEEN
    assert (await engine.get(ex.id)).status is Status.CANCELLED  # unchanged by the hooks


async def test_a_hook_past_its_grace_is_abandoned(make_engine: EngineFactory) -> None:
    SEEN.clear()
    engine = await make_engine(order(hook_seconds=5).build(), cleanup_grace=0.3)
    ex = await engine.run("order", {"amount": 1})
    await asyncio.sleep(0.2)
    await engine.cancel(ex.id, "too slow")
    for _ in range(100):
        found = [e.data for e in await all_events(engine, ex.id) if e.type == "cleanup"]
        if len(found) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(d["node"], d["outcome"]) for d in found] == [("charge", "timed_out"),
                                                          (None, "failed")]
    assert not any(s[0] == "refund" for s in SEEN)


async def test_nothing_running_means_only_the_workflow_hook(make_engine: EngineFactory) -> None:
    SEEN.clear()
    wf = Flow("waiting", on_cancel=notify).wait("ask").build()
    engine = await make_engine(wf)
    ex = await engine.run("waiting")
    await until(engine, ex.id, Status.AWAITING)
    await engine.cancel(ex.id, "not needed")
    await eventually(lambda: any(s[0] == "notify" for s in SEEN), "the workflow's hook")
    quiet = Flow("quiet").wait("ask").build()  # no hooks: no cleanup event
    other = await make_engine(quiet)
    q = await other.run("quiet")
    await until(other, q.id, Status.AWAITING)
    await other.cancel(q.id)
    assert not [e for e in await all_events(other, q.id) if e.type == "cleanup"]
