"""Bad input over real gRPC: requests that do not decode, strings over their limits, values
nested too deeply, overload, and stored data that does not convert. Nothing a caller sends
gets UNKNOWN or INTERNAL, and no reply quotes unbounded input.

Each case here was measured to fail before (UNKNOWN with the parser's text, a traceback per
request, RESOURCE_EXHAUSTED "metadata size exceeds hard limit" for a 1 MB id...).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from tarry import limits
from tarry.api import _accept, _handlers
from tarry.api._convert import safe_execution_to_pb
from tarry.api._fields import STRING_LIMITS
from tarry.api._logs import Throttled
from tarry.config import Config
from tarry.engine import Execution, Overloaded, Status, WaitingPoint
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tests.integration.api.conftest import ServerFactory, connect
from tests.integration.api.support import TIMEOUT, Rich, S, fails, get, rich, run, value

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVICE = pb.DESCRIPTOR.services_by_name["WorkflowService"]
METHODS = {m.name: m for m in SERVICE.methods}
Req = TypeVar("Req", bound=pb_message.Message)
INTERNALS = ("DecodeError", "upb", "Wire format", "Traceback", "Error parsing", "Exception")


def request_type(method: str) -> type[pb_message.Message]:
    cls: type[pb_message.Message] = getattr(pb, METHODS[method].input_type.name)
    return cls


async def raw_call(channel: grpc.aio.Channel, method: str, data: bytes) -> Rich:
    """Send `data` as the request bytes of `method`; the call must fail: its details."""
    path = f"/{SERVICE.full_name}/{method}"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if METHODS[method].server_streaming:
            stream = channel.unary_stream(path, request_serializer=same,
                                          response_deserializer=same)
            async for _ in stream(data, timeout=TIMEOUT):
                pass
        else:
            unary = channel.unary_unary(path, request_serializer=same,
                                        response_deserializer=same)
            await unary(data, timeout=TIMEOUT)
    return rich(caught.value)


def same(data: bytes) -> bytes:
    """The bytes as they are: the raw methods send and receive no messages."""
    return data


async def first_message(call: Any) -> pb.WatchExecutionResponse:
    message = await call.read()
    assert isinstance(message, pb.WatchExecutionResponse), message
    return message


def nested_struct(levels: int) -> struct_pb2.Value:
    """{"a": {"a": ... "x"}} with `levels` objects, built without json_format's own limit."""
    inner = struct_pb2.Value(string_value="x")
    for _ in range(levels):
        outer = struct_pb2.Value()
        outer.struct_value.fields["a"].CopyFrom(inner)
        inner = outer
    return inner


def put(req: Req, field: str, data: struct_pb2.Value) -> Req:
    """`req` with `data` in its Value field (CopyFrom: a constructor would re-parse it)."""
    getattr(req, field).CopyFrom(data)
    return req


def nested_list(levels: int) -> struct_pb2.Value:
    inner = struct_pb2.Value(number_value=1)
    for _ in range(levels):
        outer = struct_pb2.Value()
        outer.list_value.values.add().CopyFrom(inner)
        inner = outer
    return inner


def assert_bounded(err: Rich | grpc.aio.AioRpcError) -> None:
    """The reply quotes no unbounded input: message and every metadata value are short."""
    if isinstance(err, grpc.aio.AioRpcError):
        err = rich(err)
    assert len(err.message) < 1000, err.message[:200]
    assert all(len(v) <= 300 for v in err.info.metadata.values()), err.info.metadata
    if err.bad_request is not None:
        assert all(len(v.description) < 300 for v in err.bad_request.field_violations)


# -- requests that do not decode -------------------------------------------------------


