"""A Run's first step before its creation commit (tarry/engine/_creation.py): one commit
fewer, with the same execution, events and change log as two commits; the creation on its
own when the step outlasts the budget or settles the execution; never an answer before it
is in Redis, and a repeated Run never runs the first step again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tarry import Chain, StepContext
from tarry.engine import (
    ChangeFilter,
    Commit,
    Engine,
    ExecutionNotFound,
    Status,
    StoreUnavailable,
    Workflow,
)
from tarry.localredis import LocalRedis, free_port
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration import crash_worker
from tests.integration.helpers import all_events, count, settled


class CountingStore(RedisStore):
    """A real RedisStore that keeps the commits it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[Commit] = []

    async def commit(self, c: Commit):  # type: ignore[no-untyped-def]
        self.commits.append(c)
        return await super().commit(c)


def commits(engine: Engine) -> list[Commit]:
    assert isinstance(engine.store, CountingStore)
    return engine.store.commits


async def leases(engine: Engine) -> int:
    assert isinstance(engine.store, RedisStore)
    return await count(engine.store, engine.store.keys.leases)


def three(ran: list[str], gate: asyncio.Event | None = None,
          entered: asyncio.Event | None = None) -> Workflow:
    """Three async steps; the first waits for `gate` if given (once it has set `entered`)."""

    def step(name: str) -> Any:
        async def run(ctx: StepContext) -> str:
            if gate is not None and name == "a":
                if entered is not None:
                    entered.set()
                await gate.wait()
            ran.append(name)
            return name
        return run

    return (Chain("three").then("a", step("a")).then("b", step("b")).then("c", step("c"))
            .build())


def log_of(events: list[Any]) -> list[tuple[int, str, Any, Any]]:
    return [(e.sequence, e.type, e.data.get("node"), e.data.get("status")) for e in events]


async def test_a_three_step_run_is_three_commits_with_the_events_of_four(
        make_engine: EngineFactory) -> None:
    ran: list[str] = []
    # A budget no pause of this machine's can outlast: the fold is what is tested here.
    folded = await make_engine(three(ran), store_class=CountingStore, first_step_budget=10.0)
    plain = await make_engine(three(ran), store_class=CountingStore, first_step_budget=0.0)

    answer = await folded.run("three")
    # Answered as created: the first step's outcome is in the events after these.
    assert answer.status is Status.RUNNING and answer.running == ("a",)
    first = commits(folded)[0]
    assert first.expected_version == 0 and first.status is Status.RUNNING
    assert [e.data.get("node") for e in (await all_events(folded, answer.id))[:answer.last_sequence]
            ] == [None, "a"]
    done = await settled(folded, answer.id)
    assert done.status is Status.COMPLETED and done.result == "c"
    assert len(commits(folded)) == 3
    nodes = [kind for kind, _ in first.events]
    assert nodes.count("node_started") == 2 and nodes.count("node_finished") == 1

    other = await settled(plain, (await plain.run("three")).id)
    assert len(commits(plain)) == 4
    assert other.result == done.result
    assert log_of(await all_events(folded, done.id)) == log_of(await all_events(plain, other.id))
    assert ran == ["a", "b", "c"] * 2


async def test_a_first_step_past_the_budget_leaves_the_creation_to_commit_alone(
        make_engine: EngineFactory) -> None:
    ran: list[str] = []
    gate = asyncio.Event()
    engine = await make_engine(three(ran, gate), store_class=CountingStore)
    answer = await engine.run("three")  # answered while the first step still waits
    assert ran == [] and answer.status is Status.RUNNING
    stored = await engine.get(answer.id)  # in Redis, with its lease
    assert stored.status is Status.RUNNING and stored.running == ("a",)
    assert await leases(engine) == 1
    gate.set()
    done = await settled(engine, answer.id)
    assert done.status is Status.COMPLETED and ran == ["a", "b", "c"]
    assert len(commits(engine)) == 4


async def test_a_run_settled_by_its_first_step_is_seen_running_first(
        make_engine: EngineFactory) -> None:
    async def only(ctx: StepContext) -> str:
        return "done"

    engine = await make_engine(Chain("one").then("only", only).build(),
                               store_class=CountingStore)
    stream = engine.follow_changes(ChangeFilter(status=Status.RUNNING), None, 30)
    await anext(stream)
    ex = await engine.run("one")
    assert (await settled(engine, ex.id)).status is Status.COMPLETED
    seen: list[tuple[Status | None, Status, bool]] = []
    while len(seen) < 2:
        msg = await asyncio.wait_for(anext(stream), 10)
        seen += [(c.previous_status, c.status, matches) for c, matches, _ in msg.changes]
    await stream.aclose()
    # Created RUNNING (entering it), then COMPLETED (leaving it): two commits, as before.
    assert seen == [(None, Status.RUNNING, True), (Status.RUNNING, Status.COMPLETED, False)]
    assert [c.status for c in commits(engine)] == [Status.RUNNING, Status.COMPLETED]


