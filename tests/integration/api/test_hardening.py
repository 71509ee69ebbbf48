"""What the hardening added, seen over gRPC: a failed step's traceback, timeouts published
and enforced, Resume actions that lead nowhere refused, Overloaded for the Python client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tarry.server import Server
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_client import AsyncClient, ExecutionNotFound, Overloaded
from tests.integration.api.conftest import ServerFactory
from tests.integration.api.support import fails, finished, reach, resume, run

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub


async def test_a_failed_step_reports_its_traceback(stub: Stub) -> None:
    ex = await finished(stub, (await run(stub, "api-boom")).id)
    assert ex.status == execution_pb2.EXECUTION_STATUS_FAILED
    assert ex.error.type == "Kaput" and ex.error.attempt == 2
    assert ex.error.stack_trace.startswith("Traceback (most recent call last):")
    assert "in explode" in ex.error.stack_trace
    assert ex.error.stack_trace.endswith("Kaput: kaput on attempt 2")


async def test_timeouts_are_published_and_enforced(stub: Stub) -> None:
    wf = (await stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow="api-timed"))).workflow
    assert wf.timeout.ToMilliseconds() == 500
    assert {n.id: n.timeout.ToSeconds() for n in wf.nodes} == {"start": 5, "answer": 0}
    ex = await run(stub, "api-timed", {"seconds": 0.01})
    assert ex.HasField("deadline_time")
    assert ex.deadline_time.ToMilliseconds() - ex.create_time.ToMilliseconds() == 500
    failed = await reach(stub, ex.id, execution_pb2.EXECUTION_STATUS_FAILED)
    assert failed.error.type == "ExecutionTimeout" and not failed.waiting_points


async def test_resume_with_an_action_that_leads_nowhere(stub: Stub) -> None:
    ex = await run(stub, "conditional-workflow")
    err = await fails(resume(stub, ex.id, {}, action="choose-z"), grpc.StatusCode.INVALID_ARGUMENT)
    assert err.info.reason == "INVALID_ARGUMENT"
    assert dict(err.info.metadata) == {"node": "decision-point",
                                       "actions": "choose-a,choose-b,choose-c"}
    assert set(err.fields) == {"action"}
    again = (await stub.GetExecution(pb.GetExecutionRequest(execution_id=ex.id))).execution
    assert (again.status, again.last_sequence) == (ex.status, ex.last_sequence)
    done = await resume(stub, ex.id, {}, action="choose-a")
    assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED


async def test_the_python_client_raises_overloaded(make_server: ServerFactory) -> None:
    server: Server = await make_server(max_executions=1)
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        first = await client.run("api-slow", {"seconds": 2})
        with pytest.raises(Overloaded) as err:
            await client.run("api-slow", {"seconds": 0})
        assert err.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.reason == "OVERLOADED" and err.value.metadata == {"limit": "1"}
        await client.cancel(first.id)


async def test_delete_execution(stub: Stub) -> None:
    done = await finished(stub, (await run(stub, "api-boom")).id)
    waiting = await run(stub, "conditional-workflow")
    err = await fails(stub.DeleteExecution(pb.DeleteExecutionRequest(
        execution_id=waiting.id)), grpc.StatusCode.FAILED_PRECONDITION)
    assert err.info.reason == "WRONG_STATE" and err.info.metadata["status"] == "AWAITING"
    await stub.DeleteExecution(pb.DeleteExecutionRequest(execution_id=done.id))
    await fails(stub.GetExecution(pb.GetExecutionRequest(execution_id=done.id)),
                grpc.StatusCode.NOT_FOUND)
    again = await fails(stub.DeleteExecution(pb.DeleteExecutionRequest(execution_id=done.id)),
                        grpc.StatusCode.NOT_FOUND)
    assert again.info.reason == "EXECUTION_NOT_FOUND"
    await fails(stub.DeleteExecution(pb.DeleteExecutionRequest()),
                grpc.StatusCode.INVALID_ARGUMENT)
    still = (await stub.GetExecution(pb.GetExecutionRequest(execution_id=waiting.id))).execution
    assert still.status == execution_pb2.EXECUTION_STATUS_AWAITING


async def test_the_python_client_deletes(make_server: ServerFactory) -> None:
    server: Server = await make_server()
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        ex = await client.run("api-boom", wait=True)
        ex = await client.get(ex.id)
        while ex.status.value == "RUNNING":
            ex = await client.get(ex.id)
        await client.delete(ex.id)
        with pytest.raises(ExecutionNotFound):
            await client.get(ex.id)
