"""The gRPC server: one `Config` builds the store, the engine and the grpc.aio server.

    server = Server(Config(address="127.0.0.1:0", redis_url="redis://..."))
    port = await server.start()
    ...
    await server.stop()

Metrics, traces and JSON logs are `tarry.observe`'s (`Config.metrics_address`,
`Config.otlp_endpoint` or a `tracer_provider`, `Config.log_format`).

`serve(config)` runs one until SIGTERM or SIGINT and then shuts it down gracefully: health
NOT_SERVING, open watches end (OK, resumable), in-flight calls get `shutdown_grace` seconds,
running steps as long again before their executions are handed to whichever server is next.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]

from tarry.api import WorkflowService, add_to_server
from tarry.api._accept import new_server
from tarry.api._auth import Authenticator
from tarry.config import Config
from tarry.engine import Engine, EngineConfig, Registry, StoreUnavailable
from tarry.engine._observe import Observer
from tarry.localredis import LocalRedis, check_appendfsync
from tarry.observe import Observability, configure_logging
from tarry.store import RedisStore
from tarry.store.refusal import why_refused
from tarry_api.v1 import workflow_service_pb2

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

SERVICE_NAME: str = workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
HEALTH_INTERVAL = 1.0
"""Seconds between two pings of Redis by the health checker."""
HEALTH_PING_TIMEOUT = 2.0


class Server:
    """A Tarry server: its own store, registry, engine and grpc.aio server. No globals."""

    def __init__(self, config: Config, *, tracer_provider: TracerProvider | None = None
                 ) -> None:
        """`tracer_provider`: trace with it (instead of an OTLP exporter to
        `config.otlp_endpoint`); the caller shuts it down."""
        self.config = config
        self.port: int | None = None
        self.metrics_port: int | None = None
        """Where the metrics endpoint listens (None: `config.metrics_address` is unset)."""
        self.observe: Observability | None = None
        self._tracer_provider = tracer_provider
        self.local_redis: LocalRedis | None = None
        self.store: RedisStore | None = None
        self.engine: Engine | None = None
        self.servicer: WorkflowService | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._serving: bool | None = None
        self._health_cause: str | None = None
        """Why Redis did not answer the last health check (None: it did)."""
        self._draining = False
        self._health_task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> int:
        """Start everything on the running event loop; return the port bound."""
        try:
            return await self._start()
        except BaseException:
            await self.stop(0)
            raise

    async def _start(self) -> int:
        cfg = self.config
        check_appendfsync(cfg.appendfsync)
        # The workflows first: a typo in --workflows fails before any redis-server starts.
        registry = Registry()
        for module in cfg.workflow_modules:
            found = registry.load_module(_import_workflows(module))
            log.info("serving %s from %s", ", ".join(f"{w.name}@{w.version}" for w in found),
                     module)
        # The credentials next: a missing file fails before any redis-server starts.
        auth = (Authenticator(cfg.auth_tokens, cfg.auth_jwks, issuer=cfg.auth_issuer,
                              audience=cfg.auth_audience) if cfg.auth_enabled else None)
        _server_credentials(cfg)
        observe = self.observe = Observability(cfg, self._tracer_provider)
        redis_url = cfg.redis_url
        if redis_url is None:
            local = self.local_redis = LocalRedis(Path(cfg.data_dir), appendonly=True,
                                                  appendfsync=cfg.appendfsync)
            # The lock, and stopping a stale redis-server, may wait: off the event loop.
            await asyncio.to_thread(local.prepare)
            # The fork itself here, on the event loop's thread, NOT in a to_thread pool
            # thread: the child's PR_SET_PDEATHSIG (it dies with us, even on kill -9) fires
            # when the thread that forked it exits, and pool threads come and go. Popen
            # is quick; only waiting for the PING goes to a thread.
            local.spawn()
            await asyncio.to_thread(local.wait_ready)
            redis_url = local.url
            log.info("started a managed redis-server on port %d (data in %s)",
                     local.port, cfg.data_dir)
        self.store = RedisStore(redis_url, prefix=cfg.key_prefix,
                                partitions=cfg.redis_partitions,
                                events_maxlen=cfg.events_maxlen,
                                changes_maxlen=cfg.change_log_length,
                                wait_replicas=cfg.redis_wait_replicas,
                                wait_timeout=cfg.redis_wait_timeout)
        # A Redis that cannot hold this layout stops the start; one away is asked again
        # by the first call that reaches it (no key is touched before: `RedisStore._call`).
        with contextlib.suppress(StoreUnavailable):
            await self.store.check_layout()
        # so_reuseport off: a second server on a taken port must fail, not share it. That
        # also proves this server's identity (below): no other live server of this host
        # holds this port. (`--processes` shares it among its children, under a lock.)
        # new_server: grpc.aio's server, asking gRPC for calls ahead so that the admission
        # limits see every call that waits (tarry.api._handlers).
        self._grpc = new_server([
            ("grpc.so_reuseport", int(cfg.reuse_port)),
            ("grpc.max_receive_message_length", cfg.max_request_bytes)],
            observe.interceptors())
        try:
            credentials = _server_credentials(cfg)
            port = (self._grpc.add_secure_port(cfg.address, credentials) if credentials
                    else self._grpc.add_insecure_port(cfg.address))
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {cfg.address}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot listen on {cfg.address}")
        self.port = port
        # The engine's store is timed when metrics are kept (tarry.observe._store).
        self.engine = Engine(registry, observe.store(self.store),
                             self._engine_config(port, observe.engine_observer()))
        await self.engine.start()

        self.servicer = WorkflowService(self.engine, cfg, auth)
        # Decodes requests itself (tarry.api._handlers), and tells `observe` of each call.
        add_to_server(self.servicer, self._grpc, observe.calls())
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        if cfg.serves_reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc)
        await self._check_health()  # answer health checks truthfully from the first one
        self.metrics_port = observe.serve(self.servicer, self.engine, self.store,
                                          asyncio.get_running_loop())
        if self.metrics_port is not None:
            log.info("serving metrics on %s (port %d)", cfg.metrics_address, self.metrics_port)
        await self._grpc.start()
        self._health_task = asyncio.create_task(self._watch_health(), name="tarry:health")
        log.info("listening on %s (port %d)", cfg.address, port)
        _tune_gc()
        return port

    def _engine_config(self, port: int, observer: Observer) -> EngineConfig:
        """The engine's settings, with this server's identity in leases: `Config.owner`
        if set; else `host:port` when the port was fixed (binding it proved that no other
        live server of this host has that name, so the executions leased under it are this
        server's from before a restart: it takes them back at once); else a random name."""
        cfg = self.config
        limits = {"lease_ttl": cfg.lease_ttl, "max_step_restarts": cfg.max_step_restarts,
                  "max_drivers": cfg.max_executions, "retention": cfg.retention,
                  "first_step_budget": cfg.first_step_budget, "observer": observer}
        if cfg.owner:
            return EngineConfig(owner=cfg.owner, take_back=cfg.take_back,
                                **limits)  # type: ignore[arg-type]
        if _fixed_port(cfg.address):
            return EngineConfig(owner=f"{socket.gethostname()}:{port}", take_back=True,
                                **limits)  # type: ignore[arg-type]
        return EngineConfig(**limits)  # type: ignore[arg-type]

    async def stop(self, grace: float | None = None) -> None:
        """Shut down: NOT_SERVING, end watches, finish in-flight calls within `grace`
        seconds (default `config.shutdown_grace`), stop the engine, the managed Redis."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.shutdown_grace if grace is None else grace
        self._draining = True
        await self._health.enter_graceful_shutdown()
        if self.servicer is not None:
            self.servicer.watches.close()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self.engine is not None:
            await self.engine.stop(grace=grace)
        if self.observe is not None:
            await self.observe.close()
        if self.store is not None:
            await self.store.close()
        if self.local_redis is not None:
            await asyncio.to_thread(self.local_redis.stop)
        log.info("stopped")

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- health ------------------------------------------------------------------------

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                await self._check_health()
            except Exception:
                log.exception("health check failed")

    async def _check_health(self) -> None:
        """SERVING while Redis answers; NOT_SERVING while it does not, or while draining."""
        assert self.store is not None
        cause: str | None = None  # why Redis does not answer; None: it does
        refused: str | None = None
        try:
            async with asyncio.timeout(HEALTH_PING_TIMEOUT):
                await self.store.ping()
        except (StoreUnavailable, TimeoutError) as exc:
            refused = why_refused(exc)  # a wrong password, TLS...: say so, waiting won't help
            cause = (f"Redis refused the connection: {refused}" if refused
                     else "Redis is unreachable")
        serving = cause is None and not self._draining
        previous, self._health_cause = self._health_cause, cause
        # One line per change of cause. At the first check only a refusal: a Redis that is
        # not up yet is normal at start.
        if cause is not None and cause != previous and (self._serving is not None
                                                         or refused is not None):
            log.warning("%s: NOT_SERVING", cause)
        elif cause is None and previous is not None and serving:
            log.info("Redis answers again: SERVING")
        if serving == self._serving:
            return
        self._serving = serving
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)


def _import_workflows(module: str) -> str:
    """Import a workflow module, or fail with one line that names it (no traceback)."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # not found, or the module itself fails: SyntaxError...
        why = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise ImportError(f"cannot import workflow module {module!r}: "
                          + " ".join(why.split()), name=module) from exc
    return module


def _server_credentials(cfg: Config) -> grpc.ServerCredentials | None:
    """TLS for the gRPC port (mutual with a client CA), or None for plaintext."""
    if not cfg.tls_cert and not cfg.tls_key:
        if cfg.tls_client_ca:
            raise OSError("TARRY_TLS_CLIENT_CA needs TARRY_TLS_CERT and TARRY_TLS_KEY")
        return None
    if not (cfg.tls_cert and cfg.tls_key):
        raise OSError("TLS needs both TARRY_TLS_CERT and TARRY_TLS_KEY")
    cert, key = _read_pem(cfg.tls_cert), _read_pem(cfg.tls_key)
    ca = _read_pem(cfg.tls_client_ca) if cfg.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


def _read_pem(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror}") from None


def _fixed_port(address: str) -> bool:
    """Does `host:port` name a port (not 0, which picks a free one at each start)?"""
    _, _, port = address.rpartition(":")
    return port.isdigit() and int(port) != 0


def _tune_gc() -> None:
    """Keep the cyclic garbage collector's full passes short.

    A full collection scans every live object, and what the server loaded (grpc, protobuf,
    pydantic, the workflows) is most of them: under load such passes stalled the event loop
    for 15-35 ms every couple of seconds, and every timer due meanwhile fired late. Frozen,
    those objects are left out of the scans (measured: about 4 ms a pass)."""
    gc.freeze()


async def serve(config: Config) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully."""
    configure_logging(config.log_format, config.log_level)
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down (grace %g s)", config.shutdown_grace)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await server.stop()


def run(config: Config, *, use_uvloop: bool = False) -> None:
    """`serve(config)` on a fresh event loop (uvloop's when asked for and installed)."""
    loop_factory = None
    if use_uvloop:
        try:
            import uvloop  # optional dependency

            loop_factory = uvloop.new_event_loop
        except ImportError:
            log.warning("uvloop is not installed; using the standard event loop")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))


__all__ = ["SERVICE_NAME", "Server", "run", "serve"]
