"""The asyncio `AsyncClient` against a real server: the tour, suspend / resume, typed errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tarry_client import (
    AsyncClient,
    Event,
    Execution,
    ExecutionNotFound,
    InvalidResumeData,
    Status,
    WatchItem,
    WrongState,
)

from .conftest import TarryServer


async def test_tour_expense_approval(aclient: AsyncClient) -> None:
    ex = await aclient.run("expense-approval", wait=True)
    assert ex.status is Status.AWAITING

    seen: list[WatchItem] = []
    async for item in aclient.watch(ex.id):
        seen.append(item)
        if isinstance(item, Execution):  # the snapshot: now approve it
            assert item.status is Status.AWAITING
            await aclient.resume(ex.id, {"approved": True}, action="approve")

    snapshot, *events = seen
    assert [e.sequence for e in events] == list(
        range(snapshot.sequence + 1, snapshot.sequence + 1 + len(events)))
    last = events[-1]
    assert isinstance(last, Event) and last.status is Status.COMPLETED
    done = await aclient.get(ex.id)
    assert done.result == "Expense approved and processed"


async def test_watch_replays_from_a_cursor_and_ends_at_a_terminal_snapshot(
        aclient: AsyncClient) -> None:
    ex = await aclient.run("conditional-workflow", wait=True)
    await aclient.resume(ex.id, action="choose-c", wait=True)
    replay = [item async for item in aclient.watch(ex.id, after_sequence=2)]
    assert all(isinstance(i, Event) for i in replay)
    assert replay[0].sequence == 3 and replay[-1].terminal
    snapshot_only = [item async for item in aclient.watch(ex.id)]
    assert len(snapshot_only) == 1 and isinstance(snapshot_only[0], Execution)
    assert snapshot_only[0].result == "Executed path C"


async def test_verify_user(aclient: AsyncClient) -> None:
    ex = await aclient.run("verify-user", {"userId": "u2", "email": "bob@example.com"},
                           wait=True)
    assert ex.status is Status.SUSPENDED and ex.suspension is not None
    with pytest.raises(InvalidResumeData) as caught:
        await aclient.resume(ex.id, {"code": 42})
    assert [v.field for v in caught.value.violations] == ["data.code"]
    done = await aclient.resume(ex.id, {"code": ex.suspension.data["verificationCode"]},
                                wait=True)
    assert done.status is Status.COMPLETED and done.result["verified"] is True


async def test_suspend_and_cancel(aclient: AsyncClient) -> None:
    ex = await aclient.run("long-process", {"items": 100, "seconds_per_item": 0.05})
    await aclient.suspend(ex.id, "pause")
    async for item in aclient.watch(ex.id):
        if item.status is Status.SUSPENDED:
            break
    cancelled = await aclient.cancel(ex.id, "changed my mind")
    assert cancelled.status is Status.CANCELLED
    assert cancelled.cancellation is not None
    assert cancelled.cancellation.reason == "changed my mind"
    with pytest.raises(WrongState) as caught:
        await aclient.resume(ex.id)
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_errors_and_reads(aclient: AsyncClient) -> None:
    with pytest.raises(ExecutionNotFound) as caught:
        await aclient.get("missing")
    assert caught.value.metadata == {"execution_id": "missing"}
    with pytest.raises(ExecutionNotFound):
        async for _ in aclient.watch("missing"):
            pass
    ids = [(await aclient.run("conditional-workflow", wait=True)).id for _ in range(3)]
    listed = [e.id async for e in aclient.iter_executions("conditional-workflow", page_size=1)]
    assert listed == ids[::-1]
    assert (await aclient.events(ids[0])).events[0].status is Status.RUNNING
    assert "verify-user" in {w.name for w in await aclient.workflows()}
    assert (await aclient.describe("expense-approval")).name == "expense-approval"


async def test_concurrent_watchers_see_the_same_log(aclient: AsyncClient) -> None:
    ex = await aclient.run("expense-approval", wait=True)

    async def follow() -> list[int]:
        return [i.sequence async for i in aclient.watch(ex.id, after_sequence=0)]

    watchers = [asyncio.create_task(follow()) for _ in range(5)]
    await asyncio.sleep(0.1)
    await aclient.resume(ex.id, {"approved": True})
    logs = await asyncio.gather(*watchers)
    assert all(log == logs[0] for log in logs)
    assert logs[0] == list(range(1, len(logs[0]) + 1))


async def test_a_client_on_your_own_channel_leaves_it_open(server: TarryServer) -> None:
    channel = grpc.aio.insecure_channel(server.target)
    async with AsyncClient(channel) as c:
        ex = await c.run("expense-approval", wait=True)
    async with AsyncClient(channel) as again:
        assert (await again.get(ex.id)).status is Status.AWAITING
    await channel.close()
