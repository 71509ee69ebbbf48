"""A typed Python client for Tarry, the durable-workflow gRPC service: sync and asyncio.

    from tarry_client import Client, Status

    with Client("localhost:50051") as tarry:
        ex = tarry.run("expense-approval")
        for item in tarry.watch(ex.id):          # snapshot, then events; ends when it ends
            if item.status is Status.AWAITING:
                tarry.resume(ex.id, {"approved": True}, action="approve")

`AsyncClient` has the same methods as coroutines (and `watch` / `iter_executions` as async
iterators). Both work over the generated stubs of `tarry_api`; nothing here imports the
server.

Result types
------------
Calls return plain frozen dataclasses (`Execution`, `Event`, `WaitingPoint`, `Suspension`,
`Cancellation`, `ExecutionError`, `Workflow`, `WorkflowNode`, `WorkflowEdge`, `RetryPolicy`,
`ExecutionPage`, `EventPage`, `ExecutionChange`), never protobuf messages, because:

* user data (input, state, result, resume and suspend data, event details, JSON Schemas) is
  JSON on the wire (`google.protobuf.Value` / `Struct`), so it comes back as the `dict` /
  `list` / `str` / number / `bool` / `None` that `json.dumps` takes; whole numbers come back
  as `int` (JSON numbers travel as doubles, exact up to 2**53);
* statuses and kinds are `str` enums without the proto prefix (`Status.AWAITING ==
  "AWAITING"`), with `Status.terminal`;
* times are timezone-aware `datetime`s in UTC; durations are `timedelta`s;
* fields the server leaves unset are `None` (not empty messages): `execution.error`,
  `.suspension`, `.cancellation`, `event.status`, ...;
* values are immutable and compare by value, so they are safe to cache and to share between
  threads. `as_json(value)` turns any of them into JSON data for printing or logging.

`watch()` yields `WatchItem = Execution | Event`; both have `.sequence` and `.terminal`.
`watch_executions()` yields an `ExecutionChange` for each change of every execution that
matches its filters (an approval inbox, a dashboard), each with the `.cursor` to go on from.

Errors
------
Every failed call raises a `TarryError` subclass rebuilt from the server's `google.rpc.Status`
(ErrorInfo reason and metadata, BadRequest field violations, PreconditionFailure):

    TarryError                 .code (grpc.StatusCode), .reason, .metadata, .message
    ├── NotFound               ├── ExecutionNotFound, WorkflowNotFound, BulkNotFound
    ├── InvalidArgument        .violations [(field, description)]; InvalidInput,
    │                          InvalidResumeData
    ├── WrongState             FAILED_PRECONDITION; NodeNotWaiting
    ├── Conflict               ABORTED: a concurrent change won; read and decide again
    ├── AlreadyExists, CursorOutOfRange, Unavailable, Overloaded, DeadlineExceeded,
    │   Cancelled, Internal, Unauthenticated, PermissionDenied

Retries and idempotency
-----------------------
Every mutating call carries a `request_id` (a fresh uuid4 unless given), so the client can
retry it on UNAVAILABLE (see `Retry`) and the server answers the repeat with its first answer.
`watch()` reconnects by itself from the last sequence it yielded when the stream breaks or the
server ends a long watch, so the caller sees every event exactly once, in order.
"""

from ._aio import AsyncClient
from ._client import DEFAULT_TIMEOUT, Client
from ._convert import as_json
from ._errors import (
    AlreadyExists,
    BulkNotFound,
    Cancelled,
    Conflict,
    CursorOutOfRange,
    DeadlineExceeded,
    ExecutionNotFound,
    FieldViolation,
    Internal,
    InvalidArgument,
    InvalidInput,
    InvalidResumeData,
    NodeNotWaiting,
    NotFound,
    Overloaded,
    PermissionDenied,
    PreconditionViolation,
    TarryError,
    Unauthenticated,
    Unavailable,
    WorkflowNotFound,
    WrongState,
    from_rpc_error,
)
from ._retry import NO_RETRY, Retry
from ._types import (
    JSON,
    Bulk,
    BulkOperation,
    BulkStart,
    BulkStatus,
    Cancellation,
    Event,
    EventPage,
    EventType,
    Execution,
    ExecutionChange,
    ExecutionError,
    ExecutionPage,
    JoinMode,
    NodeKind,
    PendingInput,
    RetryPolicy,
    Status,
    Suspension,
    SuspensionSource,
    WaitingKind,
    WaitingPoint,
    WatchItem,
    Workflow,
    WorkflowEdge,
    WorkflowNode,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "JSON",
    "NO_RETRY",
    "AlreadyExists",
    "AsyncClient",
    "Bulk",
    "BulkNotFound",
    "BulkOperation",
    "BulkStart",
    "BulkStatus",
    "Cancellation",
    "Cancelled",
    "Client",
    "Conflict",
    "CursorOutOfRange",
    "DeadlineExceeded",
    "Event",
    "EventPage",
    "EventType",
    "Execution",
    "ExecutionChange",
    "ExecutionError",
    "ExecutionNotFound",
    "ExecutionPage",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "InvalidInput",
    "InvalidResumeData",
    "JoinMode",
    "NodeKind",
    "NodeNotWaiting",
    "NotFound",
    "Overloaded",
    "PendingInput",
    "PermissionDenied",
    "PreconditionViolation",
    "Retry",
    "RetryPolicy",
    "Status",
    "Suspension",
    "SuspensionSource",
    "TarryError",
    "Unauthenticated",
    "Unavailable",
    "WaitingKind",
    "WaitingPoint",
    "WatchItem",
    "Workflow",
    "WorkflowEdge",
    "WorkflowNode",
    "WorkflowNotFound",
    "WrongState",
    "as_json",
    "from_rpc_error",
]
