"""The client's exception tree, rebuilt from the server's `google.rpc.Status` details.

TarryError                  every failed call; .code, .reason, .metadata, .message
├── NotFound                NOT_FOUND
│   ├── ExecutionNotFound   EXECUTION_NOT_FOUND
│   ├── WorkflowNotFound    WORKFLOW_NOT_FOUND
│   └── BulkNotFound        BULK_NOT_FOUND
├── InvalidArgument         INVALID_ARGUMENT; .violations: [(field, description)]
│   ├── InvalidInput        INVALID_INPUT: Run input against the workflow's input schema
│   └── InvalidResumeData   INVALID_RESUME_DATA: Resume data against the node's resume schema
├── WrongState              FAILED_PRECONDITION (WRONG_STATE); .preconditions
│   └── NodeNotWaiting      NODE_NOT_WAITING
├── Conflict                ABORTED (CONCURRENT_UPDATE): read the execution and decide again
├── AlreadyExists           ALREADY_EXISTS (EXECUTION_EXISTS)
├── CursorOutOfRange        OUT_OF_RANGE (CURSOR_OUT_OF_RANGE); .oldest_sequence
├── Unavailable             UNAVAILABLE: the server or its Redis cannot be reached; retry
├── Overloaded              RESOURCE_EXHAUSTED (OVERLOADED): the server is at a limit; retry
│                           later (or elsewhere)
├── DeadlineExceeded        DEADLINE_EXCEEDED: the call's timeout passed
├── Cancelled               CANCELLED: the call was cancelled
└── Internal                INTERNAL / UNKNOWN / DATA_LOSS: a server bug

The ErrorInfo `reason` picks the class when there is one; otherwise the gRPC code does, so
errors from a proxy, a newer server or the transport still land somewhere sensible. Any other
code (UNIMPLEMENTED, UNAUTHENTICATED, ...) gives a plain TarryError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "tarry.dev"
_DETAILS_KEY = "grpc-status-details-bin"  # where grpcio-status puts the google.rpc.Status


class FieldViolation(NamedTuple):
    """One invalid request field (dotted path, e.g. `data.code`) and what is wrong with it."""

    field: str
    description: str


class PreconditionViolation(NamedTuple):
    """One unmet precondition (google.rpc.PreconditionFailure.Violation)."""

    type: str
    subject: str
    description: str


class TarryError(Exception):
    """A call to the Tarry server failed.

    `code` is the gRPC status code, `reason` the machine-readable ErrorInfo reason
    (e.g. "EXECUTION_NOT_FOUND"; empty when the reply had none, as from a proxy or a broken
    connection), `metadata` the ErrorInfo metadata, `message` the server's message.
    `str(error)` reads "CODE (REASON): message" followed by any field violations.
    """

    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
        preconditions: Iterable[PreconditionViolation] = (),
    ) -> None:
        self.message = message
        self.code = code or self.default_code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: list[FieldViolation] = list(violations)
        self.preconditions: list[PreconditionViolation] = list(preconditions)
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = self.code.name + (f" ({self.reason})" if self.reason else "")
        lines = [f"{head}: {self.message}" if self.message else head]
        # Details that only repeat the message add nothing to read.
        lines += [f"  {v.field}: {v.description}" for v in self.violations
                  if f"{v.field}: {v.description}" != self.message]
        lines += [f"  {p.subject or p.type}: {p.description}" for p in self.preconditions
                  if p.description != self.message]
        return "\n".join(lines)


class NotFound(TarryError):
    default_code = grpc.StatusCode.NOT_FOUND


class ExecutionNotFound(NotFound):
    pass


class WorkflowNotFound(NotFound):
    pass


class BulkNotFound(NotFound):
    pass


class InvalidArgument(TarryError):
    """The request was refused as malformed; `violations` say which fields and why."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidInput(InvalidArgument):
    pass


class InvalidResumeData(InvalidArgument):
    pass


