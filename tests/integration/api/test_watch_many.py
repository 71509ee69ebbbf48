"""WatchExecutions: every execution matching a filter, from a listing's cursor or from now,
live, across servers, resumable without loss or repeats, and its refusals."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import grpc

from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tests.integration.api.conftest import ServerFactory, connect
from tests.integration.api.support import TIMEOUT, Rich, S, fails, resume, run

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

Changes = grpc.aio.UnaryStreamCall[pb.WatchExecutionsRequest, pb.WatchExecutionsResponse]


async def stream_fails(call: Changes, code: grpc.StatusCode) -> Rich:
    async def drain() -> None:
        async for _ in call:
            pass

    return await fails(drain(), code)


def tag() -> dict[str, str]:
    return {"inbox": uuid.uuid4().hex[:12]}


async def listing_cursor(stub: Stub) -> str:
    page = await stub.ListExecutions(pb.ListExecutionsRequest(page_size=1), timeout=TIMEOUT)
    assert page.watch_cursor
    return page.watch_cursor


async def read_changes(call: Changes, n: int) -> tuple[list[pb.ExecutionChange], str]:
    """The first `n` changes (and the cursor of the last one: reconnecting with it goes on
    just after it). Every message carries a cursor; a change, its own."""
    got: list[pb.ExecutionChange] = []
    async with asyncio.timeout(TIMEOUT):
        async for m in call:
            assert m.cursor
            for c in m.changes:
                assert c.cursor
                got.append(c)
            if len(got) >= n:
                break
    call.cancel()
    assert len(got) >= n, f"{len(got)} changes, expected {n}"
    return got[:n], got[n - 1].cursor  # (a message may carry more: the rest comes again)


def shape(changes: list[pb.ExecutionChange]) -> list[tuple[str, int, int, bool]]:
    return [(c.execution_id, c.previous_status, c.status, c.matches) for c in changes]


async def test_an_inbox_from_a_listing_sees_each_change_in_order(stub: Stub) -> None:
    tags = tag()
    cursor = await listing_cursor(stub)
    ex = await run(stub, "expense-approval", tags=tags)
    assert ex.status == S.EXECUTION_STATUS_AWAITING
    done = await resume(stub, ex.id, {"approved": True})
    assert done.status == S.EXECUTION_STATUS_COMPLETED

    call = stub.WatchExecutions(pb.WatchExecutionsRequest(
        workflow="expense-approval", tags=tags, cursor=cursor), timeout=TIMEOUT)
    got, _ = await read_changes(call, 4)
    r, a, c, u = (S.EXECUTION_STATUS_RUNNING, S.EXECUTION_STATUS_AWAITING,
                  S.EXECUTION_STATUS_COMPLETED, S.EXECUTION_STATUS_UNSPECIFIED)
    assert shape(got) == [(ex.id, u, r, True), (ex.id, r, a, True), (ex.id, a, r, True),
                          (ex.id, r, c, True)]
    awaiting = got[1]
    assert list(awaiting.waiting_nodes) == ["manager-approval"]
    assert list(awaiting.previous_waiting_nodes) == []
    assert list(got[2].previous_waiting_nodes) == ["manager-approval"]
    assert dict(awaiting.tags) == tags and awaiting.workflow == "expense-approval"
    assert awaiting.workflow_version == ex.workflow_version
    sequences = [c.sequence for c in got]
    assert sequences == sorted(sequences) and sequences[-1] == done.last_sequence
    assert all(c.time.seconds > 0 for c in got)
    assert len({c.cursor for c in got}) == 4


async def test_a_status_filter_shows_entering_and_leaving(stub: Stub) -> None:
    tags = tag()
    cursor = await listing_cursor(stub)
    ex = await run(stub, "expense-approval", tags=tags)
    await resume(stub, ex.id, {"approved": False})
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(
        status=S.EXECUTION_STATUS_AWAITING, tags=tags, cursor=cursor), timeout=TIMEOUT)
    got, _ = await read_changes(call, 2)
    assert shape(got) == [
        (ex.id, S.EXECUTION_STATUS_RUNNING, S.EXECUTION_STATUS_AWAITING, True),
        (ex.id, S.EXECUTION_STATUS_AWAITING, S.EXECUTION_STATUS_RUNNING, False)]


async def test_a_waiting_node_filter(stub: Stub) -> None:
    tags = tag()
    cursor = await listing_cursor(stub)
    ex = await run(stub, "expense-approval", tags=tags)
    await resume(stub, ex.id, {"approved": True})
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(
        workflow="expense-approval", waiting_node="manager-approval", tags=tags,
        cursor=cursor), timeout=TIMEOUT)
    got, _ = await read_changes(call, 2)
    assert [(c.status, c.matches) for c in got] == [
        (S.EXECUTION_STATUS_AWAITING, True), (S.EXECUTION_STATUS_RUNNING, False)]


async def test_from_now_starts_with_a_cursor_then_follows_live(stub: Stub) -> None:
    tags = tag()
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(tags=tags), timeout=TIMEOUT)
    stream = aiter(call)
    first = await anext(stream)
    assert first.cursor and not first.changes
    ex = await run(stub, "expense-approval", tags=tags)
    got: list[pb.ExecutionChange] = []
    while len(got) < 2:
        got += (await anext(stream)).changes
    call.cancel()
    assert [(c.execution_id, c.status) for c in got] == [
        (ex.id, S.EXECUTION_STATUS_RUNNING), (ex.id, S.EXECUTION_STATUS_AWAITING)]


async def test_a_reconnect_with_the_last_cursor_misses_and_repeats_nothing(stub: Stub) -> None:
    tags = tag()
    cursor = await listing_cursor(stub)
    ids = [(await run(stub, "expense-approval", tags=tags)).id for _ in range(3)]
    for i in ids:
        await resume(stub, i, {"approved": True})
    whole, _ = await read_changes(stub.WatchExecutions(pb.WatchExecutionsRequest(
        tags=tags, cursor=cursor), timeout=TIMEOUT), 12)
    parts: list[pb.ExecutionChange] = []
    at = cursor
    for n in (5, 4, 3):
        part, at = await read_changes(stub.WatchExecutions(pb.WatchExecutionsRequest(
            tags=tags, cursor=at), timeout=TIMEOUT), n)
        parts += part
    assert [m.cursor for m in parts] == [m.cursor for m in whole]
    assert shape(parts) == shape(whole)
    assert {c.execution_id for c in whole} == set(ids)


async def test_changes_made_through_another_server_arrive(
        make_server: ServerFactory) -> None:
    prefix = f"wm{uuid.uuid4().hex[:8]}:v1"
    a = await make_server(key_prefix=prefix)
    b = await make_server(key_prefix=prefix)
    tags = tag()
    async with connect(a) as ca, connect(b) as cb:
        watcher, caller = WorkflowServiceStub(ca), WorkflowServiceStub(cb)
        call = watcher.WatchExecutions(pb.WatchExecutionsRequest(tags=tags), timeout=TIMEOUT)
        stream = aiter(call)
        await anext(stream)
        ex = await run(caller, "expense-approval", tags=tags)
        await resume(caller, ex.id, {"approved": True})
        statuses: list[int] = []
        while len(statuses) < 4:
            statuses += [c.status for c in (await anext(stream)).changes]
        call.cancel()
    assert statuses == [S.EXECUTION_STATUS_RUNNING, S.EXECUTION_STATUS_AWAITING,
                        S.EXECUTION_STATUS_RUNNING, S.EXECUTION_STATUS_COMPLETED]


async def test_bad_requests(stub: Stub) -> None:
    for request, field in [
        (pb.WatchExecutionsRequest(cursor="not-a-cursor"), "cursor"),
        (pb.WatchExecutionsRequest(waiting_node="manager-approval"), "waiting_node"),
        (pb.WatchExecutionsRequest(tags={"": "x"}), "tags"),
    ]:
        err = await stream_fails(stub.WatchExecutions(request, timeout=TIMEOUT),
                                 grpc.StatusCode.INVALID_ARGUMENT)
        assert err.bad_request is not None
        assert [v.field for v in err.bad_request.field_violations] == [field]


async def test_a_cursor_beyond_the_log_is_out_of_range(stub: Stub) -> None:
    cursor = await listing_cursor(stub)
    from tarry.api._watch import decode_cursor, encode_cursor

    places = decode_cursor(cursor).split(",")  # one partition's place an hour ahead
    places[0] = f"{int(time.time() * 1000) + 3_600_000}-0"
    ahead = encode_cursor(",".join(places))
    err = await stream_fails(stub.WatchExecutions(pb.WatchExecutionsRequest(cursor=ahead),
                                                  timeout=TIMEOUT),
                             grpc.StatusCode.OUT_OF_RANGE)
    assert err.info.reason == "CURSOR_OUT_OF_RANGE"


async def test_a_cursor_older_than_the_kept_log_is_out_of_range(
        make_server: ServerFactory) -> None:
    server = await make_server(key_prefix=f"wm{uuid.uuid4().hex[:8]}:v1",
                               change_log_length=10)
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        old = await listing_cursor(stub)
        # Redis trims whole stream nodes (100 entries each): log well past one.
        await asyncio.gather(*(stub.Run(pb.RunRequest(workflow="expense-approval"),
                                        timeout=TIMEOUT) for _ in range(150)))
        for _ in range(100):
            page = await stub.ListExecutions(
                pb.ListExecutionsRequest(status=S.EXECUTION_STATUS_AWAITING, page_size=200),
                timeout=TIMEOUT)
            if len(page.executions) == 150:
                break
            await asyncio.sleep(0.05)
        err = await stream_fails(stub.WatchExecutions(pb.WatchExecutionsRequest(cursor=old),
                                                      timeout=TIMEOUT),
                                 grpc.StatusCode.OUT_OF_RANGE)
        assert err.info.reason == "CURSOR_OUT_OF_RANGE"
        # A fresh listing's cursor works.
        fresh = await listing_cursor(stub)
        call = stub.WatchExecutions(pb.WatchExecutionsRequest(cursor=fresh), timeout=TIMEOUT)
        first = await anext(aiter(call))
        call.cancel()
        assert first.cursor == fresh


async def test_unary_refusals_stay_unary(stub: Stub) -> None:
    # ListExecutions still refuses what it refused, with its cursor beside good pages.
    await fails(stub.ListExecutions(pb.ListExecutionsRequest(page_size=-1), timeout=TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT)
