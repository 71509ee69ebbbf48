"""The read RPCs: ListWorkflows, DescribeWorkflow, ListExecutions, ListExecutionEvents."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from tarry_api.v1 import execution_pb2, workflow_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tests.integration.api.conftest import ServerFactory, connect
from tests.integration.api.support import TIMEOUT, S, events, fails, js, run

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

EXAMPLES = {
    "expense-approval", "parallel-review", "delayed-notification", "retry-with-backoff",
    "conditional-workflow", "escalation-workflow", "simple-approval", "document-approval",
    "multi-approval", "verify-user", "multi-review", "auto-approve", "payment-timeout",
    "long-process", "order-approval",
}


async def test_list_workflows_sorted_and_paged(stub: Stub) -> None:
    whole = await stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=TIMEOUT)
    names = [w.name for w in whole.workflows]
    assert names == sorted(names)
    assert set(names) >= EXAMPLES
    assert not whole.next_page_token

    paged: list[str] = []
    token = ""
    while True:
        page = await stub.ListWorkflows(pb.ListWorkflowsRequest(page_size=4, page_token=token),
                                        timeout=TIMEOUT)
        assert len(page.workflows) <= 4
        paged += [w.name for w in page.workflows]
        token = page.next_page_token
        if not token:
            break
    assert paged == names


async def test_describe_a_graph_workflow(stub: Stub) -> None:
    wf = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(
        workflow="conditional-workflow"), timeout=TIMEOUT)).workflow
    assert (wf.name, wf.version) == ("conditional-workflow", "1")
    assert "path a, b or c" in wf.description
    kinds = {n.id: n.kind for n in wf.nodes}
    assert kinds["decision-point"] == workflow_pb2.NODE_KIND_WAIT
    assert kinds["path-a"] == workflow_pb2.NODE_KIND_STEP
    assert list(wf.start_node_ids) == ["start"]
    edges = {(e.source, e.target, e.action) for e in wf.edges}
    assert ("decision-point", "path-b", "choose-b") in edges
    assert ("start", "decision-point", "") in edges
    assert not wf.HasField("input_schema")
    step = next(n for n in wf.nodes if n.id == "start")
    assert step.retry_policy.max_attempts == 1
    wait = next(n for n in wf.nodes if n.id == "decision-point")
    assert not wait.HasField("retry_policy")
    sleepy = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(
        workflow="delayed-notification"), timeout=TIMEOUT)).workflow
    assert {n.id: n.kind for n in sleepy.nodes}["delay"] == workflow_pb2.NODE_KIND_SLEEP


async def test_describe_schemas_and_retry_policy(stub: Stub) -> None:
    verify = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow="verify-user"),
                                          timeout=TIMEOUT)).workflow
    assert js(verify.input_schema)["properties"]["email"]["format"] == "email"
    assert set(js(verify.suspend_schema)["required"]) == {"verificationCode", "expiresAt"}
    assert "code" in js(verify.resume_schema)["properties"]
    assert "verified" in js(verify.result_schema)["properties"]

    multi = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow="multi-approval"),
                                         timeout=TIMEOUT)).workflow
    nodes = {n.id: n for n in multi.nodes}
    assert "managerId" in js(nodes["manager-approval"].resume_schema)["properties"]
    assert "continue" in js(multi.resume_schema)["properties"]

    boom = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow="api-boom"),
                                        timeout=TIMEOUT)).workflow
    retry = boom.nodes[0].retry_policy
    assert retry.max_attempts == 2 and retry.backoff_coefficient == 3.0
    assert retry.initial_interval.ToMilliseconds() == 10
    assert retry.max_interval.ToSeconds() == 5
    assert list(retry.non_retryable_error_types) == ["KeyError"]


async def test_describe_errors(stub: Stub) -> None:
    err = await fails(stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow="nope"),
                                            timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    assert err.info.reason == "WORKFLOW_NOT_FOUND"
    await fails(stub.DescribeWorkflow(pb.DescribeWorkflowRequest(
        workflow="expense-approval", version="7"), timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)


async def test_list_executions_filters_and_pages(make_server: ServerFactory) -> None:
    server = await make_server()  # a key prefix of its own: only this test's executions
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        expenses = [await run(stub, "expense-approval") for _ in range(5)]
        await run(stub, "conditional-workflow")
        done = await run(stub, "auto-approve", {"amount": 1})

        everything = await stub.ListExecutions(pb.ListExecutionsRequest(), timeout=TIMEOUT)
        assert len(everything.executions) == 7 and not everything.next_page_token
        assert everything.executions[0].id == done.id  # newest first

        seen = []
        token = ""
        req = pb.ListExecutionsRequest(workflow="expense-approval", page_size=2)
        for _ in range(10):
            req.page_token = token
            page = await stub.ListExecutions(req, timeout=TIMEOUT)
            assert len(page.executions) <= 2
            seen += [e.id for e in page.executions]
            token = page.next_page_token
            if not token:
                break
        assert seen == [e.id for e in reversed(expenses)]

        completed = await stub.ListExecutions(pb.ListExecutionsRequest(
            status=S.EXECUTION_STATUS_COMPLETED), timeout=TIMEOUT)
        assert [e.id for e in completed.executions] == [done.id]
        awaiting = await stub.ListExecutions(pb.ListExecutionsRequest(
            workflow="expense-approval", status=S.EXECUTION_STATUS_AWAITING, page_size=100),
            timeout=TIMEOUT)
        assert {e.id for e in awaiting.executions} == {e.id for e in expenses}

        first = await stub.ListExecutions(pb.ListExecutionsRequest(
            workflow="expense-approval", page_size=1), timeout=TIMEOUT)
        err = await fails(stub.ListExecutions(pb.ListExecutionsRequest(
            workflow="conditional-workflow", page_token=first.next_page_token),
            timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT)
        assert "page_token" in err.fields


async def test_list_execution_events_pages_through_the_log(stub: Stub) -> None:
    ex = await run(stub, "parallel-review")
    await run(stub, "parallel-review")  # another execution's events stay out
    everything = await events(stub, ex.id)
    assert everything[0].type == "status"
    assert everything[0].status == S.EXECUTION_STATUS_RUNNING

    paged: list[execution_pb2.ExecutionEvent] = []
    after = 0
    while True:
        page = await stub.ListExecutionEvents(pb.ListExecutionEventsRequest(
            execution_id=ex.id, after_sequence=after, page_size=3), timeout=TIMEOUT)
        paged += page.events
        assert page.next_after_sequence == (page.events[-1].sequence if page.events
                                            else after)
        after = page.next_after_sequence
        if not page.has_more:
            break
    assert paged == everything
    replay = await watch_all_until_awaiting(stub, ex.id)
    assert replay == everything


async def watch_all_until_awaiting(stub: Stub, execution_id: str) -> list[object]:
    """The replay of a watch from 0 up to the AWAITING status event (the execution waits)."""
    out: list[object] = []
    call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=execution_id,
                                                        after_sequence=0), timeout=TIMEOUT)
    async for m in call:
        out.append(m.event)
        if m.event.status == S.EXECUTION_STATUS_AWAITING:
            break
    call.cancel()
    return out
