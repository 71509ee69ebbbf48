"""The change log and its feed (WatchExecutions' engine side): every change once and in
order for every follower, however slow, while commits race; the filter's before and after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tarry import Flow
from tarry.engine import Change, ChangeFeed, ChangeFilter, Seen, Status
from tarry.engine._store import covers
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import settled


def approval() -> Flow:
    return (Flow("approval")
            .step("submit", lambda ctx: "submitted")
            .wait("decide")
            .step("done", lambda ctx: "done")
            .edge("submit", "decide")
            .edge("decide", "done"))


def place(ch: Change) -> tuple[int, tuple[int, int]]:
    ms, _, n = ch.position.partition("-")
    return ch.partition, (int(ms), int(n))


def in_order(changes: list[Change]) -> bool:
    """Each partition's changes in the order of its log."""
    last: dict[int, tuple[int, int]] = {}
    for ch in changes:
        p, at = place(ch)
        if at <= last.get(p, (-1, -1)):
            return False
        last[p] = at
    return True


async def collect(stream: AsyncIterator[Seen], n: int, *, pause: float = 0.0
                  ) -> list[Change]:
    """The first `n` changes (reading slowly with `pause` after each message)."""
    got: list[Change] = []
    async with asyncio.timeout(30):
        while len(got) < n:
            seen = await anext(stream)
            got += [ch for ch, _, _ in seen.changes]
            for ch, _, after in seen.changes:  # each change's cursor, and the message's
                assert covers(after, ch) and covers(seen.cursor, ch)
            if pause:
                await asyncio.sleep(pause)
    return got


async def test_every_follower_gets_every_change_once_in_order_while_commits_race(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(approval().build())
    assert isinstance(engine.store, RedisStore)
    # A small queue, so that the slow follower overflows and reads the log again.
    feed = ChangeFeed(engine.store, queue_limit=5, block_ms=200)
    start = await feed.cursor()
    live = feed.follow(ChangeFilter(workflow="approval"), None, 60)
    first = await anext(live)
    assert first.changes == ()
    fast = feed.follow(ChangeFilter(workflow="approval"), start, 60)
    slow = feed.follow(ChangeFilter(workflow="approval"), start, 60)
    await anext(fast)
    await anext(slow)

    async def one() -> str:
        ex = await settled(engine, (await engine.run("approval")).id)
        assert ex.status is Status.AWAITING
        done = await settled(engine, (await engine.resume(ex.id, None)).id)
        assert done.status is Status.COMPLETED
        return ex.id

    n = 30
    readers = [asyncio.create_task(collect(s, 4 * n, pause=p))
               for s, p in ((live, 0.0), (fast, 0.0), (slow, 0.01))]
    ids = await asyncio.gather(*(one() for _ in range(n)))
    results = await asyncio.gather(*readers)
    for stream in (live, fast, slow):
        await stream.aclose()
    await feed.close()

    for got in results:
        assert len({place(c) for c in got}) == len(got) == 4 * n  # nothing twice
        assert in_order(got)
        per: dict[str, list[Status]] = {}
        for ch in got:
            per.setdefault(ch.execution_id, []).append(ch.status)
        assert set(per) == set(ids)
        assert all(v == [Status.RUNNING, Status.AWAITING, Status.RUNNING, Status.COMPLETED]
                   for v in per.values())
    assert {place(c) for c in results[0]} == {place(c) for c in results[2]}


async def test_the_reader_runs_only_while_someone_follows(make_engine: EngineFactory) -> None:
    engine = await make_engine(approval().build())
    feed = engine.changes
    assert feed.open == 0
    stream = feed.follow(ChangeFilter(), None, 60)
    await anext(stream)
    assert feed.open == 1
    await stream.aclose()
    assert feed.open == 0
    assert feed._task is None


async def test_a_stream_ends_when_the_engine_stops(make_engine: EngineFactory) -> None:
    engine = await make_engine(approval().build())
    stream = engine.follow_changes(ChangeFilter(), None, 60)
    await anext(stream)
    reader = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.05)
    await engine.changes.close()
    with contextlib.suppress(StopAsyncIteration):
        await asyncio.wait_for(reader, 5)
    assert reader.done()


@pytest.mark.standalone
async def test_a_stream_goes_on_after_redis_restarts(tmp_path: Path) -> None:
    """The feed's blocking reader meets a Redis gone and back (AOF on, stopped cleanly): it
    reads on from where it was, and a stream from before the outage gets the changes made
    after it, none twice."""
    from tarry.engine import Engine, EngineConfig, Registry
    from tarry.localredis import LocalRedis, free_port

    port = free_port()
    redis = LocalRedis(tmp_path / "redis", port=port, appendonly=True).start()
    store = RedisStore(redis.url, prefix="outage:v1", socket_timeout=1.0)
    engine = Engine(Registry([approval().build()]), store, EngineConfig())
    await engine.start()
    stream = engine.follow_changes(ChangeFilter(workflow="approval"), None, 60)
    try:
        await anext(stream)
        before = await settled(engine, (await engine.run("approval")).id)
        got = await collect(stream, 2)  # created RUNNING, then AWAITING
        assert {c.execution_id for c in got} == {before.id}
        redis.stop()
        await asyncio.sleep(1.0)
        redis = LocalRedis(tmp_path / "redis", port=port, appendonly=True).start()
        after = None
        for _ in range(50):  # the engine's own connections come back first
            with contextlib.suppress(Exception):
                after = await engine.run("approval")
                break
            await asyncio.sleep(0.2)
        assert after is not None
        more = await collect(stream, 2)
        assert [c.execution_id for c in more] == [after.id, after.id]
        assert in_order(got + more) and len({place(c) for c in got + more}) == len(got) + 2
    finally:
        await stream.aclose()
        await engine.stop()
        await store.close()
        redis.stop()