class WrongState(TarryError):
    """The execution's status does not allow the request (e.g. resuming a COMPLETED one)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class NodeNotWaiting(WrongState):
    pass


class Conflict(TarryError):
    default_code = grpc.StatusCode.ABORTED


class AlreadyExists(TarryError):
    default_code = grpc.StatusCode.ALREADY_EXISTS


class CursorOutOfRange(TarryError):
    default_code = grpc.StatusCode.OUT_OF_RANGE

    @property
    def oldest_sequence(self) -> int | None:
        """The oldest event sequence the server still keeps, when it said."""
        raw = self.metadata.get("oldest_sequence")
        return int(raw) if raw is not None and raw.lstrip("-").isdigit() else None


class Unavailable(TarryError):
    default_code = grpc.StatusCode.UNAVAILABLE


class Overloaded(TarryError):
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(TarryError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TarryError):
    default_code = grpc.StatusCode.CANCELLED


class Internal(TarryError):
    default_code = grpc.StatusCode.INTERNAL


class Unauthenticated(TarryError):
    """The server needs credentials (a bearer token: `Client(token=...)`) it did not get,
    or the token is not valid or has expired."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TarryError):
    """The caller's roles do not allow the call (`metadata["role"]` names the one needed)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


# The one table from ErrorInfo reasons to classes; codes are the fallback below.
_BY_REASON: dict[str, type[TarryError]] = {
    "EXECUTION_NOT_FOUND": ExecutionNotFound,
    "BULK_NOT_FOUND": BulkNotFound,
    "WORKFLOW_NOT_FOUND": WorkflowNotFound,
    "INVALID_ARGUMENT": InvalidArgument,
    "INVALID_INPUT": InvalidInput,
    "INVALID_RESUME_DATA": InvalidResumeData,
    "WRONG_STATE": WrongState,
    "NODE_NOT_WAITING": NodeNotWaiting,
    "CONCURRENT_UPDATE": Conflict,
    "EXECUTION_EXISTS": AlreadyExists,
    "CURSOR_OUT_OF_RANGE": CursorOutOfRange,
    "STORE_UNAVAILABLE": Unavailable,
    "OVERLOADED": Overloaded,
    "MALFORMED_REQUEST": InvalidArgument,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
}

_BY_CODE: dict[grpc.StatusCode, type[TarryError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: WrongState,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.OUT_OF_RANGE: CursorOutOfRange,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the server attached to a failed call, if any.

    Read straight from the trailing metadata rather than with `grpc_status.from_call`, which
    works the same for sync and asyncio errors and does not raise when a proxy rewrote the
    message.
    """
    trailing = _call(error, "trailing_metadata") or ()
    for key, value in trailing:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:  # garbage details: fall back to the code
                return None
    return None


def from_rpc_error(error: grpc.RpcError) -> TarryError:
    """The typed exception for a failed gRPC call (raise it `from` the original)."""
    code = _call(error, "code")
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = _call(error, "details")
    status = rich_status(error)
    message = status.message if status is not None and status.message else str(details or "")
    reason, domain, metadata = "", "", {}
    violations: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    for packed in status.details if status is not None else ():
        # Unpack() says whether the Any held that type; details of other types are skipped.
        info, bad, failure = (error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest(),
                              error_details_pb2.PreconditionFailure())
        if packed.Unpack(info):
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif packed.Unpack(bad):
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif packed.Unpack(failure):
            preconditions += [PreconditionViolation(v.type, v.subject, v.description)
                              for v in failure.violations]
    cls = _BY_REASON.get(reason) if domain in ("", DOMAIN) else None
    cls = cls or _BY_CODE.get(code, TarryError)
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata,
               violations=violations, preconditions=preconditions)


def _call(error: grpc.RpcError, method: str) -> Any:
    """error.method(), or None: a bare grpc.RpcError has none of the grpc.Call methods."""
    fn = getattr(error, method, None)
    return fn() if callable(fn) else None
