"""The WorkflowService handler table: requests are decoded here, not by grpcio.

Why: grpcio decodes a request with its method's `request_deserializer` before any servicer
code runs, and answers an exception of the deserializer with UNKNOWN, the exception's class
and the parser's text, logging a traceback for every such request. So every method is
registered here with `request_deserializer=None` (its handler gets the raw bytes) and
parses them itself: a request that does not decode (truncated, invalid UTF-8 in a string, a
`Struct` nested deeper than the parser's recursion limit) gets INVALID_ARGUMENT with reason
MALFORMED_REQUEST, a BadRequest naming the top-level field at fault when it can be told,
no parser internals, and one rate-limited log line.

The table is built from the service's descriptor and the generated module, so no method can
be left out: one added to the proto is served here (decoded the same way) with no change.
Health and reflection keep their stock handlers.

`new_server` builds the grpc.aio server, one that takes each call in from gRPC as it
arrives, and `add_to_server` has it admit unary calls (`max_concurrent_rpcs`) right then
(`Admission`); "accepting calls" below says why.

A `CallObserver` (`tarry.observe`: metrics, traces, log fields) is told of every call: its
decoded request, how it ended and how long it took, and the calls refused on arrival.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

import grpc
from google.protobuf import message as pb_message
from google.protobuf.descriptor import MethodDescriptor
from grpc_status import rpc_status  # type: ignore[import-untyped]

from tarry import limits
from tarry.engine import CALLER, FieldViolation
from tarry_api.v1 import workflow_service_pb2

from ._auth import Authenticator, PermissionDenied, Unauthenticated, identify
from ._errors import MalformedRequest, abort, status_for
from ._logs import Throttled
from ._servicer import WorkflowService, overloaded

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)
_malformed_log = Throttled(log)

SERVICE = workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
"""The descriptor of tarry.v1.WorkflowService."""


class CallObserver(Protocol):
    """What the handlers tell of each call of WorkflowService. None of it may raise."""

    async def handling(self, method: str, request: pb_message.Message) -> None:
        """A call to `method` (`Run`...) is admitted, its caller known and its request
        decoded: the servicer answers it next, in this same task."""

    def answered(self, method: str, code: grpc.StatusCode, seconds: float,
                 context: Context) -> None:
        """A call ended with `code` after `seconds` in its handler (whatever the reason:
        an answer, a refusal, the caller going away)."""

    def refused(self, method: str, limit: str) -> None:
        """A call was refused as it arrived, before any handler, `limit` being reached."""


def method_handlers(servicer: WorkflowService, admission: Admission | None = None,
                    observer: CallObserver | None = None
                    ) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """One handler per method of the service, each decoding its own request (and telling
    `admission` when a unary call it admitted gets there, and `observer` of each call)."""
    return {method.name: _handler(servicer, method, admission, observer)
            for method in SERVICE.methods}


def add_to_server(servicer: WorkflowService, server: grpc.aio.Server,
                  observer: CallObserver | None = None) -> None:
    """Serve `servicer` on `server` (instead of the generated
    `add_WorkflowServiceServicer_to_server`). On a server from `new_server`, unary calls
    are admitted (`max_concurrent_rpcs`) as gRPC hands them over (`Admission`)."""
    core = getattr(server, "_server", None)
    admission = Admission(servicer) if isinstance(core, _AcceptAheadBase) else None
    handlers = method_handlers(servicer, admission, observer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    # As the generated code does: registered methods are looked up without the generic
    # handler's string matching.
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
    if admission is not None:
        assert isinstance(core, _AcceptAheadBase)
        for method in SERVICE.methods:
            if not method.server_streaming:
                admit = admission.admit if observer is None else _reporting(
                    admission.admit, method.name, observer)
                core.admit_with(f"/{SERVICE.full_name}/{method.name}".encode(), admit)


def _reporting(admit: Callable[[], Exception | None], method: str, observer: CallObserver
               ) -> Callable[[], Exception | None]:
    """`admit`, telling `observer` of each call it refuses."""

    def check() -> Exception | None:
        refusal = admit()
        if refusal is not None:
            limit = getattr(refusal, "metadata", {}).get("limit", "max_concurrent_rpcs")
            observer.refused(method, limit)
        return refusal

    return check


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


def _handler(servicer: WorkflowService, method: MethodDescriptor, admission: Admission | None,
             observer: CallObserver | None) -> grpc.RpcMethodHandler[Any, Any]:
    request_type: type[pb_message.Message] = getattr(workflow_service_pb2,
                                                     method.input_type.name)
    response_type: type[pb_message.Message] = getattr(workflow_service_pb2,
                                                      method.output_type.name)
    assert request_type.DESCRIPTOR is method.input_type
    assert response_type.DESCRIPTOR is method.output_type
    behaviour = getattr(servicer, method.name)
    serialize = response_type.SerializeToString
    caller = functools.partial(_caller, servicer.auth, method.name)
    if method.client_streaming:
        raise NotImplementedError(f"client-streaming method {method.full_name}")
    handling = None if observer is None else functools.partial(observer.handling,
                                                                 method.name)
    if method.server_streaming:
        stream = _streaming(request_type, behaviour, caller, handling)
        if observer is not None:
            stream = _measured_stream(method.name, stream, observer)
        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=None, response_serializer=serialize)
    unary = _unary(request_type, behaviour, admission, caller, handling)
    if observer is not None:
        unary = _measured(method.name, unary, observer)
    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=None, response_serializer=serialize)


async def _caller(auth: Authenticator | None, method: str, context: Context) -> None:
    """Establish who calls (CALLER, for the audit trail of the events the call writes);
    end the call when authentication is on and the caller may not call `method`. Before
    the request is read: an unauthenticated caller gets nothing decoded."""
    try:
        CALLER.set(identify(auth, method, context))
    except (Unauthenticated, PermissionDenied) as exc:
        await abort(context, exc)


Handling: TypeAlias = Callable[[pb_message.Message], Awaitable[None]]
"""`CallObserver.handling` for one method."""


def _unary(request_type: type[pb_message.Message],
           behaviour: Callable[[Any, Context], Awaitable[Any]], admission: Admission | None,
           caller: Callable[[Context], Awaitable[None]], handling: Handling | None
           ) -> Callable[[bytes, Context], Awaitable[Any]]:
    async def handle(raw: bytes, context: Context) -> Any:
        if admission is not None:
            admission.arrived()
        await caller(context)
        request = await _decode(request_type, raw, context)
        if handling is not None:
            await handling(request)
        return await behaviour(request, context)

    return handle


def _streaming(request_type: type[pb_message.Message],
               behaviour: Callable[[Any, Context], AsyncIterator[Any]],
               caller: Callable[[Context], Awaitable[None]], handling: Handling | None
               ) -> Callable[[bytes, Context], AsyncIterator[Any]]:
    async def handle(raw: bytes, context: Context) -> AsyncIterator[Any]:
        await caller(context)
        request = await _decode(request_type, raw, context)
        if handling is not None:
            await handling(request)
        async for response in behaviour(request, context):
            yield response

    return handle


def _measured(method: str, handle: Callable[[bytes, Context], Awaitable[Any]],
              observer: CallObserver) -> Callable[[bytes, Context], Awaitable[Any]]:
    """`handle`, telling `observer` how each call ended and how long it took."""

    async def measured(raw: bytes, context: Context) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await handle(raw, context)
        except BaseException as exc:
            code = _ended_with(context, exc)
            raise
        finally:
            observer.answered(method, code, time.perf_counter() - start, context)

    return measured


def _measured_stream(method: str, handle: Callable[[bytes, Context], AsyncIterator[Any]],
                     observer: CallObserver) -> Callable[[bytes, Context], AsyncIterator[Any]]:
    async def measured(raw: bytes, context: Context) -> AsyncIterator[Any]:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            # aclosing: a caller that goes away closes the inner stream now, not whenever
            # the garbage collector gets to it.
            async with contextlib.aclosing(handle(raw, context)) as stream:  # type: ignore[type-var]
                async for response in stream:
                    yield response
        except BaseException as exc:
            code = _ended_with(context, exc)
            raise
        finally:
            observer.answered(method, code, time.perf_counter() - start, context)

    return measured


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _ended_with(context: Context, exc: BaseException) -> grpc.StatusCode:
    """The status a call that raised `exc` ends with: the one it was aborted with, else
    CANCELLED when the caller went away, else UNKNOWN (what grpcio answers then)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _CODES.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN


