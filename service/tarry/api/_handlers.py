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

On a server from `_accept.new_server` (one that takes each call in from gRPC as it
arrives), `add_to_server` has it admit unary calls (`max_concurrent_rpcs`) right then
(`_accept.Admission`); `_accept` says why.

A `CallObserver` (`tarry.observe`: metrics, traces, log fields) is told of every call: its
decoded request, how it ended and how long it took, and the calls refused on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import grpc
from google.protobuf import message as pb_message
from google.protobuf.descriptor import MethodDescriptor

from tarry import limits
from tarry.engine import CALLER, FieldViolation
from tarry_api.v1 import workflow_service_pb2

from ._accept import Admission, _AcceptAheadBase
from ._auth import Authenticator, PermissionDenied, Unauthenticated, identify
from ._errors import MalformedRequest, abort
from ._logs import Throttled
from ._servicer import WorkflowService

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


def _handler(servicer: WorkflowService, method: MethodDescriptor, admission: Admission | None,
             observer: CallObserver | None) -> grpc.RpcMethodHandler[Any, Any]:
    request_type: type[pb_message.Message] = getattr(workflow_service_pb2,
                                                     method.input_type.name)
    response_type: type[pb_message.Message] = getattr(workflow_service_pb2,
                                                      method.output_type.name)
    assert request_type.DESCRIPTOR is method.input_type
    assert response_type.DESCRIPTOR is method.output_type
    behaviour = getattr(servicer, method.name)
    serialize: Callable[[Any], bytes] = response_type.SerializeToString
    if method.server_streaming:
        serialize = _serialized_or(response_type)
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


def _serialized_or(response_type: type[pb_message.Message]) -> Callable[[Any], bytes]:
    """A stream's serializer: a message, or bytes a handler serialized itself (a
    WatchExecutions message that many streams share the parts of: `_watch.ChangeMessages`)."""
    def serialize(response: Any) -> bytes:
        return response if isinstance(response, bytes) else response_type.SerializeToString(
            response)

    return serialize


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
