"""Every seed example, end to end through the gRPC API (generated stubs, loopback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tests.integration.api.support import (
    TIMEOUT,
    S,
    events,
    fails,
    finished,
    get,
    js,
    reach,
    resume,
    run,
    started,
    statuses,
)
from tests.integration.api.workflows import HELD
from tests.integration.helpers import eventually

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

W = execution_pb2.WaitingKind
BY = execution_pb2.SuspensionSource


async def test_expense_approval_approved(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    assert ex.status == S.EXECUTION_STATUS_AWAITING
    assert [(p.node_id, p.kind) for p in ex.waiting_points] == [
        ("manager-approval", W.WAITING_KIND_WAIT)]
    assert not ex.waiting_points[0].HasField("wake_time")
    assert js(ex.state)["request"] == {"user": "Alice", "amount": 1500}

    done = await resume(stub, ex.id, {"approved": True})
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result) == "Expense approved and processed"
    assert js(done.state)["approval"] == {"approved": True}
    evs = await events(stub, ex.id)
    assert statuses(evs) == ["RUNNING", "AWAITING", "RUNNING", "COMPLETED"]
    assert [e.sequence for e in evs] == list(range(1, len(evs) + 1))
    assert done.last_sequence == evs[-1].sequence
    assert done.create_time.ToMilliseconds() <= done.update_time.ToMilliseconds()


async def test_expense_approval_rejected(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    done = await resume(stub, ex.id, {"approved": False})
    assert js(done.result) == "Expense rejected"


async def test_parallel_review_joins_both_reviews(stub: Stub) -> None:
    ex = await run(stub, "parallel-review")
    assert sorted(p.node_id for p in ex.waiting_points) == ["legal-review", "technical-review"]
    half = await resume(stub, ex.id, {"approved": True}, node_id="technical-review")
    assert half.status == S.EXECUTION_STATUS_AWAITING
    assert [p.node_id for p in half.waiting_points] == ["legal-review"]
    done = await resume(stub, ex.id, {"approved": True}, node_id="legal-review")
    assert done.status == S.EXECUTION_STATUS_COMPLETED and js(done.result) == "Approved"
    assert js(done.state)["reviews"] == {"technical": {"approved": True},
                                         "legal": {"approved": True}}
    assert started(await events(stub, ex.id), "finalize") == 1


async def test_conditional_workflow_takes_the_chosen_path(stub: Stub) -> None:
    ex = await run(stub, "conditional-workflow")
    point = ex.waiting_points[0]
    assert point.node_id == "decision-point"
    assert list(point.actions) == ["choose-a", "choose-b", "choose-c"]
    done = await resume(stub, ex.id, {"why": "b is best"}, action="choose-b")
    assert js(done.result) == "Executed path B"
    evs = await events(stub, ex.id)
    assert started(evs, "path-b") == 1
    assert started(evs, "path-a") == started(evs, "path-c") == 0
    finished_decision = [e for e in evs if e.type == "node_finished"
                         and e.node_id == "decision-point"]
    assert [js(e.data)["action"] for e in finished_decision] == ["choose-b"]


async def test_delayed_notification_sleeps_then_sends(stub: Stub) -> None:
    ex = await run(stub, "delayed-notification", {"delay_seconds": 0.2})
    assert ex.status == S.EXECUTION_STATUS_AWAITING
    point = ex.waiting_points[0]
    assert (point.node_id, point.kind) == ("delay", W.WAITING_KIND_SLEEP)
    wake = point.wake_time.ToMilliseconds()
    assert 0 < wake - ex.create_time.ToMilliseconds() <= 5_000
    done = await finished(stub, ex.id)
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result) == "Notification sent"
    waiting = [e for e in await events(stub, ex.id) if e.type == "node_waiting"]
    assert js(waiting[0].data)["kind"] == "sleep"


async def test_retry_with_backoff_loops_until_success(stub: Stub) -> None:
    ex = await run(stub, "retry-with-backoff", {"fail_times": 2, "backoff_seconds": 0.05})
    done = await finished(stub, ex.id)
    assert done.status == S.EXECUTION_STATUS_COMPLETED and js(done.result) == "Success"
    assert js(done.state)["attempts"] == 3
    evs = await events(stub, ex.id)
    assert started(evs, "attempt") == 3
    assert sum(1 for e in evs if e.type == "node_waiting" and e.node_id == "backoff") == 2


async def test_escalation_workflow(stub: Stub) -> None:
    ex = await run(stub, "escalation-workflow", {"escalate_after_seconds": 0.1})
    assert [p.node_id for p in ex.waiting_points] == ["initial-response"]
    assert list(ex.waiting_points[0].actions) == ["pending"]
    await resume(stub, ex.id, {"note": "still open"}, action="pending")
    done = await finished(stub, ex.id)
    assert js(done.result) == "Ticket escalated to manager"


async def test_simple_approval(stub: Stub) -> None:
    ex = await run(stub, "simple-approval", {"item": "New laptop"})
    assert ex.status == S.EXECUTION_STATUS_SUSPENDED
    sus = ex.suspension
    assert sus.reason == "Waiting for approval" and sus.by == BY.SUSPENSION_SOURCE_STEP
    assert sus.node_id == "wait-for-approval" and sus.suspend_time.ToMilliseconds() > 0
    assert js(sus.resume_schema)["properties"]["approved"]["type"] == "boolean"
    done = await resume(stub, ex.id, {"approved": True})
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result) == {"approved": True}
    assert not done.HasField("suspension")


async def test_document_approval(stub: Stub) -> None:
    ex = await run(stub, "document-approval", {"documentId": "doc-1", "authorId": "a-1"})
    assert ex.suspension.reason == "Document needs review"
    done = await resume(stub, ex.id, {"approved": True, "reviewerId": "r-9"})
    assert js(done.result) == {"status": "approved", "reviewedBy": "r-9"}


async def test_multi_approval_step_level_schemas(stub: Stub) -> None:
    ex = await run(stub, "multi-approval", {"amount": 5000})
    assert ex.suspension.node_id == "manager-approval"
    assert "managerId" in js(ex.suspension.resume_schema)["properties"]
    mid = await resume(stub, ex.id, {"approved": True, "managerId": "m-1"})
    assert mid.status == S.EXECUTION_STATUS_SUSPENDED
    assert mid.suspension.node_id == "finance-approval"
    assert mid.suspension.reason == "Needs finance approval"
    assert "budgetCode" in js(mid.suspension.resume_schema)["properties"]
    done = await resume(stub, ex.id,
                        {"approved": True, "financeId": "f-1", "budgetCode": "B-42"})
    assert js(done.result) == {"amount": 5000, "managerApproved": True,
                               "financeApproved": True, "budgetCode": "B-42"}


async def test_verify_user_reads_the_code_from_the_suspension(stub: Stub) -> None:
    ex = await run(stub, "verify-user", {"userId": "user-123", "email": "user@example.com"})
    assert ex.status == S.EXECUTION_STATUS_SUSPENDED
    saved = js(ex.suspension.data)
    assert set(saved) == {"verificationCode", "expiresAt"}
    assert js(ex.state)["outbox"][0]["text"] == f"Your code: {saved['verificationCode']}"
    done = await resume(stub, ex.id, {"code": saved["verificationCode"]})
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result)["verified"] is True


async def test_multi_review_resume_from_an_earlier_step(stub: Stub) -> None:
    ex = await run(stub, "multi-review", {"docId": "d-1"})
    assert ex.suspension.node_id == "step-1-legal"
    mid = await resume(stub, ex.id, {"approved": True})
    assert mid.suspension.node_id == "step-2-finance"
    again = await resume(stub, ex.id, {"approved": False}, from_step="step-1-legal")
    assert again.suspension.node_id == "step-2-finance"  # legal re-ran, finance asks again
    done = await resume(stub, ex.id, {"approved": True})
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result) == {"approved": False}
    assert started(await events(stub, ex.id), "step-1-legal") == 3


async def test_long_process_suspended_from_outside_then_resumed(stub: Stub) -> None:
    req = pb.RunRequest(workflow="long-process")
    req.input.struct_value.update({"items": 40, "seconds_per_item": 0.02})
    ex = (await stub.Run(req, timeout=TIMEOUT)).execution
    asked = (await stub.Suspend(pb.SuspendRequest(execution_id=ex.id, reason="maintenance"),
                                timeout=TIMEOUT)).execution
    # Either still RUNNING with the request pending, or already stopped.
    if asked.status == S.EXECUTION_STATUS_RUNNING:
        assert asked.suspend_requested.reason == "maintenance"
    paused = await reach(stub, ex.id, S.EXECUTION_STATUS_SUSPENDED)
    assert paused.suspension.reason == "maintenance"
    assert not paused.HasField("suspend_requested")
    done = await resume(stub, ex.id)
    assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert js(done.result) == {"processed": 40}
    assert "SUSPENDED" in statuses(await events(stub, ex.id))


async def test_cancel_keeps_the_reason_and_refuses_later_requests(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    res = await stub.Cancel(pb.CancelRequest(execution_id=ex.id, reason="no longer needed"),
                            timeout=TIMEOUT)
    done = res.execution
    assert done.status == S.EXECUTION_STATUS_CANCELLED
    assert done.cancellation.reason == "no longer needed"
    assert done.cancellation.cancel_time.ToMilliseconds() > 0
    assert not done.waiting_points
    last = (await events(stub, ex.id))[-1]
    assert last.status == S.EXECUTION_STATUS_CANCELLED
    assert js(last.data)["reason"] == "no longer needed"
    await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id), timeout=TIMEOUT),
                grpc.StatusCode.FAILED_PRECONDITION)
    await fails(stub.Suspend(pb.SuspendRequest(execution_id=ex.id), timeout=TIMEOUT),
                grpc.StatusCode.FAILED_PRECONDITION)


async def test_a_running_step_is_cancelled(stub: Stub) -> None:
    ex = (await stub.Run(pb.RunRequest(workflow="api-held"), timeout=TIMEOUT)).execution
    assert ex.status == S.EXECUTION_STATUS_RUNNING
    await eventually(lambda: HELD.get(ex.id) == ["started"], "the step to start")
    res = await stub.Cancel(pb.CancelRequest(execution_id=ex.id, reason="stop"),
                            timeout=TIMEOUT)
    assert res.execution.status == S.EXECUTION_STATUS_CANCELLED
    # The step's coroutine itself was cancelled (it would run for 30 s otherwise).
    await eventually(lambda: HELD[ex.id] != ["started"], "the step to stop")
    assert HELD[ex.id] == ["started", "cancelled"]
    after = await get(stub, ex.id)
    assert after.status == S.EXECUTION_STATUS_CANCELLED and not after.running_node_ids
    evs = await events(stub, ex.id)
    assert [e.node_id for e in evs if e.type == "node_cancelled"] == ["hold"]
    assert not [e for e in evs if e.type == "node_finished"]


async def test_auto_approve_and_order_approval(stub: Stub) -> None:
    small = await run(stub, "auto-approve", {"amount": 50})
    assert js(small.result) == {"approved": True}
    order = await run(stub, "order-approval", {"orderId": "o-7", "amount": 99.5})
    assert js(order.suspension.data) == {"orderId": "o-7"}
    done = await resume(stub, order.id, {"approved": True, "approvedBy": "boss"})
    assert js(done.result) == {"approved": True, "processedBy": "boss"}


async def test_a_failing_step_fails_the_execution_after_its_retries(stub: Stub) -> None:
    ex = await finished(stub, (await run(stub, "api-boom")).id)
    assert ex.status == S.EXECUTION_STATUS_FAILED
    assert (ex.error.type, ex.error.node_id, ex.error.attempt) == ("Kaput", "explode", 2)
    assert ex.error.message == "kaput on attempt 2"
    assert not ex.HasField("result")
    failed = [e for e in await events(stub, ex.id) if e.type == "node_failed"]
    assert [e.attempt for e in failed] == [1, 2]
