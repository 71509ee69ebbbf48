"""Helpers for the API tests: calls through the generated stubs, and rich error details."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2

from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

S = execution_pb2.ExecutionStatus
TIMEOUT = 20.0
"""Deadline of calls that wait for something (generous: failures show up as wrong values)."""


def value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def js(message: struct_pb2.Value | struct_pb2.Struct) -> Any:
    return json_format.MessageToDict(message)


async def run(stub: Stub, workflow: str, input: Any = None, **kw: Any
              ) -> execution_pb2.Execution:
    """Run and wait until settled."""
    req = pb.RunRequest(workflow=workflow, wait_until_settled=True, **kw)
    if input is not None:
        req.input.CopyFrom(value(input))
    return (await stub.Run(req, timeout=TIMEOUT)).execution


async def resume(stub: Stub, execution_id: str, data: Any = None, **kw: Any
                 ) -> execution_pb2.Execution:
    """Resume and wait until settled."""
    req = pb.ResumeRequest(execution_id=execution_id, wait_until_settled=True, **kw)
    if data is not None:
        req.data.CopyFrom(value(data))
    return (await stub.Resume(req, timeout=TIMEOUT)).execution


async def get(stub: Stub, execution_id: str) -> execution_pb2.Execution:
    return (await stub.GetExecution(pb.GetExecutionRequest(execution_id=execution_id),
                                    timeout=TIMEOUT)).execution


async def watch_all(stub: Stub, execution_id: str, after: int | None = None
                    ) -> list[pb.WatchExecutionResponse]:
    """Every message of a watch, to its (OK) end."""
    req = pb.WatchExecutionRequest(execution_id=execution_id)
    if after is not None:
        req.after_sequence = after
    return [m async for m in stub.WatchExecution(req, timeout=TIMEOUT)]


async def finished(stub: Stub, execution_id: str) -> execution_pb2.Execution:
    """The execution once terminal (a watch ends after the terminal event)."""
    messages = await watch_all(stub, execution_id)
    last = messages[-1]
    assert last.HasField("execution") or last.event.status in (
        S.EXECUTION_STATUS_COMPLETED, S.EXECUTION_STATUS_FAILED, S.EXECUTION_STATUS_CANCELLED)
    return await get(stub, execution_id)


async def reach(stub: Stub, execution_id: str, status: S.ValueType) -> execution_pb2.Execution:
    """The execution once it has `status` (watching its events until then)."""
    call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=execution_id),
                               timeout=TIMEOUT)
    try:
        async for m in call:
            if m.HasField("execution") and m.execution.status == status:
                return m.execution
            if m.HasField("event") and m.event.type == "status" and m.event.status == status:
                return await get(stub, execution_id)
    finally:
        call.cancel()
    raise AssertionError(f"the watch ended before {S.Name(status)}")


async def events(stub: Stub, execution_id: str) -> list[execution_pb2.ExecutionEvent]:
    res = await stub.ListExecutionEvents(
        pb.ListExecutionEventsRequest(execution_id=execution_id, page_size=1000),
        timeout=TIMEOUT)
    assert not res.has_more
    return list(res.events)


def statuses(evs: list[execution_pb2.ExecutionEvent]) -> list[str]:
    return [S.Name(e.status).removeprefix("EXECUTION_STATUS_") for e in evs
            if e.type == "status"]


def started(evs: list[execution_pb2.ExecutionEvent], node: str) -> int:
    return sum(1 for e in evs if e.type == "node_started" and e.node_id == node)


@dataclass
class Rich:
    """What a failed call says, decoded from its google.rpc.Status."""

    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo
    bad_request: error_details_pb2.BadRequest | None
    precondition: error_details_pb2.PreconditionFailure | None

    @property
    def fields(self) -> dict[str, str]:
        assert self.bad_request is not None, "no BadRequest detail"
        return {v.field: v.description for v in self.bad_request.field_violations}


def rich(err: grpc.aio.AioRpcError) -> Rich:
    raw = [v for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
    assert raw, f"{err.code()} without google.rpc.Status: {err.details()}"
    assert isinstance(raw[0], bytes)
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == err.code().value[0] and status.message == err.details()
    info, bad, pre = None, None, None
    for detail in status.details:
        # Unpack says whether the detail is of that type.
        if detail.Unpack(candidate := error_details_pb2.ErrorInfo()):
            info = candidate
        elif detail.Unpack(bad_request := error_details_pb2.BadRequest()):
            bad = bad_request
        elif detail.Unpack(failure := error_details_pb2.PreconditionFailure()):
            pre = failure
    assert info is not None, "every error carries an ErrorInfo"
    assert info.domain == "tarry.dev"
    return Rich(err.code(), status.message, info, bad, pre)


async def fails(call: Awaitable[object], code: grpc.StatusCode) -> Rich:
    """Await `call`, which must fail with `code`; return its details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return rich(caught.value)


async def stream_fails(stub: Stub, req: pb.WatchExecutionRequest, code: grpc.StatusCode
                       ) -> Rich:
    async def drain() -> None:
        async for _ in stub.WatchExecution(req, timeout=TIMEOUT):
            pass

    return await fails(drain(), code)