async def _decode(request_type: type[pb_message.Message], raw: bytes, context: Context
                  ) -> pb_message.Message:
    try:
        return request_type.FromString(raw)
    except Exception as exc:
        # upb raises DecodeError for all three known cases ("Wire format was corrupt",
        # "String field had bad UTF-8", "Exceeded upb_DecodeOptions_MaxDepth"); whatever
        # else a parser may raise means the same to the caller.
        error = malformed(request_type, raw, exc)
        _malformed_log.warning("refused a request that does not decode as %s from %s: %s "
                               "(parser: %s)", request_type.DESCRIPTOR.full_name,
                               context.peer(), error.message, str(exc)[:200])
        await abort(context, error)


def malformed(request_type: type[pb_message.Message], raw: bytes, exc: BaseException
              ) -> MalformedRequest:
    """The error that answers `raw`, which `request_type.FromString` refused with `exc`."""
    name = request_type.DESCRIPTOR.full_name
    found = _faulty_field(request_type, raw)
    if found is None:
        return MalformedRequest(f"the request is not a valid {name} (it does not decode as "
                                f"protobuf)")
    field, fault = found
    if fault is None:
        fault = _describe(exc)
    return MalformedRequest(f"the request is not a valid {name}: {field}: {fault}",
                            violations=[FieldViolation(field, fault)])


