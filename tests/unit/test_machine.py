"""The state machine on its own: transitions over a document, no I/O."""

from __future__ import annotations

from tarry import Flow
from tarry.engine import Status, Workflow
from tarry.engine._machine import Txn
from tarry.engine._model import Doc


def _noop(ctx: object) -> None:
    return None


def _start(wf: Workflow, data: object = None) -> tuple[Txn, Status]:
    t = Txn(wf, Doc("x", wf.name, wf.version, data, 0, 0), Status.RUNNING, 1000)
    t.start()
    return t, t.settle()


def test_start_runs_start_steps() -> None:
    wf = Flow("f").step("a", _noop).build()
    t, status = _start(wf, {"k": 1})
    assert status is Status.RUNNING
    assert t.doc.running["a"].input == {"k": 1}
    assert [e[0] for e in t.events] == ["status", "node_started"]


def test_wait_start_is_awaiting() -> None:
    wf = Flow("f").wait("w").build()
    t, status = _start(wf)
    assert status is Status.AWAITING
    assert [e[1].get("status") for e in t.events if e[0] == "status"] == ["RUNNING", "AWAITING"]


def test_join_waits_for_live_predecessors_only() -> None:
    wf = (Flow("j").wait("w1").wait("w2").step("j", _noop)
          .edge("w1", "j").edge("w2", "j").build())
    t, _ = _start(wf)
    t.wait_resumed("w1", "one", None)
    assert "j" not in t.doc.running and t.doc.arrivals == {"j": {"w1": "one"}}
    t.wait_resumed("w2", "two", None)
    assert t.doc.running["j"].input == {"w1": "one", "w2": "two"}
    assert t.doc.arrivals == {}


def test_join_after_a_dead_branch_fires() -> None:
    wf = (Flow("j").wait("d").step("a", _noop).step("b", _noop).step("j", _noop)
          .edge("d", "a", action="a").edge("d", "b", action="b")
          .edge("a", "j").edge("b", "j").build())
    t, _ = _start(wf)
    t.wait_resumed("d", None, "a")
    t.step_done("a", "A", None, {})
    assert t.doc.running["j"].input == {"a": "A"}


def test_sleep_wake_time_and_firing() -> None:
    wf = Flow("s").sleep("z", 2.5).step("after", _noop).edge("z", "after").build()
    t, status = _start(wf, "in")
    assert status is Status.AWAITING
    # `now` (1000) is rounded down: the wake time is a millisecond on, never early.
    assert t.doc.waits["z"].wake_at == 3501
    assert t.due() == []
    t.now = 3501
    assert [w.node for w in t.due()] == ["z"]
    t.sleep_fired("z")
    assert t.doc.running["after"].input == "in"


def test_suspension_holds_next_steps_until_resume() -> None:
    wf = Flow("p").step("a", _noop).step("b", _noop).edge("a", "b").build()
    t, _ = _start(wf)
    t.request_suspension("pause")
    t.step_done("a", "out", None, {})
    assert t.settle() is Status.SUSPENDED
    assert [a.node for a in t.doc.ready] == ["b"] and t.doc.running == {}
    t.unsuspend()
    assert t.settle() is Status.RUNNING and "b" in t.doc.running


def test_completion_sets_the_result_from_the_last_node() -> None:
    wf = Flow("c").step("a", _noop).build()
    t, _ = _start(wf)
    t.step_done("a", {"r": 1}, None, {"k": "v"})
    assert t.settle() is Status.COMPLETED
    assert t.doc.result == {"r": 1} and t.doc.state == {"k": "v"}


def test_doc_round_trips_through_json() -> None:
    wf = Flow("j").wait("w1").sleep("s", 1).build()
    t, _ = _start(wf, {"a": [1, 2]})
    again = Doc.loads(t.doc.dumps())
    assert again == t.doc
