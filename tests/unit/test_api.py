"""The api layer without a network: JSON <-> Value, the error table, snapshots and events."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2, error_details_pb2

import tarry.engine as engine
from examples.pausing import conditional_workflow
from examples.suspend_resume import verify_user
from tarry.api import (
    CODES,
    code_for,
    event_to_pb,
    execution_to_pb,
    from_value,
    status_for,
    to_struct,
    to_value,
    workflow_to_pb,
)
from tarry.api._auth import PermissionDenied, Unauthenticated
from tarry.api._errors import INTERNAL_MESSAGE
from tarry.engine import (
    DefinitionError,
    ErrorInfo,
    Event,
    Execution,
    FieldViolation,
    InvalidResumeData,
    NodeNotWaiting,
    Status,
    SuspendedBy,
    Suspension,
    TarryError,
    WaitingPoint,
)
from tarry_api.v1 import execution_pb2
from tests.unit.imports import imports, imports_of, modules

API = Path(__file__).parents[2] / "service" / "tarry" / "api"


def test_json_round_trips_through_value() -> None:
    data: dict[str, object] = {
        "int": 3, "float": 2.5, "neg": -7, "big": 2**40, "bool": True, "off": False,
        "none": None, "text": "é", "list": [1, "a", None, [], {}], "empty": {},
        "nested": {"a": {"b": [{"c": 1}]}},
    }
    back = from_value(to_value(data))
    assert back == data
    assert type(back["int"]) is int and type(back["float"]) is float
    assert back["bool"] is True and back["off"] is False
    assert to_value({}).WhichOneof("kind") == "struct_value"
    assert to_value([]).WhichOneof("kind") == "list_value"
    assert to_value(None).WhichOneof("kind") == "null_value"
    assert from_value(struct_pb2.Value()) is None  # unset is null
    assert to_struct({"x": [1]}).fields["x"].list_value.values[0].number_value == 1.0


def test_non_json_values_are_refused() -> None:
    with pytest.raises(TypeError):
        to_value({"when": object()})


def _every_tarry_error() -> list[type[TarryError]]:
    found: list[type[TarryError]] = []
    todo: list[type[TarryError]] = [TarryError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _instance(cls: type[TarryError]) -> TarryError:
    return cls("message")


def test_every_domain_error_has_a_deliberate_code() -> None:
    exported = {n: getattr(engine, n) for n in engine.__all__}  # not all hashable (TABLE)
    for cls in _every_tarry_error():
        if exported.get(cls.__name__) is not cls:
            continue
        code = code_for(_instance(cls))
        # Not answers to a request (a StepError is recorded in an execution, never a reply):
        # one reaching a call is a bug.
        if cls in (TarryError, DefinitionError) or issubclass(cls, engine.StepError):
            assert code is grpc.StatusCode.INTERNAL, cls
        else:
            assert code is not grpc.StatusCode.INTERNAL, cls
    assert code_for(engine.InvalidInput("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_for(NodeNotWaiting("x")) is grpc.StatusCode.FAILED_PRECONDITION
    assert code_for(engine.Overloaded("x")) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_for(engine.DeadlineExceeded("x")) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert code_for(Unauthenticated("x")) is grpc.StatusCode.UNAUTHENTICATED
    assert code_for(PermissionDenied("x")) is grpc.StatusCode.PERMISSION_DENIED
    assert code_for(engine.BulkNotFound("x")) is grpc.StatusCode.NOT_FOUND
    assert len(CODES) == 13


def test_rich_status_of_invalid_resume_data() -> None:
    exc = InvalidResumeData("bad data", violations=[FieldViolation("data.approved", "bool")],
                            metadata={"node": "review"})
    status = status_for(exc)
    assert status.code == code_pb2.INVALID_ARGUMENT and status.message == "bad data"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_RESUME_DATA", "tarry.dev", {"node": "review"})
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("data.approved", "bool")]


def test_internal_errors_leak_nothing() -> None:
    secret = "redis://secret-host:6379 key tarry:v1:{abc}:state"
    for exc in (RuntimeError(secret), DefinitionError(secret), KeyError(secret)):
        status = status_for(exc)
        assert status.code == code_pb2.INTERNAL
        assert status.message == INTERNAL_MESSAGE
        assert b"secret-host" not in status.SerializeToString()


def test_execution_snapshot_with_and_without_its_workflow() -> None:
    ex = Execution(
        id="e1", workflow="conditional-workflow", workflow_version="1",
        status=Status.AWAITING, input=None, state={"n": 1}, result=None, error=None,
        waiting=(WaitingPoint("decision-point", "wait", None),
                 WaitingPoint("t", "retry", 1_700_000_000_123, 3)),
        running=(), suspension=None, suspend_requested=None, cancellation=None,
        created_at=1_700_000_000_000, updated_at=1_700_000_000_500, last_sequence=4,
        version=2,
    )
    msg = execution_to_pb(ex, conditional_workflow)
    wait, retry = msg.waiting_points
    assert list(wait.actions) == ["choose-a", "choose-b", "choose-c"]
    assert wait.kind == execution_pb2.WAITING_KIND_WAIT and not wait.HasField("wake_time")
    assert retry.kind == execution_pb2.WAITING_KIND_RETRY and retry.attempt == 3
    assert retry.wake_time.ToMilliseconds() == 1_700_000_000_123
    assert msg.HasField("input") and not msg.HasField("result")
    assert msg.update_time.ToMilliseconds() == 1_700_000_000_500
    bare = execution_to_pb(ex, None)
    assert not bare.waiting_points[0].actions


def test_step_suspension_carries_data_and_the_step_resume_schema() -> None:
    ex = Execution(
        id="e2", workflow="verify-user", workflow_version="1", status=Status.FAILED,
        input={}, state={}, result=None,
        error=ErrorInfo("ValueError", "boom", "send-verification", 2),
        waiting=(), running=(),
        suspension=Suspension("why", 5, SuspendedBy.STEP, "send-verification", {"code": "x"}),
        suspend_requested="later", cancellation={"reason": "r", "at": 9},
        created_at=1, updated_at=2, last_sequence=1, version=1,
    )
    msg = execution_to_pb(ex, verify_user)
    assert msg.suspension.by == execution_pb2.SUSPENSION_SOURCE_STEP
    # `in` before indexing: indexing a protobuf map inserts the key it looks for.
    assert "code" in msg.suspension.data.struct_value.fields
    assert msg.suspension.data.struct_value.fields["code"].string_value == "x"
    assert "properties" in msg.suspension.resume_schema.fields
    assert "code" in msg.suspension.resume_schema.fields["properties"].struct_value.fields
    assert (msg.error.type, msg.error.node_id, msg.error.attempt) == (
        "ValueError", "send-verification", 2)
    assert msg.suspend_requested.reason == "later"
    assert msg.cancellation.cancel_time.ToMilliseconds() == 9


def test_events_lift_status_node_and_attempt() -> None:
    status = event_to_pb(Event(7, "status", 1000, {"status": "AWAITING", "waiting": ["a"]}))
    assert status.status == execution_pb2.EXECUTION_STATUS_AWAITING
    assert from_value(struct_pb2.Value(struct_value=status.data)) == {"waiting": ["a"]}
    failed = event_to_pb(Event(8, "node_failed", 1001,
                               {"node": "s", "attempt": 2, "error": {"type": "E"}}))
    assert (failed.node_id, failed.attempt, failed.status) == (
        "s", 2, execution_pb2.EXECUTION_STATUS_UNSPECIFIED)
    assert set(failed.data.fields) == {"error"}
    assert failed.event_time.ToMilliseconds() == 1001


def test_workflow_definition() -> None:
    msg = workflow_to_pb(verify_user)
    assert [n.id for n in msg.nodes] == ["send-verification", "verify-code"]
    assert [(e.source, e.target) for e in msg.edges] == [("send-verification", "verify-code")]
    # `in`, not `fields["email"]`: indexing a protobuf map inserts the key, so is always true.
    assert "properties" in msg.input_schema.fields
    properties = msg.input_schema.fields["properties"].struct_value.fields
    assert "email" in properties
    assert properties["email"].struct_value.fields["type"].string_value == "string"
    assert set(properties) == {"userId", "email"}


def _reaches_redis(name: str) -> bool:
    return name.split(".")[0] == "redis" or name == "tarry.store" or name.startswith(
        "tarry.store.")


def test_the_api_layer_reaches_redis_only_through_the_engine() -> None:
    """Relative imports are resolved (`from ..store import X` is `tarry.store`)."""
    files = sorted(API.rglob("*.py"))
    assert len(files) > 3
    known = set(modules())
    through_engine = 0
    for path in files:
        found = imports(path, known)
        through_engine += any(i.module == "tarry.engine" for i in found)
        bad = [f"line {i.line}: {i.module}" for i in found if _reaches_redis(i.module)]
        assert not bad, f"{path.name} imports {bad}"
    assert through_engine >= 3  # the imports were read at all
    for source in ("from ..store import RedisStore", "from .. import store",
                   "import redis.asyncio", "from tarry.store._keys import Keys"):
        assert any(_reaches_redis(i.module) for i in imports_of(
            source, "tarry.api._servicer", known=known)), f"not caught: {source}"
