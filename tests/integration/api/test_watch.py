"""WatchExecution: snapshot or replay, live events in order, the end, resuming, limits."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import grpc

from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tests.integration.api.conftest import ServerFactory, connect
from tests.integration.api.support import (
    TIMEOUT,
    S,
    events,
    fails,
    finished,
    get,
    resume,
    run,
    stream_fails,
    value,
    watch_all,
)

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub


def event_list(messages: list[pb.WatchExecutionResponse]) -> list[execution_pb2.ExecutionEvent]:
    out = []
    for m in messages:
        assert m.HasField("event")
        assert m.sequence == m.event.sequence
        out.append(m.event)
    return out


async def test_snapshot_then_events_then_ok(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id), timeout=TIMEOUT)
    stream = aiter(call)
    first = await anext(stream)
    assert first.HasField("execution")
    assert first.execution.status == S.EXECUTION_STATUS_AWAITING
    assert first.sequence == first.execution.last_sequence == ex.last_sequence
    assert first.execution.waiting_points[0].node_id == "manager-approval"

    await stub.Resume(pb.ResumeRequest(execution_id=ex.id, data=value({"approved": True})),
                      timeout=TIMEOUT)
    live = event_list([m async for m in stream])
    assert await call.code() == grpc.StatusCode.OK
    assert [e.sequence for e in live] == list(
        range(first.sequence + 1, first.sequence + 1 + len(live)))
    assert live[-1].type == "status" and live[-1].status == S.EXECUTION_STATUS_COMPLETED
    assert [e.status for e in live if e.type == "status"] == [
        S.EXECUTION_STATUS_RUNNING, S.EXECUTION_STATUS_COMPLETED]
    logged = await events(stub, ex.id)
    assert live == logged[first.sequence:]


async def test_a_terminal_execution(stub: Stub) -> None:
    ex = await run(stub, "auto-approve", {"amount": 5})
    assert ex.status == S.EXECUTION_STATUS_COMPLETED
    only = await watch_all(stub, ex.id)
    assert len(only) == 1 and only[0].execution.status == S.EXECUTION_STATUS_COMPLETED
    replay = event_list(await watch_all(stub, ex.id, after=0))
    assert replay == await events(stub, ex.id)
    assert replay[-1].status == S.EXECUTION_STATUS_COMPLETED
    tail = event_list(await watch_all(stub, ex.id, after=replay[-3].sequence))
    assert tail == replay[-2:]
    assert await watch_all(stub, ex.id, after=replay[-1].sequence) == []


async def test_reconnecting_with_the_cursor_misses_nothing(stub: Stub) -> None:
    ex = await run(stub, "parallel-review")
    seen: list[execution_pb2.ExecutionEvent] = []

    # First connection: replay from the start up to AWAITING, then hang up.
    call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id, after_sequence=0),
                               timeout=TIMEOUT)
    async for m in call:
        seen.append(m.event)
        if m.event.status == S.EXECUTION_STATUS_AWAITING:
            break
    call.cancel()

    # Meanwhile things happen.
    await resume(stub, ex.id, {"approved": True}, node_id="technical-review")

    # Second connection: from the last sequence seen, while the rest happens.
    call = stub.WatchExecution(
        pb.WatchExecutionRequest(execution_id=ex.id, after_sequence=seen[-1].sequence),
        timeout=TIMEOUT)
    stream = aiter(call)
    seen.append((await anext(stream)).event)
    await resume(stub, ex.id, {"approved": False}, node_id="legal-review")
    seen.extend(event_list([m async for m in stream]))
    assert await call.code() == grpc.StatusCode.OK

    logged = await events(stub, ex.id)
    assert seen == logged  # nothing missed, nothing twice, in order
    assert seen[-1].status == S.EXECUTION_STATUS_COMPLETED


async def test_a_trimmed_cursor_is_out_of_range(make_server: ServerFactory) -> None:
    server = await make_server(events_maxlen=10)
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        ex = await finished(stub, (await run(stub, "api-chatter", {"times": 150})).id)
        assert ex.status == S.EXECUTION_STATUS_COMPLETED and ex.last_sequence > 300

        err = await stream_fails(
            stub, pb.WatchExecutionRequest(execution_id=ex.id, after_sequence=1),
            grpc.StatusCode.OUT_OF_RANGE)
        assert err.info.reason == "CURSOR_OUT_OF_RANGE"
        oldest = int(err.info.metadata["oldest_sequence"])
        assert 2 < oldest <= ex.last_sequence
        err = await fails(stub.ListExecutionEvents(
            pb.ListExecutionEventsRequest(execution_id=ex.id, after_sequence=1),
            timeout=TIMEOUT), grpc.StatusCode.OUT_OF_RANGE)
        assert err.info.metadata["oldest_sequence"] == str(oldest)

        # What is kept can still be read, and a fresh watch starts from a snapshot.
        kept = event_list(await watch_all(stub, ex.id, after=oldest - 1))
        assert kept[0].sequence == oldest and kept[-1].sequence == ex.last_sequence
        assert len(await watch_all(stub, ex.id)) == 1


async def test_a_cursor_beyond_the_log_is_out_of_range(stub: Stub) -> None:
    ex = await run(stub, "expense-approval")
    err = await stream_fails(
        stub, pb.WatchExecutionRequest(execution_id=ex.id, after_sequence=ex.last_sequence + 5),
        grpc.StatusCode.OUT_OF_RANGE)
    assert err.info.metadata["last_sequence"] == str(ex.last_sequence)


async def test_a_cursor_into_a_rewound_log_is_out_of_range(make_server: ServerFactory) -> None:
    """What a failover to a replica that missed the primary's last writes looks like: the
    execution's log and sequence are behind what a watcher saw. Reconnecting with its
    cursor gets OUT_OF_RANGE (never a silent gap, never events it has seen renumbered), and
    without a cursor a fresh snapshot."""
    server = await make_server()
    assert server.store is not None
    keys, r = server.store.keys, server.store._redis
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        ex = await run(stub, "expense-approval")
        seen = ex.last_sequence
        # Rewind: the last two events and the sequence as a lagging replica holds them.
        last: Any = await r.xrevrange(keys.events(ex.id), count=2)
        await r.xdel(keys.events(ex.id), *[entry_id for entry_id, _ in last])
        await r.hset(keys.state(ex.id), "seq", seen - 2)
        err = await stream_fails(
            stub, pb.WatchExecutionRequest(execution_id=ex.id, after_sequence=seen),
            grpc.StatusCode.OUT_OF_RANGE)
        assert err.info.reason == "CURSOR_OUT_OF_RANGE"
        assert err.info.metadata["last_sequence"] == str(seen - 2)
        call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                   timeout=TIMEOUT)
        first = await call.read()
        call.cancel()
        assert isinstance(first, pb.WatchExecutionResponse)
        assert first.execution.last_sequence == seen - 2  # a fresh snapshot


async def test_a_watch_without_deadline_ends_ok_after_max_watch_seconds(
        make_server: ServerFactory) -> None:
    server = await make_server(max_watch_seconds=0.3)
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        ex = await run(stub, "expense-approval")
        call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id))
        messages = [m async for m in call]
        assert await call.code() == grpc.StatusCode.OK
        assert len(messages) == 1 and messages[0].HasField("execution")
        assert (await get(stub, ex.id)).status == S.EXECUTION_STATUS_AWAITING


async def test_a_watch_follows_an_execution_driven_by_another_replica(
        make_server: ServerFactory) -> None:
    prefix = f"rep{uuid.uuid4().hex[:10]}:v1"  # two replicas: one Redis, one prefix
    a = await make_server(key_prefix=prefix)
    b = await make_server(key_prefix=prefix)
    async with connect(a) as ch_a, connect(b) as ch_b:
        stub_a, stub_b = WorkflowServiceStub(ch_a), WorkflowServiceStub(ch_b)
        ex = await run(stub_a, "expense-approval")
        call = stub_b.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                     timeout=TIMEOUT)
        stream = aiter(call)
        snapshot = await anext(stream)
        await stub_a.Resume(pb.ResumeRequest(execution_id=ex.id,
                                             data=value({"approved": True})), timeout=TIMEOUT)
        live = event_list([m async for m in stream])
        assert live[-1].status == S.EXECUTION_STATUS_COMPLETED
        assert live == (await events(stub_a, ex.id))[snapshot.sequence:]


async def test_many_open_watches_do_not_starve_unary_calls(stub: Stub) -> None:
    executions = [await run(stub, "expense-approval") for _ in range(50)]
    per_execution = 10
    opened = asyncio.Semaphore(0)

    async def follow(ex: execution_pb2.Execution) -> list[pb.WatchExecutionResponse]:
        got = []
        call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id),
                                   timeout=40)
        async for m in call:
            got.append(m)
            if len(got) == 1:
                opened.release()
        assert await call.code() == grpc.StatusCode.OK
        return got

    watchers = [asyncio.create_task(follow(ex)) for ex in executions
                for _ in range(per_execution)]
    for _ in watchers:
        await opened.acquire()  # all 500 streams are open and have their snapshot

    # Unary calls keep answering while every stream is open.
    for batch in range(5):
        ids = [executions[(batch * 20 + i) % 50].id for i in range(20)]
        got = await asyncio.gather(*(get(stub, i) for i in ids))
        assert [g.id for g in got] == ids
    assert all(not w.done() for w in watchers)

    await asyncio.gather(*(
        stub.Resume(pb.ResumeRequest(execution_id=ex.id, data=value({"approved": True})),
                    timeout=TIMEOUT) for ex in executions))
    results = await asyncio.gather(*watchers)
    for messages in results:
        assert messages[0].HasField("execution")
        tail = event_list(messages[1:])
        assert [e.sequence for e in tail] == list(
            range(messages[0].sequence + 1, messages[0].sequence + 1 + len(tail)))
        assert tail[-1].status == S.EXECUTION_STATUS_COMPLETED
