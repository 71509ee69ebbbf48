"""The WorkflowService servicer: validates requests, calls the engine, converts the answer.

Each unary RPC runs through `_unary`, which refuses it when `Config.max_concurrent_rpcs`
calls are in flight already, checks every string field against its limit (`limits`), gives
it a deadline when the caller sent none (`Config.default_deadline`) and turns every
exception into a rich status (`_errors`). WatchExecution does the same with its own count
(`Config.max_watches`) and no deadline.
Run and Resume with `wait_until_settled` wait for the execution to leave RUNNING, but answer
shortly before that deadline with the execution as it stands.

Requests reach it decoded by `_handlers`, which answers those that do not decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import grpc
from typing_extensions import override

from tarry.config import Config
from tarry.engine import (
    CALLER,
    ChangeFilter,
    DeadlineExceeded,
    Engine,
    Execution,
    ExecutionNotFound,
    Status,
    TarryError,
    Workflow,
    WorkflowNotFound,
    namespaces,
)
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1 import workflow_service_pb2_grpc as pb_grpc

from . import _bulk
from ._auth import NAMESPACE, Authenticator
from ._convert import (
    safe_event_to_pb,
    safe_execution_to_pb,
    workflow_to_pb,
)
from ._errors import abort
from ._fields import check_strings, narrower_filters, overloaded
from ._fields import decode_token as _decode_token
from ._fields import encode_token as _encode_token
from ._fields import invalid as _invalid
from ._fields import non_negative as _non_negative
from ._fields import page_size as _page_size
from ._fields import request_id as _request_id
from ._fields import required as _required
from ._fields import status_filter as _status_filter
from ._fields import user_value as _user_value
from ._watch import ChangeMessages, Watches, decode_cursor, encode_cursor

Req = TypeVar("Req")
Resp = TypeVar("Resp")
_T = TypeVar("_T")
if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

EXECUTIONS_PAGE = (50, 1000)
"""ListExecutions page size: (default, maximum)."""
EVENTS_PAGE = (100, 1000)
WORKFLOWS_PAGE = (100, 1000)

# When the current call must have answered (event-loop time), for the waits inside it.
_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("tarry_call_deadline")


def _unary(
    method: Callable[[WorkflowService, Req, Context], Awaitable[Resp]],
) -> Callable[[WorkflowService, Req, Context], Coroutine[Any, Any, Resp]]:
    """Admit the call (`max_concurrent_rpcs`), check its string fields, cap it at the default
    deadline when it has none; answer errors with rich status."""

    @functools.wraps(method)
    async def handler(self: WorkflowService, request: Req, context: Context) -> Resp:
        # Counted here rather than with grpcio's own `maximum_concurrent_rpcs`: grpcio
        # refuses with a bare RESOURCE_EXHAUSTED, without the google.rpc.Status (ErrorInfo
        # reason OVERLOADED) that every Tarry error carries. The server of `server.py`
        # admits each call earlier, as gRPC hands it over (`_accept.Admission`: calls
        # wait inside gRPC, unseen here, before they reach a handler); this check is for
        # the stock server.
        limit = self.config.max_concurrent_rpcs
        if self._calls >= limit:
            await abort(context, overloaded("unary calls in flight", "max_concurrent_rpcs",
                                             limit))
        self._calls += 1
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        try:
            check_strings(request)
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
                raise DeadlineExceeded(
                    f"the call took longer than the server's default deadline "
                    f"({self.config.default_deadline:g} s); set a deadline to allow more"
                ) from None
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, _plain(exc))
        finally:
            self._calls -= 1

    return handler


def _qualified(execution_id: str) -> str:
    """The execution id a caller gave, qualified with the call's namespace. No execution
    id holds the separator, so an id with one names no execution, in any namespace: it is
    answered as such (and can never reach into another namespace)."""
    execution_id = _required(execution_id, "execution_id")
    if namespaces.SEPARATOR in execution_id:
        raise ExecutionNotFound(f"no execution with id {execution_id!r}",
                                metadata={"execution_id": execution_id})
    return namespaces.qualify(NAMESPACE.get(), execution_id)


def _plain(exc: Exception) -> Exception:
    """`exc` as the caller may see it: the execution ids it names without the call's
    namespace, so that an answer reads the same in every namespace."""
    namespace = NAMESPACE.get()
    if namespace == namespaces.DEFAULT or not isinstance(exc, TarryError):
        return exc
    prefix = namespace + namespaces.SEPARATOR
    exc.message = exc.message.replace(prefix, "")
    exc.metadata = {k: v.replace(prefix, "") for k, v in exc.metadata.items()}
    return exc


class WorkflowService(pb_grpc.WorkflowServiceServicer):
    """tarry.v1.WorkflowService over one engine. Stateless apart from the open watches."""

    def __init__(self, engine: Engine, config: Config, auth: Authenticator | None = None
                 ) -> None:
        self.engine = engine
        self.config = config
        self.auth = auth
        """Checks each call's bearer token (None: authentication is off)."""
        self.watches = Watches(engine, self._snapshot)
        self._change_messages = ChangeMessages()
        self._calls = 0
        self._watching = 0

    @property
    def calls_in_flight(self) -> int:
        """Unary calls being answered now (admitted by `max_concurrent_rpcs`)."""
        return self._calls

    @property
    def watches_open(self) -> int:
        """WatchExecution streams open now (admitted by `max_watches`)."""
        return self._watching

    # -- steering ----------------------------------------------------------------------

    @override
    @_unary
    async def Run(self, request: pb.RunRequest, context: Context) -> pb.RunResponse:
        workflow = _required(request.workflow, "workflow")
        ex = await self.engine.run(
            workflow,
            _user_value(request.input if request.HasField("input") else None, "input"),
            version=request.version or None,
            execution_id=request.execution_id or None,
            request_id=_request_id(request.request_id),
            namespace=NAMESPACE.get(),
            tags=dict(request.tags),
        )
        if request.wait_until_settled:
            ex = await self._settled(ex)
        return pb.RunResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def Resume(self, request: pb.ResumeRequest, context: Context) -> pb.ResumeResponse:
        ex = await self.engine.resume(
            _qualified(request.execution_id),
            _user_value(request.data if request.HasField("data") else None, "data"),
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
            _qualified(request.execution_id), request.reason,
            request_id=_request_id(request.request_id), freeze=request.freeze_timers,
        )
        return pb.SuspendResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def Cancel(self, request: pb.CancelRequest, context: Context) -> pb.CancelResponse:
        ex = await self.engine.cancel(
            _qualified(request.execution_id), request.reason,
            request_id=_request_id(request.request_id),
        )
        return pb.CancelResponse(execution=self._snapshot(ex))

    # -- reading -----------------------------------------------------------------------

    @override
    @_unary
    async def GetExecution(self, request: pb.GetExecutionRequest, context: Context
                           ) -> pb.GetExecutionResponse:
        ex = await self.engine.get(_qualified(request.execution_id))
        return pb.GetExecutionResponse(execution=self._snapshot(ex))

    @override
    @_unary
    async def DeleteExecution(self, request: pb.DeleteExecutionRequest, context: Context
                              ) -> pb.DeleteExecutionResponse:
        await self.engine.delete(_qualified(request.execution_id))
        return pb.DeleteExecutionResponse()

    @override
    @_unary
    async def ListExecutions(self, request: pb.ListExecutionsRequest, context: Context
                             ) -> pb.ListExecutionsResponse:
        size = _page_size(request.page_size, *EXECUTIONS_PAGE)
        status = _status_filter(request.status)
        workflow = request.workflow or None
        # The token wraps the engine's cursor with the filters it was issued for, so that a
        # token reused with other filters is refused instead of skipping rows silently.
        narrower = narrower_filters(request)
        filters: dict[str, object] = {"workflow": workflow,
                                      "status": status.value if status else None}
        namespace = NAMESPACE.get()
        if namespace != namespaces.DEFAULT:  # (tokens from before namespaces stay good)
            filters["namespace"] = namespace
        if narrower:  # (likewise)
            filters.update(tags=narrower.tags, version=narrower.version,
                           created_from=narrower.created_from, created_to=narrower.created_to,
                           waiting_node=narrower.waiting_node)
        cursor: str | None = None
        if request.page_token:
            token = _decode_token(request.page_token)
            if token.get("filters") != filters or not isinstance(token.get("cursor"), str):
                raise _invalid("page_token", "was issued for other filters")
            cursor = token["cursor"]
        # Read before the page: a watch from it misses nothing the page does not show.
        watch_cursor = await self.engine.changes.cursor()
        rows, nxt = await self.engine.list(workflow=workflow, status=status, limit=size,
                                           cursor=cursor, namespace=namespace,
                                           filters=narrower)
        return pb.ListExecutionsResponse(
            # Each row is converted on its own (`_snapshot` never raises): one execution
            # whose stored data cannot be converted comes as a minimal snapshot, and the
            # rest of the page as usual.
            executions=[self._snapshot(ex) for ex in rows],
            next_page_token=_encode_token({"filters": filters, "cursor": nxt}) if nxt else "",
            watch_cursor=encode_cursor(watch_cursor),
        )

    @override
    @_unary
    async def ListExecutionEvents(self, request: pb.ListExecutionEventsRequest,
                                  context: Context) -> pb.ListExecutionEventsResponse:
        execution_id = _qualified(request.execution_id)
        after = _non_negative(request.after_sequence, "after_sequence")
        size = _page_size(request.page_size, *EVENTS_PAGE)
        # One more than asked tells whether the log goes on beyond this page.
        events = await self.engine.events(execution_id, after, size + 1)
        page = events[:size]
        return pb.ListExecutionEventsResponse(
            events=[safe_event_to_pb(e) for e in page],
            next_after_sequence=page[-1].sequence if page else after,
            has_more=len(events) > size,
        )

    async def _stream(self, context: Context, open_: Callable[[], AsyncGenerator[_T, None]]
                      ) -> AsyncGenerator[_T, None]:
        """A server stream: not `_unary` (a watch has no default deadline; it ends by itself
        after max_watch_seconds, OK and resumable, or at the caller's deadline if sooner),
        admitted by its own count (`max_watches`, for the same reason as `_unary`), its
        refusals turned into rich statuses. `open_` checks the request and opens it."""
        limit = self.config.max_watches
        if self._watching >= limit:
            await abort(context, overloaded("watches open", "max_watches", limit))
        self._watching += 1
        try:
            stream = open_()
            # aclosing: a caller that goes away closes the stream (and its listener) now,
            # not whenever the garbage collector gets to it.
            async with contextlib.aclosing(stream):
                async for message in stream:
                    yield message
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, _plain(exc))
        finally:
            self._watching -= 1

    @override
    async def WatchExecution(self, request: pb.WatchExecutionRequest, context: Context
                             ) -> AsyncIterator[pb.WatchExecutionResponse]:
        def open_() -> AsyncGenerator[pb.WatchExecutionResponse, None]:
            check_strings(request)
            execution_id = _qualified(request.execution_id)
            after: int | None = None
            if request.HasField("after_sequence"):
                after = _non_negative(request.after_sequence, "after_sequence")
            return self.watches.stream(execution_id, after, self.config.max_watch_seconds)

        async for message in self._stream(context, open_):
            yield message

    @override
    async def WatchExecutions(self, request: pb.WatchExecutionsRequest, context: Context
                              ) -> AsyncIterator[pb.WatchExecutionsResponse]:
        async def messages() -> AsyncGenerator[pb.WatchExecutionsResponse, None]:
            check_strings(request)
            workflow = request.workflow or None
            if request.waiting_node and workflow is None:
                raise _invalid("waiting_node", "needs workflow")
            f = ChangeFilter(namespace=NAMESPACE.get(), workflow=workflow,
                             status=_status_filter(request.status), tags=dict(request.tags),
                             waiting_node=request.waiting_node or None)
            cursor = decode_cursor(request.cursor) if request.cursor else None
            stream = self.engine.follow_changes(f, cursor, self.config.max_watch_seconds)
            async with contextlib.aclosing(stream):
                async for seen in stream:
                    # Bytes, put together from each change's serialization (shared by the
                    # streams); the stream's serializer passes them on as they are.
                    yield cast(pb.WatchExecutionsResponse,
                               self._change_messages.message(seen))

        async for message in self._stream(context, messages):
            yield message

    @override
    async def WatchBulk(self, request: pb.WatchBulkRequest, context: Context
                        ) -> AsyncIterator[pb.WatchBulkResponse]:
        def open_() -> AsyncGenerator[pb.WatchBulkResponse, None]:
            check_strings(request)
            return _bulk.watch(self.engine, _bulk.bulk_id_of(request.bulk_id),
                               NAMESPACE.get(), self.config.max_watch_seconds)

        async for message in self._stream(context, open_):
            yield message

    @override
    @_unary
    async def StartBulk(self, request: pb.StartBulkRequest, context: Context
                        ) -> pb.StartBulkResponse:
        spec = _bulk.spec_of(request, NAMESPACE.get(), CALLER.get())
        b, matched = await self.engine.bulks.start_bulk(
            spec, request.workflow or None, _status_filter(request.status),
            narrower_filters(request), dry_run=request.dry_run,
            request_id=_request_id(request.request_id))
        response = pb.StartBulkResponse(matched=matched)
        if b is not None:
            response.bulk.CopyFrom(_bulk.bulk_to_pb(b))
        return response

    @override
    @_unary
    async def GetBulk(self, request: pb.GetBulkRequest, context: Context) -> pb.GetBulkResponse:
        b = await self.engine.bulks.get(_bulk.bulk_id_of(request.bulk_id), NAMESPACE.get())
        return pb.GetBulkResponse(bulk=_bulk.bulk_to_pb(b))

    @override
    @_unary
    async def CancelBulk(self, request: pb.CancelBulkRequest, context: Context
                         ) -> pb.CancelBulkResponse:
        b = await self.engine.bulks.cancel(_bulk.bulk_id_of(request.bulk_id), NAMESPACE.get())
        return pb.CancelBulkResponse(bulk=_bulk.bulk_to_pb(b))

    @override
    @_unary
    async def ListWorkflows(self, request: pb.ListWorkflowsRequest, context: Context
                            ) -> pb.ListWorkflowsResponse:
        size = _page_size(request.page_size, *WORKFLOWS_PAGE)
        offset = 0
        if request.page_token:
            token = _decode_token(request.page_token)
            given = token.get("offset")
            if not isinstance(given, int) or isinstance(given, bool) or given < 0:
                raise _invalid("page_token", "malformed")
            offset = given
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
        """The execution as the API sends it; never raises (a minimal snapshot when its
        stored data cannot be converted)."""
        shown = safe_execution_to_pb(ex, self._workflow_of(ex))
        shown.id = namespaces.split(shown.id)[1]  # callers see plain ids (`_qualified`)
        return shown

    def _workflow_of(self, ex: Execution) -> Workflow | None:
        try:
            return self.engine.registry.get(ex.workflow, ex.workflow_version)
        except WorkflowNotFound:
            return None  # another replica's version: the snapshot goes without schemas
        except Exception:
            return None  # a malformed stored name: the snapshot goes without schemas

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
