"""What each RPC tells: its metrics, the log fields of what it is about, and, with tracing
on, its span's attributes, its trace recorded in the events it writes, and its link to the
trace of the execution's Run (`_tracing`)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from tarry.api._auth import NAMESPACE
from tarry.engine import CALLER, namespaces
from tarry.engine._observe import set_log_fields

from ._metrics import Metrics
from ._tracing import Origins, current, traceparent

CALL: ContextVar[str | None] = ContextVar("tarry_call", default=None)
"""The method of the call being handled; a driver started by the call inherits it."""

WRITES = frozenset({"Run", "Resume", "Suspend", "Cancel"})
"""The calls that write events about an execution (and so record their trace there)."""

SERVER_FAULTS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                           grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
"""The codes that mark a server span as an error (OpenTelemetry's gRPC conventions); the
rest are the caller's doing."""

DETAILS = "grpc-status-details-bin"
OVERLOADED = "OVERLOADED"
LIMIT_SETTINGS = frozenset({"max_concurrent_rpcs", "max_watches"})


class Calls:
    """The `tarry.api._handlers.CallObserver` of one server."""

    def __init__(self, metrics: Metrics | None, origins: Origins | None) -> None:
        self._metrics = metrics
        self._origins = origins
        """The Run spans of executions; None: tracing is off."""

    async def handling(self, method: str, request: pb_message.Message) -> None:
        CALL.set(method)
        plain = str(getattr(request, "execution_id", "") or "")
        execution_id = (namespaces.qualify(NAMESPACE.get(), plain)
                        if plain and namespaces.SEPARATOR not in plain else plain)
        workflow = str(getattr(request, "workflow", "") or "")
        request_id = str(getattr(request, "request_id", "") or "")
        set_log_fields(execution_id=execution_id or None, workflow=workflow or None,
                       request_id=request_id or None)
        if self._origins is not None:
            await self._traced(method, execution_id, workflow, request_id)

    async def _traced(self, method: str, execution_id: str, workflow: str,
                      request_id: str) -> None:
        span = trace.get_current_span()
        here = current()
        if here is None:
            return
        if span.is_recording():
            for key, value in (("tarry.execution_id", execution_id),
                               ("tarry.workflow", workflow), ("tarry.request_id", request_id)):
                if value:
                    span.set_attribute(key, value)
        if method not in WRITES:
            return
        # Each event this call writes records its span: the Run's is how every server finds
        # the trace an execution started in (`Origins`).
        CALLER.set({**(CALLER.get() or {}), "trace": traceparent(here)})
        if method == "Run" or not execution_id or self._origins is None:
            return
        run = await self._origins.of(execution_id)
        if run is not None and run.trace_id != here.trace_id:
            span.add_link(run, {"tarry.link": "run"})

    def answered(self, method: str, code: grpc.StatusCode, seconds: float,
                 context: Any) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.rpcs.labels(method, code.name).inc()
            metrics.rpc_seconds.labels(method).observe(seconds)
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                limit = _limit(context)
                if limit is not None:
                    metrics.refusals.labels(limit).inc()
        if self._origins is not None and code is not grpc.StatusCode.OK:
            # Set here: Tarry ends calls with abort_with_status, which the gRPC
            # instrumentation's context wrapper does not see.
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in SERVER_FAULTS:
                    span.set_status(Status(StatusCode.ERROR, code.name))

    def refused(self, method: str, limit: str) -> None:
        if self._metrics is not None:
            self._metrics.rpcs.labels(method, grpc.StatusCode.RESOURCE_EXHAUSTED.name).inc()
            self._metrics.refusals.labels(limit).inc()


def _limit(context: Any) -> str | None:
    """The limit an OVERLOADED refusal names (its ErrorInfo's `limit`): the setting, or,
    for the engine's own limit, which names the number, `max_executions`. None for a
    RESOURCE_EXHAUSTED of another kind."""
    try:
        trailing = context.trailing_metadata() or ()
        raw = next((v for k, v in trailing if k == DETAILS), None)
        if raw is None:
            return None
        for detail in status_pb2.Status.FromString(raw).details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.reason == OVERLOADED:
                limit = info.metadata.get("limit", "")
                return limit if limit in LIMIT_SETTINGS else "max_executions"
    except Exception:  # a reply of another shape: not one of the admission limits
        return None
    return None
