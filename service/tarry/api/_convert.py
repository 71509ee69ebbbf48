"""Protobuf <-> domain values. Nothing here touches the engine's behaviour or Redis.

User data travels as `google.protobuf.Value` / `Struct`, so every language gets native JSON.
A Value number is a double: integers beyond 2**53 lose precision, and integral numbers come
back as Python ints (as a JSON parser would give them).

Reads degrade per item: a stored time outside what a `Timestamp` holds is sent clamped to
that range, and an execution or event that still cannot be converted is sent as a minimal
message (`safe_execution_to_pb`, `safe_event_to_pb`), each with a rate-limited log line, so
that one bad stored item never fails a read of the others.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from pydantic import BaseModel

from tarry import limits
from tarry.engine import (
    JSON,
    Event,
    EventType,
    Execution,
    JoinMode,
    Node,
    NodeKind,
    RetryPolicy,
    Status,
    SuspendedBy,
    Suspension,
    WaitingPoint,
    WaitKind,
    Workflow,
)
from tarry_api.v1 import execution_pb2, workflow_pb2

from ._logs import Throttled

log = logging.getLogger(__name__)
_odd_time = Throttled(log)
_unconvertible = Throttled(log)

_MAX_EXACT = 2**53

# -- enums -------------------------------------------------------------------------------

STATUS_TO_PB: Mapping[Status, execution_pb2.ExecutionStatus.ValueType] = {
    Status.RUNNING: execution_pb2.EXECUTION_STATUS_RUNNING,
    Status.AWAITING: execution_pb2.EXECUTION_STATUS_AWAITING,
    Status.SUSPENDED: execution_pb2.EXECUTION_STATUS_SUSPENDED,
    Status.COMPLETED: execution_pb2.EXECUTION_STATUS_COMPLETED,
    Status.FAILED: execution_pb2.EXECUTION_STATUS_FAILED,
    Status.CANCELLED: execution_pb2.EXECUTION_STATUS_CANCELLED,
}
STATUS_FROM_PB: Mapping[int, Status] = {v: k for k, v in STATUS_TO_PB.items()}
STATUS_FROM_NAME: Mapping[str, Status] = {s.value: s for s in Status}

_WAITING_KIND: Mapping[str | WaitKind, execution_pb2.WaitingKind.ValueType] = {
    WaitKind.WAIT: execution_pb2.WAITING_KIND_WAIT,
    WaitKind.SLEEP: execution_pb2.WAITING_KIND_SLEEP,
    WaitKind.RETRY: execution_pb2.WAITING_KIND_RETRY,
}
_SUSPENDED_BY: Mapping[str | SuspendedBy, execution_pb2.SuspensionSource.ValueType] = {
    SuspendedBy.STEP: execution_pb2.SUSPENSION_SOURCE_STEP,
    SuspendedBy.REQUEST: execution_pb2.SUSPENSION_SOURCE_REQUEST,
}
_NODE_KIND: Mapping[NodeKind, workflow_pb2.NodeKind.ValueType] = {
    NodeKind.STEP: workflow_pb2.NODE_KIND_STEP,
    NodeKind.WAIT: workflow_pb2.NODE_KIND_WAIT,
    NodeKind.SLEEP: workflow_pb2.NODE_KIND_SLEEP,
}
_JOIN_MODE: Mapping[JoinMode, workflow_pb2.JoinMode.ValueType] = {
    JoinMode.ALL: workflow_pb2.JOIN_MODE_ALL,
    JoinMode.ANY: workflow_pb2.JOIN_MODE_ANY,
}

# -- JSON <-> Value ----------------------------------------------------------------------


def to_value(data: JSON) -> struct_pb2.Value:
    value = struct_pb2.Value()
    _fill(value, data)
    return value


def to_struct(data: Mapping[str, JSON]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    _fill_struct(struct, data)
    return struct


def _fill_struct(target: struct_pb2.Struct, data: Mapping[str, JSON]) -> None:
    target.SetInParent()  # an empty object is still an object
    for key, item in data.items():
        _fill(target.fields[str(key)], item)


def _fill(target: struct_pb2.Value, data: JSON) -> None:
    """Write `data` into `target` in place (no intermediate messages to copy)."""
    if data is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):  # before int: bool is an int
        target.bool_value = data
    elif isinstance(data, int | float):
        target.number_value = float(data)
    elif isinstance(data, str):
        target.string_value = data
    elif isinstance(data, Mapping):
        _fill_struct(target.struct_value, data)
    elif isinstance(data, list | tuple):
        values = target.list_value.values
        target.list_value.SetInParent()
        for item in data:
            _fill(values.add(), item)
    else:
        raise TypeError(f"value of type {type(data).__name__} is not JSON")


def from_value(value: struct_pb2.Value) -> JSON:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        n = value.number_value
        if math.isfinite(n) and n.is_integer() and abs(n) <= _MAX_EXACT:
            return int(n)
        return n
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    return [from_value(v) for v in value.list_value.values]


def from_struct(struct: struct_pb2.Struct) -> dict[str, JSON]:
    return {key: from_value(item) for key, item in struct.fields.items()}


# -- times -------------------------------------------------------------------------------


def set_time(target: timestamp_pb2.Timestamp, ms: float, what: str) -> None:
    """`target` = `ms` (ms since the epoch), clamped to what a Timestamp holds
    (0001-01-01..9999-12-31, `limits.MIN_TIME_MS`..`limits.MAX_WAKE_MS`); a time that is not
    a number at all (NaN) is left unset. Both are logged (rate-limited): such a time is bad
    stored data, and must not fail the read."""
    if isinstance(ms, float) and math.isnan(ms):
        _odd_time.warning("a stored %s is not a time (%r); sent unset", what, ms)
        return
    clamped = int(max(min(ms, limits.MAX_WAKE_MS), limits.MIN_TIME_MS))
    if clamped != ms:
        _odd_time.warning("a stored %s (%r ms since the epoch) does not fit a Timestamp; "
                          "sent as %d", what, ms, clamped)
    target.FromMilliseconds(clamped)


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


# -- schemas -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _schema(model: type[BaseModel]) -> struct_pb2.Struct:
    # Building a JSON Schema is far dearer than copying it; models are immutable classes.
    return to_struct(model.model_json_schema())


def _set_schema(target: struct_pb2.Struct, model: type[BaseModel] | None) -> None:
    """Copy the JSON Schema of `model` into `target`; leave it unset when there is none."""
    if model is not None:
        target.CopyFrom(_schema(model))


# -- executions --------------------------------------------------------------------------


def execution_to_pb(ex: Execution, wf: Workflow | None) -> execution_pb2.Execution:
    """The snapshot as the API publishes it. `wf` (the execution's workflow definition) adds
    each wait's resume schema and actions; without it (a version this server does not
    have) they are left out."""
    msg = execution_pb2.Execution(
        id=ex.id, workflow=ex.workflow, workflow_version=ex.workflow_version,
        status=STATUS_TO_PB.get(ex.status, execution_pb2.EXECUTION_STATUS_UNSPECIFIED),
        running_node_ids=ex.running,
        last_sequence=ex.last_sequence,
    )
    _fill(msg.input, ex.input)
    _fill_struct(msg.state, ex.state)
    if ex.status is Status.COMPLETED:
        _fill(msg.result, ex.result)
    if ex.error is not None:
        msg.error.type = ex.error.type
        msg.error.message = ex.error.message
        msg.error.node_id = ex.error.node or ""
        msg.error.attempt = ex.error.attempt or 0
        msg.error.stack_trace = ex.error.traceback or ""
    for point in ex.waiting:
        _waiting_point(msg.waiting_points.add(), point, wf)
    if ex.suspension is not None:
        _suspension(msg.suspension, ex.suspension, wf)
        if ex.deadline_left is not None:
            msg.suspension.timeout_remaining.CopyFrom(duration(ex.deadline_left / 1000))
    if ex.suspend_requested is not None:
        msg.suspend_requested.reason = ex.suspend_requested
    if ex.cancellation is not None:
        msg.cancellation.reason = str(ex.cancellation.get("reason") or "")
        at = ex.cancellation.get("at")
        if isinstance(at, int | float) and not isinstance(at, bool):
            set_time(msg.cancellation.cancel_time, at, "cancel time")
    set_time(msg.create_time, ex.created_at, "create time")
    set_time(msg.update_time, ex.updated_at, "update time")
    if ex.deadline is not None:
        set_time(msg.deadline_time, ex.deadline, "deadline")
    if ex.fingerprint is not None:
        msg.workflow_fingerprint = ex.fingerprint
    msg.tags.update(ex.tags)
    for kept in ex.pending:
        pending = msg.pending_inputs.add(node_id=kept.node, action=kept.action or "",
                                         request_id=kept.request_id or "")
        _fill(pending.data, kept.data)
        set_time(pending.accept_time, kept.accepted_at, "accept time")
    if wf is None:
        msg.drive_error = (f"this server has no workflow {ex.workflow!r} version "
                           f"{ex.workflow_version!r}")
    elif ex.fingerprint is not None and ex.fingerprint != wf.fingerprint:
        msg.drive_error = (f"this server's definition of {ex.workflow!r} version "
                           f"{ex.workflow_version!r} has fingerprint {wf.fingerprint}, not "
                           f"{ex.fingerprint}")
    return msg


def safe_execution_to_pb(ex: Execution, wf: Workflow | None) -> execution_pb2.Execution:
    """`execution_to_pb`, or, for an execution whose stored data cannot be converted, a
    minimal snapshot (id, workflow, version, status, last_sequence) and a log line."""
    try:
        return execution_to_pb(ex, wf)
    except Exception as exc:
        _unconvertible.warning("execution %s cannot be converted to protobuf; sent as a "
                               "minimal snapshot", limits.quote(str(ex.id)), exc_info=exc)
    msg = execution_pb2.Execution()
    fields = (("id", ex.id), ("workflow", ex.workflow),
              ("workflow_version", ex.workflow_version),
              ("status", STATUS_TO_PB.get(ex.status, execution_pb2.EXECUTION_STATUS_UNSPECIFIED)),
              ("last_sequence", ex.last_sequence))
    for name, value in fields:
        with contextlib.suppress(Exception):  # what cannot be set is left out
            setattr(msg, name, value)
    return msg


def _waiting_point(target: execution_pb2.WaitingPoint, point: WaitingPoint,
                   wf: Workflow | None) -> None:
    target.node_id = point.node
    target.kind = _WAITING_KIND.get(point.kind, execution_pb2.WAITING_KIND_UNSPECIFIED)
    if point.wake_at is not None:
        set_time(target.wake_time, point.wake_at, "wake time")
    if point.attempt is not None:
        target.attempt = point.attempt
    if point.remaining is not None:
        target.remaining.CopyFrom(duration(point.remaining / 1000))
    if point.kind == WaitKind.WAIT and wf is not None and point.node in wf.nodes:
        _set_schema(target.resume_schema, wf.resume_schema_for(point.node))
        target.actions.extend(wf.actions(point.node))


def _suspension(target: execution_pb2.Suspension, sus: Suspension, wf: Workflow | None
                ) -> None:
    target.reason = sus.reason
    set_time(target.suspend_time, sus.at, "suspend time")
    target.by = _SUSPENDED_BY.get(sus.by, execution_pb2.SUSPENSION_SOURCE_UNSPECIFIED)
    target.timers_frozen = bool(sus.frozen)
    if sus.node is not None:
        target.node_id = sus.node
    if sus.by == SuspendedBy.STEP:
        if sus.data is not None:
            _fill(target.data, sus.data)
        # Resume re-runs the step that suspended, so its schema is what Resume must send.
        if wf is not None and sus.node is not None and sus.node in wf.nodes:
            _set_schema(target.resume_schema, wf.resume_schema_for(sus.node))


# -- events ------------------------------------------------------------------------------


def event_to_pb(event: Event) -> execution_pb2.ExecutionEvent:
    """An event: status, node and attempt get their own fields, the rest goes in `data`."""
    msg = execution_pb2.ExecutionEvent(sequence=event.sequence, type=event.type)
    set_time(msg.event_time, event.time, "event time")
    rest: dict[str, Any] = dict(event.data)
    if event.type == EventType.STATUS:
        status = STATUS_FROM_NAME.get(str(rest.pop("status", "")))
        if status is not None:
            msg.status = STATUS_TO_PB[status]
    node = rest.pop("node", None)
    if isinstance(node, str):
        msg.node_id = node
    attempt = rest.pop("attempt", None)
    if isinstance(attempt, int) and not isinstance(attempt, bool):
        msg.attempt = attempt
    _fill_struct(msg.data, rest)
    return msg


def safe_event_to_pb(event: Event) -> execution_pb2.ExecutionEvent:
    """`event_to_pb`, or, for an event whose stored data cannot be converted, one with only
    its sequence and type, and a log line."""
    try:
        return event_to_pb(event)
    except Exception as exc:
        _unconvertible.warning("event %d cannot be converted to protobuf; sent without its "
                               "data", event.sequence, exc_info=exc)
    msg = execution_pb2.ExecutionEvent(sequence=event.sequence)
    with contextlib.suppress(Exception):
        msg.type = event.type
    return msg


# -- workflows ---------------------------------------------------------------------------


def workflow_to_pb(wf: Workflow) -> workflow_pb2.Workflow:
    msg = workflow_pb2.Workflow(
        name=wf.name, version=wf.version, description=wf.description,
        start_node_ids=wf.start,
        edges=[workflow_pb2.WorkflowEdge(source=e.source, target=e.target,
                                         action=e.action or "") for e in wf.edges],
    )
    for node in wf.nodes.values():
        _node(msg.nodes.add(), node)
    _set_schema(msg.input_schema, wf.input_schema)
    _set_schema(msg.result_schema, wf.result_schema)
    _set_schema(msg.resume_schema, wf.resume_schema)
    _set_schema(msg.suspend_schema, wf.suspend_schema)
    if wf.timeout is not None:
        msg.timeout.CopyFrom(duration(wf.timeout))
    msg.fingerprint = wf.fingerprint
    return msg


def _node(target: workflow_pb2.WorkflowNode, node: Node) -> None:
    target.id = node.id
    target.kind = _NODE_KIND.get(node.kind, workflow_pb2.NODE_KIND_UNSPECIFIED)
    target.join_mode = _JOIN_MODE.get(node.join, workflow_pb2.JOIN_MODE_UNSPECIFIED)
    target.description = node.description
    _set_schema(target.resume_schema, node.resume_schema)
    _set_schema(target.suspend_schema, node.suspend_schema)
    if node.kind is NodeKind.STEP:
        _retry(target.retry_policy, node.retry)
    if node.timeout is not None:  # a step's attempt limit, a wait's deadline
        target.timeout.CopyFrom(duration(node.timeout))
    if node.on_timeout is not None:
        target.on_timeout = node.on_timeout
    target.accept_early = node.accept_early


def _retry(target: workflow_pb2.RetryPolicy, policy: RetryPolicy) -> None:
    target.max_attempts = policy.max_attempts
    target.initial_interval.CopyFrom(duration(policy.initial_interval))
    target.backoff_coefficient = policy.backoff_coefficient
    if policy.max_interval is not None:
        target.max_interval.CopyFrom(duration(policy.max_interval))
    target.non_retryable_error_types.extend(
        item if isinstance(item, str) else item.__name__ for item in policy.non_retryable
    )
