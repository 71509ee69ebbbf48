"""Domain errors -> gRPC status, in one table.

Every non-OK reply is a `google.rpc.Status` (sent with grpcio-status) that carries an
`ErrorInfo` (the error's machine `reason`, domain `tarry.dev`, its metadata) and, where it
helps the caller, a `BadRequest` (field violations) or a `PreconditionFailure`.

Anything that is not a `TarryError` is a bug: it is logged with its traceback here and the
caller gets INTERNAL with a fixed message, so no Redis key, host or traceback leaks out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status  # type: ignore[import-untyped]

from tarry.engine import (
    BulkNotFound,
    Conflict,
    CursorOutOfRange,
    DeadlineExceeded,
    ExecutionExists,
    ExecutionNotFound,
    FieldViolation,
    InvalidArgument,
    Overloaded,
    StoreUnavailable,
    TarryError,
    WorkflowNotFound,
    WrongState,
)

from ._auth import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

DOMAIN = "tarry.dev"
"""The `ErrorInfo.domain` of every error Tarry returns."""

INTERNAL_MESSAGE = "internal server error; the server log has the details"

# The one table. Subclasses map through their nearest listed ancestor, so InvalidInput and
# InvalidResumeData (and MalformedRequest, below) are INVALID_ARGUMENT, NodeNotWaiting is
# FAILED_PRECONDITION.
CODES: Mapping[type[TarryError], grpc.StatusCode] = {
    WorkflowNotFound: grpc.StatusCode.NOT_FOUND,
    ExecutionNotFound: grpc.StatusCode.NOT_FOUND,
    BulkNotFound: grpc.StatusCode.NOT_FOUND,
    ExecutionExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    WrongState: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    CursorOutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
# StepError is absent on purpose: it is recorded in an execution, never a reply (were one to
# reach a call, it would be a bug: INTERNAL).


class MalformedRequest(InvalidArgument):
    """A request that does not decode as its protobuf message (truncated, invalid UTF-8 in
    a string, nested deeper than the parser allows). Raised by the api layer only."""

    reason = "MALFORMED_REQUEST"


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC code an exception is answered with (INTERNAL for anything unexpected)."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def status_for(exc: BaseException) -> status_pb2.Status:
    """The rich `google.rpc.Status` that answers `exc`."""
    code = code_for(exc)
    if isinstance(exc, TarryError) and code is not grpc.StatusCode.INTERNAL:
        details = [_error_info(exc.reason, exc.metadata)]
        if isinstance(exc, InvalidArgument):
            details.append(_bad_request(exc.violations))
        elif isinstance(exc, WrongState):
            details.append(_precondition_failure(exc))
        return _status(code, exc.message, details)
    return _status(code, INTERNAL_MESSAGE, [_error_info("INTERNAL", {})])


async def abort(context: grpc.aio.ServicerContext[object, object], exc: BaseException
                ) -> NoReturn:
    """End the call with the status that answers `exc`."""
    status = status_for(exc)
    if status.code == code_pb2.INTERNAL:
        log.error("unexpected error in a call", exc_info=exc)
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _status(code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any]
            ) -> status_pb2.Status:
    number: int = code.value[0]
    return status_pb2.Status(code=number, message=message, details=details)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest
          | error_details_pb2.PreconditionFailure) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _error_info(reason: str, metadata: Mapping[str, str]) -> any_pb2.Any:
    return _pack(error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={k: str(v) for k, v in metadata.items()}))


def _bad_request(violations: Sequence[FieldViolation]) -> any_pb2.Any:
    return _pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in violations
    ]))


def _precondition_failure(exc: WrongState) -> any_pb2.Any:
    # AIP-193: `type` says which precondition, `subject` what it is about.
    execution_id = exc.metadata.get("execution_id", "")
    subject = f"executions/{execution_id}" if execution_id else ""
    if "node" in exc.metadata:
        subject = f"{subject}/nodes/{exc.metadata['node']}"
    return _pack(error_details_pb2.PreconditionFailure(violations=[
        error_details_pb2.PreconditionFailure.Violation(
            type=exc.reason, subject=subject, description=exc.message)
    ]))
