"""The lines `tarry watch` prints: the live view of one execution (`LiveView`) and of many
(`change_line`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tarry_client import (
    Event,
    EventType,
    Execution,
    ExecutionChange,
    Status,
    WaitingKind,
    WatchItem,
)


def change_line(ch: ExecutionChange) -> str:
    """One line of `tarry watch` without ID:

        12:00:01.234  exp-7  expense-approval  RUNNING -> AWAITING  waiting: manager-approval
    """
    stamp = ch.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    moved = (f"{ch.previous_status.value} -> {ch.status.value}" if ch.previous_status
             else f"new, {ch.status.value}")
    waits = f"  waiting: {', '.join(ch.waiting_nodes)}" if ch.waiting_nodes else ""
    left = "  (no longer matches)" if not ch.matches else ""
    return f"{stamp}  {ch.execution_id}  {ch.workflow}  {moved}{waits}{left}"


class LiveView:
    """Renders watch items as the lines of `tarry watch`: local time, sequence, status, what
    happened.

        12:00:01.234  #5  AWAITING   waiting: manager-approval

    Node events carry no status of their own; they show the one the last status event (or
    the snapshot) set.
    """

    def __init__(self) -> None:
        self.status = ""

    def line(self, item: WatchItem) -> str:
        if isinstance(item, Execution):
            self.status = item.status.value
            when, what = item.update_time, f"{item.workflow} {item.id}: {_snapshot_detail(item)}"
        else:
            if item.status is not None:
                self.status = item.status.value
            when, what = item.event_time, _event_detail(item)
        stamp = when.astimezone().strftime("%H:%M:%S.%f")[:-3]
        return f"{stamp}  {'#' + str(item.sequence):<3} {self.status:<10} {what}".rstrip()


def _snapshot_detail(ex: Execution) -> str:
    if ex.status is Status.AWAITING:
        waits = [w.node_id for w in ex.waiting_points if w.kind is WaitingKind.WAIT]
        timers = [w.node_id for w in ex.waiting_points if w.kind is not WaitingKind.WAIT]
        parts = ([f"waiting: {', '.join(waits)}"] if waits else []) + (
            [f"timers: {', '.join(timers)}"] if timers else [])
        return "; ".join(parts)
    if ex.status is Status.SUSPENDED and ex.suspension is not None:
        at = f" (at {ex.suspension.node_id})" if ex.suspension.node_id else ""
        return f"suspended: {ex.suspension.reason}{at}"
    if ex.status is Status.RUNNING:
        return "running: " + ", ".join(ex.running_node_ids)
    if ex.status is Status.COMPLETED:
        return f"result: {_compact(ex.result)}"
    if ex.status is Status.FAILED and ex.error is not None:
        return f"error: {ex.error.type}: {ex.error.message}"
    if ex.cancellation is not None:
        return f"cancelled: {ex.cancellation.reason}"
    return ""


def _event_detail(ev: Event) -> str:
    data = ev.data or {}
    node = ev.node_id or ""
    attempt = f" (attempt {ev.attempt})" if ev.attempt and ev.attempt > 1 else ""
    if ev.type == EventType.STATUS and ev.status is not None:
        return _status_detail(ev.status, data, first=ev.sequence == 1)
    late = f" ({data['late_ms']} ms late)" if isinstance(data.get("late_ms"), int) else ""
    if ev.type == EventType.NODE_STARTED:
        return f"{node} started{attempt}{late}"
    if ev.type == EventType.NODE_FINISHED:
        timed_out = " (timed out)" if data.get("timed_out") else ""
        if data.get("early"):
            timed_out = " (with the input kept for it)"
        return (f"{node} finished{timed_out}"
                + (f" -> {data['action']}" if data.get("action") else "") + late)
    if ev.type == EventType.NODE_WAITING:
        wake = data.get("wake_at")  # ms since the epoch, for sleep nodes
        if isinstance(wake, int | float):
            until = datetime.fromtimestamp(wake / 1000).strftime("%H:%M:%S.%f")[:-3]
            return f"{node} sleeping until {until}"
        return f"{node} waiting for input"
    if ev.type == EventType.NODE_FAILED:
        error = data.get("error") or {}
        retry = " (will retry)" if data.get("retry_at") else ""
        return f"{node} failed{attempt}: {error.get('type')}: {error.get('message')}{retry}"
    if ev.type == EventType.NODE_SUSPENDED:
        return f"{node} suspended: {data.get('reason', '')}"
    if ev.type == EventType.NODE_CANCELLED:
        return f"{node} cancelled"
    if ev.type == EventType.SUSPEND_REQUESTED:
        return f"suspend requested: {data.get('reason', '')}"
    if ev.type == EventType.RESUME_KEPT:
        return f"input kept for {data.get('node', '')} (it is not reached yet)"
    if ev.type == EventType.RESUMED:
        return "resumed" + (f" {node}" if node else "")
    return f"{ev.type} {node}".strip()  # a newer event type: say what it is


def _status_detail(status: Status, data: dict[str, Any], *, first: bool) -> str:
    if status is Status.AWAITING:
        return "waiting: " + ", ".join(str(n) for n in data.get("waiting") or [])
    if status is Status.SUSPENDED:
        return f"suspended: {data.get('reason', '')}"
    if status is Status.COMPLETED:
        return f"result: {_compact(data.get('result'))}"
    if status is Status.FAILED:
        error = data.get("error") or {}
        return f"error: {error.get('type')}: {error.get('message')}"
    if status is Status.CANCELLED:
        return f"cancelled: {data.get('reason', '')}"
    return "started" if first else "running again"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
