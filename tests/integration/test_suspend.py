"""Behaviours 7-10: suspend(reason, data), resume validation, from_step, outside suspension."""

from __future__ import annotations

import asyncio
import os

import pytest
from pydantic import BaseModel

from examples.pausing import delayed_notification, parallel_review
from examples.suspend_resume import (
    document_approval,
    multi_approval,
    multi_review,
    verify_user,
)
from tarry import Chain, Flow, StepContext
from tarry.engine import (
    InvalidArgument,
    InvalidResumeData,
    NodeNotWaiting,
    Status,
    WrongState,
)
from tests.conftest import EngineFactory
from tests.integration.helpers import Items, all_events, settled, started, until
from tests.integration.peer import items_workflow


async def test_suspend_keeps_reason_and_data_then_verifies(make_engine: EngineFactory) -> None:
    engine = await make_engine(verify_user)
    ex = await settled(engine, (await engine.run(
        "verify-user", {"userId": "user-123", "email": "user@example.com"})).id)
    assert ex.status is Status.SUSPENDED
    assert ex.suspension is not None
    assert ex.suspension.reason == "Waiting for verification"
    assert ex.suspension.node == "send-verification" and ex.suspension.by == "step"
    code = ex.suspension.data["verificationCode"]
    assert set(ex.suspension.data) == {"verificationCode", "expiresAt"}
    assert ex.state["outbox"][0]["text"] == f"Your code: {code}"

    await engine.resume(ex.id, {"code": code})
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result["verified"] is True and done.result["verifiedAt"]


async def test_wrong_code_is_not_verified(make_engine: EngineFactory) -> None:
    engine = await make_engine(verify_user)
    ex = await settled(engine, (await engine.run(
        "verify-user", {"userId": "u", "email": "u@example.com"})).id)
    await engine.resume(ex.id, {"code": "nope"})
    assert (await settled(engine, ex.id)).result == {"verified": False, "verifiedAt": None}


class _Hold(BaseModel):
    order: str


def _suspends_with(ctx: StepContext) -> None:
    ctx.suspend("hold", ctx.data["suspend_with"])


@pytest.mark.parametrize(("data", "why"), [
    ({"wrong": 1}, "order\n  Field required"),  # `order` is missing
    ({"order": 42}, "order\n  Input should be a valid string"),  # `order` has the wrong type
    ({"order": 42, "extra": True}, "order\n  Input should be a valid string"),
    (None, "Input should be an object"),
], ids=["missing", "wrong-type", "wrong-type-and-extra", "null"])
async def test_suspend_data_is_checked_against_the_schema(
        make_engine: EngineFactory, data: object, why: str) -> None:
    wf = Chain("bad-suspend").then("hold", _suspends_with, suspend=_Hold).build()
    engine = await make_engine(wf)
    done = await settled(engine, (await engine.run("bad-suspend", {"suspend_with": data})).id)
    assert done.status is Status.FAILED, done
    assert done.error is not None and done.error.type == "InvalidSuspendData"
    assert done.error.node == "hold"
    assert "suspend data of step 'hold'" in done.error.message
    assert why in done.error.message, done.error.message
    assert done.suspension is None


async def test_suspend_data_that_matches_the_schema_suspends(make_engine: EngineFactory) -> None:
    """The other side of the test above: the same step suspends with data that fits."""
    wf = Chain("bad-suspend").then("hold", _suspends_with, suspend=_Hold).build()
    engine = await make_engine(wf)
    done = await settled(engine, (await engine.run("bad-suspend",
                                                   {"suspend_with": {"order": "o-1"}})).id)
    assert done.status is Status.SUSPENDED and done.error is None
    assert done.suspension is not None and done.suspension.data == {"order": "o-1"}