async def test_truncated_requests_are_invalid_arguments(channel: grpc.aio.Channel,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    caplog.set_level(logging.WARNING)
    whole = pb.GetExecutionRequest(execution_id="abcdef").SerializeToString()
    err = await raw_call(channel, "GetExecution", whole[:-2])
    assert err.code is INVALID
    assert err.info.reason == "MALFORMED_REQUEST"
    assert err.fields == {"execution_id": "truncated"}
    assert "tarry.v1.GetExecutionRequest" in err.message
    assert not any(word in err.message for word in INTERNALS), err.message
    # Every method, the stream too: a string field 1 that announces 5 bytes and has 2.
    for method in METHODS:
        err = await raw_call(channel, method, b"\x0a\x05ab")
        assert (err.code, err.info.reason) == (INVALID, "MALFORMED_REQUEST"), method
        assert not any(word in err.message for word in INTERNALS), err.message
    # A cut field key tells no field: still INVALID_ARGUMENT, without violations.
    err = await raw_call(channel, "GetExecution", b"\x80")
    assert (err.code, err.info.reason) == (INVALID, "MALFORMED_REQUEST")
    assert err.fields == {}
    # At most one (rate-limited) line for all of them, without a traceback.
    lines = [r for r in caplog.records if r.name.startswith(("tarry", "grpc"))]
    assert all(r.levelno < logging.ERROR and r.exc_info is None for r in lines), lines
    assert len([r for r in lines if r.name == "tarry.api._handlers"]) <= 1


async def test_invalid_utf8_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    err = await raw_call(channel, "GetExecution", b"\x0a\x02\xff\xfe")
    assert (err.code, err.info.reason) == (INVALID, "MALFORMED_REQUEST")
    assert err.fields == {"execution_id": "not valid UTF-8"}
    # In the middle of a valid request too: the field at fault is named.
    good = pb.SuspendRequest(execution_id="e-1").SerializeToString()
    err = await raw_call(channel, "Suspend", good + b"\x12\x03a\xc3\x28")
    assert err.fields == {"reason": "not valid UTF-8"}


async def test_struct_nested_34_levels_is_malformed(channel: grpc.aio.Channel) -> None:
    req = put(pb.RunRequest(workflow="expense-approval"), "input", nested_struct(34))
    err = await raw_call(channel, "Run", req.SerializeToString())
    assert (err.code, err.info.reason) == (INVALID, "MALFORMED_REQUEST")
    assert list(err.fields) == ["input"]
    assert str(limits.MAX_DEPTH) in err.fields["input"]
    assert not any(word in err.message for word in INTERNALS), err.message
    resume = put(pb.ResumeRequest(execution_id="e-1"), "data", nested_struct(40))
    err = await raw_call(channel, "Resume", resume.SerializeToString())
    assert list(err.fields) == ["data"]


async def test_values_deeper_than_the_limit_are_refused(stub: Stub) -> None:
    # 33 levels still decode: refused by the depth check, before the engine sees them.
    req = put(pb.RunRequest(workflow="expense-approval"), "input", nested_struct(33))
    err = await fails(stub.Run(req, timeout=TIMEOUT), INVALID)
    assert err.info.reason == "INVALID_ARGUMENT"
    assert list(err.fields) == ["input"] and "24" in err.fields["input"]
    resume = put(pb.ResumeRequest(execution_id="nope"), "data", nested_list(45))
    err = await fails(stub.Resume(resume, timeout=TIMEOUT), INVALID)
    assert list(err.fields) == ["data"]
    # The limit itself passes (here on to NOT_FOUND); one more level does not.
    # A scalar is 0 levels and each object 1: MAX_DEPTH objects are exactly the limit.
    at_limit = nested_struct(limits.MAX_DEPTH)
    await fails(stub.Resume(put(pb.ResumeRequest(execution_id="nope"), "data", at_limit),
                            timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    over = nested_struct(limits.MAX_DEPTH + 1)
    err = await fails(stub.Resume(put(pb.ResumeRequest(execution_id="nope"), "data", over),
                                  timeout=TIMEOUT), INVALID)
    assert list(err.fields) == ["data"]
    ex = await run(stub, "api-chatter", {"times": 1, "deep": json_nest(limits.MAX_DEPTH - 1)})
    assert ex.status == S.EXECUTION_STATUS_COMPLETED


def json_nest(levels: int) -> Any:
    data: Any = 1
    for _ in range(levels):
        data = [data]
    return data


def test_the_parser_error_is_described_without_internals() -> None:
    cls = pb.RunRequest
    raw = put(pb.RunRequest(workflow="w"), "input", nested_struct(40)).SerializeToString()
    with pytest.raises(pb_message.DecodeError) as caught:
        cls.FromString(raw)
    err = _handlers.malformed(cls, raw, caught.value)
    assert err.reason == "MALFORMED_REQUEST"
    assert [v.field for v in err.violations] == ["input"]
    assert "upb" not in err.message and "Depth" not in err.message


# -- strings over their limits ----------------------------------------------------------


def string_fields() -> list[tuple[str, str]]:
    """(method, field) for every string field of every request of the service."""
    found = []
    for method in SERVICE.methods:
        for field in method.input_type.fields:
            if field.type == FieldDescriptor.TYPE_STRING:
                found.append((method.name, field.name))
    return found


def test_every_request_string_has_a_limit() -> None:
    fields = string_fields()
    assert len(fields) >= 20
    missing = {f for _, f in fields} - set(STRING_LIMITS)
    assert not missing, missing
    assert STRING_LIMITS["execution_id"] == limits.MAX_ID
    assert STRING_LIMITS["request_id"] == limits.MAX_REQUEST_ID
    assert STRING_LIMITS["reason"] == limits.MAX_REASON
    assert STRING_LIMITS["page_token"] == limits.MAX_PAGE_TOKEN


async def call(stub: Stub, method: str, req: pb_message.Message) -> grpc.aio.AioRpcError | None:
    """Make the call; its error, or None when it succeeded."""
    try:
        if METHODS[method].server_streaming:
            stream = getattr(stub, method)(req, timeout=TIMEOUT)
            await stream.read()  # the first message (or the error)
            stream.cancel()
        else:
            await getattr(stub, method)(req, timeout=TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return exc
    return None


async def test_every_string_over_its_limit_is_refused(stub: Stub) -> None:
    for method, field in string_fields():
        limit = STRING_LIMITS[field]
        for size in (limit + 1, 1_000_000):
            req = request_type(method)(**{field: "é" * size})
            err = await call(stub, method, req)
            assert err is not None and err.code() is INVALID, (method, field, size)
            details = rich(err)
            assert details.info.reason == "INVALID_ARGUMENT"
            assert details.fields[field] == f"at most {limit} characters (this one has {size})"
            assert_bounded(details)


async def test_strings_at_their_limit_pass_the_size_check(stub: Stub) -> None:
    for method, field in string_fields():
        limit = STRING_LIMITS[field]
        req = request_type(method)(**{field: "x" * limit})
        err = await call(stub, method, req)
        if err is None:
            continue
        assert err.code() in (INVALID, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION), (method, field)
        details = rich(err)
        if details.bad_request is not None:
            assert "at most" not in details.fields.get(field, ""), (method, field)
        assert_bounded(details)


async def test_engine_errors_quote_only_bounded_input(stub: Stub) -> None:
    longest_id, longest_name = "e" * limits.MAX_ID, "n" * limits.MAX_NAME
    err = await fails(stub.GetExecution(pb.GetExecutionRequest(execution_id=longest_id),
                                        timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    assert err.info.reason == "EXECUTION_NOT_FOUND"
    assert_bounded(err)
    err = await fails(stub.Run(pb.RunRequest(workflow=longest_name, version=longest_name),
                               timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    assert err.info.reason == "WORKFLOW_NOT_FOUND"
    assert_bounded(err)
    awaiting = await run(stub, "expense-approval")
    assert awaiting.status == S.EXECUTION_STATUS_AWAITING
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=awaiting.id,
                                                   node_id=longest_name), timeout=TIMEOUT),
                      grpc.StatusCode.FAILED_PRECONDITION)
    assert err.info.reason == "NODE_NOT_WAITING"
    assert_bounded(err)
    err = await fails(stub.Resume(pb.ResumeRequest(execution_id=awaiting.id,
                                                   from_step=longest_name), timeout=TIMEOUT),
                      INVALID)
    assert_bounded(err)
    ex = (await stub.Suspend(pb.SuspendRequest(execution_id=awaiting.id,
                                               reason="r" * limits.MAX_REASON),
                             timeout=TIMEOUT)).execution
    assert ex.suspension.reason == "r" * limits.MAX_REASON


# -- admission control -----------------------------------------------------------------


async def health(channel: grpc.aio.Channel) -> int:
    res = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    status: int = res.status
    return status


async def until(condition: Any, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not condition():
        assert loop.time() < end, "condition never held"
        await asyncio.sleep(0.02)


async def test_calls_over_the_limit_are_overloaded(make_server: ServerFactory) -> None:
    server = await make_server(max_concurrent_rpcs=2)
    assert server.servicer is not None
    servicer = server.servicer
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        slow = [asyncio.create_task(run(stub, "api-slow", {"seconds": 1.5})) for _ in range(2)]
        await until(lambda: servicer.calls_in_flight == 2)
        err = await fails(stub.GetExecution(pb.GetExecutionRequest(execution_id="x"),
                                            timeout=TIMEOUT),
                          grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert err.info.reason == "OVERLOADED"
        assert err.info.metadata["limit"] == "max_concurrent_rpcs"
        assert "2" in err.message
        assert await health(ch) == health_pb2.HealthCheckResponse.SERVING
        done = await asyncio.gather(*slow)
        assert [ex.status for ex in done] == [S.EXECUTION_STATUS_COMPLETED] * 2
        assert servicer.calls_in_flight == 0
        assert (await get(stub, done[0].id)).status == S.EXECUTION_STATUS_COMPLETED


async def test_calls_over_the_limit_are_refused_as_grpc_hands_them_over(
        make_server: ServerFactory) -> None:
    # Calls used to wait inside gRPC before any handler saw them (grpc.aio takes one call
    # per method in at a time), so a count inside the handler missed them. The server now
    # takes each call in as it arrives and admits it right then: over the limit, a burst is
    # refused at once with ErrorInfo, before its request is even read (a request that does
    # not decode gets OVERLOADED, not INVALID_ARGUMENT), and health stays SERVING.
    server = await make_server(max_concurrent_rpcs=2)
    assert server.servicer is not None
    servicer = server.servicer
    assert server._grpc is not None
    core = server._grpc._server  # type: ignore[attr-defined]
    assert isinstance(core, _accept._AcceptAheadBase), "the stock grpc.aio server is in use"
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        slow = [asyncio.create_task(run(stub, "api-slow", {"seconds": 1.5})) for _ in range(2)]
        await until(lambda: servicer.calls_in_flight == 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        burst = await asyncio.gather(*(
            fails(stub.GetExecution(pb.GetExecutionRequest(execution_id=f"x{i}"),
                                    timeout=TIMEOUT), grpc.StatusCode.RESOURCE_EXHAUSTED)
            for i in range(20)))
        assert loop.time() - started < 1.0  # long before either slow call ends
        assert {(e.info.reason, e.info.metadata["limit"]) for e in burst} == {
            ("OVERLOADED", "max_concurrent_rpcs")}
        undecodable = await raw_call(ch, "GetExecution", b"\x0a\x05ab")
        assert undecodable.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert undecodable.info.reason == "OVERLOADED"
        assert await health(ch) == health_pb2.HealthCheckResponse.SERVING
        done = await asyncio.gather(*slow)
        assert [ex.status for ex in done] == [S.EXECUTION_STATUS_COMPLETED] * 2
        assert servicer.calls_in_flight == 0
        # The refused ones left nothing counted behind: the limit admits two again.
        again = await asyncio.gather(*(get(stub, ex.id) for ex in done))
        assert [ex.status for ex in again] == [S.EXECUTION_STATUS_COMPLETED] * 2


def test_admission_counts_calls_on_their_way_to_the_handler() -> None:
    servicer: Any = type("Servicer", (), {"calls_in_flight": 1,
                                          "config": Config(max_concurrent_rpcs=3)})()
    admission = _accept.Admission(servicer)
    assert admission.admit() is None
    assert admission.admit() is None  # 1 in the handler + 2 on their way: the limit
    refused = admission.admit()
    assert isinstance(refused, Overloaded)
    assert (refused.reason, refused.metadata) == ("OVERLOADED", {"limit": "max_concurrent_rpcs"})
    admission.arrived()  # one reached the handler...
    servicer.calls_in_flight = 2
    assert admission.admit() is not None
    servicer.calls_in_flight = 1  # ...and finished
    assert admission.admit() is None
    # A call admitted whose caller went away before it reached the handler counts no
    # longer than TRANSIT.
    admission.TRANSIT = 0.0
    assert admission.admit() is None


async def test_a_shutdown_under_overload_is_not_held_up(make_server: ServerFactory) -> None:
    # Calls taken in ahead that the server will not serve any more are ended (UNAVAILABLE)
    # at the shutdown instead of keeping it waiting for its whole grace.
    server = await make_server(max_concurrent_rpcs=2)
    codes: set[grpc.StatusCode] = set()
    stop = asyncio.Event()
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)

        async def caller() -> None:
            while not stop.is_set():
                try:
                    await stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=TIMEOUT)
                    codes.add(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.add(exc.code())
                    await asyncio.sleep(0.01)

        callers = [asyncio.create_task(caller()) for _ in range(40)]
        await until(lambda: grpc.StatusCode.RESOURCE_EXHAUSTED in codes)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop(10.0)
        stopped = loop.time() - started
        stop.set()
        await asyncio.gather(*callers)
    assert stopped < 5.0
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


async def test_watches_over_the_limit_are_overloaded(make_server: ServerFactory) -> None:
    server = await make_server(max_watches=1)
    assert server.servicer is not None
    servicer = server.servicer
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        ex = await run(stub, "expense-approval")
        first = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                    timeout=TIMEOUT)
        assert (await first_message(first)).execution.id == ex.id
        second = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                     timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await second.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rich(caught.value).info.metadata["limit"] == "max_watches"
        # Unary calls are not counted against watches.
        assert (await get(stub, ex.id)).status == S.EXECUTION_STATUS_AWAITING
        first.cancel()
        await until(lambda: servicer.watches_open == 0)
        again = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                    timeout=TIMEOUT)
        assert (await first_message(again)).execution.id == ex.id
        again.cancel()


async def test_the_request_size_is_a_setting(make_server: ServerFactory) -> None:
    server = await make_server(max_request_bytes=2000)
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        req = pb.RunRequest(workflow="expense-approval", input=value({"x": "y" * 3000}))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Run(req, timeout=TIMEOUT)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await stub.Run(pb.RunRequest(workflow="expense-approval"), timeout=TIMEOUT)
        assert ok.execution.id


def test_limit_settings_from_the_environment() -> None:
    default = Config()
    assert (default.max_request_bytes, default.max_concurrent_rpcs, default.max_watches) == (
        limits.MAX_REQUEST_BYTES, limits.MAX_CONCURRENT_RPCS, limits.MAX_WATCHES)
    cfg = Config.from_env({"TARRY_MAX_REQUEST_BYTES": "1024", "TARRY_MAX_CONCURRENT_RPCS": "7",
                           "TARRY_MAX_WATCHES": "9"})
    assert (cfg.max_request_bytes, cfg.max_concurrent_rpcs, cfg.max_watches) == (1024, 7, 9)


# -- stored data that does not convert -------------------------------------------------


def unconvertible(ex: Execution) -> Execution:
    """`ex` with state that is not JSON (as corrupt stored data could be)."""
    return dataclasses.replace(ex, state={"bad": {1, 2}})


async def test_reads_degrade_per_item(make_server: ServerFactory,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = await make_server()
    engine = server.engine
    assert engine is not None
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        good = await run(stub, "expense-approval")
        bad = await run(stub, "expense-approval")
        far = await run(stub, "expense-approval")
        real_list, real_get = engine.list, engine.get

        def spoil(ex: Execution) -> Execution:
            if ex.id == bad.id:
                return unconvertible(ex)
            if ex.id == far.id:  # a wake time beyond what a Timestamp holds
                return dataclasses.replace(ex, waiting=(
                    WaitingPoint("zz", "sleep", 10**21), *ex.waiting), created_at=-10**20)
            return ex

        async def list_(**kw: Any) -> tuple[list[Execution], str | None]:
            rows, nxt = await real_list(**kw)
            return [spoil(r) for r in rows], nxt

        async def get_(execution_id: str) -> Execution:
            return spoil(await real_get(execution_id))

        monkeypatch.setattr(engine, "list", list_)
        monkeypatch.setattr(engine, "get", get_)
        page = await stub.ListExecutions(pb.ListExecutionsRequest(), timeout=TIMEOUT)
        by_id = {e.id: e for e in page.executions}
        assert set(by_id) == {good.id, bad.id, far.id}
        assert by_id[good.id] == (await get(stub, good.id))
        assert by_id[good.id].waiting_points
        minimal = by_id[bad.id]
        assert (minimal.workflow, minimal.status) == ("expense-approval",
                                                      S.EXECUTION_STATUS_AWAITING)
        assert not minimal.waiting_points and not minimal.HasField("create_time")
        clamped = by_id[far.id].waiting_points[0]
        assert clamped.wake_time.ToMilliseconds() == limits.MAX_WAKE_MS
        assert by_id[far.id].create_time.ToMilliseconds() == limits.MIN_TIME_MS
        assert (await get(stub, bad.id)).id == bad.id
        assert (await get(stub, far.id)).waiting_points[0].node_id == "zz"


async def test_a_sleep_beyond_the_timestamp_range_never_fails_a_read(stub: Stub) -> None:
    req = pb.RunRequest(workflow="delayed-notification", input=value({"delay_seconds": 1e18}))
    try:
        ex = (await stub.Run(req, timeout=TIMEOUT)).execution
    except grpc.aio.AioRpcError as exc:  # the engine may refuse such a sleep instead
        assert exc.code() is INVALID
        return
    assert (await get(stub, ex.id)).id == ex.id
    page = await stub.ListExecutions(pb.ListExecutionsRequest(workflow="delayed-notification"),
                                     timeout=TIMEOUT)
    assert ex.id in {e.id for e in page.executions}


def test_minimal_snapshot_of_an_unconvertible_execution() -> None:
    ex = Execution(
        id="e1", workflow="w", workflow_version="1", status=Status.AWAITING, input=None,
        state={"bad": object()}, result=None, error=None, waiting=(), running=(),
        suspension=None, suspend_requested=None, cancellation=None, created_at=1,
        updated_at=2, last_sequence=4, version=2)
    msg = safe_execution_to_pb(ex, None)
    assert (msg.id, msg.status, msg.last_sequence) == (
        "e1", execution_pb2.EXECUTION_STATUS_AWAITING, 4)
    weird = dataclasses.replace(ex, status="LOST", state={})  # type: ignore[arg-type]
    assert safe_execution_to_pb(weird, None).status == execution_pb2.EXECUTION_STATUS_UNSPECIFIED



def test_bad_request_log_lines_are_rate_limited() -> None:
    now = [0.0]
    logger = logging.getLogger("tests.throttled")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(keep := Keep())
    try:
        throttled = Throttled(logger, interval=10.0, clock=lambda: now[0])
        assert throttled.warning("bad %s", 1)
        for _ in range(5):
            now[0] += 1.0
            assert not throttled.warning("bad %s", 2)
        now[0] += 10.0
        assert throttled.warning("bad %s", 3)
    finally:
        logger.removeHandler(keep)
    assert [r.getMessage() for r in records] == [
        "bad 1", "bad 3 (and 5 more like it since the last such line, not logged)"]


def test_the_readme_lists_every_limit() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Limits", 1)[1].split("\n### ", 1)[0]
    names = [n for n in vars(limits) if n.isupper() and not n.startswith("_")]
    assert len(names) >= 10
    missing = [n for n in names if f"| `{n}` |" not in section]
    assert not missing, f"README's Limits table lacks {missing}"
