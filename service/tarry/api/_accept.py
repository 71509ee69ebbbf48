"""Taking calls in from gRPC as they arrive, and admitting unary calls right then.

`new_server` builds the grpc.aio server, one that takes each call in from gRPC as it
arrives (`_AcceptAheadBase`), and `Admission` applies `max_concurrent_rpcs` at that moment;
the comment below says why.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc
from grpc_status import rpc_status  # type: ignore[import-untyped]

from tarry import limits

from ._errors import status_for
from ._fields import overloaded
from ._servicer import WorkflowService

log = logging.getLogger(__name__)


# -- accepting calls ---------------------------------------------------------------------
#
# Why: grpc.aio (1.85) keeps ONE request for a call outstanding in gRPC core per registered
# method (and one for all unregistered methods), and asks for the next only once the event
# loop has taken that call in: several loop turns and a hop through the completion queue's
# poller thread. Calls that arrive meanwhile wait inside core, in that method's queue,
# unseen by any Python code. Under load the loop turns are long, that queue holds the
# backlog, and a count of calls inside the handler stays below its limit. Measured (bench
# `admission`, 40 callers, limit 8 calls): a Run waited 49 ms (p50) from the caller's send
# to the first Python code (a server interceptor), then 0.5 ms to the handler and 8 ms in
# it; 4-6 were in the handler, the rest in core; 2 % were refused, each after that same
# wait. grpcio's own `maximum_concurrent_rpcs` and server interceptors act only once a call
# has been taken in (after that queue too; grpcio's refusal has no ErrorInfo either), HTTP/2
# MAX_CONCURRENT_STREAMS would move the queue into the client, and core's
# `grpc.server.max_pending_requests` bounds it but answers the excess CANCELLED.
#
# So (1) `new_server` keeps `limits.CALLS_AHEAD` requests outstanding per method (`_Ahead`):
# core hands each call over as it arrives; and (2) each unary call of WorkflowService is
# admitted at that moment (`Admission`), counted with the calls in the handler and those
# admitted on their way to it, and the excess is refused there and then with the rich
# status, before grpc.aio's own handling of the call (several more loop turns and a read of
# the request) has cost anything. Same load, both in place: 4 ms from send to the handler,
# 21 % refused in 2 ms (p50), admitted calls as fast as at 1x. `_unary` keeps its own
# check, for the stock server (`new_server` falls back to it on a grpcio without the
# internals this relies on, with a warning).

CALLS_AHEAD_UNSUPPORTED = ("the installed grpcio lacks the internals that let Tarry take "
                           "calls in as they arrive; under overload, calls may wait inside "
                           "gRPC, unseen by max_concurrent_rpcs")


def new_server(options: Sequence[tuple[str, Any]],
               interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """`grpc.aio.server(options=options, interceptors=interceptors)`, but asking gRPC core
    for the calls of each method `limits.CALLS_AHEAD` at a time instead of one at a time
    (`_AcceptAheadBase`). Falls back to the stock server, with a warning, on a grpcio
    without the internals this relies on. Interceptors (the OpenTelemetry one) act on each
    call once it is taken in, as on the stock server."""
    try:
        cygrpc, aio_server = _internals()
        # As grpc.aio.server() builds its Server (whose __init__ sets `_loop` and `_server`,
        # nothing else), with AcceptAhead in place of cygrpc.AioServer.
        server = aio_server.Server.__new__(aio_server.Server)
        server._loop = cygrpc.get_working_loop()
        server._server = _accept_ahead_server(cygrpc)(
            server._loop, None, (), tuple(interceptors),
            aio_server._augment_channel_arguments(list(options), None), None)
    except (_Unsupported, TypeError) as exc:  # TypeError: another constructor signature
        log.warning("%s (%s)", CALLS_AHEAD_UNSUPPORTED, exc)
        return grpc.aio.server(options=options, interceptors=interceptors)
    return cast(grpc.aio.Server, server)


class _Unsupported(Exception):
    pass


def _internals() -> tuple[Any, Any]:
    """grpcio's Cython core (`cygrpc`) and grpc.aio's server module, if they are as
    expected."""
    try:
        cygrpc: Any = importlib.import_module("grpc._cython.cygrpc")
        aio_server: Any = importlib.import_module("grpc.aio._server")
        for owner, name in ((cygrpc.AioServer, "_make_request_call_future"),
                            (cygrpc.AioServer, "is_running"),
                            (cygrpc, "get_working_loop"),
                            (cygrpc, "_send_error_status_from_server"),
                            (cygrpc, "SendInitialMetadataOperation"),
                            (aio_server, "_augment_channel_arguments"),
                            (aio_server, "Server")):
            if not callable(getattr(owner, name, None)):
                raise _Unsupported(f"no {name}")
        # `new_server` does what grpc.aio's Server.__init__ does; a changed one is not used.
        changed = set(aio_server.Server.__init__.__code__.co_names) - _SERVER_INIT_NAMES
        if changed:
            raise _Unsupported(f"grpc.aio.Server.__init__ uses {sorted(changed)}")
    except (ImportError, AttributeError) as exc:
        raise _Unsupported(str(exc)) from None
    return cygrpc, aio_server


_SERVER_INIT_NAMES = frozenset({"AioServer", "ServerInterceptor", "ValueError",
                                "_augment_channel_arguments", "_loop", "_server", "cygrpc",
                                "get_working_loop"})
"""The names grpc.aio's Server.__init__ uses (grpcio 1.85)."""