async def test_invalid_resume_data_is_refused_and_nothing_changes(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(document_approval)
    ex = await settled(engine, (await engine.run(
        "document-approval", {"documentId": "d1", "authorId": "a1"})).id)
    assert ex.status is Status.SUSPENDED
    with pytest.raises(InvalidResumeData) as err:
        await engine.resume(ex.id, {"approved": "maybe"})
    fields = {v.field for v in err.value.violations}
    assert fields == {"data.approved", "data.reviewerId"}
    after = await engine.get(ex.id)
    assert (after.version, after.last_sequence, after.status) == (
        ex.version, ex.last_sequence, Status.SUSPENDED)
    await engine.resume(ex.id, {"approved": True, "reviewerId": "mgr-123",
                                "comments": "Looks good"})
    done = await settled(engine, ex.id)
    assert done.result == {"status": "approved", "reviewedBy": "mgr-123"}


async def test_invalid_input_is_refused(make_engine: EngineFactory) -> None:
    engine = await make_engine(verify_user)
    from tarry.engine import InvalidInput

    with pytest.raises(InvalidInput) as err:
        await engine.run("verify-user", {"userId": 5, "email": "not-an-email"})
    assert {v.field for v in err.value.violations} == {"input.userId", "input.email"}
    assert (await engine.list())[0] == []


async def test_step_level_resume_schemas(make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_approval)
    ex = await settled(engine, (await engine.run("multi-approval", {"amount": 5000})).id)
    assert ex.suspension is not None and ex.suspension.reason == "Needs manager approval"
    with pytest.raises(InvalidResumeData):  # finance's schema is not the manager's
        await engine.resume(ex.id, {"approved": True, "financeId": "f", "budgetCode": "b"})
    await engine.resume(ex.id, {"approved": True, "managerId": "m-1"})
    mid = await settled(engine, ex.id)
    assert mid.suspension is not None and mid.suspension.reason == "Needs finance approval"
    with pytest.raises(InvalidResumeData) as err:
        await engine.resume(ex.id, {"approved": True, "managerId": "m-1"})
    assert {v.field for v in err.value.violations} == {"data.financeId", "data.budgetCode"}
    await engine.resume(ex.id, {"approved": True, "financeId": "f-9", "budgetCode": "B-7"})
    done = await settled(engine, ex.id)
    assert done.result == {"amount": 5000, "managerApproved": True, "financeApproved": True,
                           "budgetCode": "B-7"}


async def test_small_amount_skips_finance(make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_approval)
    ex = await settled(engine, (await engine.run("multi-approval", {"amount": 500})).id)
    await engine.resume(ex.id, {"approved": False, "managerId": "m-1"})
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result == {"amount": 500, "managerApproved": False}


async def test_resume_from_a_later_step(make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_review)
    ex = await settled(engine, (await engine.run("multi-review", {"docId": "doc-456"})).id)
    assert ex.suspension is not None and ex.suspension.node == "step-1-legal"
    await engine.resume(ex.id, {"approved": True}, from_step="step-2-finance")
    done = await settled(engine, ex.id)
    assert done.id == ex.id and done.status is Status.COMPLETED
    assert done.result == {"approved": False}  # legal never ran
    events = await all_events(engine, ex.id)
    assert len(started(events, "step-1-legal")) == 1
    assert len(started(events, "step-2-finance")) == 1


async def test_resume_from_an_earlier_step_keeps_the_data(make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_review)
    ex = await settled(engine, (await engine.run("multi-review", {"docId": "doc-123"})).id)
    await engine.resume(ex.id, {"approved": True})  # resumes step-1-legal
    mid = await settled(engine, ex.id)
    assert mid.suspension is not None and mid.suspension.node == "step-2-finance"
    await engine.resume(ex.id, {"approved": False}, from_step="step-1-legal")
    again = await settled(engine, ex.id)
    assert again.suspension is not None and again.suspension.node == "step-2-finance"
    await engine.resume(ex.id, {"approved": True})
    done = await settled(engine, ex.id)
    assert done.result == {"approved": False}
    # Run, the Resume, and the from_step Resume.
    assert len(started(await all_events(engine, ex.id), "step-1-legal")) == 3


async def test_from_step_must_be_a_step(make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_review)
    ex = await settled(engine, (await engine.run("multi-review", {"docId": "d"})).id)
    with pytest.raises(InvalidArgument) as err:
        await engine.resume(ex.id, {"approved": True}, from_step="no-such-step")
    assert err.value.violations[0].field == "from_step"


def _two_steps(gate: asyncio.Event) -> Chain:
    async def slow(ctx: StepContext) -> dict[str, str]:
        await gate.wait()
        return {"first": "done"}

    return (Chain("two-steps")
            .then("slow", slow)
            .then("next", lambda ctx: {**ctx.data, "second": "done"}))


async def test_suspend_while_running_takes_effect_at_the_boundary(
        make_engine: EngineFactory) -> None:
    gate = asyncio.Event()
    engine = await make_engine(_two_steps(gate).build())
    ex = await engine.run("two-steps")
    asked = await engine.suspend(ex.id, "User clicked pause")
    assert asked.status is Status.RUNNING and asked.suspend_requested == "User clicked pause"
    gate.set()
    paused = await settled(engine, ex.id)
    assert paused.status is Status.SUSPENDED
    assert paused.suspension is not None and paused.suspension.reason == "User clicked pause"
    assert paused.suspension.by == "request"
    events = await all_events(engine, ex.id)
    assert [e.data["node"] for e in events if e.type == "node_finished"] == ["slow"]
    assert started(events, "next") == []

    await engine.resume(ex.id)
    done = await settled(engine, ex.id)
    assert done.result == {"first": "done", "second": "done"}
    assert len(started(await all_events(engine, ex.id), "slow")) == 1


async def test_step_can_stop_sooner_and_keep_progress(make_engine: EngineFactory) -> None:
    items = Items()  # the step takes each item only when the test hands it out
    engine = await make_engine(items_workflow(items.step))
    ex = await engine.run("items", {"items": 10})
    items.give(3)
    await items.waiting_after(3)  # three done, before the fourth: the step waits for it
    asked = await engine.suspend(ex.id, "User clicked pause")
    assert asked.status is Status.RUNNING and asked.suspend_requested == "User clicked pause"
    await items.hears_suspend_request()
    items.give(1)  # the fourth is done; the step checks again before the fifth and stops
    paused = await settled(engine, ex.id)
    assert paused.status is Status.SUSPENDED
    assert paused.suspension is not None and paused.suspension.reason == "User clicked pause"
    assert paused.suspension.by == "step" and paused.suspension.node == "process-items"
    assert paused.suspension.data == {"processed": 4}
    assert items.checked == [0, 1, 2, 3, 4] and items.outcomes == ["SuspendSignal"]
    items.give(6)
    await engine.resume(ex.id)
    done = await settled(engine, ex.id)
    assert done.result == {"processed": 10, "from": 4, "pid": os.getpid()}
    assert items.checked == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]  # it kept its progress
    assert items.contexts[1].suspend_data == {"processed": 4}


