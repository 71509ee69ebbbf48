"""The Redis adapter under conditions the engine tests do not reach."""

from __future__ import annotations

import asyncio

from examples.pausing import expense_approval
from tarry.engine import Conflict, Execution, Status, WrongState
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started


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
