"""The engine's `Observer`, with metrics and spans: steps, timers, takeovers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, Tracer

from tarry.engine._observe import Driven, Observer, Step, StepEnd, TimerKind

from ._calls import CALL
from ._metrics import Metrics
from ._tracing import Origins, current


class Observed(Observer):
    """Steps, timers and takeovers into `metrics` (None: none kept) and step spans from
    `tracer` (None: tracing off; `origins` then unused)."""

    def __init__(self, metrics: Metrics | None, tracer: Tracer | None,
                 origins: Origins | None) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._origins = origins
        self._lateness = ({kind: metrics.timer_lateness.labels(kind.value) for kind in TimerKind}
                          if metrics is not None else {})

    async def driving(self, execution_id: str, workflow: str) -> Driven:
        parent: Context | None = None
        links: list[Link] = []
        if self._tracer is not None and self._origins is not None:
            here = current()  # the span of the call that set this driver going, if any
            if here is not None and CALL.get() == "Run":
                run: SpanContext | None = here
                self._origins.remember(execution_id, here)
            else:
                run = await self._origins.of(execution_id)
            if here is None and run is not None:
                # Set going by no call (a timer, a retry, a takeover): in the Run's trace.
                parent = trace.set_span_in_context(NonRecordingSpan(run))
            elif here is not None and run is not None and run.trace_id != here.trace_id:
                links.append(Link(run, {"tarry.link": "run"}))
        return ObservedExecution(self, execution_id, workflow, parent, links)

    def timer_fired(self, kind: TimerKind, late: float) -> None:
        lateness = self._lateness.get(kind)
        if lateness is not None:
            lateness.observe(late)

    def lease_taken_over(self, execution_id: str, *, take_back: bool) -> None:
        if self._metrics is not None:
            self._metrics.takeovers.labels("take_back" if take_back else "expired").inc()


class ObservedExecution(Driven):
    def __init__(self, observed: Observed, execution_id: str, workflow: str,
                 parent: Context | None, links: list[Link]) -> None:
        self.observed = observed
        self.execution_id = execution_id
        self.workflow = workflow
        self.parent = parent
        """The context step spans start in (None: the driver's own, that of its call)."""
        self.links = links

    def step(self, node: str, attempt: int) -> Step:
        return ObservedStep(self, node, attempt)


class ObservedStep(Step):
    def __init__(self, execution: ObservedExecution, node: str, attempt: int) -> None:
        observed = execution.observed
        metrics = observed._metrics
        labels = (execution.workflow, node)
        self._seconds = None if metrics is None else metrics.step_seconds.labels(*labels)
        self._failures = None if metrics is None else metrics.step_failures.labels(*labels)
        self._retries = None if metrics is None else metrics.step_retries.labels(*labels)
        self._span = None
        if observed._tracer is not None:
            self._span = observed._tracer.start_span(
                f"step {execution.workflow}/{node}", context=execution.parent,
                links=execution.links,
                attributes={"tarry.execution_id": execution.execution_id,
                            "tarry.workflow": execution.workflow, "tarry.node": node,
                            "tarry.attempt": attempt})
        self._ended = False

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        # The step's span is current while its code runs: spans the step makes are its
        # children (a plain step's thread gets this context too: the driver's InContext).
        token = (None if self._span is None
                 else otel_context.attach(trace.set_span_in_context(self._span)))
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.ended(StepEnd.CANCELLED)  # the step's code never raises but for that
            raise
        else:
            if self._seconds is not None:
                self._seconds.observe(time.perf_counter() - start)
        finally:
            if token is not None:
                otel_context.detach(token)

    def ended(self, how: StepEnd, error: BaseException | None = None, *,
              retried: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        if how is StepEnd.FAILED:
            if self._failures is not None:
                self._failures.inc()
            if retried and self._retries is not None:
                self._retries.inc()
        span = self._span
        if span is None:
            return
        span.set_attribute("tarry.step.outcome", how.value)
        if how is StepEnd.FAILED:
            span.set_attribute("tarry.step.retried", retried)
            if error is not None:
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__ if error else None))
        span.end()