def _describe(exc: BaseException) -> str:
    text = str(exc).lower()
    if "utf-8" in text or "utf8" in text:
        return "not valid UTF-8"
    if "depth" in text or "recursion" in text:
        return (f"nested too deeply to decode (values may nest at most {limits.MAX_DEPTH} "
                f"levels of objects and arrays)")
    return "not a valid encoding of the field"


def _faulty_field(request_type: type[pb_message.Message], raw: bytes
                  ) -> tuple[str, str | None] | None:
    """The name of the top-level field of `raw` that does not decode on its own, and what
    is wrong with it when the wire format tells (None: ask the parser's error); None when
    the fault is not inside one known field (e.g. a truncated field key)."""
    fields = request_type.DESCRIPTOR.fields_by_number
    pos, end = 0, len(raw)
    while pos < end:
        start = pos
        try:
            key, pos = _varint(raw, pos)
        except ValueError:
            return None
        number, wire_type = key >> 3, key & 7
        descriptor = fields.get(number)
        field = None if descriptor is None else str(descriptor.name)
        try:
            if wire_type == 0:
                _, pos = _varint(raw, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 2:
                size, pos = _varint(raw, pos)
                pos += size
            elif wire_type == 5:
                pos += 4
            else:  # groups (3, 4) are not in proto3, and 6, 7 are no wire type at all
                return None if field is None else (field, "not a valid encoding of it")
        except ValueError:
            pos = end + 1
        if pos > end:
            return None if field is None else (field, "truncated")
        if field is None:
            continue  # an unknown field decodes as such; its bytes are not looked into
        try:
            request_type.FromString(raw[start:pos])
        except Exception:
            return field, None
    return None


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; ValueError when it is cut short or
    longer than 10 bytes."""
    value, shift = 0, 0
    for index in range(pos, min(pos + 10, len(raw))):
        byte = raw[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise ValueError("varint cut short")
