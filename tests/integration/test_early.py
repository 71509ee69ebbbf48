"""Early resumes: a Resume naming a wait node with `accept_early` before the execution
reaches it is kept (in order, once per request id) and taken when the node is reached;
the execution shows what is kept; Cancel drops it; other nodes keep today's refusals."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ConfigDict

from tarry import Flow, StepContext
from tarry.engine import (
    Engine,
    EventType,
    InvalidResumeData,
    NodeNotWaiting,
    Status,
    WrongState,
)
from tarry.limits import MAX_PENDING_INPUTS
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled


class Payment(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    amount: int


async def prepare(ctx: StepContext) -> str:
    given = ctx.input if isinstance(ctx.input, dict) else {}
    await asyncio.sleep(float(given.get("prepare_s", 0)))
    return "prepared"


def order(*, early: bool = True) -> Flow:
    return (Flow("order")
            .wait("approve")
            .step("prepare", prepare)
            .wait("pay", key="payment", resume=Payment, accept_early=early)
            .step("ship", lambda ctx: {"paid": ctx.get("payment")})
            .edge("approve", "prepare")
            .edge("prepare", "pay")
            .edge("pay", "ship"))


async def awaiting(engine: Engine, **input: object) -> str:
    ex = await settled(engine, (await engine.run("order", dict(input))).id)
    assert ex.status is Status.AWAITING and [w.node for w in ex.waiting] == ["approve"]
    return ex.id


async def test_a_payment_before_its_turn_is_kept_and_taken_when_reached(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    kept = await engine.resume(eid, {"amount": 5}, node="pay", request_id="pay-1")
    assert kept.status is Status.AWAITING  # nothing else changed
    assert [(p.node, p.data, p.request_id) for p in kept.pending] == [
        ("pay", {"amount": 5}, "pay-1")]
    assert (await engine.get(eid)).pending == kept.pending

    await engine.resume(eid, None, node="approve")
    done = await settled(engine, eid)
    assert done.status is Status.COMPLETED and done.result == {"paid": {"amount": 5}}
    assert done.pending == ()
    events = await all_events(engine, eid)
    [kept_event] = [e for e in events if e.type == EventType.RESUME_KEPT]
    assert kept_event.data["node"] == "pay" and kept_event.data["request_id"] == "pay-1"
    [taken] = [e for e in events if e.type == EventType.NODE_FINISHED and e.data["node"] == "pay"]
    assert taken.data["early"] is True and taken.data["request_id"] == "pay-1"
    assert taken.data["accepted_at"] == kept.pending[0].accepted_at
    # The node was reached and left in one transition: it never showed as waiting.
    statuses = [e.data["status"] for e in events if e.type == EventType.STATUS]
    assert statuses == ["RUNNING", "AWAITING", "RUNNING", "COMPLETED"]


async def test_kept_while_running_and_taken_by_the_driver(make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine, prepare_s=0.5)
    await engine.resume(eid, None, node="approve")
    running = await engine.get(eid)
    assert running.status is Status.RUNNING and running.running == ("prepare",)
    kept = await engine.resume(eid, {"amount": 7}, node="pay")
    assert kept.status is Status.RUNNING and [p.node for p in kept.pending] == ["pay"]
    done = await settled(engine, eid)
    assert done.status is Status.COMPLETED and done.result == {"paid": {"amount": 7}}
    assert done.pending == ()


async def test_kept_in_order_once_per_request_id_and_the_rest_dropped_at_the_end(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    first = await engine.resume(eid, {"amount": 1}, node="pay", request_id="a")
    again = await engine.resume(eid, {"amount": 1}, node="pay", request_id="a")
    assert again == first  # the first answer, nothing kept twice
    second = await engine.resume(eid, {"amount": 2}, node="pay", request_id="b")
    assert [p.data for p in second.pending] == [{"amount": 1}, {"amount": 2}]
    await engine.resume(eid, None, node="approve")
    done = await settled(engine, eid)
    assert done.result == {"paid": {"amount": 1}}  # the first kept
    assert done.pending == ()  # the second went with the execution's end
    kept = [e for e in await all_events(engine, eid) if e.type == EventType.RESUME_KEPT]
    assert len(kept) == 2


async def test_cancel_drops_what_is_kept(make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    await engine.resume(eid, {"amount": 3}, node="pay")
    cancelled = await engine.cancel(eid, "withdrawn")
    assert cancelled.status is Status.CANCELLED and cancelled.pending == ()
    assert (await engine.get(eid)).pending == ()


async def test_a_node_that_waits_now_is_resumed_as_usual(make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    await engine.resume(eid, None, node="approve")
    at_pay = await settled(engine, eid)
    assert at_pay.status is Status.AWAITING and [w.node for w in at_pay.waiting] == ["pay"]
    done = await settled(engine, (await engine.resume(eid, {"amount": 9}, node="pay")).id)
    assert done.result == {"paid": {"amount": 9}}
    assert not [e for e in await all_events(engine, eid) if e.type == EventType.RESUME_KEPT]


async def test_refusals_keep_nothing(make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    with pytest.raises(InvalidResumeData):
        await engine.resume(eid, {"amount": "5"}, node="pay")  # strict: no coercion
    assert (await engine.get(eid)).pending == ()

    plain = await make_engine(order(early=False).build())
    other = await awaiting(plain)
    with pytest.raises(NodeNotWaiting):
        await plain.resume(other, {"amount": 5}, node="pay")
    assert (await plain.get(other)).pending == ()


async def test_a_running_execution_still_refuses_other_resumes(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine, prepare_s=0.5)
    await engine.resume(eid, None, node="approve")
    with pytest.raises(WrongState):
        await engine.resume(eid, None, node="approve")
    await settled(engine, eid)


async def test_another_process_takes_what_one_kept(make_engine: EngineFactory) -> None:
    one = await make_engine(order().build())
    other = await make_engine(order().build())
    eid = await awaiting(one)
    await one.resume(eid, {"amount": 4}, node="pay")
    await other.resume(eid, None, node="approve")
    done = await settled(other, eid)
    assert done.status is Status.COMPLETED and done.result == {"paid": {"amount": 4}}


async def test_at_most_max_pending_inputs_are_kept(make_engine: EngineFactory) -> None:
    engine = await make_engine(order().build())
    eid = await awaiting(engine)
    for i in range(MAX_PENDING_INPUTS):
        await engine.resume(eid, {"amount": i}, node="pay")
    with pytest.raises(WrongState, match="keeps 100 inputs"):
        await engine.resume(eid, {"amount": -1}, node="pay")
    kept = await engine.get(eid)
    assert [p.data for p in kept.pending] == [{"amount": i} for i in range(MAX_PENDING_INPUTS)]
