"""The WorkflowService servicer: validates requests, calls the engine, converts the answer.

Each unary RPC runs through `_unary`, which gives it a deadline when the caller sent none
(`Config.default_deadline`) and turns every exception into a rich status (`_errors`).
Run and Resume with `wait_until_settled` wait for the execution to leave RUNNING, but answer
shortly before that deadline with the execution as it stands.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
from typing_extensions import override

from tarry.config import Config
from tarry.engine import (
    Engine,
    Execution,
    FieldViolation,
    InvalidArgument,
    Status,
    Workflow,
    WorkflowNotFound,
)
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1 import workflow_service_pb2_grpc as pb_grpc

from ._convert import (
    STATUS_FROM_PB,
    event_to_pb,
    execution_to_pb,
    from_value,
    workflow_to_pb,
)
from ._errors import DeadlineCappedError, abort
from ._watch import Watches

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

EXECUTIONS_PAGE = (50, 1000)
"""ListExecutions page size: (default, maximum)."""
EVENTS_PAGE = (100, 1000)
WORKFLOWS_PAGE = (100, 1000)
MAX_REQUEST_ID = 256

# When the current call must have answered (event-loop time), for the waits inside it.
_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("tarry_call_deadline")


def _unary(
    method: Callable[[WorkflowService, Req, Context], Awaitable[Resp]],
) -> Callable[[WorkflowService, Req, Context], Coroutine[Any, Any, Resp]]:
    """Cap the call at the default deadline when it has none; answer errors with rich status."""

    @functools.wraps(method)
    async def handler(self: WorkflowService, request: Req, context: Context) -> Resp:
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        try:
            if remaining is not None:
                # gRPC itself ends the call at the caller's deadline.
                _deadline.set(loop.time() + remaining)
                return await method(self, request, context)
            cap = asyncio.timeout(self.config.default_deadline)
            _deadline.set(loop.time() + self.config.default_deadline)
            try:
                async with cap:
                    return await method(self, request, context)
            except TimeoutError:
                if not cap.expired():
                    raise
                raise DeadlineCappedError(
                    f"the call took longer than the server's default deadline "
                    f"({self.config.default_deadline:g} s); set a deadline to allow more"
                ) from None
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    return handler


class WorkflowService(pb_grpc.WorkflowServiceServicer):
    """tarry.v1.WorkflowService over one engine. Stateless apart from the open watches."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        self.watches = Watches(engine, self._snapshot)

    # -- steering ----------------------------------------------------------------------

    @override
    @_unary
    async def Run(self, request: pb.RunRequest, context: Context) -> pb.RunResponse:
        workflow = _required(request.workflow, "workflow")
        ex = await self.engine.run(
            workflow,
            from_value(request.input) if request.HasField("input") else None,
            version=request.version or None,
            execution_id=request.execution_id or None,
            request_id=_request_id(request.request_id),
        )
        if request.wait_until_settled:
            ex = await self._settled(ex)
        return pb.RunResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def Resume(self, request: pb.ResumeRequest, context: Context) -> pb.ResumeResponse:
        ex = await self.engine.resume(
            _required(request.execution_id, "execution_id"),
            from_value(request.data) if request.HasField("data") else None,
            node=request.node_id or None,
            action=request.action or None,
            from_step=request.from_step or None,
            request_id=_request_id(request.request_id),
        )
        if request.wait_until_settled:
            ex = await self._settled(ex)
        return pb.ResumeResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def Suspend(self, request: pb.SuspendRequest, context: Context) -> pb.SuspendResponse:
        ex = await self.engine.suspend(
            _required(request.execution_id, "execution_id"), request.reason,
            request_id=_request_id(request.request_id),
        )
        return pb.SuspendResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def Cancel(self, request: pb.CancelRequest, context: Context) -> pb.CancelResponse:
        ex = await self.engine.cancel(
            _required(request.execution_id, "execution_id"), request.reason,
            request_id=_request_id(request.request_id),
        )
        return pb.CancelResponse(execution=self._snapshot(ex))

    # -- reading -----------------------------------------------------------------------

    @override
    @_unary
    async def GetExecution(self, request: pb.GetExecutionRequest, context: Context
                           ) -> pb.GetExecutionResponse:
        ex = await self.engine.get(_required(request.execution_id, "execution_id"))
        return pb.GetExecutionResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def ListExecutions(self, request: pb.ListExecutionsRequest, context: Context
                             ) -> pb.ListExecutionsResponse:
        size = _page_size(request.page_size, *EXECUTIONS_PAGE)
        status = _status_filter(request.status)
        workflow = request.workflow or None
        # The token wraps the engine's cursor with the filters it was issued for, so that a
        # token reused with other filters is refused instead of skipping rows silently.
        filters = {"workflow": workflow, "status": status.value if status else None}
        cursor: str | None = None
        if request.page_token:
            token = _decode_token(request.page_token)
            if token.get("filters") != filters or not isinstance(token.get("cursor"), str):
                raise _invalid("page_token", "was issued for other filters")
            cursor = token["cursor"]
        rows, nxt = await self.engine.list(workflow=workflow, status=status, limit=size,
                                           cursor=cursor)
        return pb.ListExecutionsResponse(
            executions=[self._snapshot(ex) for ex in rows],
            next_page_token=_encode_token({"filters": filters, "cursor": nxt}) if nxt else "",
        )

    @override
    @_unary
    async def ListExecutionEvents(self, request: pb.ListExecutionEventsRequest,
                                  context: Context) -> pb.ListExecutionEventsResponse:
        execution_id = _required(request.execution_id, "execution_id")
        after = _non_negative(request.after_sequence, "after_sequence")
        size = _page_size(request.page_size, *EVENTS_PAGE)
        # One more than asked tells whether the log goes on beyond this page.
        events = await self.engine.events(execution_id, after, size + 1)
        page = events[:size]
        return pb.ListExecutionEventsResponse(
            events=[event_to_pb(e) for e in page],
            next_after_sequence=page[-1].sequence if page else after,
            has_more=len(events) > size,
        )

    @override
    async def WatchExecution(self, request: pb.WatchExecutionRequest, context: Context
                             ) -> AsyncIterator[pb.WatchExecutionResponse]:
        # Not `_unary`: a watch has no default deadline; it ends by itself after
        # max_watch_seconds (OK, resumable), or at the caller's deadline if that is sooner.
        try:
            execution_id = _required(request.execution_id, "execution_id")
            after: int | None = None
            if request.HasField("after_sequence"):
                after = _non_negative(request.after_sequence, "after_sequence")
            stream = self.watches.stream(execution_id, after, self.config.max_watch_seconds)
            # aclosing: a caller that goes away closes the stream (and its listener) now,
            # not whenever the garbage collector gets to it.
            async with contextlib.aclosing(stream):
                async for message in stream:
                    yield message
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    @override
    @_unary
    async def ListWorkflows(self, request: pb.ListWorkflowsRequest, context: Context
                            ) -> pb.ListWorkflowsResponse:
        size = _page_size(request.page_size, *WORKFLOWS_PAGE)
        offset = 0
        if request.page_token:
            token = _decode_token(request.page_token)
            if not isinstance(token.get("offset"), int) or token["offset"] < 0:
                raise _invalid("page_token", "malformed")
            offset = token["offset"]
        # Sorted by name; a stable sort keeps one name's versions in registration order.
        workflows = sorted(self.engine.registry.all(), key=lambda wf: wf.name)
        page = workflows[offset:offset + size]
        end = offset + len(page)
        return pb.ListWorkflowsResponse(
            workflows=[workflow_to_pb(wf) for wf in page],
            next_page_token=_encode_token({"offset": end}) if end < len(workflows) else "",
        )

    @override
    @_unary
    async def DescribeWorkflow(self, request: pb.DescribeWorkflowRequest, context: Context
                               ) -> pb.DescribeWorkflowResponse:
        wf = self.engine.registry.get(_required(request.workflow, "workflow"),
                                      request.version or None)
        return pb.DescribeWorkflowResponse(workflow=workflow_to_pb(wf))

    # -- helpers -----------------------------------------------------------------------

    def _snapshot(self, ex: Execution) -> execution_pb2.Execution:
        return execution_to_pb(ex, self._workflow_of(ex))

    def _workflow_of(self, ex: Execution) -> Workflow | None:
        try:
            return self.engine.registry.get(ex.workflow, ex.workflow_version)
        except WorkflowNotFound:
            return None  # another replica's version: the snapshot goes without schemas

    async def _settled(self, ex: Execution) -> Execution:
        """`ex` once it has left RUNNING, or as it stands shortly before the deadline."""
        if ex.status is not Status.RUNNING:
            return ex
        left = _deadline.get() - asyncio.get_running_loop().time()
        # Keep a margin for the final read and the reply to reach the caller in time.
        budget = left - min(1.0, left * 0.1)
        if budget <= 0:
            return ex
        return await self.engine.wait(ex.id, timeout=budget)


# -- request validation -----------------------------------------------------------------


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {description}",
                           violations=[FieldViolation(field, description)])


def _required(value: str, field: str) -> str:
    if not value:
        raise _invalid(field, "required")
    return value


def _non_negative(value: int, field: str) -> int:
    if value < 0:
        raise _invalid(field, "must not be negative")
    return value


def _page_size(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise _invalid("page_size", "must not be negative")
    return min(value or default, maximum)


def _request_id(value: str) -> str | None:
    if len(value) > MAX_REQUEST_ID:
        raise _invalid("request_id", f"at most {MAX_REQUEST_ID} characters")
    return value or None


def _status_filter(value: int) -> Status | None:
    if value == execution_pb2.EXECUTION_STATUS_UNSPECIFIED:
        return None
    status = STATUS_FROM_PB.get(value)
    if status is None:
        raise _invalid("status", f"unknown ExecutionStatus value {value}")
    return status


def _encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _invalid("page_token", "malformed") from None
    if not isinstance(data, dict):
        raise _invalid("page_token", "malformed")
    return data
