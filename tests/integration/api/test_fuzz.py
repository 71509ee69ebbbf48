"""Property-based: whatever a caller sends, the real server answers only with documented
codes, always with a google.rpc.Status carrying an ErrorInfo, and stays healthy.

Two generators over every RPC of WorkflowService (both built from the service descriptor,
so a new RPC or field is fuzzed without a change here):
- requests whose fields are drawn by type: text short, long, huge and non-ASCII; integers
  negative and at the ends of their range; unknown enum numbers; Values deep, long and odd
  (NaN, huge numbers); known workflow names and execution ids among the random ones;
- raw bytes: random ones, and valid requests cut short or with bytes spliced in, sent
  through a raw channel method.

Hypothesis drives a sync channel in a thread while the session server runs on the event
loop. Bounded: a fixed number of examples each, no deadline, no example database.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarry import limits
from tarry.api import to_value
from tarry.server import Server
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub

SERVICE = pb.DESCRIPTOR.services_by_name["WorkflowService"]
DOCUMENTED = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})
CALL_TIMEOUT = 10.0
WORKFLOWS = ("expense-approval", "verify-user", "conditional-workflow", "simple-approval",
             "delayed-notification", "api-boom", "multi-approval")
"""Known workflows among the random names (all settle quickly, whatever their input)."""
FUZZ_SETTINGS = settings(
    deadline=None, database=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# -- strategies ------------------------------------------------------------------------

HUGE = (limits.MAX_NAME + 1, limits.MAX_REQUEST_ID + 1, limits.MAX_REASON + 1, 50_000,
        1_000_000)


NON_ASCII = st.characters(min_codepoint=0x80, codec="utf-8")  # no lone surrogates: a
# protobuf string cannot hold them (invalid UTF-8 is what the raw bytes test sends)
KNOWN: dict[str, tuple[str, ...]] = {
    "workflow": WORKFLOWS,
    "version": ("", "1"),
    "node_id": ("", "manager-approval", "submit"),
    "action": ("", "approve", "choose-a"),
    "from_step": ("", "submit"),
    "request_id": ("", "r-1", "r-2"),
    "reason": ("", "because"),
    "page_token": ("", "eyJvZmZzZXQiOjF9", "%%%"),
}
"""Values that mean something to the server (the execution ids come from the server)."""

ODD_TEXT = st.one_of(
    st.text(max_size=16),
    st.text(alphabet=NON_ASCII, min_size=1, max_size=64),
    st.text(min_size=100, max_size=300),
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.sampled_from(HUGE)),
)


def deep(levels: int, kinds: str) -> struct_pb2.Value:
    inner = struct_pb2.Value(string_value="leaf")
    for level in range(levels):
        outer = struct_pb2.Value()
        if kinds == "list" or (kinds == "mixed" and level % 2):
            outer.list_value.values.add().CopyFrom(inner)
        else:
            outer.struct_value.fields["k"].CopyFrom(inner)
        inner = outer
    return inner


SCALARS = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(-2**70, 2**70),
                    st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=5)
                    | st.dictionaries(st.text(max_size=10), kids, max_size=5), max_leaves=30)
ODD_VALUES = st.one_of(
    st.builds(deep, st.integers(1, 60), st.sampled_from(("struct", "list", "mixed"))),
    st.integers(0, 50_000).map(lambda n: to_value(list(range(n)))),
    st.integers(0, 5_000).map(lambda n: to_value({f"k{i}": i for i in range(n)})),
)


def timestamp_ms(ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def ints(bits: int) -> st.SearchStrategy[int]:
    top = 2 ** (bits - 1)
    return st.one_of(st.integers(-top, top - 1), st.sampled_from((-top, -1, top - 1, 1001)))


def field_strategies(field: FieldDescriptor, ids: tuple[str, ...]
                     ) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(sensible, odd) values of `field`: what a client means to send, and what it should
    not."""
    if field.type == FieldDescriptor.TYPE_STRING:
        known = ("", *ids) if field.name == "execution_id" else KNOWN.get(field.name, ("",))
        return st.sampled_from(known), ODD_TEXT
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.just(False), st.booleans()
    if field.type == FieldDescriptor.TYPE_INT32:
        return st.integers(0, 5), ints(32)
    if field.type == FieldDescriptor.TYPE_INT64:
        return st.integers(0, 5), ints(64)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values]), ints(32)
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Value":
        return JSON.map(to_value), ODD_VALUES
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        # map<string, string> (tags): a few plausible ones, or anything at all.
        return (st.dictionaries(st.sampled_from(("team", "env")), st.sampled_from(("a", "b")),
                                max_size=2),
                st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=20))
    if (field.message_type is not None
            and field.message_type.full_name == "google.protobuf.Timestamp"):
        return (st.integers(0, 4_000_000_000_000).map(timestamp_ms),
                st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
                          ints(64), ints(32)))
    raise AssertionError(f"no strategy for {field.full_name}: add one")


