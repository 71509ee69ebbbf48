"""Behaviours 1-4: one id for life, action routing, joins, wait data as output and state."""

from __future__ import annotations

import pytest

from examples.pausing import conditional_workflow, expense_approval, parallel_review
from tarry import Flow, Output, StepContext
from tarry.engine import Status, WrongState
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started, statuses, until


async def test_one_execution_id_across_every_resume(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    a = await engine.resume(ex.id, {"approved": True, "comments": "Looks good"},
                            node="technical-review")
    b = await engine.resume(ex.id, {"approved": True, "comments": "Approved"},
                            node="legal-review")
    done = await settled(engine, ex.id)
    assert ex.id == a.id == b.id == done.id
    assert (await engine.list(workflow="parallel-review"))[0][0].id == ex.id


async def test_action_follows_only_its_edges(make_engine: EngineFactory) -> None:
    engine = await make_engine(conditional_workflow)
    ex = await settled(engine, (await engine.run("conditional-workflow")).id)
    assert ex.status is Status.AWAITING
    await engine.resume(ex.id, {"reason": "User preference"}, action="choose-b")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result == "Executed path B"
    events = await all_events(engine, ex.id)
    assert len(started(events, "path-b")) == 1
    assert started(events, "path-a") == started(events, "path-c") == []


def _router() -> Flow:
    return (
        Flow("router")
        .wait("ask")
        .step("labelled", lambda ctx: "labelled")
        .step("default", lambda ctx: "default")
        .edge("ask", "labelled", action="special")
        .edge("ask", "default")
    )


async def test_unlabelled_edges_are_the_default(make_engine: EngineFactory) -> None:
    engine = await make_engine(_router().build())
    one = await settled(engine, (await engine.run("router")).id)
    await engine.resume(one.id, {}, action="something-else")
    assert (await settled(engine, one.id)).result == "default"
    two = await settled(engine, (await engine.run("router")).id)
    await engine.resume(two.id, {}, action="special")
    assert (await settled(engine, two.id)).result == "labelled"
    await engine.resume((three := await engine.run("router")).id, {})
    assert (await settled(engine, three.id)).result == "default"


async def test_join_waits_for_both_waits_and_runs_once(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    assert ex.status is Status.AWAITING
    assert sorted(w.node for w in ex.waiting) == ["legal-review", "technical-review"]

    await engine.resume(ex.id, {"approved": True, "comments": "Looks good"},
                        node="technical-review")
    mid = await settled(engine, ex.id)
    assert mid.status is Status.AWAITING
    assert [w.node for w in mid.waiting] == ["legal-review"]
    assert started(await all_events(engine, ex.id), "finalize") == []

    await engine.resume(ex.id, {"approved": True, "comments": "Approved"}, node="legal-review")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result == "Approved"
    assert done.state["reviews"] == {
        "technical": {"approved": True, "comments": "Looks good"},
        "legal": {"approved": True, "comments": "Approved"},
    }
    assert len(started(await all_events(engine, ex.id), "finalize")) == 1


async def test_join_rejects_when_one_review_rejects(make_engine: EngineFactory) -> None:
    engine = await make_engine(parallel_review)
    ex = await settled(engine, (await engine.run("parallel-review")).id)
    await engine.resume(ex.id, {"approved": False, "comments": "No"}, node="legal-review")
    await engine.resume(ex.id, {"approved": True, "comments": "Ok"}, node="technical-review")
    assert (await settled(engine, ex.id)).result == "Rejected"


def _join_after_choice() -> Flow:
    def seen(ctx: StepContext) -> object:
        return {"join_input": ctx.node_input}

    return (
        Flow("join-after-choice")
        .wait("decide")
        .step("a", lambda ctx: "from a")
        .step("b", lambda ctx: "from b")
        .step("join", seen)
        .edge("decide", "a", action="a")
        .edge("decide", "b", action="b")
        .edge("a", "join")
        .edge("b", "join")
    )


async def test_branch_not_taken_does_not_block_a_join(make_engine: EngineFactory) -> None:
    engine = await make_engine(_join_after_choice().build())
    ex = await settled(engine, (await engine.run("join-after-choice")).id)
    await engine.resume(ex.id, {}, action="a")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result == {"join_input": {"a": "from a"}}
    events = await all_events(engine, ex.id)
    assert len(started(events, "join")) == 1
    assert started(events, "b") == []


async def test_any_join_runs_on_the_first_arrival_only(make_engine: EngineFactory) -> None:
    wf = (
        Flow("any-join")
        .step("fan", lambda ctx: "go")
        .wait("fast")
        .wait("slow")
        .step("first", lambda ctx: ctx.node_input, join="any")
        .edge("fan", "fast").edge("fan", "slow")
        .edge("fast", "first").edge("slow", "first")
        .build()
    )
    engine = await make_engine(wf)
    ex = await settled(engine, (await engine.run("any-join")).id)
    await engine.resume(ex.id, "f", node="fast")
    done = await settled(engine, ex.id)
    # `first` ran once, and the branch that lost the race was dropped with it.
    assert done.status is Status.COMPLETED and done.result == {"fast": "f"}
    assert done.waiting == ()
    events = await all_events(engine, ex.id)
    assert len(started(events, "first")) == 1
    assert [e.data for e in events if e.type == "node_cancelled"] == [
        {"node": "slow", "by": "first"}]
    with pytest.raises(WrongState):
        await engine.resume(ex.id, "s", node="slow")


async def test_any_join_reply_or_time_out_drops_the_timer(make_engine: EngineFactory) -> None:
    wf = (
        Flow("reply-or-timeout")
        .step("ask", lambda ctx: "asked")
        .wait("reply")
        .sleep("timeout", 0.3)
        .step("decide", lambda ctx: sorted(ctx.node_input), join="any")
        .edge("ask", "reply").edge("ask", "timeout")
        .edge("reply", "decide").edge("timeout", "decide")
        .build()
    )
    engine = await make_engine(wf)
    replied = await settled(engine, (await engine.run("reply-or-timeout")).id)
    await engine.resume(replied.id, {"ok": True})
    done = await settled(engine, replied.id)
    assert done.status is Status.COMPLETED and done.result == ["reply"]
    # No timer is left behind for the dropped sleep.
    assert await engine.store.due_timers(2**62, 10) == ([], None)

    timed_out = await settled(engine, (await engine.run("reply-or-timeout")).id)
    done = await until(engine, timed_out.id, Status.COMPLETED)
    assert done.result == ["timeout"]  # the wait was dropped: nothing is left AWAITING
    with pytest.raises(WrongState):
        await engine.resume(timed_out.id, {"late": True})


async def test_wait_data_is_output_and_state(make_engine: EngineFactory) -> None:
    wf = (
        Flow("wait-data")
        .wait("w1")
        .wait("w2", key="answer")
        .step("end", lambda ctx: {"input": ctx.node_input, "w1": ctx.get("w1"),
                                   "answer": ctx.get("answer")})
        .edge("w1", "w2").edge("w2", "end")
        .build()
    )
    engine = await make_engine(wf)
    ex = await engine.run("wait-data")
    await engine.resume(ex.id, {"x": 1})
    await engine.resume(ex.id, {"y": 2})
    done = await settled(engine, ex.id)
    assert done.result == {"input": {"y": 2}, "w1": {"x": 1}, "answer": {"y": 2}}


async def test_expense_example_ends_approved(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await settled(engine, (await engine.run("expense-approval")).id)
    assert ex.status is Status.AWAITING
    assert ex.state["request"] == {"user": "Alice", "amount": 1500}
    await engine.resume(ex.id, {"approved": True, "reviewer": "Bob"}, action="approved",
                        node="manager-approval")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED
    assert done.result == "Expense approved and processed"
    assert done.state["approval"] == {"approved": True, "reviewer": "Bob"}
    assert statuses(await all_events(engine, ex.id)) == [
        "RUNNING", "AWAITING", "RUNNING", "COMPLETED"]


async def test_expense_example_rejected(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await settled(engine, (await engine.run("expense-approval")).id)
    await engine.resume(ex.id, {"approved": False, "reviewer": "Bob"})
    assert (await settled(engine, ex.id)).result == "Expense rejected"


async def test_output_action_from_a_step(make_engine: EngineFactory) -> None:
    wf = (
        Flow("step-action")
        .step("check", lambda ctx: Output(ctx.input["n"], action="big" if ctx.input["n"] > 9
                                          else "small"))
        .step("big", lambda ctx: f"big {ctx.node_input}")
        .step("small", lambda ctx: f"small {ctx.node_input}")
        .edge("check", "big", action="big").edge("check", "small", action="small")
        .build()
    )
    engine = await make_engine(wf)
    assert (await settled(engine, (await engine.run("step-action", {"n": 12})).id)).result \
        == "big 12"
    assert (await settled(engine, (await engine.run("step-action", {"n": 3})).id)).result \
        == "small 3"
