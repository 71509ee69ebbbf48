"""Protobuf messages <-> the client's dataclasses, and JSON <-> `google.protobuf.Value`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from tarry_api.v1 import execution_pb2, workflow_pb2
from tarry_api.v1 import workflow_service_pb2 as pb

from ._types import (
    JSON,
    Bulk,
    BulkOperation,
    BulkStart,
    BulkStatus,
    Cancellation,
    Event,
    EventPage,
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
    Workflow,
    WorkflowEdge,
    WorkflowNode,
)

_E = TypeVar("_E", bound=Enum)

# JSON numbers travel as doubles; integers up to 2**53 survive the trip exactly, and are given
# back as `int` so that `{"amount": 1500}` does not come back as `{"amount": 1500.0}`.
_MAX_EXACT_INT = 2**53


# -- JSON <-> Value ---------------------------------------------------------------------------

def to_value(data: JSON) -> struct_pb2.Value:
    """A `google.protobuf.Value` holding plain JSON data (TypeError for anything else)."""
    value = struct_pb2.Value()
    _fill(value, data)
    return value


def _fill(value: struct_pb2.Value, data: JSON) -> None:
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):  # before int: bool is an int subclass
        value.bool_value = data
    elif isinstance(data, int | float):
        if isinstance(data, float) and not math.isfinite(data):
            raise TypeError(f"JSON has no {data}")
        value.number_value = float(data)
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, Mapping):
        value.struct_value.SetInParent()  # so that {} is an empty object, not "unset"
        for key, item in data.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            _fill(value.struct_value.fields[key], item)
    elif isinstance(data, list | tuple):
        value.list_value.SetInParent()
        for item in data:
            _fill(value.list_value.values.add(), item)
    else:
        raise TypeError(f"{type(data).__name__} is not JSON data")


def from_value(value: struct_pb2.Value) -> JSON:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        n = value.number_value
        return int(n) if n.is_integer() and abs(n) <= _MAX_EXACT_INT else n
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None  # null_value, or unset


def from_struct(struct: struct_pb2.Struct) -> dict[str, JSON]:
    return {key: from_value(v) for key, v in struct.fields.items()}


def _optional_struct(message: Any, name: str) -> dict[str, JSON] | None:
    return from_struct(getattr(message, name)) if message.HasField(name) else None


def _optional_value(message: Any, name: str) -> JSON:
    return from_value(getattr(message, name)) if message.HasField(name) else None


# -- scalars ----------------------------------------------------------------------------------

def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    # An unset Timestamp reads as the epoch, which is what proto3 says it means.
    return ts.ToDatetime(tzinfo=UTC)


def _optional_time(message: Any, name: str) -> datetime | None:
    return _time(getattr(message, name)) if message.HasField(name) else None


def _enum(cls: type[_E], pb_enum: Any, prefix: str, number: int) -> _E | None:
    """`EXECUTION_STATUS_AWAITING` -> `Status.AWAITING`; UNSPECIFIED (0) -> None."""
    if number == 0:
        return None
    return cls(pb_enum.Name(number).removeprefix(prefix))


def _required_enum(cls: type[_E], pb_enum: Any, prefix: str, number: int) -> _E:
    found = _enum(cls, pb_enum, prefix, number)
    if found is None:
        raise ValueError(f"the server sent no {cls.__name__}")
    return found


def status_to_pb(status: Status | str | None) -> execution_pb2.ExecutionStatus.ValueType:
    """`Status.AWAITING` or "awaiting" -> the ExecutionStatus number; None -> UNSPECIFIED."""
    if not status:
        return execution_pb2.EXECUTION_STATUS_UNSPECIFIED
    name = Status(str(status).upper()).value  # ValueError for a status that does not exist
    return execution_pb2.ExecutionStatus.Value(f"EXECUTION_STATUS_{name}")


def status_from_pb(number: int) -> Status:
    return _required_enum(Status, execution_pb2.ExecutionStatus, "EXECUTION_STATUS_", number)


# -- executions and events --------------------------------------------------------------------

def execution_from_pb(m: execution_pb2.Execution) -> Execution:
    return Execution(
        id=m.id,
        workflow=m.workflow,
        workflow_version=m.workflow_version,
        status=status_from_pb(m.status),
        input=_optional_value(m, "input"),
        state=from_struct(m.state),
        result=_optional_value(m, "result"),
        error=_error(m.error) if m.HasField("error") else None,
        waiting_points=tuple(_waiting_point(w) for w in m.waiting_points),
        running_node_ids=tuple(m.running_node_ids),
        suspension=_suspension(m.suspension) if m.HasField("suspension") else None,
        suspend_requested=(m.suspend_requested.reason
                           if m.HasField("suspend_requested") else None),
        cancellation=(Cancellation(m.cancellation.reason, _time(m.cancellation.cancel_time))
                      if m.HasField("cancellation") else None),
        create_time=_time(m.create_time),
        update_time=_time(m.update_time),
        last_sequence=m.last_sequence,
        deadline_time=_optional_time(m, "deadline_time"),
        workflow_fingerprint=m.workflow_fingerprint or None,
        drive_error=m.drive_error or None,
        tags=dict(m.tags),
        pending_inputs=tuple(
            PendingInput(p.node_id, _optional_value(p, "data"), p.action or None,
                         _time(p.accept_time), p.request_id or None)
            for p in m.pending_inputs),
    )


def _error(m: execution_pb2.ExecutionError) -> ExecutionError:
    return ExecutionError(type=m.type, message=m.message, node_id=m.node_id or None,
                          attempt=m.attempt or None, stack_trace=m.stack_trace or None)


def _waiting_point(m: execution_pb2.WaitingPoint) -> WaitingPoint:
    return WaitingPoint(
        node_id=m.node_id,
        kind=_required_enum(WaitingKind, execution_pb2.WaitingKind, "WAITING_KIND_", m.kind),
        wake_time=_optional_time(m, "wake_time"),
        attempt=m.attempt or None,
        resume_schema=_optional_struct(m, "resume_schema"),
        actions=tuple(m.actions),
        remaining=m.remaining.ToTimedelta() if m.HasField("remaining") else None,
    )


def _suspension(m: execution_pb2.Suspension) -> Suspension:
    return Suspension(
        reason=m.reason,
        by=_required_enum(SuspensionSource, execution_pb2.SuspensionSource,
                          "SUSPENSION_SOURCE_", m.by),
        suspend_time=_time(m.suspend_time),
        node_id=m.node_id or None,
        data=_optional_value(m, "data"),
        resume_schema=_optional_struct(m, "resume_schema"),
        timers_frozen=m.timers_frozen,
        timeout_remaining=(m.timeout_remaining.ToTimedelta()
                           if m.HasField("timeout_remaining") else None),
    )


def event_from_pb(m: execution_pb2.ExecutionEvent) -> Event:
    return Event(
        sequence=m.sequence,
        type=m.type,
        event_time=_time(m.event_time),
        status=_enum(Status, execution_pb2.ExecutionStatus, "EXECUTION_STATUS_", m.status),
        node_id=m.node_id or None,
        attempt=m.attempt or None,
        data=_optional_struct(m, "data"),
    )


# -- workflows --------------------------------------------------------------------------------

def workflow_from_pb(m: workflow_pb2.Workflow) -> Workflow:
    return Workflow(
        name=m.name,
        version=m.version,
        description=m.description,
        nodes=tuple(_node(n) for n in m.nodes),
        edges=tuple(WorkflowEdge(e.source, e.target, e.action or None) for e in m.edges),
        start_node_ids=tuple(m.start_node_ids),
        input_schema=_optional_struct(m, "input_schema"),
        result_schema=_optional_struct(m, "result_schema"),
        resume_schema=_optional_struct(m, "resume_schema"),
        suspend_schema=_optional_struct(m, "suspend_schema"),
        fingerprint=m.fingerprint,
    )


def _node(m: workflow_pb2.WorkflowNode) -> WorkflowNode:
    return WorkflowNode(
        id=m.id,
        kind=_required_enum(NodeKind, workflow_pb2.NodeKind, "NODE_KIND_", m.kind),
        # A node with one incoming edge may leave join_mode unset; ALL is the default.
        join_mode=_enum(JoinMode, workflow_pb2.JoinMode, "JOIN_MODE_", m.join_mode)
        or JoinMode.ALL,
        description=m.description,
        resume_schema=_optional_struct(m, "resume_schema"),
        suspend_schema=_optional_struct(m, "suspend_schema"),
        retry_policy=_retry_policy(m.retry_policy) if m.HasField("retry_policy") else None,
        timeout=m.timeout.ToTimedelta() if m.HasField("timeout") else None,
        on_timeout=m.on_timeout or None,
        accept_early=m.accept_early,
    )


def _retry_policy(m: workflow_pb2.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=m.max_attempts,
        initial_interval=m.initial_interval.ToTimedelta(),
        backoff_coefficient=m.backoff_coefficient,
        max_interval=m.max_interval.ToTimedelta() if m.HasField("max_interval") else None,
        non_retryable_error_types=tuple(m.non_retryable_error_types),
    )


# -- to JSON, for printing --------------------------------------------------------------------

def as_json(obj: object) -> JSON:
    """Any value the client returns as plain JSON data (for `json.dumps`, logs, the CLI):
    dataclasses become objects, enums their names, datetimes ISO 8601 strings in UTC,
    timedeltas seconds."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, Mapping):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_json(v) for v in obj]
    return obj


