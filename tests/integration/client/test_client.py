"""The blocking `Client` against a real server: the 5-minute tour, suspend / resume / cancel,
typed errors, idempotency and the read RPCs."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from tarry_client import (
    AlreadyExists,
    Client,
    Event,
    Execution,
    ExecutionNotFound,
    InvalidArgument,
    InvalidInput,
    InvalidResumeData,
    NodeKind,
    Status,
    SuspensionSource,
    WaitingKind,
    WorkflowNotFound,
    WrongState,
)

from .conftest import TarryServer

USER = {"userId": "u1", "email": "alice@example.com"}


def until(client: Client, execution_id: str, status: Status) -> Execution:
    """Follow the execution until it reaches `status` (leaving the watch early)."""
    for item in client.watch(execution_id):
        if item.status is status:
            break
    else:
        pytest.fail(f"{execution_id} ended without reaching {status}")
    return client.get(execution_id)


def test_tour_expense_approval(client: Client) -> None:
    ex = client.run("expense-approval", wait=True)
    assert ex.status is Status.AWAITING
    assert [(w.node_id, w.kind) for w in ex.waiting_points] == [
        ("manager-approval", WaitingKind.WAIT)]
    assert ex.state["request"] == {"user": "Alice", "amount": 1500}
    assert ex.create_time.tzinfo is not None
    assert abs((datetime.now(UTC) - ex.create_time).total_seconds()) < 60

    items = client.watch(ex.id)
    snapshot = next(items)
    assert isinstance(snapshot, Execution) and snapshot.status is Status.AWAITING
    resumed = client.resume(ex.id, {"approved": True}, action="approve")
    assert resumed.status in (Status.RUNNING, Status.COMPLETED)
    rest = list(items)

    assert all(isinstance(e, Event) for e in rest)
    assert [e.sequence for e in rest] == list(range(snapshot.sequence + 1,
                                                    snapshot.sequence + 1 + len(rest)))
    last = rest[-1]
    assert isinstance(last, Event) and last.terminal and last.status is Status.COMPLETED
    assert last.data == {"result": "Expense approved and processed"}
    assert ("node_finished", "manager-approval") in [(e.type, e.node_id) for e in rest
                                                       if isinstance(e, Event)]
    done = client.get(ex.id)
    assert done.status is Status.COMPLETED and done.terminal
    assert done.result == "Expense approved and processed"
    assert done.state["approval"] == {"approved": True}
    assert done.last_sequence == last.sequence


def test_verify_user_suspends_and_resumes_with_the_code(client: Client) -> None:
    ex = client.run("verify-user", USER, wait=True)
    assert ex.status is Status.SUSPENDED
    suspension = ex.suspension
    assert suspension is not None
    assert suspension.by is SuspensionSource.STEP
    assert suspension.node_id == "send-verification"
    assert suspension.reason == "Waiting for verification"
    assert suspension.resume_schema is not None and "code" in suspension.resume_schema["required"]
    code = suspension.data["verificationCode"]
    assert ex.state["outbox"] == [{"to": USER["email"], "text": f"Your code: {code}"}]

    done = client.resume(ex.id, {"code": code}, wait=True)
    assert done.status is Status.COMPLETED
    assert done.result["verified"] is True
    assert datetime.fromisoformat(done.result["verifiedAt"]).tzinfo is not None


def test_long_process_suspended_from_outside_then_resumed(client: Client) -> None:
    ex = client.run("long-process", {"items": 30, "seconds_per_item": 0.05})
    assert ex.status is Status.RUNNING
    asked = client.suspend(ex.id, "maintenance window")
    assert asked.status in (Status.RUNNING, Status.SUSPENDED)
    if asked.status is Status.RUNNING:
        assert asked.suspend_requested == "maintenance window"
    suspended = until(client, ex.id, Status.SUSPENDED)
    assert suspended.suspension is not None
    assert suspended.suspension.reason == "maintenance window"
    processed = (suspended.suspension.data or {}).get("processed", 0)
    assert 0 <= processed < 30
    assert client.suspend(ex.id, "again").status is Status.SUSPENDED  # already: unchanged

    done = client.resume(ex.id, wait=True)
    assert done.status is Status.COMPLETED
    assert done.result == {"processed": 30}


def test_cancel_with_a_reason(client: Client) -> None:
    ex = client.run("expense-approval", wait=True)
    cancelled = client.cancel(ex.id, "no longer needed")
    assert cancelled.status is Status.CANCELLED and cancelled.terminal
    assert cancelled.cancellation is not None
    assert cancelled.cancellation.reason == "no longer needed"
    assert cancelled.cancellation.cancel_time.tzinfo is not None
    assert client.cancel(ex.id, "twice").cancellation == cancelled.cancellation  # unchanged
    with pytest.raises(WrongState) as caught:
        client.resume(ex.id, {"approved": True})
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(WrongState):
        client.suspend(ex.id)
    events = client.events(ex.id).events
    assert events[-1].status is Status.CANCELLED
    assert events[-1].data is not None
    assert events[-1].data["reason"] == "no longer needed"
    assert events[-1].data["caller"]["peer"].startswith("ipv")  # who asked (the audit trail)


# -- typed errors -----------------------------------------------------------------------------

def test_not_found(client: Client) -> None:
    with pytest.raises(ExecutionNotFound) as caught:
        client.get("no-such-execution")
    err = caught.value
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "EXECUTION_NOT_FOUND"
    assert err.metadata["execution_id"] == "no-such-execution"
    assert "no-such-execution" in str(err)
    with pytest.raises(ExecutionNotFound):
        client.resume("no-such-execution", {})
    with pytest.raises(ExecutionNotFound):
        list(client.watch("no-such-execution"))
    with pytest.raises(WorkflowNotFound) as wf:
        client.run("no-such-workflow")
    assert wf.value.reason == "WORKFLOW_NOT_FOUND"
    with pytest.raises(WorkflowNotFound):
        client.describe("expense-approval", version="999")


def test_invalid_input_names_the_fields(client: Client) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.run("verify-user", {"userId": "u1", "email": "not-an-email"})
    assert caught.value.reason == "INVALID_INPUT"
    assert [v.field for v in caught.value.violations] == ["input.email"]


def test_invalid_resume_data_leaves_the_execution_as_it_was(client: Client) -> None:
    ex = client.run("verify-user", USER, wait=True)
    with pytest.raises(InvalidResumeData) as caught:
        client.resume(ex.id, {"wrong": "field"})
    err = caught.value
    assert isinstance(err, InvalidArgument)
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_RESUME_DATA"
    assert ("data.code", "Field required") in err.violations
    assert "data.code: Field required" in str(err)
    after = client.get(ex.id)
    assert after.status is Status.SUSPENDED and after.last_sequence == ex.last_sequence


def test_wrong_state(client: Client) -> None:
    ex = client.run("expense-approval", wait=True)
    client.resume(ex.id, {"approved": False}, wait=True)
    with pytest.raises(WrongState) as caught:
        client.resume(ex.id, {"approved": True})
    err = caught.value
    assert err.reason == "WRONG_STATE"
    assert err.metadata["status"] == "COMPLETED"
    assert [p.subject for p in err.preconditions] == [f"executions/{ex.id}"]


def test_execution_id_of_another_workflow_already_exists(client: Client) -> None:
    ex = client.run("expense-approval", execution_id="order-1", wait=True)
    assert ex.id == "order-1"
    assert client.run("expense-approval", execution_id="order-1").id == "order-1"
    with pytest.raises(AlreadyExists):
        client.run("conditional-workflow", execution_id="order-1")


# -- idempotency and reads --------------------------------------------------------------------

def test_request_ids_make_retries_idempotent(client: Client) -> None:
    first = client.run("expense-approval", request_id="req-1", wait=True)
    assert first.status is Status.AWAITING
    logged = client.events(first.id, page_size=1000).events
    again = client.run("expense-approval", request_id="req-1")
    assert again == first  # the same execution, unchanged: every field
    assert client.events(first.id, page_size=1000).events == logged
    assert client.run("expense-approval").id != client.run("expense-approval").id

    done = client.resume(first.id, {"approved": True}, request_id="resume-1", wait=True)
    assert done.status is Status.COMPLETED and done.state["approval"] == {"approved": True}
    logged = client.events(first.id, page_size=1000).events
    repeat = client.resume(first.id, {"approved": True}, request_id="resume-1", wait=True)
    assert repeat == done  # not WRONG_STATE: the first answer, every field
    assert client.events(first.id, page_size=1000).events == logged  # nothing applied again


def test_lists_pages_and_events(client: Client) -> None:
    ids = [client.run("conditional-workflow", wait=True).id for _ in range(3)]
    page = client.list_executions("conditional-workflow", page_size=2)
    assert len(page.executions) == 2 and page.next_page_token
    listed = [e.id for e in client.iter_executions("conditional-workflow", page_size=2)]
    assert listed == ids[::-1]  # newest first, every page
    awaiting = list(client.iter_executions(status=Status.AWAITING))
    assert {e.id for e in awaiting} >= set(ids)
    client.resume(ids[0], action="choose-b", wait=True)
    completed = client.list_executions("conditional-workflow", status="completed")
    assert [e.id for e in completed.executions] == [ids[0]]
    assert completed.executions[0].result == "Executed path B"

    first = client.events(ids[0], page_size=3)
    assert [e.sequence for e in first.events] == [1, 2, 3] and first.has_more
    rest = client.events(ids[0], first.next_after_sequence)
    assert rest.events[0].sequence == 4 and not rest.has_more
    assert rest.events[-1].status is Status.COMPLETED


def test_workflows_and_describe(client: Client) -> None:
    names = [w.name for w in client.workflows()]
    assert names == sorted(names)
    assert {"expense-approval", "verify-user", "long-process"} <= set(names)
    wf = client.describe("conditional-workflow")
    assert wf.start_node_ids == ("start",)
    assert wf.node("decision-point").kind is NodeKind.WAIT
    assert {e.action for e in wf.edges if e.source == "decision-point"} == {
        "choose-a", "choose-b", "choose-c"}
    verify = client.describe("verify-user")
    assert verify.input_schema is not None
    assert set(verify.input_schema["required"]) == {"userId", "email"}


def test_a_client_on_your_own_channel_leaves_it_open(server: TarryServer) -> None:
    channel = grpc.insecure_channel(server.target)
    with Client(channel) as c:
        ex = c.run("expense-approval", wait=True)
    with Client(channel) as again:  # still open after the first client closed
        assert again.get(ex.id).status is Status.AWAITING
    channel.close()


def test_watch_from_the_end_of_a_finished_execution_ends_at_once(client: Client) -> None:
    ex = client.run("expense-approval", wait=True)
    client.resume(ex.id, {"approved": True}, wait=True)
    done = client.get(ex.id)
    assert done.status is Status.COMPLETED
    assert list(client.watch(ex.id, after_sequence=done.last_sequence)) == []