def build(cls: type[pb_message.Message], values: dict[str, Any]) -> pb_message.Message:
    msg = cls()
    for name, item in values.items():
        if item is None:
            continue  # left unset
        if isinstance(item, struct_pb2.Value | timestamp_pb2.Timestamp):
            getattr(msg, name).CopyFrom(item)  # a constructor would re-parse deep values
        elif isinstance(item, dict):
            getattr(msg, name).update(item)  # a map field
        else:
            setattr(msg, name, item)
    return msg


def requests(ids: tuple[str, ...]) -> st.SearchStrategy[tuple[str, pb_message.Message]]:
    """(method name, request) for every method of the service: each request all sensible
    (to get past the checks into the engine), all odd, or field by field either."""
    per_method = []
    for method in SERVICE.methods:
        descriptor: Descriptor = method.input_type
        cls: type[pb_message.Message] = getattr(pb, descriptor.name)
        pairs = {f.name: field_strategies(f, ids) for f in descriptor.fields}
        sensible = {name: st.one_of(st.none(), good) for name, (good, _) in pairs.items()}
        odd = {name: st.one_of(st.none(), bad) for name, (_, bad) in pairs.items()}
        mixed = {name: st.one_of(st.none(), good, bad) for name, (good, bad) in pairs.items()}
        fields = st.one_of(*(st.fixed_dictionaries(kind) for kind in (sensible, odd, mixed)))
        per_method.append(st.tuples(st.just(method.name),
                                    fields.map(functools.partial(build, cls))))
    return st.one_of(per_method)


def mutated(raw: bytes, cut: int, at: int, noise: bytes) -> bytes:
    """`raw` cut short at `cut`, with `noise` spliced in at `at` (positions wrap)."""
    raw = raw[:cut % (len(raw) + 1)]
    at %= len(raw) + 1
    return raw[:at] + noise + raw[at:]


def raw_requests(ids: tuple[str, ...]) -> st.SearchStrategy[tuple[str, bytes]]:
    valid = requests(ids).map(lambda pair: (pair[0], pair[1].SerializeToString()))
    return st.one_of(
        st.tuples(st.sampled_from([m.name for m in SERVICE.methods]), st.binary(max_size=400)),
        st.builds(lambda pair, cut, at, noise: (pair[0], mutated(pair[1], cut, at, noise)),
                  valid, st.integers(0, 10_000), st.integers(0, 10_000),
                  st.binary(max_size=12)),
    )


# -- checks ----------------------------------------------------------------------------


