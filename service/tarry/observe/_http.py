"""The metrics endpoint: Prometheus's text format over HTTP on a port of its own, and the
executions gauge, read from Redis when a scrape asks for it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from tarry.engine import Status
from tarry.engine.namespaces import DEFAULT
from tarry.store import RedisStore

log = logging.getLogger(__name__)

EXECUTIONS_HELP = ("Executions in Redis by status, read from the status indexes at each scrape "
                   "(every server of a Redis reports the same numbers).")


class ExecutionCounts(Collector):
    """`tarry_executions{status}`: the size of each status index (one ZCARD each, in one
    round trip, never a scan of documents). Scrapes come on the HTTP server's thread; the
    read runs on the server's event loop, for `timeout` seconds at most, and a scrape it
    does not answer in time (Redis away, the loop busy) gets the last numbers read."""

    def __init__(self, store: RedisStore, loop: asyncio.AbstractEventLoop, *,
                 timeout: float = 1.0) -> None:
        self._store = store
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._timeout = timeout
        self._last: dict[str, int] = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("tarry_executions", EXECUTIONS_HELP, labels=["status"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("tarry_executions", EXECUTIONS_HELP, labels=["status"])
        for status, count in self._read().items():
            family.add_metric([status], count)
        yield family

    def _read(self) -> dict[str, int]:
        if threading.get_ident() == self._loop_thread:
            return self._last  # waiting here would block the loop that must answer
        try:
            future = asyncio.run_coroutine_threadsafe(self._count(), self._loop)
        except RuntimeError:  # the loop is closed: the server is gone
            return self._last
        try:
            self._last = future.result(self._timeout)
        except Exception as exc:
            future.cancel()
            log.debug("execution counts not read: %r", exc)
        return self._last

    async def _count(self) -> dict[str, int]:
        keys = self._store.keys
        async with asyncio.timeout(self._timeout):
            async with self._store.redis.pipeline(transaction=False) as pipe:
                for status in Status:  # the default namespace's, summed over the partitions
                    for p in range(keys.partitions):
                        pipe.zcard(keys.by_status(status.value, DEFAULT, p))
                counts = await pipe.execute()
        n = keys.partitions
        return {status.value: sum(int(c) for c in counts[i * n:(i + 1) * n])
                for i, status in enumerate(Status)}


class MetricsEndpoint:
    """`registry` served over HTTP on `address` (`host:port`; port 0 picks a free one) by
    prometheus_client's server, in a thread of its own: a scrape never waits for the event
    loop, nor the loop for a scrape."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise OSError(f"cannot serve metrics on {address}: {exc}") from None
        try:
            self._httpd: WSGIServer | None
            self._httpd, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
        self.port: int = self._httpd.server_port

    async def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            # shutdown() waits for the serving loop's next poll (up to half a second).
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
            await asyncio.to_thread(self._thread.join)


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6; an empty host: every interface) -> (host, port);
    ValueError for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)
