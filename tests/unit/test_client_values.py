"""tarry_client's result types and its watch bookkeeping, without a server."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

import tarry_client as tc
from tarry_api.v1 import execution_pb2, workflow_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_client._convert import (
    event_from_pb,
    execution_from_pb,
    from_value,
    status_to_pb,
    to_value,
    workflow_from_pb,
)
from tarry_client._requests import resume, run
from tarry_client._retry import WatchCursor, unary_retry_delay
from tests.unit.fake_calls import FailedCall

T0 = datetime(2025, 1, 2, 12, 0, 1, 234000, tzinfo=UTC)


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


# -- JSON <-> Value ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    None, True, False, 0, 1500, -3, 2.5, "", "text", [], {}, [1, "a", None, {"b": [True]}],
    {"user": {"id": "u1", "tags": ["x", "y"], "amount": 1500, "ratio": 0.25, "none": None}},
])
def test_json_round_trips_through_value(data: Any) -> None:
    back = from_value(to_value(data))
    assert back == data
    assert type(back) is type(data)  # 1500 stays an int, {} stays a dict


def test_tuples_go_as_lists() -> None:
    assert from_value(to_value((1, 2))) == [1, 2]


@pytest.mark.parametrize("bad", [{1, 2}, {1: "x"}, float("nan"), float("inf"), object()])
def test_non_json_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        to_value(bad)


def test_requests_leave_absent_data_unset_and_always_carry_a_request_id() -> None:
    r1 = run("wf", None, version=None, execution_id=None, request_id_=None, wait=False)
    r2 = run("wf", {"a": 1}, version="2", execution_id="e1", request_id_="mine", wait=True)
    assert not r1.HasField("input") and len(r1.request_id) == 36
    assert r2.request_id == "mine" and r2.wait_until_settled and r2.version == "2"
    assert r2.input.struct_value.fields["a"].number_value == 1
    r3 = resume("e1", None, node_id=None, action="approve", from_step=None, request_id_=None,
                wait=False)
    assert not r3.HasField("data") and r3.action == "approve" and r3.request_id
    assert r1.request_id != run("wf", None, version=None, execution_id=None, request_id_=None,
                                wait=False).request_id


def test_status_filters() -> None:
    assert status_to_pb(tc.Status.AWAITING) == execution_pb2.EXECUTION_STATUS_AWAITING
    assert status_to_pb("completed") == execution_pb2.EXECUTION_STATUS_COMPLETED
    assert status_to_pb(None) == execution_pb2.EXECUTION_STATUS_UNSPECIFIED
    with pytest.raises(ValueError):
        status_to_pb("sleeping")


# -- messages -> dataclasses ------------------------------------------------------------------

def awaiting_execution() -> execution_pb2.Execution:
    m = execution_pb2.Execution(
        id="e1", workflow="expense-approval", workflow_version="1",
        status=execution_pb2.EXECUTION_STATUS_AWAITING,
        state=struct({"request": {"user": "Alice", "amount": 1500}}),
        waiting_points=[execution_pb2.WaitingPoint(
            node_id="manager-approval", kind=execution_pb2.WAITING_KIND_WAIT,
            actions=["approve", "reject"])],
        last_sequence=5)
    m.create_time.FromDatetime(T0)
    m.update_time.FromDatetime(T0 + timedelta(seconds=1))
    return m


def test_execution_snapshot_becomes_a_frozen_dataclass() -> None:
    ex = execution_from_pb(awaiting_execution())
    assert ex.status is tc.Status.AWAITING and ex.status == "AWAITING"
    assert not ex.terminal
    assert ex.state == {"request": {"user": "Alice", "amount": 1500}}
    assert ex.input is None and ex.result is None and ex.error is None
    assert ex.suspension is None and ex.cancellation is None and ex.suspend_requested is None
    assert ex.waiting_points == (tc.WaitingPoint("manager-approval", tc.WaitingKind.WAIT,
                                                 actions=("approve", "reject")),)
    assert ex.waiting_node_ids == ("manager-approval",)
    assert ex.create_time == T0 and ex.create_time.tzinfo is not None
    assert ex.sequence == ex.last_sequence == 5
    with pytest.raises(AttributeError):
        ex.status = tc.Status.RUNNING  # type: ignore[misc]


def test_suspension_cancellation_and_error_are_read() -> None:
    m = awaiting_execution()
    m.status = execution_pb2.EXECUTION_STATUS_SUSPENDED
    m.suspension.reason = "Waiting for verification"
    m.suspension.node_id = "send-verification"
    m.suspension.by = execution_pb2.SUSPENSION_SOURCE_STEP
    m.suspension.data.CopyFrom(to_value({"verificationCode": "abc"}))
    m.suspension.resume_schema.update({"type": "object"})
    m.suspension.suspend_time.FromDatetime(T0)
    ex = execution_from_pb(m)
    assert ex.suspension == tc.Suspension("Waiting for verification", tc.SuspensionSource.STEP,
                                          T0, "send-verification", {"verificationCode": "abc"},
                                          {"type": "object"})
    m.status = execution_pb2.EXECUTION_STATUS_FAILED
    m.error.type, m.error.message, m.error.node_id, m.error.attempt = "ValueError", "x", "s", 3
    m.cancellation.reason = "no longer needed"
    ex = execution_from_pb(m)
    assert ex.terminal
    assert ex.error == tc.ExecutionError("ValueError", "x", "s", 3)
    assert ex.cancellation is not None and ex.cancellation.reason == "no longer needed"


def test_events() -> None:
    m = execution_pb2.ExecutionEvent(sequence=7, type="status",
                                     status=execution_pb2.EXECUTION_STATUS_COMPLETED,
                                     data=struct({"result": "done"}))
    m.event_time.FromDatetime(T0)
    ev = event_from_pb(m)
    assert ev == tc.Event(7, "status", T0, tc.Status.COMPLETED, None, None, {"result": "done"})
    assert ev.terminal
    node = event_from_pb(execution_pb2.ExecutionEvent(sequence=2, type="node_started",
                                                      node_id="submit", attempt=1))
    assert node.status is None and node.node_id == "submit" and node.data is None
    assert not node.terminal


def test_workflows() -> None:
    m = workflow_pb2.Workflow(
        name="conditional-workflow", version="1", description="d",
        nodes=[workflow_pb2.WorkflowNode(id="start", kind=workflow_pb2.NODE_KIND_STEP,
                                         retry_policy=workflow_pb2.RetryPolicy(
                                             max_attempts=3, backoff_coefficient=2.0)),
               workflow_pb2.WorkflowNode(id="decision", kind=workflow_pb2.NODE_KIND_WAIT,
                                         join_mode=workflow_pb2.JOIN_MODE_ANY)],
        edges=[workflow_pb2.WorkflowEdge(source="start", target="decision"),
               workflow_pb2.WorkflowEdge(source="decision", target="a", action="choose-a")],
        start_node_ids=["start"], input_schema=struct({"type": "object"}))
    m.nodes[0].retry_policy.initial_interval.FromTimedelta(timedelta(seconds=1))
    wf = workflow_from_pb(m)
    assert wf.node("start").kind is tc.NodeKind.STEP
    assert wf.node("start").join_mode is tc.JoinMode.ALL
    assert wf.node("decision").join_mode is tc.JoinMode.ANY
    assert wf.node("start").retry_policy == tc.RetryPolicy(3, timedelta(seconds=1), 2.0)
    assert wf.edges == (tc.WorkflowEdge("start", "decision"),
                        tc.WorkflowEdge("decision", "a", "choose-a"))
    assert wf.input_schema == {"type": "object"} and wf.result_schema is None


def test_as_json_prints_anything_the_client_returns() -> None:
    data = tc.as_json(execution_from_pb(awaiting_execution()))
    assert data["status"] == "AWAITING"
    assert data["create_time"] == "2025-01-02T12:00:01.234000Z"
    assert data["waiting_points"][0]["kind"] == "WAIT"
    assert data["waiting_points"][0]["actions"] == ["approve", "reject"]
    assert tc.as_json(tc.RetryPolicy(1, timedelta(seconds=2), 1.0))["initial_interval"] == 2.0


# -- the watch cursor -------------------------------------------------------------------------

def failed(code: grpc.StatusCode) -> grpc.RpcError:
    return FailedCall(code, "x")


def event_msg(seq: int, status: int = 0) -> pb.WatchExecutionResponse:
    return pb.WatchExecutionResponse(sequence=seq, event=execution_pb2.ExecutionEvent(
        sequence=seq, type="status" if status else "node_started", status=status))  # type: ignore[arg-type]


FAST = tc.Retry(attempts=3, initial_backoff=0.01, jitter=0)


def test_cursor_asks_for_a_snapshot_then_continues_after_the_last_item() -> None:
    cursor = WatchCursor("e1", None, FAST)
    assert not cursor.request().HasField("after_sequence")
    snap = cursor.accept(pb.WatchExecutionResponse(sequence=3,
                                                   execution=awaiting_execution()))
    assert isinstance(snap, tc.Execution) and cursor.last == 5  # the snapshot's last_sequence
    assert cursor.request().after_sequence == 5


def test_cursor_drops_what_it_already_handed_over() -> None:
    cursor = WatchCursor("e1", 2, FAST)
    assert cursor.request().after_sequence == 2
    seen = [cursor.accept(event_msg(s)) for s in (1, 2, 3, 3, 4)]
    assert [item.sequence if item else None for item in seen] == [None, None, 3, None, 4]
    assert not cursor.done
    last = cursor.accept(event_msg(5, execution_pb2.EXECUTION_STATUS_CANCELLED))
    assert last is not None and last.terminal and cursor.done


def test_cursor_reconnects_on_unavailable_and_gives_up_after_its_budget() -> None:
    cursor = WatchCursor("e1", None, FAST)
    cursor.request()
    assert 0 < cursor.retry_after(failed(grpc.StatusCode.UNAVAILABLE)) < 1
    cursor.request()
    cursor.retry_after(failed(grpc.StatusCode.UNAVAILABLE))
    cursor.request()
    with pytest.raises(tc.Unavailable):
        cursor.retry_after(failed(grpc.StatusCode.UNAVAILABLE))


def test_progress_renews_the_budget_and_an_early_end_after_progress_reconnects_at_once() -> None:
    cursor = WatchCursor("e1", 0, FAST)
    for seq in (1, 2):
        cursor.request()
        cursor.retry_after(failed(grpc.StatusCode.UNAVAILABLE))
        cursor.request()
        cursor.accept(event_msg(seq))
        assert cursor.retry_after(None) == 0.0  # the server ended a long watch
    cursor.request()
    cursor.retry_after(None)  # an early end with nothing received counts as a failure
    cursor.request()
    cursor.retry_after(None)
    cursor.request()
    with pytest.raises(tc.Unavailable, match="without a terminal event"):
        cursor.retry_after(None)


@pytest.mark.parametrize(("code", "cls"), [
    (grpc.StatusCode.NOT_FOUND, tc.NotFound),
    (grpc.StatusCode.OUT_OF_RANGE, tc.CursorOutOfRange),
    (grpc.StatusCode.CANCELLED, tc.Cancelled),
    (grpc.StatusCode.INVALID_ARGUMENT, tc.InvalidArgument),
])
def test_cursor_does_not_retry_answers(code: grpc.StatusCode, cls: type[tc.TarryError]) -> None:
    with pytest.raises(cls):
        WatchCursor("e1", None, FAST).retry_after(failed(code))


def test_unary_retries_only_unavailable_within_budget_and_deadline() -> None:
    unavailable = failed(grpc.StatusCode.UNAVAILABLE)
    assert unary_retry_delay(FAST, 1, unavailable, None) is not None
    assert unary_retry_delay(FAST, 3, unavailable, None) is None  # attempts spent
    assert unary_retry_delay(FAST, 1, failed(grpc.StatusCode.ABORTED), None) is None
    assert unary_retry_delay(FAST, 1, unavailable, time.monotonic() + 0.001) is None
    assert unary_retry_delay(tc.NO_RETRY, 1, unavailable, None) is None


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"multiplier": 0.5}, {"jitter": 1.0},
                                 {"initial_backoff": -1}])
def test_retry_policies_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tc.Retry(**bad)


def test_the_client_does_not_import_the_server() -> None:
    """tarry_client is installable without the server: it imports tarry_api, grpc and
    protobuf, never the `tarry` package."""
    probe = ("import sys, tarry_client; "
             "bad = sorted(m for m in sys.modules if m == 'tarry' or m.startswith('tarry.')); "
             "print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == ""
