"""Checking a request's fields as they enter: string limits, user values, page sizes and
tokens, filters. Each refusal is INVALID_ARGUMENT naming the field, quoting none of it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Literal

from google.protobuf import message as pb_message
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor

from tarry import limits
from tarry.engine import JSON, FieldViolation, InvalidArgument, ListFilters, Overloaded, Status
from tarry_api.v1 import execution_pb2

from ._convert import STATUS_FROM_PB, from_value

STRING_LIMITS: Mapping[str, int] = {
    "execution_id": limits.MAX_ID,
    "workflow": limits.MAX_NAME,
    "version": limits.MAX_NAME,
    "node_id": limits.MAX_NAME,
    "action": limits.MAX_NAME,
    "from_step": limits.MAX_NAME,
    "request_id": limits.MAX_REQUEST_ID,
    "reason": limits.MAX_REASON,
    "page_token": limits.MAX_PAGE_TOKEN,
    "waiting_node": limits.MAX_NAME,
    "cursor": limits.MAX_PAGE_TOKEN,
    "bulk_id": limits.MAX_ID,
}
"""The most characters of each string field of a request, by field name. Every string field
of every request message has its entry (a test checks), and each is checked before the
request goes any further, so no message or metadata ever quotes unbounded input."""


# -- request validation -----------------------------------------------------------------


def invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {description}",
                           violations=[FieldViolation(field, description)])


def check_strings(request: object) -> None:
    """Every string field of `request` within its limit (`STRING_LIMITS`), else
    INVALID_ARGUMENT with a violation for each that is not. Nothing of the value is quoted."""
    if not isinstance(request, pb_message.Message):
        return
    violations = []
    for field in request.DESCRIPTOR.fields:
        if field.type != FieldDescriptor.TYPE_STRING or field.is_repeated:
            continue
        limit = STRING_LIMITS.get(field.name, limits.MAX_NAME)
        size = len(getattr(request, field.name))
        if size > limit:
            violations.append(FieldViolation(
                field.name, f"at most {limit} characters (this one has {size})"))
    if violations:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in violations),
                              violations=violations)


def user_value(value: struct_pb2.Value | None, field: str) -> JSON:
    """The JSON of a request's Value field (None when unset), refused when it nests deeper
    than `limits.MAX_DEPTH`."""
    if value is None:
        return None
    # The decoder bounds the nesting of what reaches here (~33 objects, ~49 arrays), so
    # the recursive from_value is safe.
    data = from_value(value)
    if limits.depth(data, limits.MAX_DEPTH) > limits.MAX_DEPTH:
        raise invalid(field, f"nests deeper than {limits.MAX_DEPTH} levels of objects and "
                              f"arrays (the limit)")
    return data


def overloaded(what: str, setting: str, limit: int) -> Overloaded:
    return Overloaded(f"this server is at its limit of {limit} {what} ({setting}); try "
                      f"again shortly", metadata={"limit": setting})


def required(value: str, field: str) -> str:
    if not value:
        raise invalid(field, "required")
    return value


def non_negative(value: int, field: str) -> int:
    if value < 0:
        raise invalid(field, "must not be negative")
    return value


def page_size(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise invalid("page_size", "must not be negative")
    return min(value or default, maximum)


def request_id(value: str) -> str | None:
    # Its length was checked with the other strings (`check_strings`).
    return value or None


def status_filter(value: int) -> Status | None:
    if value == execution_pb2.EXECUTION_STATUS_UNSPECIFIED:
        return None
    status = STATUS_FROM_PB.get(value)
    if status is None:
        raise invalid("status", f"unknown ExecutionStatus value {value}")
    return status


def encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise invalid("page_token", "malformed") from None
    if not isinstance(data, dict):
        raise invalid("page_token", "malformed")
    return data


def _time_filter(request: Any,
                 name: Literal["create_time_from", "create_time_to"]) -> int | None:
    """A Timestamp filter in ms since the epoch (None when unset); one outside what a
    Timestamp may hold (0001-01-01 to 9999-12-31, nanos 0-999,999,999) is refused."""
    if not request.HasField(name):
        return None
    stamp = getattr(request, name)
    if not (0 <= stamp.nanos < 1_000_000_000
            and limits.MIN_TIME_MS <= stamp.seconds * 1000 <= limits.MAX_WAKE_MS):
        raise invalid(name, "not a valid Timestamp (0001-01-01 to 9999-12-31)")
    return int(stamp.seconds * 1000 + stamp.nanos // 1_000_000)


def narrower_filters(request: Any) -> ListFilters:
    """The filters of ListExecutions (and StartBulk) beside workflow and status, checked."""
    narrower = ListFilters(
        tags=dict(request.tags), version=request.version or None,
        created_from=_time_filter(request, "create_time_from"),
        created_to=_time_filter(request, "create_time_to"),
        waiting_node=request.waiting_node or None)
    if narrower.version is not None and not request.workflow:
        raise invalid("version", "needs workflow")
    if narrower.waiting_node is not None and not request.workflow:
        raise invalid("waiting_node", "needs workflow")
    return narrower
