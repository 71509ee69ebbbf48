"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs.

The engine knows none of it: it calls the hooks of `tarry.engine._observe.Observer`, which
`_driving` implements; the api layer tells a `CallObserver` of each call (`_calls`); the
store is timed from outside (`_store`). `Observability` builds what one server's `Config`
asks for, and nothing when it asks for nothing, so a server without metrics, tracing or
JSON logs runs exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from tarry.engine import Store
from tarry.engine._observe import Observer

from ._calls import Calls
from ._driving import Observed
from ._http import ExecutionCounts, MetricsEndpoint
from ._logs import FORMATS, JsonFormatter, configure_logging, formatter
from ._metrics import Metrics
from ._store import timed
from ._tracing import TRACER_NAME, Origins, otlp_provider

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from tarry.api import WorkflowService
    from tarry.config import Config
    from tarry.engine import Engine
    from tarry.store import RedisStore

SERVICE = "tarry.v1.WorkflowService"
"""The service whose calls get spans (health checks and reflection get none)."""


class Observability:
    """The metrics, traces and log fields of one server (no global state: each server has
    its own registry and its own tracer)."""

    def __init__(self, config: Config, tracer_provider: TracerProvider | None = None) -> None:
        self.metrics = Metrics() if config.metrics_address is not None else None
        self._address = config.metrics_address
        self._owned: TracerProvider | None = None
        if tracer_provider is None and config.otlp_endpoint:
            tracer_provider = self._owned = otlp_provider(config.otlp_endpoint)
        self.tracer_provider = tracer_provider
        self._tracer = None if tracer_provider is None else tracer_provider.get_tracer(
            TRACER_NAME)
        self._log_fields = config.log_format == "json"
        self._origins: Origins | None = None
        self._endpoint: MetricsEndpoint | None = None

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    def interceptors(self) -> Sequence[grpc.aio.ServerInterceptor]:
        """The gRPC server's interceptors: OpenTelemetry's, which makes a span of each call
        (in the caller's trace when it sends a W3C traceparent), when tracing is on."""
        if self.tracer_provider is None:
            return ()
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        from opentelemetry.instrumentation.grpc.filters import service_name

        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.tracer_provider, filter_=service_name(SERVICE))
        return (interceptor,)

    def store(self, store: Store) -> Store:
        """The store the engine should use: `store`, timed when metrics are kept."""
        seen = store if self.metrics is None else timed(store, self.metrics)
        if self._tracer is not None:
            self._origins = Origins(seen)
        return seen

    def engine_observer(self) -> Observer:
        if self.metrics is None and self._tracer is None:
            return Observer()  # the engine's own no-op hooks
        return Observed(self.metrics, self._tracer, self._origins)

    def calls(self) -> Calls | None:
        """What the handlers tell of each call; None when nothing is kept of calls."""
        if self.metrics is None and self._tracer is None and not self._log_fields:
            return None
        return Calls(self.metrics, self._origins)

    def serve(self, servicer: WorkflowService, engine: Engine, store: RedisStore,
              loop: asyncio.AbstractEventLoop) -> int | None:
        """Start the metrics endpoint (if configured); the port it listens on."""
        metrics = self.metrics
        if metrics is None or self._address is None:
            return None
        metrics.rpcs_in_flight.set_function(lambda: servicer.calls_in_flight)
        metrics.watches_open.set_function(lambda: servicer.watches_open)
        metrics.drivers.set_function(lambda: len(engine.drivers))
        metrics.registry.register(ExecutionCounts(store, loop))
        self._endpoint = MetricsEndpoint(self._address, metrics.registry)
        return self._endpoint.port

    async def close(self) -> None:
        """Stop the metrics endpoint; flush and stop the tracer provider built here (one
        given to the server is its giver's to shut down)."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.close()
        owned, self._owned = self._owned, None
        if owned is not None:
            await asyncio.to_thread(owned.shutdown)


__all__ = ["FORMATS", "JsonFormatter", "Metrics", "Observability", "configure_logging",
           "formatter"]