async def test_awaiting_suspends_at_once_and_timers_wait_for_resume(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(delayed_notification)
    ex = await settled(engine, (await engine.run("delayed-notification",
                                                 {"delay_seconds": 0.2})).id)
    paused = await engine.suspend(ex.id, "hold everything")
    assert paused.status is Status.SUSPENDED
    await asyncio.sleep(0.5)  # the timer falls due while suspended: it must not fire
    still = await engine.get(ex.id)
    assert still.status is Status.SUSPENDED
    assert started(await all_events(engine, ex.id), "send") == []
    await engine.resume(ex.id)
    done = await until(engine, ex.id, Status.COMPLETED)
    assert done.result == "Notification sent"


async def test_suspended_while_awaiting_wait_node(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    await engine.suspend(ex.id, "pause")
    await engine.resume(ex.id)  # continue where it stopped: AWAITING again
    back = await settled(engine, ex.id)
    assert back.status is Status.AWAITING
    assert sorted(w.node for w in back.waiting) == ["legal-review", "technical-review"]


async def test_resume_errors(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review, delayed_notification)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    with pytest.raises(InvalidArgument) as err:  # two nodes wait: which one?
        await engine.resume(ex.id, {"approved": True})
    assert "legal-review" in err.value.message and err.value.violations[0].field == "node_id"
    with pytest.raises(NodeNotWaiting):
        await engine.resume(ex.id, {"approved": True}, node="finalize")
    sleeper = await settled(engine, (await engine.run("delayed-notification")).id)
    with pytest.raises(WrongState):  # only a timer: nothing to resume by hand
        await engine.resume(sleeper.id, {})
    await engine.resume(ex.id, {"approved": True}, node="legal-review")
    await engine.resume(ex.id, {"approved": True}, node="technical-review")
    await settled(engine, ex.id)
    with pytest.raises(WrongState):
        await engine.resume(ex.id, {})
    with pytest.raises(WrongState):
        await engine.suspend(ex.id, "too late")


async def test_suspend_of_a_suspended_execution_changes_nothing(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(multi_review)
    ex = await settled(engine, (await engine.run("multi-review", {"docId": "d"})).id)
    again = await engine.suspend(ex.id, "other reason")
    assert again.suspension == ex.suspension and again.version == ex.version


async def test_graph_suspend_inside_a_flow(make_engine: EngineFactory) -> None:
    def ask(ctx: StepContext) -> str:
        if ctx.resume_data is None:
            ctx.suspend("need a name", {"asked": True})
        assert ctx.suspend_data == {"asked": True}
        return f"hello {ctx.resume_data['name']}"

    wf = Flow("greet").step("ask", ask).build()
    engine = await make_engine(wf)
    ex = await settled(engine, (await engine.run("greet")).id)
    await engine.resume(ex.id, {"name": "Ada"})
    assert (await settled(engine, ex.id)).result == "hello Ada"
