"""OpenTelemetry: the tracer provider, and the trace each execution started in.

How an execution's spans hang together (README "Operating it"):

- every RPC has a span (the standard gRPC server instrumentation), in the caller's trace
  when the call carries a W3C `traceparent`;
- each step attempt has a span, a child of the RPC span that set it going (Run, Resume);
  steps set going by no call (a timer, a retry, a takeover after a crash) are children of
  the Run's span instead;
- each event a Run, Resume, Suspend or Cancel writes records that call's span as
  `caller.trace` (a traceparent) in the execution's event log, so the Run's span is known
  to every server, however long after;
- every span of an execution outside the Run's trace (a Resume days later, the steps it
  runs) carries a span link to the Run's span.
"""

from __future__ import annotations

import collections
import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanContext, TraceFlags

from tarry.engine import Store

log = logging.getLogger(__name__)

TRACER_NAME = "tarry"
ORIGINS_KEPT = 10_000
"""Executions whose Run span a server remembers (the rest are read from their event log)."""


def otlp_provider(endpoint: str) -> TracerProvider:
    """A provider exporting to an OTLP/gRPC collector at `endpoint` (`http://host:4317`;
    https for TLS). The SDK's own OTEL_* variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER,
    OTEL_EXPORTER_OTLP_HEADERS...) apply; the service is named `tarry` unless
    OTEL_SERVICE_NAME says otherwise."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    given = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if given else {"service.name":
                                                                         "tarry"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def traceparent(context: SpanContext) -> str:
    """The W3C traceparent of a span."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(text: object) -> SpanContext | None:
    """The span a W3C traceparent names (None for anything else)."""
    if not isinstance(text, str):
        return None
    parts = text.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    found = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return found if found.is_valid else None


def current() -> SpanContext | None:
    """The current span's context, if there is a valid one."""
    found = trace.get_current_span().get_span_context()
    return found if found.is_valid else None


class Origins:
    """The span of the Run that started each execution: remembered for the last
    `ORIGINS_KEPT` that this server saw start, else read from the execution's first event
    (the Run's, which records its span as `caller.trace`): one Redis read, then remembered.
    None for an execution started with tracing off, or whose first event was trimmed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: collections.OrderedDict[str, SpanContext | None] = (
            collections.OrderedDict())

    def remember(self, execution_id: str, run: SpanContext | None) -> None:
        self._known[execution_id] = run
        self._known.move_to_end(execution_id)
        while len(self._known) > ORIGINS_KEPT:
            self._known.popitem(last=False)

    async def of(self, execution_id: str) -> SpanContext | None:
        if execution_id in self._known:
            self._known.move_to_end(execution_id)
            return self._known[execution_id]
        try:
            events = await self._store.events(execution_id, 0, 1)
        except Exception as exc:  # not found, Redis away...: no link this time
            log.debug("no origin span for %s: %r", execution_id, exc)
            return None
        run = None
        if events and events[0].sequence == 1:
            caller = events[0].data.get("caller")
            if isinstance(caller, dict):
                run = parse_traceparent(caller.get("trace"))
        self.remember(execution_id, run)
        return run
