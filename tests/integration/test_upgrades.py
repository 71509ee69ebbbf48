"""Upgrades that cannot silently change running executions: each execution keeps the
fingerprint of the definition it started with, and a server whose definition differs does
not drive it. And a shutdown's grace keeps the leases alive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tarry import Chain, Flow, StepContext
from tarry.api._convert import execution_to_pb
from tarry.engine import DefinitionMismatch, Status, Workflow, WorkflowNotFound
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, eventually, settled, started, until


async def slow(ctx: StepContext) -> str:
    await asyncio.sleep(float(ctx.input.get("seconds", 0.3)) if ctx.input else 0.3)
    return "slow done"


def v1() -> Flow:
    return Flow("upgraded").step("first", slow).wait("ask").edge("first", "ask")


OLD = v1().build()
CHANGED = v1().step("extra", lambda ctx: "extra").edge("ask", "extra").build()  # same version
V2 = Flow("upgraded", version="2").step("only", lambda ctx: "v2").build()


def test_fingerprints_follow_the_shape_not_the_object() -> None:
    assert v1().build().fingerprint == OLD.fingerprint
    assert CHANGED.fingerprint != OLD.fingerprint
    assert len(OLD.fingerprint) == 16


async def test_a_server_with_another_definition_does_not_drive_it(
        make_engine: EngineFactory) -> None:
    old = await make_engine(OLD, lease_ttl=0.5)
    running = await old.run("upgraded", {"seconds": 0.6})
    waiting = await settled(old, (await old.run("upgraded", {"seconds": 0})).id)
    assert waiting.status is Status.AWAITING and waiting.fingerprint == OLD.fingerprint
    await old.stop()  # the step in flight is cut off: its lease is handed on
    new = await make_engine(CHANGED, V2, lease_ttl=0.5)
    v2 = await settled(new, (await new.run("upgraded")).id)
    assert v2.status is Status.COMPLETED and v2.result == "v2"
    await asyncio.sleep(1.5)  # more than the lease and a recovery pass
    assert running.id in new.cannot_drive
    stuck = await new.get(running.id)
    assert stuck.status is Status.RUNNING  # left as it was, for a server that has OLD
    assert len(started(await all_events(new, running.id), "first")) == 1
    with pytest.raises(DefinitionMismatch) as err:
        await new.resume(waiting.id, {"ok": True})
    assert err.value.reason == "DEFINITION_MISMATCH"
    assert (await new.get(waiting.id)).version == waiting.version
    shown = execution_to_pb(stuck, CHANGED)
    assert shown.workflow_fingerprint == OLD.fingerprint
    assert CHANGED.fingerprint in shown.drive_error
    # A server with the definition the executions started with takes them.
    again = await make_engine(OLD, lease_ttl=0.5)
    await until(again, running.id, Status.AWAITING, timeout=10)
    await again.resume(waiting.id, {"ok": True})
    assert (await settled(again, waiting.id)).status is Status.COMPLETED
    # Cancel runs no step: any definition of the version will do.
    assert (await new.cancel(running.id)).status is Status.CANCELLED


async def test_a_shutdown_grace_keeps_the_leases(make_engine: EngineFactory) -> None:
    wf = Chain("graceful").then("slow", slow).build()
    first = await make_engine(wf, lease_ttl=0.6)
    await make_engine(wf, lease_ttl=0.6)  # another server, looking for expired leases
    ex = await first.run("graceful", {"seconds": 1.5})
    await first.stop(grace=3.0)  # the step outlasts two lease times, inside the grace
    events = await all_events(first, ex.id)
    assert [e.data["attempt"] for e in started(events, "slow")] == [1]
    assert (await first.get(ex.id)).status is Status.COMPLETED


def versions_for(server: str, ran: list[tuple[str, str, str]], *, with_v2: bool
                 ) -> list[Workflow]:
    """v1 (and v2) of "rolling", each step noting (server, version, execution) in `ran`. The
    step functions differ per server, the shapes do not: both servers' v1 are the same
    definition (one fingerprint)."""

    def note(version: str, seconds: float = 0.0) -> Any:
        async def step(ctx: StepContext) -> str:
            ran.append((server, version, ctx.execution_id))
            await asyncio.sleep(seconds)
            return f"{version} done"
        return step

    v1 = (Flow("rolling").step("first", note("1")).sleep("nap", 0.3)
          .step("second", note("1")).edge("first", "nap").edge("nap", "second").build())
    v2 = (Flow("rolling", version="2").step("first", note("2")).sleep("nap", 0.3)
          .step("slow", note("2", 0.8)).step("third", note("2"))
          .edge("first", "nap").edge("nap", "slow").edge("slow", "third").build())
    return [v1, v2] if with_v2 else [v1]


async def test_two_servers_of_two_versions_each_execution_keeps_its_own(
        make_engine: EngineFactory) -> None:
    ran: list[tuple[str, str, str]] = []
    old = await make_engine(*versions_for("old", ran, with_v2=False), lease_ttl=0.5)
    new = await make_engine(*versions_for("new", ran, with_v2=True), lease_ttl=0.5)
    v1s = [await s.run("rolling", version="1") for s in (old, new, old, new, old, new)]
    assert (await new.run("rolling")).workflow_version == "2"  # the latest it has
    v2s = [await new.run("rolling", version="2") for _ in range(6)]
    with pytest.raises(WorkflowNotFound):
        await old.run("rolling", version="2")
    assert {ex.workflow_version for ex in v1s} == {"1"}
    assert {ex.workflow_version for ex in v2s} == {"2"}
    for ex in v1s:
        assert (await until(old, ex.id, Status.COMPLETED)).result == "1 done"
    # The v2 executions are in their slow step on `new`; it goes away mid-step. `old` sees
    # the leases run out but has no v2: it must leave them for a server that has.
    await eventually(lambda: all(sum(1 for r in ran if r[2] == ex.id) >= 2 for ex in v2s),
                     "every v2 execution in its slow step")
    await new.stop()
    await asyncio.sleep(1.5)  # more than the lease and a recovery pass
    assert [(await old.get(ex.id)).status for ex in v2s] == [Status.RUNNING] * len(v2s)
    assert not any(server == "old" and version == "2" for server, version, _ in ran)
    again = await make_engine(*versions_for("again", ran, with_v2=True), lease_ttl=0.5)
    for ex in v2s:
        assert (await until(again, ex.id, Status.COMPLETED)).result == "2 done"
    by_execution: dict[str, list[tuple[str, str]]] = {}
    for server, version, execution_id in ran:
        by_execution.setdefault(execution_id, []).append((server, version))
    for ex in v1s:  # either server may have fired a v1 timer: both have v1
        assert [v for _, v in by_execution[ex.id]] == ["1", "1"]
    for ex in v2s:  # first, slow (cut off on `new`, again on `again`), third
        assert [s for s, _ in by_execution[ex.id]] == ["new", "new", "again", "again"]
        assert {v for _, v in by_execution[ex.id]} == {"2"}
