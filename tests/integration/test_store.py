"""The Redis adapter under conditions the engine tests do not reach."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from examples.pausing import conditional_workflow, expense_approval
from tarry.engine import (
    Conflict,
    Engine,
    EngineConfig,
    Execution,
    Registry,
    Status,
    StoreUnavailable,
    WrongState,
)
from tarry.engine.namespaces import DEFAULT
from tarry.localredis import LocalRedis
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, count, settled, started


async def test_commits_survive_redis_losing_its_scripts(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    first = await settled(engine, (await engine.run("expense-approval")).id)
    store = engine.store
    assert isinstance(store, RedisStore)
    await store.redis.script_flush()
    await engine.resume(first.id, {"approved": True})
    assert (await settled(engine, first.id)).status is Status.COMPLETED


async def test_many_concurrent_commits_each_apply_once(make_engine: EngineFactory) -> None:
    """Commits of many executions travel in shared batches; each is still checked alone."""
    engine = await make_engine(expense_approval)
    ids = [e.id for e in await asyncio.gather(
        *(engine.run("expense-approval") for _ in range(300)))]
    for i in ids:
        await settled(engine, i)
    sent = [{"approved": n % 2 == 0} for n in range(300)] + [{"approved": True}] * 50
    targets = ids + ids[:50]  # racing second resumes of the first 50
    results = await asyncio.gather(*(engine.resume(i, data) for i, data in zip(
        targets, sent, strict=True)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for err in errors:
        # A lost race: CONCURRENT_UPDATE (read before the winner committed) or WRONG_STATE
        # (read after: RUNNING the step after the wait, or COMPLETED). Nothing else.
        if type(err) is Conflict:
            assert err.reason == "CONCURRENT_UPDATE" and "concurrent request" in err.message
        else:
            assert type(err) is WrongState, f"not a lost race: {err!r}"
            assert err.metadata["status"] in ("RUNNING", "COMPLETED"), err.metadata
            assert "cannot resume execution" in err.message
    assert len(errors) == 50
    assert all(not isinstance(r, BaseException) for r in results[50:300])  # raced by none
    for n, i in enumerate(ids):
        won = [sent[k] for k in ((n, 300 + n) if n < 50 else (n,))
               if not isinstance(results[k], BaseException)]
        assert len(won) == 1, f"{i}: {[results[k] for k in (n, 300 + n)]}"
        answer = results[n] if not isinstance(results[n], BaseException) else results[300 + n]
        assert isinstance(answer, Execution) and answer.state["approval"] == won[0]
        done = await settled(engine, i)
        assert done.status is Status.COMPLETED
        assert done.state["approval"] == won[0]  # what the winner sent, applied once
        assert done.result == ("Expense approved and processed" if won[0]["approved"]
                               else "Expense rejected")
        assert len(started(await all_events(engine, i), "process")) == 1


async def test_listing_by_workflow_and_status_reads_one_index(
        make_engine: EngineFactory, redis_server: LocalRedis, prefix: str) -> None:
    """The pair index answers a two-filter listing without reading other workflows' rows."""
    engine = await make_engine(expense_approval, conditional_workflow)
    store = engine.store
    assert isinstance(store, RedisStore)
    mine = [await settled(engine, (await engine.run("expense-approval")).id) for _ in range(3)]
    others = [await settled(engine, (await engine.run("conditional-workflow")).id)
              for _ in range(40)]
    assert {e.status for e in mine + others} == {Status.AWAITING}
    await engine.resume(mine[0].id, {"approved": True})
    await settled(engine, mine[0].id)
    k = store.keys
    assert await count(store, lambda p: k.by_workflow_status(
        "expense-approval", "AWAITING", DEFAULT, p)) == 2
    rows, _ = await engine.list(workflow="expense-approval", status=Status.AWAITING)
    assert sorted(r.id for r in rows) == sorted(e.id for e in mine[1:])
    stored, _ = await store.list_executions("expense-approval", Status.COMPLETED, 10, None)
    assert [r.version for r in stored] == [(await engine.get(mine[0].id)).version]


@pytest.mark.standalone
async def test_commits_to_a_frozen_redis_fail_in_time_and_go_again_after(
        tmp_path: Path) -> None:
    """A primary gone silent (SIGSTOP: no FIN, no RST) must not hold a commit forever:
    every call of the group-commit batcher has its deadline, and after the thaw commits go
    through again."""
    import signal
    import time

    from tarry.engine import Engine, EngineConfig, Registry, StoreUnavailable

    with LocalRedis(tmp_path / "redis") as redis:
        store = RedisStore(redis.url, prefix="frozen:v1", socket_timeout=0.5)
        engine = Engine(Registry([expense_approval]), store, EngineConfig())
        await engine.start()
        try:
            assert (await engine.run("expense-approval")).status is not None
            assert redis.proc is not None
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                began = time.monotonic()
                outcomes = await asyncio.gather(
                    *(engine.run("expense-approval") for _ in range(20)),
                    return_exceptions=True)
                took = time.monotonic() - began
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
            assert took < 5  # the deadline is half a second; the machine may be slow
            again = await settled(engine, (await engine.run("expense-approval")).id)
            assert again.status is Status.AWAITING
        finally:
            await engine.stop()
            await store.close()


async def test_the_first_server_records_the_partitions_and_later_ones_take_them(
        redis_server: LocalRedis) -> None:
    prefix = f"layout{uuid.uuid4().hex[:8]}:v2"
    first = RedisStore(redis_server.url, prefix=prefix, partitions=4)
    later = RedisStore(redis_server.url, prefix=prefix, partitions=32)
    try:
        await first.check_layout()
        await later.check_layout()
        assert first.keys.partitions == later.keys.partitions == 4
        # Both find an execution the other wrote: the same keys.
        engine = Engine(Registry([expense_approval]), first, EngineConfig())
        await engine.start()
        try:
            ex = await settled(engine, (await engine.run("expense-approval")).id)
        finally:
            await engine.stop()
        stored, _ = await later.load(ex.id)
        assert stored is not None and stored.status is Status.AWAITING
    finally:
        await first.close()
        await later.close()


async def test_executions_of_the_layout_before_are_refused_naming_it(
        redis_server: LocalRedis) -> None:
    base = f"old{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_server.url, prefix=f"{base}:v2")
    try:
        await store.redis.zadd(f"{base}:v1:idx:all", {"some-execution": 1})
        with pytest.raises(OSError) as refused:
            await store.check_layout()
        assert f"{base}:v1:*" in str(refused.value)
        assert not await store.redis.exists(store.keys.meta)  # nothing written
        # Any call says why, as UNAVAILABLE, and touches nothing.
        with pytest.raises(StoreUnavailable) as unavailable:
            await store.load("some-execution")
        assert f"{base}:v1:*" in str(unavailable.value)
    finally:
        await store.redis.delete(f"{base}:v1:idx:all")
        await store.close()
