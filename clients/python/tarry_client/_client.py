"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar, Unpack

import grpc

from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1 import workflow_service_pb2_grpc as pb_grpc

from . import _requests as req
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

DEFAULT_TIMEOUT = 30.0


class Client:
    """A blocking client of a Tarry server.

    `Client("localhost:50051")` opens (and `close()` closes) an insecure channel, or a secure
    one with `credentials`; `Client(channel)` uses a channel you own and leaves it open.
    `timeout` is the default deadline, in seconds, of each unary call (None: no deadline);
    with `wait=True` it is also how long Run / Resume wait for the execution to settle. A
    method's own `timeout=None` means this default. `watch()` has no deadline.
    `retry` governs retries of unary calls on UNAVAILABLE, `watch_retry` the reconnects of
    `watch()` (None: never retry).
    `metadata` is sent with every call; `token` adds `authorization: Bearer <token>` (for a
    server with authentication on), `namespace` the namespace the calls work in (default:
    the token's first, or `default`). For TLS give `credentials`, e.g.
    `grpc.ssl_channel_credentials(ca_pem)` (with a client key and certificate for mutual TLS).

    Failed calls raise a `TarryError` subclass; see the package docstring.
    """

    def __init__(
        self,
        target: str | grpc.Channel,
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
            self._channel = (grpc.secure_channel(target, credentials, options=list(options))
                             if credentials else
                             grpc.insecure_channel(target, options=list(options)))
            self._owns_channel = True
        else:
            self._channel, self._owns_channel = target, False
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)
        self._timeout = timeout
        self._retry = retry or NO_RETRY
        self._watch_retry = watch_retry or NO_RETRY
        self._metadata = req.call_metadata(metadata, token, namespace)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- mutations --------------------------------------------------------------------------

    def run(self, workflow: str, input: JSON = None, *, version: str | None = None,
            execution_id: str | None = None, request_id: str | None = None,
            wait: bool = False, tags: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Execution:
        """Start an execution of `workflow` (the latest version unless `version`).

        With `execution_id` or `request_id`, running again returns the same execution. With
        `wait`, answer once it is no longer RUNNING, or shortly before `timeout`. `tags`
        label it, for `list_executions(tags=...)`.
        Raises WorkflowNotFound, InvalidInput (see `.violations`), AlreadyExists.
        """
        request = req.run(workflow, input, version=version, execution_id=execution_id,
                          request_id_=request_id, wait=wait, tags=tags)
        return execution_from_pb(self._unary(self._stub.Run, request, timeout).execution)

    def resume(self, execution_id: str, data: JSON = None, *, node_id: str | None = None,
               action: str | None = None, from_step: str | None = None,
               request_id: str | None = None, wait: bool = False,
               timeout: float | None = None) -> Execution:
        """Continue an AWAITING or SUSPENDED execution with `data`.

        `node_id` names the wait node when several wait; `action` picks its outgoing edges;
        `from_step` re-runs another step of a suspended chain. Raises ExecutionNotFound,
        InvalidResumeData (the execution is left as it was), InvalidArgument, WrongState,
        NodeNotWaiting, Conflict.
        """
        request = req.resume(execution_id, data, node_id=node_id, action=action,
                             from_step=from_step, request_id_=request_id, wait=wait)
        return execution_from_pb(self._unary(self._stub.Resume, request, timeout).execution)

    def suspend(self, execution_id: str, reason: str = "", *, request_id: str | None = None,
                freeze_timers: bool = False,
                timeout: float | None = None) -> Execution:
        """Suspend an execution: AWAITING at once, RUNNING at the next node boundary
        (`suspend_requested` is set until then). With `freeze_timers` its timers stop while
        it is suspended (each gets the time it had left at the Resume).
        Raises ExecutionNotFound, WrongState."""
        request = req.suspend(execution_id, reason, request_id, freeze_timers)
        return execution_from_pb(self._unary(self._stub.Suspend, request, timeout).execution)

    def cancel(self, execution_id: str, reason: str = "", *, request_id: str | None = None,
               timeout: float | None = None) -> Execution:
        """Cancel an execution. Raises ExecutionNotFound, WrongState (COMPLETED or FAILED)."""
        request = req.cancel(execution_id, reason, request_id)
        return execution_from_pb(self._unary(self._stub.Cancel, request, timeout).execution)

    # -- reads ------------------------------------------------------------------------------

    def get(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        """The current snapshot of an execution. Raises ExecutionNotFound."""
        request = req.get(execution_id)
        return execution_from_pb(
            self._unary(self._stub.GetExecution, request, timeout).execution)

    def delete(self, execution_id: str, *, timeout: float | None = None) -> None:
        """Remove a finished execution whole, now. Raises ExecutionNotFound, WrongState (it
        is not finished)."""
        self._unary(self._stub.DeleteExecution, req.delete(execution_id), timeout)

    def list_executions(self, workflow: str | None = None, status: Status | str | None = None,
                        page_size: int | None = None, page_token: str | None = None, *,
                        tags: Mapping[str, str] | None = None, version: str | None = None,
                        created_from: datetime | None = None,
                        created_to: datetime | None = None,
                        waiting_node: str | None = None,
                        timeout: float | None = None) -> ExecutionPage:
        """One page of executions, newest first, optionally of one workflow / status, with
        every one of `tags`, of one `version` (with a workflow), created in
        [`created_from`, `created_to`), waiting at `waiting_node` (with a workflow). A next
        page must repeat the same filters."""
        request = req.list_executions(workflow, status, page_size, page_token, tags=tags,
                                      version=version, created_from=created_from,
                                      created_to=created_to, waiting_node=waiting_node)
        response = self._unary(self._stub.ListExecutions, request, timeout)
        return execution_page_from_pb(response)

    def iter_executions(self, workflow: str | None = None, status: Status | str | None = None,
                        page_size: int | None = None, **filters: Unpack[req.ListFilters]
                        ) -> Iterator[Execution]:
        """Every matching execution, newest first, fetching pages as needed (the filters of
        `list_executions`, repeated on every page)."""
        token: str | None = None
        while True:
            page = self.list_executions(workflow, status, page_size, token, **filters)
            yield from page.executions
            if not page.next_page_token:
                return
            token = page.next_page_token

    def events(self, execution_id: str, after_sequence: int = 0,
               page_size: int | None = None, *, timeout: float | None = None) -> EventPage:
        """One page of the execution's event log after `after_sequence`, oldest first.
        Raises ExecutionNotFound, CursorOutOfRange."""
        request = req.events(execution_id, after_sequence, page_size)
        response = self._unary(self._stub.ListExecutionEvents, request, timeout)
        return event_page_from_pb(response)

    def workflows(self, *, timeout: float | None = None) -> list[Workflow]:
        """Every workflow the server hosts (each registered version), sorted by name."""
        found: list[Workflow] = []
        token = ""
        while True:
            response = self._unary(self._stub.ListWorkflows,
                                   req.list_workflows(token), timeout)
            found += (workflow_from_pb(w) for w in response.workflows)
            if not response.next_page_token:
                return found
            token = response.next_page_token

    def describe(self, workflow: str, version: str | None = None, *,
                 timeout: float | None = None) -> Workflow:
        """One workflow definition (the latest version unless `version`).
        Raises WorkflowNotFound."""
        response = self._unary(self._stub.DescribeWorkflow, req.describe(workflow, version),
                               timeout)
        return workflow_from_pb(response.workflow)

    def watch(self, execution_id: str, after_sequence: int | None = None
              ) -> Iterator[WatchItem]:
        """Follow an execution until it ends.

        Yields the current snapshot (an `Execution`) first, or, given `after_sequence`, the
        events after it; then each `Event` as it happens. The iterator ends after the
        terminal status event (or at once after a terminal snapshot). When the stream
        breaks, it reconnects by itself from the last sequence it yielded, so nothing is
        missed or repeated; it raises (e.g. Unavailable) only once `watch_retry` is spent.
        Raises ExecutionNotFound and CursorOutOfRange without retrying.
        """
        cursor = WatchCursor(execution_id, after_sequence, self._watch_retry)
        while not cursor.done:
            call = self._stub.WatchExecution(cursor.request(), metadata=self._metadata)
            try:
                for message in call:
                    item = cursor.accept(message)
                    if item is not None:
                        yield item
                        if cursor.done:
                            return
                if not cursor.received and cursor.caught_up(self.get(execution_id)):
                    return
                delay = cursor.retry_after(None)
            except grpc.RpcError as exc:
                delay = cursor.retry_after(exc)
            finally:
                call.cancel()  # a no-op once the call is over; stops it when abandoned early
            time.sleep(delay)

    def watch_executions(self, workflow: str | None = None,
                         status: Status | str | None = None, *,
                         tags: Mapping[str, str] | None = None,
                         waiting_node: str | None = None, cursor: str | None = None
                         ) -> Iterator[ExecutionChange]:
        """Follow every execution that matches the filters (those of `list_executions`;
        `status`: entering or leaving it): each change of status or waiting nodes, in commit
        order, including the one that makes an execution stop matching (`matches` False).
        From `cursor` (an `ExecutionChange.cursor` or `ExecutionPage.watch_cursor`), else
        from now. Runs until the caller stops; reconnects by itself with the last cursor, so
        nothing is missed or repeated. Raises CursorOutOfRange without retrying."""
        cursor_ = ChangesCursor(req.watch_executions(workflow, status, tags, waiting_node,
                                                     cursor), self._watch_retry)
        while True:
            call = self._stub.WatchExecutions(cursor_.request(), metadata=self._metadata)
            try:
                for message in call:
                    yield from cursor_.accept(message)
                delay = cursor_.retry_after(None)
            except grpc.RpcError as exc:
                delay = cursor_.retry_after(exc)
            finally:
                call.cancel()
            time.sleep(delay)

    # -- batches ----------------------------------------------------------------------------

    def start_bulk(self, operation: BulkOperation | str, *, reason: str = "",
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
        return bulk_start_from_pb(self._unary(self._stub.StartBulk, request, timeout))

    def get_bulk(self, bulk_id: str, *, timeout: float | None = None) -> Bulk:
        """A batch as it stands. Raises BulkNotFound."""
        response = self._unary(self._stub.GetBulk, pb.GetBulkRequest(bulk_id=bulk_id), timeout)
        return bulk_from_pb(response.bulk)

    def cancel_bulk(self, bulk_id: str, *, timeout: float | None = None) -> Bulk:
        """Stop a batch; the executions it has not reached are left as they are."""
        response = self._unary(self._stub.CancelBulk, pb.CancelBulkRequest(bulk_id=bulk_id),
                               timeout)
        return bulk_from_pb(response.bulk)

    def watch_bulk(self, bulk_id: str) -> Iterator[Bulk]:
        """The batch now, then each time it moves, until it has ended."""
        call = self._stub.WatchBulk(pb.WatchBulkRequest(bulk_id=bulk_id),
                                    metadata=self._metadata)
        try:
            for message in call:
                yield bulk_from_pb(message.bulk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    # -- plumbing ---------------------------------------------------------------------------

    def _unary(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req,
               timeout: float | None) -> _Resp:
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as exc:
                delay = unary_retry_delay(self._retry, attempt, exc, deadline)
                if delay is None:
                    raise from_rpc_error(exc) from exc
            time.sleep(delay)