def check_error(err: grpc.RpcError, size: int) -> None:
    assert isinstance(err, grpc.Call)
    code = err.code()
    assert code in DOCUMENTED, f"{code}: {err.details()}"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and size > limits.MAX_REQUEST_BYTES:
        return  # gRPC's own refusal of a message over max_request_bytes (README: Limits)
    raw = [v for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
    assert raw, f"{code} without google.rpc.Status: {err.details()}"
    assert isinstance(raw[0], bytes)
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == code.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert infos, f"{code} without ErrorInfo: {status.message}"
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == "tarry.dev" and info.reason
    assert len(status.message) < 2000 and all(len(v) <= 300 for v in info.metadata.values())


def same(data: bytes) -> bytes:
    """The bytes as they are: the raw methods send and receive no messages."""
    return data


def invoke(channel: grpc.Channel, method: str, request: bytes,
           tally: Counter[tuple[str, str]]) -> None:
    """Send raw request bytes to `method`; check the answer (the first message of a stream)."""
    path = f"/{SERVICE.full_name}/{method}"
    streaming = SERVICE.methods_by_name[method].server_streaming
    code = grpc.StatusCode.OK
    try:
        if streaming:
            stream = channel.unary_stream(path, request_serializer=same,
                                          response_deserializer=same)
            call = stream(request, timeout=CALL_TIMEOUT)
            try:
                next(call, None)
            finally:
                call.cancel()
        else:
            unary = channel.unary_unary(path, request_serializer=same,
                                        response_deserializer=same)
            unary(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        code = err.code()
        if code is grpc.StatusCode.CANCELLED and streaming:
            code = grpc.StatusCode.OK  # our own cancel after the first message
        elif (code is grpc.StatusCode.DEADLINE_EXCEEDED and streaming
              and not any(k == "grpc-status-details-bin"
                          for k, _ in err.trailing_metadata() or ())):
            # Our own deadline: a watch from the last sequence of an execution that does
            # not move waits for its next event (gRPC's own status, as documented).
            code = grpc.StatusCode.OK
        else:
            try:
                check_error(err, len(request))
            except AssertionError as failed:
                raise AssertionError(f"{method}: {failed}") from None
    finally:
        tally[method, code.name] += 1


def fuzz(port: int, requests_examples: int, raw_examples: int, tally: Counter[tuple[str, str]]
         ) -> dict[str, float]:
    """Everything that talks to the server, run in a thread (the server's loop stays free)."""
    timings: dict[str, float] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = WorkflowServiceStub(channel)
        ids = tuple(stub.Run(pb.RunRequest(workflow="expense-approval"),
                             timeout=CALL_TIMEOUT).execution.id for _ in range(3))

        @settings(FUZZ_SETTINGS, max_examples=requests_examples)
        @given(requests(ids))
        def any_request(case: tuple[str, pb_message.Message]) -> None:
            method, request = case
            invoke(channel, method, request.SerializeToString(), tally)

        @settings(FUZZ_SETTINGS, max_examples=raw_examples)
        @given(raw_requests(ids))
        def any_bytes(case: tuple[str, bytes]) -> None:
            invoke(channel, *case, tally)

        for name, test in (("requests", any_request), ("raw bytes", any_bytes)):
            start = time.monotonic()
            test()
            timings[name] = time.monotonic() - start

        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=CALL_TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        canary = stub.Run(pb.RunRequest(workflow="expense-approval"),
                          timeout=CALL_TIMEOUT).execution
        again = stub.GetExecution(pb.GetExecutionRequest(execution_id=canary.id),
                                  timeout=CALL_TIMEOUT).execution
        assert again.id == canary.id and again.workflow == "expense-approval"
    return timings


async def test_nothing_a_caller_sends_gets_an_undocumented_code(api_server: Server) -> None:
    assert api_server.port is not None
    tally: Counter[tuple[str, str]] = Counter()
    timings = await asyncio.to_thread(fuzz, api_server.port, 1000, 600, tally)
    print("fuzz timings (s):", {k: round(v, 1) for k, v in timings.items()})
    print("answers:", sorted(tally.items()))
    # The generators reach every method, and past the request checks into the engine.
    assert {method for method, _ in tally} == {m.name for m in SERVICE.methods}
    codes = {code for _, code in tally}
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= codes, codes

