"""The asyncio client: the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar, Unpack

import grpc

from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1 import workflow_service_pb2_grpc as pb_grpc

from . import _requests as req
from ._client import DEFAULT_TIMEOUT
from ._convert import (
    bulk_from_pb,
    bulk_start_from_pb,
    event_page_from_pb,
    execution_from_pb,
    execution_page_from_pb,
    workflow_from_pb,
)
from ._errors import from_rpc_error
from ._retry import (
    DEFAULT_RETRY,
    DEFAULT_WATCH_RETRY,
    NO_RETRY,
    ChangesCursor,
    Retry,
    WatchCursor,
    unary_retry_delay,
)
from ._types import (
    JSON,
    Bulk,
    BulkOperation,
    BulkStart,
    EventPage,
    Execution,
    ExecutionChange,
    ExecutionPage,
    Status,
    WatchItem,
    Workflow,
)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AsyncClient:
    """An asyncio client of a Tarry server; see `Client` for the arguments and errors.

    Create it inside a running event loop (the channel binds to it), and `await close()` or
    use `async with`.
    """

    def __init__(
        self,
        target: str | grpc.aio.Channel,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: Retry | None = DEFAULT_RETRY,
        watch_retry: Retry | None = DEFAULT_WATCH_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        namespace: str | None = None,
    ) -> None:
        if isinstance(target, str):
            self._channel = (grpc.aio.secure_channel(target, credentials, options=list(options))
                             if credentials else
                             grpc.aio.insecure_channel(target, options=list(options)))
            self._owns_channel = True
        else:
            self._channel, self._owns_channel = target, False
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)
        self._timeout = timeout
        self._retry = retry or NO_RETRY
        self._watch_retry = watch_retry or NO_RETRY
        self._metadata = req.call_metadata(metadata, token, namespace)

    async def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- mutations --------------------------------------------------------------------------

    async def run(self, workflow: str, input: JSON = None, *, version: str | None = None,
                  execution_id: str | None = None, request_id: str | None = None,
                  wait: bool = False, tags: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Execution:
        """See `Client.run`."""
        request = req.run(workflow, input, version=version, execution_id=execution_id,
                          request_id_=request_id, wait=wait, tags=tags)
        return execution_from_pb((await self._unary(self._stub.Run, request, timeout)).execution)

    async def resume(self, execution_id: str, data: JSON = None, *,
                     node_id: str | None = None, action: str | None = None,
                     from_step: str | None = None, request_id: str | None = None,
                     wait: bool = False, timeout: float | None = None) -> Execution:
        """See `Client.resume`."""
        request = req.resume(execution_id, data, node_id=node_id, action=action,
                             from_step=from_step, request_id_=request_id, wait=wait)
        response = await self._unary(self._stub.Resume, request, timeout)
        return execution_from_pb(response.execution)

    async def suspend(self, execution_id: str, reason: str = "", *,
                      request_id: str | None = None, freeze_timers: bool = False,
                      timeout: float | None = None) -> Execution:
        """See `Client.suspend`."""
        request = req.suspend(execution_id, reason, request_id, freeze_timers)
        response = await self._unary(self._stub.Suspend, request, timeout)
        return execution_from_pb(response.execution)

    async def cancel(self, execution_id: str, reason: str = "", *,
                     request_id: str | None = None, timeout: float | None = None) -> Execution:
        """See `Client.cancel`."""
        request = req.cancel(execution_id, reason, request_id)
        response = await self._unary(self._stub.Cancel, request, timeout)
        return execution_from_pb(response.execution)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        """See `Client.get`."""
        request = req.get(execution_id)
        response = await self._unary(self._stub.GetExecution, request, timeout)
        return execution_from_pb(response.execution)

    async def delete(self, execution_id: str, *, timeout: float | None = None) -> None:
        """See `Client.delete`."""
        await self._unary(self._stub.DeleteExecution, req.delete(execution_id), timeout)

    async def list_executions(self, workflow: str | None = None,
                              status: Status | str | None = None, page_size: int | None = None,
                              page_token: str | None = None, *,
                              tags: Mapping[str, str] | None = None, version: str | None = None,
                              created_from: datetime | None = None,
                              created_to: datetime | None = None,
                              waiting_node: str | None = None,
                              timeout: float | None = None) -> ExecutionPage:
        """See `Client.list_executions`."""
        request = req.list_executions(workflow, status, page_size, page_token, tags=tags,
                                      version=version, created_from=created_from,
                                      created_to=created_to, waiting_node=waiting_node)
        response = await self._unary(self._stub.ListExecutions, request, timeout)
        return execution_page_from_pb(response)

    async def iter_executions(self, workflow: str | None = None,
                              status: Status | str | None = None,
                              page_size: int | None = None, **filters: Unpack[req.ListFilters]
                              ) -> AsyncIterator[Execution]:
        """See `Client.iter_executions`."""
        token: str | None = None
        while True:
            page = await self.list_executions(workflow, status, page_size, token, **filters)
            for execution in page.executions:
                yield execution
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def events(self, execution_id: str, after_sequence: int = 0,
                     page_size: int | None = None, *, timeout: float | None = None
                     ) -> EventPage:
        """See `Client.events`."""
        request = req.events(execution_id, after_sequence, page_size)
        response = await self._unary(self._stub.ListExecutionEvents, request, timeout)
        return event_page_from_pb(response)

    async def workflows(self, *, timeout: float | None = None) -> list[Workflow]:
        """See `Client.workflows`."""
        found: list[Workflow] = []
        token = ""
        while True:
            response = await self._unary(self._stub.ListWorkflows,
                                         req.list_workflows(token), timeout)
            found += (workflow_from_pb(w) for w in response.workflows)
            if not response.next_page_token:
                return found
            token = response.next_page_token

    async def describe(self, workflow: str, version: str | None = None, *,
                       timeout: float | None = None) -> Workflow:
        """See `Client.describe`."""
        response = await self._unary(self._stub.DescribeWorkflow,
                                     req.describe(workflow, version), timeout)
        return workflow_from_pb(response.workflow)

    async def watch(self, execution_id: str, after_sequence: int | None = None
                    ) -> AsyncIterator[WatchItem]:
        """See `Client.watch`: the same items, reconnecting the same way."""
        cursor = WatchCursor(execution_id, after_sequence, self._watch_retry)
        while not cursor.done:
            call = self._stub.WatchExecution(cursor.request(), metadata=self._metadata)
            try:
                async for message in call:
                    item = cursor.accept(message)
                    if item is not None:
                        yield item
                        if cursor.done:
                            return
                if not cursor.received and cursor.caught_up(await self.get(execution_id)):
                    return
                delay = cursor.retry_after(None)
            except grpc.RpcError as exc:
                delay = cursor.retry_after(exc)
            finally:
                call.cancel()  # a no-op once the call is over; stops it when abandoned early
            await asyncio.sleep(delay)

    async def watch_executions(self, workflow: str | None = None,
                               status: Status | str | None = None, *,
                               tags: Mapping[str, str] | None = None,
                               waiting_node: str | None = None, cursor: str | None = None
                               ) -> AsyncIterator[ExecutionChange]:
        """See `Client.watch_executions`: the same changes, reconnecting the same way."""
        cursor_ = ChangesCursor(req.watch_executions(workflow, status, tags, waiting_node,
                                                     cursor), self._watch_retry)
        while True:
            call = self._stub.WatchExecutions(cursor_.request(), metadata=self._metadata)
            try:
                async for message in call:
                    for change in cursor_.accept(message):
                        yield change
                delay = cursor_.retry_after(None)
            except grpc.RpcError as exc:
                delay = cursor_.retry_after(exc)
            finally:
                call.cancel()
            await asyncio.sleep(delay)

    # -- batches ----------------------------------------------------------------------------

    async def start_bulk(self, operation: BulkOperation | str, *, reason: str = "",
                   freeze_timers: bool = False, data: JSON = None, node_id: str | None = None,
                   action: str | None = None, rate: int | None = None, dry_run: bool = False,
                   request_id: str | None = None, timeout: float | None = None,
                   **filters: Unpack[req.BulkFilters]) -> BulkStart:
        """Suspend, resume (with `data`, `node_id`, `action`) or cancel every execution
        that matches the filters (those of `list_executions`), as one durable batch the
        server works through, at most `rate` a second (default 100). `dry_run`: only count
        them. Raises InvalidArgument, Overloaded (more match than one batch takes)."""
        request = req.start_bulk(operation, filters, reason=reason,
                                 freeze_timers=freeze_timers, data=data, node_id=node_id,
                                 action=action, rate=rate, dry_run=dry_run,
                                 request_id_=request_id)
        return bulk_start_from_pb(await self._unary(self._stub.StartBulk, request, timeout))

    async def get_bulk(self, bulk_id: str, *, timeout: float | None = None) -> Bulk:
        """A batch as it stands. Raises BulkNotFound."""
        response = await self._unary(self._stub.GetBulk, pb.GetBulkRequest(bulk_id=bulk_id),
                                     timeout)
        return bulk_from_pb(response.bulk)

    async def cancel_bulk(self, bulk_id: str, *, timeout: float | None = None) -> Bulk:
        """Stop a batch; the executions it has not reached are left as they are."""
        response = await self._unary(self._stub.CancelBulk,
                                     pb.CancelBulkRequest(bulk_id=bulk_id), timeout)
        return bulk_from_pb(response.bulk)

    async def watch_bulk(self, bulk_id: str) -> AsyncIterator[Bulk]:
        """The batch now, then each time it moves, until it has ended."""
        call = self._stub.WatchBulk(pb.WatchBulkRequest(bulk_id=bulk_id),
                                    metadata=self._metadata)
        try:
            async for message in call:
                yield bulk_from_pb(message.bulk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    # -- plumbing ---------------------------------------------------------------------------

    async def _unary(self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
                     request: _Req, timeout: float | None) -> _Resp:
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as exc:
                delay = unary_retry_delay(self._retry, attempt, exc, deadline)
                if delay is None:
                    raise from_rpc_error(exc) from exc
            await asyncio.sleep(delay)