class Admission:
    """`max_concurrent_rpcs` applied as gRPC hands a unary call over (`admit`), counting
    the calls inside the handler (`WorkflowService.calls_in_flight`) and those admitted
    here that have not reached it yet (`arrived`): the excess is refused there and then,
    before grpc.aio's own handling of the call (several more loop turns, a read of the
    request, a task or two) has cost anything. `_unary` checks the limit again, for calls
    that come another way."""

    TRANSIT = 1.0
    """Seconds a call admitted here counts before it reaches its handler, at most (one
    whose caller cancels it in between never does)."""

    def __init__(self, servicer: WorkflowService) -> None:
        self._servicer = servicer
        self._coming: collections.deque[float] = collections.deque()
        """When each call admitted here, not at its handler yet, was admitted."""

    def admit(self) -> Exception | None:
        """None (admitted), or the error that refuses the call."""
        now = time.monotonic()
        coming = self._coming
        while coming and coming[0] < now - self.TRANSIT:
            coming.popleft()
        limit = self._servicer.config.max_concurrent_rpcs
        if self._servicer.calls_in_flight + len(coming) >= limit:
            return overloaded("unary calls in flight", "max_concurrent_rpcs", limit)
        coming.append(now)
        return None

    def arrived(self) -> None:
        """A unary call reached its handler."""
        if self._coming:
            self._coming.popleft()


class _Ahead:
    """One method's calls (None: the unregistered methods'): `depth` requests outstanding
    in core, the calls they bring handed to grpc.aio's accept loop in the order they came.

    `next` stands in for grpc.aio's "ask core for the next call": it returns a future of
    the next call, after topping the requests up so that `depth` are outstanding or
    answered and not yet handed over. A request's failure (`_RequestCallError` at shutdown,
    or any other) reaches that future as it would have reached grpc.aio. A call that
    `admit` refuses goes to `refuse` as soon as it comes.

    Once the server is no longer `running` (a shutdown has begun) the accept loop takes in
    no more calls after the ones it has already been handed, so a call not handed over by
    then goes to `unserved`, which ends it (else each would hold up the shutdown for its
    full grace); failures are still handed over, and they end the accept loop."""

    def __init__(self, request: Callable[[], asyncio.Future[Any]], depth: int,
                 running: Callable[[], bool], unserved: Callable[[Any], None],
                 admit: Callable[[], Exception | None] | None,
                 refuse: Callable[[Any, Exception], None]) -> None:
        self._request = request
        self._depth = depth
        self._running = running
        self._unserved = unserved
        self._admit = admit
        self._refuse = refuse
        self._outstanding = 0
        self._came: collections.deque[asyncio.Future[Any]] = collections.deque()
        """Requests answered (a call, or an error), not handed over yet."""
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        """The accept loop's futures not answered yet."""
        self._closed = False

    def next(self) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(self._given_up)
        self._waiting.append(waiter)
        self._hand_over()
        self._top_up()
        return waiter

    def _top_up(self) -> None:
        while not self._closed and self._outstanding + len(self._came) < self._depth:
            request = self._request()
            self._outstanding += 1
            request.add_done_callback(self._came_in)

    def _came_in(self, request: asyncio.Future[Any]) -> None:
        self._outstanding -= 1
        call = not request.cancelled() and request.exception() is None  # (retrieved)
        if call and self._admit is not None and not self._closed and self._running():
            refusal = self._admit()
            if refusal is not None:
                self._refuse(request.result(), refusal)
                self._top_up()
                return
        self._came.append(request)
        self._hand_over()

    def _hand_over(self) -> None:
        if not self._closed and not self._running():
            self._closed = True
        while self._came:
            request = self._came[0]
            call = not request.cancelled() and request.exception() is None
            if call and self._closed:
                self._came.popleft()
                self._unserved(request.result())
                continue
            while self._waiting and self._waiting[0].done():
                self._waiting.popleft()
            if not self._waiting:
                return
            waiter = self._waiting.popleft()
            self._came.popleft()
            if request.cancelled():
                waiter.cancel()
            elif call:
                waiter.set_result(request.result())
            else:
                waiter.set_exception(request.exception())  # type: ignore[arg-type]

    def _given_up(self, waiter: asyncio.Future[Any]) -> None:
        # grpc.aio's accept loop cancels the future it waits on only as it ends.
        if waiter.cancelled() and not self._closed:
            self._closed = True
            self._hand_over()


