"""Every failure case of the contract: its gRPC code and its google.rpc details."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import grpc

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
    rich,
    run,
    started,
    stream_fails,
    value,
)

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def test_unknown_workflow_is_not_found(stub: Stub) -> None:
    err = await fails(stub.Run(pb.RunRequest(workflow="no-such-flow"), timeout=TIMEOUT),
                      grpc.StatusCode.NOT_FOUND)
    assert err.info.reason == "WORKFLOW_NOT_FOUND"
    assert err.info.metadata["workflow"] == "no-such-flow"
    assert "no-such-flow" in err.message
    err = await fails(stub.Run(pb.RunRequest(workflow="expense-approval", version="9"),
                               timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    assert err.info.metadata["version"] == "9"


async def test_bad_input_names_the_field(stub: Stub) -> None:
    req = pb.RunRequest(workflow="verify-user",
                        input=value({"userId": "u-1", "email": "not-an-email"}))
    err = await fails(stub.Run(req, timeout=TIMEOUT), INVALID)
    assert err.info.reason == "INVALID_INPUT"
    assert list(err.fields) == ["input.email"]
    assert "email" in err.fields["input.email"]
    missing = await fails(stub.Run(pb.RunRequest(workflow="verify-user"), timeout=TIMEOUT),
                          INVALID)
    assert set(missing.fields) == {"input.userId", "input.email"}


async def test_malformed_requests_are_invalid_arguments(stub: Stub) -> None:
    cases: list[tuple[Awaitable[object], str]] = [
        (stub.Run(pb.RunRequest(), timeout=TIMEOUT), "workflow"),
        (stub.Run(pb.RunRequest(workflow="expense-approval", execution_id="has space"),
                  timeout=TIMEOUT), "execution_id"),
        (stub.Resume(pb.ResumeRequest(), timeout=TIMEOUT), "execution_id"),
        (stub.Suspend(pb.SuspendRequest(), timeout=TIMEOUT), "execution_id"),
        (stub.Cancel(pb.CancelRequest(), timeout=TIMEOUT), "execution_id"),
        (stub.GetExecution(pb.GetExecutionRequest(), timeout=TIMEOUT), "execution_id"),
        (stub.ListExecutions(pb.ListExecutionsRequest(page_size=-1), timeout=TIMEOUT),
         "page_size"),
        (stub.ListExecutions(pb.ListExecutionsRequest(status=99), timeout=TIMEOUT),  # type: ignore[arg-type]
         "status"),
        (stub.ListExecutions(pb.ListExecutionsRequest(page_token="%%%"), timeout=TIMEOUT),
         "page_token"),
        (stub.ListExecutionEvents(pb.ListExecutionEventsRequest(execution_id="x",
                                                                after_sequence=-1),
                                  timeout=TIMEOUT), "after_sequence"),
        (stub.ListWorkflows(pb.ListWorkflowsRequest(page_token="bm9wZQ"), timeout=TIMEOUT),
         "page_token"),
        (stub.DescribeWorkflow(pb.DescribeWorkflowRequest(), timeout=TIMEOUT), "workflow"),
        (stub.Resume(pb.ResumeRequest(execution_id="x", request_id="r" * 1000),
                     timeout=TIMEOUT), "request_id"),
    ]
    for call, field in cases:
        err = await fails(call, INVALID)
        assert field in err.fields, (field, err.fields)
    for req in (pb.WatchExecutionRequest(),
                pb.WatchExecutionRequest(execution_id="x", after_sequence=-5)):
        err = await stream_fails(stub, req, INVALID)
        assert len(err.fields) == 1


async def test_unknown_execution_is_not_found(stub: Stub) -> None:
    calls: list[Awaitable[object]] = [
        stub.GetExecution(pb.GetExecutionRequest(execution_id="nope"), timeout=TIMEOUT),
        stub.Resume(pb.ResumeRequest(execution_id="nope"), timeout=TIMEOUT),
        stub.Suspend(pb.SuspendRequest(execution_id="nope"), timeout=TIMEOUT),
        stub.Cancel(pb.CancelRequest(execution_id="nope"), timeout=TIMEOUT),
        stub.ListExecutionEvents(pb.ListExecutionEventsRequest(execution_id="nope"),
                                 timeout=TIMEOUT),
    ]
    for call in calls:
        err = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert err.info.reason == "EXECUTION_NOT_FOUND"
        assert err.info.metadata["execution_id"] == "nope"
    for req in (pb.WatchExecutionRequest(execution_id="nope"),
                pb.WatchExecutionRequest(execution_id="nope", after_sequence=0)):
        err = await stream_fails(stub, req, grpc.StatusCode.NOT_FOUND)
        assert err.info.reason == "EXECUTION_NOT_FOUND"


async def test_resume_in_the_wrong_state_is_a_failed_precondition(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    await resume(stub, ex.id, {"approved": True})
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id), timeout=TIMEOUT),
                      PRECONDITION)
    assert err.info.reason == "WRONG_STATE"
    assert err.info.metadata["status"] == "COMPLETED"
    assert err.precondition is not None
    [violation] = err.precondition.violations
    assert violation.type == "WRONG_STATE" and violation.subject == f"executions/{ex.id}"
    assert "COMPLETED" in violation.description


async def test_resume_of_a_node_that_is_not_waiting(stub: Stub) -> None:
    ex = await run(stub, "parallel-review")
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id, node_id="finalize"),
                                  timeout=TIMEOUT), PRECONDITION)
    assert err.info.reason == "NODE_NOT_WAITING"
    assert err.precondition is not None
    assert err.precondition.violations[0].subject == f"executions/{ex.id}/nodes/finalize"


async def test_resume_with_only_timers_pending(stub: Stub) -> None:
    ex = await run(stub, "delayed-notification")  # sleeps an hour
    await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id), timeout=TIMEOUT),
                PRECONDITION)
    await stub.Cancel(pb.CancelRequest(execution_id=ex.id), timeout=TIMEOUT)


async def test_invalid_resume_data_leaves_the_execution_unchanged(stub: Stub) -> None:
    ex = await run(stub, "document-approval", {"documentId": "d", "authorId": "a"})
    before = await get(stub, ex.id)
    req = pb.ResumeRequest(execution_id=ex.id, data=value({"approved": "maybe"}))
    err = await fails(stub.Resume(req, timeout=TIMEOUT), INVALID)
    assert err.info.reason == "INVALID_RESUME_DATA"
    assert set(err.fields) == {"data.approved", "data.reviewerId"}
    after = await get(stub, ex.id)
    assert after == before
    assert after.status == S.EXECUTION_STATUS_SUSPENDED


async def test_several_waits_need_a_node_id(stub: Stub) -> None:
    ex = await run(stub, "parallel-review")
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id), timeout=TIMEOUT),
                      INVALID)
    assert "node_id" in err.fields
    for node in ("legal-review", "technical-review"):
        assert node in err.fields["node_id"] and node in err.message


async def test_from_step_must_name_a_step(stub: Stub) -> None:
    ex = await run(stub, "multi-review", {"docId": "d"})
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=ex.id, from_step="nope"),
                                  timeout=TIMEOUT), INVALID)
    assert "from_step" in err.fields


async def test_cancel_twice_returns_it_unchanged(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    first = (await stub.Cancel(pb.CancelRequest(execution_id=ex.id, reason="first"),
                               timeout=TIMEOUT)).execution
    second = (await stub.Cancel(pb.CancelRequest(execution_id=ex.id, reason="second"),
                                timeout=TIMEOUT)).execution
    assert second == first
    assert second.cancellation.reason == "first"


async def test_cancel_or_suspend_of_a_finished_execution(stub: Stub) -> None:
    ex = await run(stub, "auto-approve", {"amount": 1})
    assert ex.status == S.EXECUTION_STATUS_COMPLETED
    err = await fails(stub.Suspend(pb.SuspendRequest(execution_id=ex.id), timeout=TIMEOUT),
                      PRECONDITION)
    assert err.info.reason == "WRONG_STATE" and err.precondition is not None
    await fails(stub.Cancel(pb.CancelRequest(execution_id=ex.id), timeout=TIMEOUT),
                PRECONDITION)


async def test_suspend_of_a_suspended_execution_returns_it_unchanged(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    first = (await stub.Suspend(pb.SuspendRequest(execution_id=ex.id, reason="hold"),
                                timeout=TIMEOUT)).execution
    assert first.status == S.EXECUTION_STATUS_SUSPENDED
    assert [p.node_id for p in first.waiting_points] == ["manager-approval"]
    second = (await stub.Suspend(pb.SuspendRequest(execution_id=ex.id, reason="again"),
                                 timeout=TIMEOUT)).execution
    assert second == first


async def test_racing_resumes_one_wins(stub: Stub) -> None:
    for _ in range(5):
        ex = await run(stub, "expense-approval")
        sent = [{"approved": i == 0, "who": i} for i in range(2)]
        calls = [stub.Resume(pb.ResumeRequest(execution_id=ex.id, node_id="manager-approval",
                                              data=value(data)),
                             timeout=TIMEOUT) for data in sent]
        results = await asyncio.gather(*calls, return_exceptions=True)
        ok = [(data, r) for data, r in zip(sent, results, strict=True)
              if isinstance(r, pb.ResumeResponse)]
        errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(ok) == 1 and len(errors) == 1, results
        # The loser: ABORTED (it read the execution before the winner committed), or
        # FAILED_PRECONDITION / WRONG_STATE (after: RUNNING on, or COMPLETED).
        err = rich(errors[0])
        assert (err.code, err.info.reason) in (
            (grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE"), (PRECONDITION, "WRONG_STATE")), err
        if err.code is PRECONDITION:
            assert err.info.metadata["status"] in ("RUNNING", "COMPLETED"), err
        data, answer = ok[0]
        assert "approval" in answer.execution.state.fields
        assert js(answer.execution.state.fields["approval"]) == data
        # What the execution holds is the winner's data, applied once.
        done = await reach(stub, ex.id, S.EXECUTION_STATUS_COMPLETED)
        assert js(done.state.fields["approval"]) == data
        assert js(done.result) == ("Expense approved and processed" if data["approved"]
                                   else "Expense rejected")
        evs = await events(stub, ex.id)
        assert [e.node_id for e in evs if e.type == "node_finished"] == [
            "submit", "manager-approval", "process"]
        assert started(evs, "process") == 1


async def test_repeated_request_id_returns_the_first_answer(stub: Stub) -> None:
    ex = await run(stub, "conditional-workflow")
    req = pb.ResumeRequest(execution_id=ex.id, action="choose-a", request_id="resume-1")
    first = (await stub.Resume(req, timeout=TIMEOUT)).execution
    await finished(stub, ex.id)
    before = await events(stub, ex.id)
    second = (await stub.Resume(req, timeout=TIMEOUT)).execution
    assert second == first  # every field of the first answer
    assert await events(stub, ex.id) == before  # and nothing was applied again
    assert sum(1 for e in before if e.type == "node_finished"
               and e.node_id == "decision-point") == 1

    run_req = pb.RunRequest(workflow="expense-approval", request_id="run-key-1")
    a = (await stub.Run(run_req, timeout=TIMEOUT)).execution
    now = await reach(stub, a.id, S.EXECUTION_STATUS_AWAITING)
    before = await events(stub, a.id)
    b = (await stub.Run(run_req, timeout=TIMEOUT)).execution
    assert b == now  # the same execution, as it stands: every field
    assert await events(stub, a.id) == before
    assert started(before, "submit") == 1


async def test_same_execution_id_for_another_workflow_already_exists(stub: Stub) -> None:
    eid = "api-fixed-id-1"
    first = await run(stub, "expense-approval", execution_id=eid)
    again = await run(stub, "expense-approval", execution_id=eid)
    assert again.id == first.id == eid
    err = await fails(stub.Run(pb.RunRequest(workflow="conditional-workflow", execution_id=eid),
                               timeout=TIMEOUT), grpc.StatusCode.ALREADY_EXISTS)
    assert err.info.reason == "EXECUTION_EXISTS"