async def test_a_repeated_run_never_runs_its_first_step_again(
        make_engine: EngineFactory) -> None:
    ran: list[str] = []
    engine = await make_engine(three(ran))
    one = await engine.run("three", request_id="same")
    again = await engine.run("three", request_id="same")  # after it: Redis has it
    assert again.id == one.id
    both = await asyncio.gather(engine.run("three", request_id="twice"),
                                engine.run("three", request_id="twice"))  # at once
    assert both[0].id == both[1].id
    named = await asyncio.gather(*(engine.run("three", execution_id="mine") for _ in range(3)))
    assert {ex.id for ex in named} == {"mine"}
    for ex in (one, both[0], named[0]):
        assert (await settled(engine, ex.id)).status is Status.COMPLETED
    assert ran.count("a") == 3 and ran.count("c") == 3


async def test_a_server_stopping_before_the_creation_answers_unavailable(
        make_engine: EngineFactory) -> None:
    ran: list[str] = []
    gate = asyncio.Event()
    entered = asyncio.Event()
    engine = await make_engine(three(ran, gate, entered), first_step_budget=60.0)
    reader = await make_engine(three(ran))
    run = asyncio.create_task(engine.run("three", execution_id="never"))
    await asyncio.wait_for(entered.wait(), 10)
    await engine.stop()
    with pytest.raises(StoreUnavailable, match="stopped while starting execution 'never'"):
        await asyncio.wait_for(run, 10)
    with pytest.raises(ExecutionNotFound):
        await reader.get("never")
    assert ran == []


@pytest.mark.standalone
async def test_redis_gone_before_the_creation_is_unavailable_and_leaves_nothing(
        tmp_path: Path, make_engine: EngineFactory) -> None:
    from tarry.engine import EngineConfig, Registry

    ran: list[str] = []
    gate, entered = asyncio.Event(), asyncio.Event()
    port = free_port()
    redis = LocalRedis(tmp_path / "redis", port=port, appendonly=True).start()
    engine = Engine(Registry([three(ran, gate, entered)]),
                    RedisStore(redis.url, prefix="gone:v2", socket_timeout=1.0),
                    EngineConfig(first_step_budget=60.0))
    try:
        await engine.start()
        run = asyncio.create_task(engine.run("three", execution_id="lost"))
        await asyncio.wait_for(entered.wait(), 10)
        redis.stop()
        gate.set()  # the step ends; its commit meets no Redis
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(run, 20)
        redis.start()
        for _ in range(50):  # the pool's connections from before fail once each
            try:
                await engine.get("lost")
            except StoreUnavailable:
                await asyncio.sleep(0.1)
                continue
            except ExecutionNotFound:
                break
            raise AssertionError("the execution is in Redis")
        else:
            raise AssertionError("Redis did not come back")
        assert await leases(engine) == 0
        again = await engine.run("three", execution_id="lost")  # the retry runs it whole
        assert (await settled(engine, again.id)).status is Status.COMPLETED
        assert ran == ["a", "a", "b", "c"]
    finally:
        await engine.stop()
        await engine.store.close()
        redis.stop()


@pytest.mark.standalone
async def test_a_server_killed_in_the_first_step_left_nothing_and_the_retry_runs_it(
        make_engine: EngineFactory, redis_server: LocalRedis, prefix: str, tmp_path: Path
) -> None:
    """kill -9 while the first step runs before the creation commit: the Run was never
    answered and Redis holds nothing of it; the retry (same request id) starts it afresh."""
    log = tmp_path / "steps.log"
    pid = await crash_worker.killed_once_logged(redis_server.url, prefix, log, "starting:1",
                                                "first")

    engine = await make_engine(crash_worker.first_step, lease_ttl=1.0)
    assert await leases(engine) == 0
    assert (await engine.list())[0] == []
    ex = await engine.run("first-step", request_id="crash-first")
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED and done.result == "started done"
    assert log.read_text().split() == [f"starting:1:{pid}",
                                       f"starting:1:{os.getpid()}", "last:1"]