def execution_page_from_pb(response: pb.ListExecutionsResponse) -> ExecutionPage:
    return ExecutionPage(tuple(execution_from_pb(e) for e in response.executions),
                         response.next_page_token or None, response.watch_cursor or None)


def change_from_pb(c: pb.ExecutionChange) -> ExecutionChange:
    return ExecutionChange(
        execution_id=c.execution_id, workflow=c.workflow, workflow_version=c.workflow_version,
        status=status_from_pb(c.status),
        previous_status=_enum(Status, execution_pb2.ExecutionStatus, "EXECUTION_STATUS_",
                              c.previous_status),
        waiting_nodes=tuple(c.waiting_nodes),
        previous_waiting_nodes=tuple(c.previous_waiting_nodes), tags=dict(c.tags),
        time=_time(c.time), sequence=c.sequence, matches=c.matches, cursor=c.cursor)


def event_page_from_pb(response: pb.ListExecutionEventsResponse) -> EventPage:
    return EventPage(tuple(event_from_pb(e) for e in response.events),
                     response.next_after_sequence, response.has_more)


def bulk_from_pb(m: pb.Bulk) -> Bulk:
    return Bulk(
        id=m.id,
        operation=_required_enum(BulkOperation, pb.BulkOperation, "BULK_OPERATION_",
                                 m.operation),
        status=_required_enum(BulkStatus, pb.BulkStatus, "BULK_STATUS_", m.status),
        total=m.total, applied=m.applied, skipped=m.skipped, failed=m.failed,
        create_time=_time(m.create_time), update_time=_time(m.update_time), rate=m.rate,
        failures=tuple(m.failures))


def bulk_start_from_pb(m: pb.StartBulkResponse) -> BulkStart:
    return BulkStart(bulk_from_pb(m.bulk) if m.HasField("bulk") else None, m.matched)

