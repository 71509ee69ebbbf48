"""Upgrades that cannot silently change running executions: each execution keeps the
fingerprint of the definition it started with, and a server whose definition differs does
not drive it. And a shutdown's grace keeps the leases alive."""

from __future__ import annotations

import asyncio

import pytest

from tarry import Chain, Flow, StepContext
from tarry.api._convert import execution_to_pb
from tarry.engine import DefinitionMismatch, Status
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled, started, until


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