class _AcceptAheadBase:
    """What `AcceptAhead` (grpc.aio's AioServer, below) adds: it asks core for
    `limits.CALLS_AHEAD` calls of each method at a time (`_Ahead`), and admits the calls of
    the methods given to `admit_with` as they come."""

    _tarry_cygrpc: Any

    def _tarry_init(self) -> None:
        self._tarry_ahead: dict[bytes | None, _Ahead] = {}
        self._tarry_admit: dict[bytes, Callable[[], Exception | None]] = {}
        self._tarry_ending: set[asyncio.Task[None]] = set()

    def admit_with(self, method: bytes, admit: Callable[[], Exception | None]) -> None:
        """Call `admit` for each call of `method` (`/package.Service/Method`) as it comes:
        it returns None to admit the call, or the error that refuses it."""
        self._tarry_admit[method] = admit

    def _make_request_call_future(self, method: bytes | None) -> asyncio.Future[Any]:
        ahead = self._tarry_ahead.get(method)
        if ahead is None:
            request = functools.partial(
                super()._make_request_call_future, method)  # type: ignore[misc]
            running: Callable[[], bool] = self.is_running  # type: ignore[attr-defined]
            ahead = _Ahead(request, limits.CALLS_AHEAD, running, self._tarry_unserved,
                           None if method is None else self._tarry_admit.get(method),
                           self._tarry_refuse)
            self._tarry_ahead[method] = ahead
        return ahead.next()

    def _tarry_unserved(self, rpc_state: Any) -> None:
        # UNAVAILABLE: what gRPC answers a call that comes during a shutdown.
        self._tarry_send(rpc_state, grpc.StatusCode.UNAVAILABLE,
                         "the server is shutting down", ())

    def _tarry_refuse(self, rpc_state: Any, exc: Exception) -> None:
        status = rpc_status.to_status(status_for(exc))
        self._tarry_send(rpc_state, status.code, status.details,
                         tuple(status.trailing_metadata))

    def _tarry_send(self, rpc_state: Any, code: grpc.StatusCode, details: str,
                    trailing_metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        """End a call taken in that grpc.aio will not serve with `code`."""
        task = asyncio.get_running_loop().create_task(
            self._tarry_end(rpc_state, code.value[0], details, trailing_metadata))
        self._tarry_ending.add(task)
        task.add_done_callback(self._tarry_ending.discard)

    async def _tarry_end(self, rpc_state: Any, code: int, details: str,
                         trailing_metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        cygrpc = self._tarry_cygrpc
        try:
            await cygrpc._send_error_status_from_server(
                rpc_state, code, details, trailing_metadata,
                cygrpc.SendInitialMetadataOperation((), 0), asyncio.get_running_loop())
        except Exception as exc:  # the call ended meanwhile (its caller went away...)
            log.debug("could not end a call: %r", exc)


@functools.cache
def _accept_ahead_server(cygrpc: Any) -> type[Any]:
    class AcceptAhead(_AcceptAheadBase, cygrpc.AioServer):  # type: ignore[misc]
        _tarry_cygrpc = cygrpc

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self._tarry_init()

    return AcceptAhead
