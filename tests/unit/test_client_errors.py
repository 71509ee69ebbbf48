"""tarry_client turns a google.rpc.Status with details back into typed exceptions.

The statuses are built the way the server sends them (grpcio-status `to_status`), then wrapped
in a stand-in for the failed call: no network.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status  # type: ignore[import-untyped]

import tarry_client as tc
from tests.unit.fake_calls import FailedCall


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich(code: grpc.StatusCode, message: str, reason: str = "", *,
         metadata: dict[str, str] | None = None, domain: str = "tarry.dev",
         violations: Sequence[tuple[str, str]] = (),
         preconditions: Sequence[tuple[str, str, str]] = (),
         extra: Sequence[Message] = ()) -> FailedCall:
    """A failed call carrying a google.rpc.Status, exactly as the server builds it."""
    details = []
    if reason:
        details.append(_pack(error_details_pb2.ErrorInfo(
            reason=reason, domain=domain, metadata=metadata or {})))
    if violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations])))
    if preconditions:
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(type=t, subject=s, description=d)
            for t, s, d in preconditions])))
    details += [_pack(m) for m in extra]
    status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message,
                                                    details=details))
    return FailedCall(status.code, status.details, status.trailing_metadata)


def test_execution_not_found_is_typed_with_reason_metadata_and_message() -> None:
    err = tc.from_rpc_error(rich(grpc.StatusCode.NOT_FOUND, "no execution with id 'x'",
                                 "EXECUTION_NOT_FOUND", metadata={"execution_id": "x"}))
    assert type(err) is tc.ExecutionNotFound
    assert isinstance(err, tc.NotFound) and isinstance(err, tc.TarryError)
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "EXECUTION_NOT_FOUND"
    assert err.domain == "tarry.dev"
    assert err.metadata == {"execution_id": "x"}
    assert err.message == "no execution with id 'x'"
    assert str(err) == "NOT_FOUND (EXECUTION_NOT_FOUND): no execution with id 'x'"


@pytest.mark.parametrize(("code", "reason", "cls"), [
    (grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND", tc.ExecutionNotFound),
    (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND", tc.WorkflowNotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", tc.InvalidArgument),
    (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT", tc.InvalidInput),
    (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RESUME_DATA", tc.InvalidResumeData),
    (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_STATE", tc.WrongState),
    (grpc.StatusCode.FAILED_PRECONDITION, "NODE_NOT_WAITING", tc.NodeNotWaiting),
    (grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE", tc.Conflict),
    (grpc.StatusCode.ALREADY_EXISTS, "EXECUTION_EXISTS", tc.AlreadyExists),
    (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_OUT_OF_RANGE", tc.CursorOutOfRange),
    (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", tc.Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", tc.DeadlineExceeded),
    (grpc.StatusCode.INTERNAL, "INTERNAL", tc.Internal),
])
def test_every_reason_maps_to_its_class(code: grpc.StatusCode, reason: str,
                                        cls: type[tc.TarryError]) -> None:
    err = tc.from_rpc_error(rich(code, "boom", reason))
    assert type(err) is cls
    assert err.code is code and err.reason == reason


def test_subclasses_are_caught_by_their_parents() -> None:
    assert issubclass(tc.InvalidInput, tc.InvalidArgument)
    assert issubclass(tc.InvalidResumeData, tc.InvalidArgument)
    assert issubclass(tc.NodeNotWaiting, tc.WrongState)
    assert issubclass(tc.ExecutionNotFound, tc.NotFound)
    assert issubclass(tc.WorkflowNotFound, tc.NotFound)


def test_invalid_resume_data_carries_field_violations() -> None:
    err = tc.from_rpc_error(rich(
        grpc.StatusCode.INVALID_ARGUMENT, "the resume data does not match the schema",
        "INVALID_RESUME_DATA", metadata={"execution_id": "e1", "node": "send-verification"},
        violations=[("data.code", "Field required"), ("data.extra", "not allowed")]))
    assert isinstance(err, tc.InvalidResumeData)
    assert err.violations == [("data.code", "Field required"), ("data.extra", "not allowed")]
    assert err.violations[0].field == "data.code"
    assert err.violations[0].description == "Field required"
    assert err.metadata["node"] == "send-verification"
    assert str(err).splitlines() == [
        "INVALID_ARGUMENT (INVALID_RESUME_DATA): the resume data does not match the schema",
        "  data.code: Field required",
        "  data.extra: not allowed",
    ]


def test_details_that_repeat_the_message_are_not_printed_twice() -> None:
    err = tc.from_rpc_error(rich(grpc.StatusCode.INVALID_ARGUMENT,
                                 "page_token: was issued for other filters", "INVALID_ARGUMENT",
                                 violations=[("page_token", "was issued for other filters")]))
    assert str(err) == ("INVALID_ARGUMENT (INVALID_ARGUMENT): "
                        "page_token: was issued for other filters")
    assert err.violations == [("page_token", "was issued for other filters")]


def test_wrong_state_carries_precondition_violations() -> None:
    err = tc.from_rpc_error(rich(
        grpc.StatusCode.FAILED_PRECONDITION, "execution 'e1' is COMPLETED", "WRONG_STATE",
        preconditions=[("WRONG_STATE", "executions/e1", "execution 'e1' is COMPLETED")]))
    assert type(err) is tc.WrongState
    assert err.preconditions == [
        tc.PreconditionViolation("WRONG_STATE", "executions/e1", "execution 'e1' is COMPLETED")]
    assert err.violations == []


def test_cursor_out_of_range_reads_the_oldest_sequence() -> None:
    err = tc.from_rpc_error(rich(grpc.StatusCode.OUT_OF_RANGE, "trimmed",
                                 "CURSOR_OUT_OF_RANGE", metadata={"oldest_sequence": "42"}))
    assert isinstance(err, tc.CursorOutOfRange)
    assert err.oldest_sequence == 42
    assert tc.CursorOutOfRange("x").oldest_sequence is None


def test_without_details_the_code_decides() -> None:
    err = tc.from_rpc_error(FailedCall(grpc.StatusCode.UNAVAILABLE,
                                       "failed to connect to all addresses"))
    assert type(err) is tc.Unavailable
    assert err.reason == "" and err.metadata == {}
    assert str(err) == "UNAVAILABLE: failed to connect to all addresses"


@pytest.mark.parametrize(("code", "cls"), [
    (grpc.StatusCode.NOT_FOUND, tc.NotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, tc.InvalidArgument),
    (grpc.StatusCode.FAILED_PRECONDITION, tc.WrongState),
    (grpc.StatusCode.ABORTED, tc.Conflict),
    (grpc.StatusCode.ALREADY_EXISTS, tc.AlreadyExists),
    (grpc.StatusCode.OUT_OF_RANGE, tc.CursorOutOfRange),
    (grpc.StatusCode.DEADLINE_EXCEEDED, tc.DeadlineExceeded),
    (grpc.StatusCode.CANCELLED, tc.Cancelled),
    (grpc.StatusCode.INTERNAL, tc.Internal),
    (grpc.StatusCode.UNKNOWN, tc.Internal),
    (grpc.StatusCode.UNIMPLEMENTED, tc.TarryError),
    (grpc.StatusCode.UNAUTHENTICATED, tc.Unauthenticated),
    (grpc.StatusCode.PERMISSION_DENIED, tc.PermissionDenied),
])
def test_unknown_reasons_fall_back_to_the_code(code: grpc.StatusCode,
                                               cls: type[tc.TarryError]) -> None:
    err = tc.from_rpc_error(rich(code, "from a newer server", "SOMETHING_NEW"))
    assert type(err) is cls
    assert err.reason == "SOMETHING_NEW"  # still reported, even though no class knows it


def test_a_reason_from_another_domain_does_not_pick_a_tarry_class() -> None:
    err = tc.from_rpc_error(rich(grpc.StatusCode.NOT_FOUND, "no such route",
                                 "EXECUTION_NOT_FOUND", domain="proxy.example.com"))
    assert type(err) is tc.NotFound
    assert err.domain == "proxy.example.com"


def test_unknown_detail_types_are_ignored() -> None:
    err = tc.from_rpc_error(rich(
        grpc.StatusCode.UNAVAILABLE, "Redis is down", "STORE_UNAVAILABLE",
        extra=[error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))]))
    assert type(err) is tc.Unavailable and err.reason == "STORE_UNAVAILABLE"


def test_garbage_details_fall_back_to_the_code() -> None:
    err = tc.from_rpc_error(FailedCall(grpc.StatusCode.NOT_FOUND, "gone",
                                       [("grpc-status-details-bin", b"\xff\xff\xff")]))
    assert type(err) is tc.NotFound and err.message == "gone"


def test_asyncio_errors_are_read_the_same_way() -> None:
    sync = rich(grpc.StatusCode.INVALID_ARGUMENT, "bad input", "INVALID_INPUT",
                violations=[("input.email", "not an email")])
    err = tc.from_rpc_error(aio.AioRpcError(sync.code(), aio.Metadata(),
                                            aio.Metadata(*sync.trailing_metadata()),
                                            sync.details()))
    assert type(err) is tc.InvalidInput
    assert err.violations == [("input.email", "not an email")]


def test_a_bare_rpc_error_still_converts() -> None:
    err = tc.from_rpc_error(grpc.RpcError())
    assert type(err) is tc.Internal and err.code is grpc.StatusCode.UNKNOWN


def test_errors_made_by_hand_get_their_default_code() -> None:
    err = tc.ExecutionNotFound("no execution with id 'x'", reason="EXECUTION_NOT_FOUND")
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert str(err) == "NOT_FOUND (EXECUTION_NOT_FOUND): no execution with id 'x'"
