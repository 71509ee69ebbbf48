"""Bulk operations: every execution matching a filter suspended, resumed or cancelled by one
durable batch: counted, rate-limited, idempotent by request id, stoppable, and carried on
by another server from where it was when the first stops or dies."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from pydantic import BaseModel, ConfigDict

from tarry import Chain
from tarry.engine import (
    Bulk,
    BulkNotFound,
    BulkOp,
    BulkSpec,
    BulkStatus,
    Engine,
    EventType,
    ListFilters,
    Status,
)
from tests.conftest import EngineFactory
from tests.integration.helpers import all_events, settled


class Decision(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    approved: bool


inbox = Chain("inbox").wait("decide", resume=Decision).then("done", lambda ctx: "done").build()


async def awaiting(engine: Engine, n: int, tag: str) -> list[str]:
    ids = []
    for _ in range(n):
        ex = await settled(engine, (await engine.run("inbox", tags={"batch": tag})).id)
        assert ex.status is Status.AWAITING
        ids.append(ex.id)
    return ids


async def finished(engine: Engine, bulk_id: str, timeout: float = 20) -> Bulk:
    deadline = time.monotonic() + timeout
    while True:
        b = await engine.bulks.get(bulk_id, "default")
        if b.status is not BulkStatus.RUNNING or time.monotonic() > deadline:
            return b
        await asyncio.sleep(0.05)


def by_tag(tag: str) -> ListFilters:
    return ListFilters(tags={"batch": tag})


async def start(engine: Engine, spec: BulkSpec, tag: str, request_id: str | None = None
                ) -> Bulk:
    b, matched = await engine.bulks.start_bulk(spec, "inbox", None, by_tag(tag),
                                               dry_run=False, request_id=request_id)
    assert b is not None and b.total == matched
    return b


async def test_cancel_every_match_once_and_count_it(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    ids = await awaiting(engine, 12, tag)
    other = await awaiting(engine, 2, uuid.uuid4().hex)  # not matching: left alone
    none, matched = await engine.bulks.start_bulk(
        BulkSpec(BulkOp.CANCEL), "inbox", None, by_tag(tag), dry_run=True, request_id=None)
    assert none is None and matched == 12
    b = await start(engine, BulkSpec(BulkOp.CANCEL, reason="cleanup", rate=1000,
                                     caller={"subject": "ops"}), tag)
    done = await finished(engine, b.id)
    assert (done.status, done.total, done.applied, done.skipped, done.failed) == (
        BulkStatus.DONE, 12, 12, 0, 0)
    for eid in ids:
        ex = await engine.get(eid)
        assert ex.status is Status.CANCELLED and ex.cancellation is not None
        assert ex.cancellation["reason"] == "cleanup"
        [status] = [e for e in await all_events(engine, eid)
                    if e.type == EventType.STATUS and e.data["status"] == "CANCELLED"]
        assert status.data["caller"] == {"subject": "ops", "bulk": b.id}
    assert [(await engine.get(eid)).status for eid in other] == [Status.AWAITING] * 2


async def test_resume_with_data_and_what_skips_or_fails(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    ids = await awaiting(engine, 6, tag)
    await engine.cancel(ids[0], "gone already")  # skipped: nothing to resume
    b = await start(engine, BulkSpec(BulkOp.RESUME, data={"approved": True}, rate=1000), tag)
    done = await finished(engine, b.id)
    assert (done.status, done.applied, done.skipped, done.failed) == (BulkStatus.DONE, 5, 1, 0)
    for eid in ids[1:]:
        assert (await settled(engine, eid)).status is Status.COMPLETED

    tag2 = uuid.uuid4().hex
    await awaiting(engine, 3, tag2)
    bad = await start(engine, BulkSpec(BulkOp.RESUME, data={"approved": "yes"}, rate=1000),
                      tag2)
    failed = await finished(engine, bad.id)
    assert (failed.applied, failed.failed) == (0, 3) and len(failed.failures) == 3
    assert "resume data does not match" in failed.failures[0]


async def test_suspend_by_query(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    ids = await awaiting(engine, 4, tag)
    b = await start(engine, BulkSpec(BulkOp.SUSPEND, reason="freeze", rate=1000), tag)
    assert (await finished(engine, b.id)).applied == 4
    assert [(await engine.get(i)).status for i in ids] == [Status.SUSPENDED] * 4


async def test_the_same_request_id_gets_the_same_batch(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    await awaiting(engine, 3, tag)
    first = await start(engine, BulkSpec(BulkOp.CANCEL, rate=1000), tag, request_id="once")
    await awaiting(engine, 2, tag)  # more match now, but the batch is the first one
    again = await start(engine, BulkSpec(BulkOp.CANCEL, rate=1000), tag, request_id="once")
    assert again.id == first.id and again.total == 3
    assert (await finished(engine, first.id)).applied == 3


async def test_rate_limited(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    await awaiting(engine, 10, tag)
    began = time.monotonic()
    b = await start(engine, BulkSpec(BulkOp.CANCEL, rate=20), tag)
    done = await finished(engine, b.id)
    assert done.applied == 10
    assert time.monotonic() - began >= 9 / 20  # ten requests, one every 50 ms


async def test_cancel_a_batch_leaves_the_rest(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    ids = await awaiting(engine, 30, tag)
    b = await start(engine, BulkSpec(BulkOp.CANCEL, rate=10), tag)
    await asyncio.sleep(0.8)
    stopped = await engine.bulks.cancel(b.id, "default")
    assert stopped.status is BulkStatus.CANCELLED
    await asyncio.sleep(0.5)  # a request on its way ends; no more follow
    left = [i for i in ids if (await engine.get(i)).status is Status.AWAITING]
    assert 15 <= len(left) < 30
    assert (await engine.bulks.cancel(b.id, "default")).status is BulkStatus.CANCELLED


async def test_another_server_goes_on_where_a_dead_one_stopped(
        make_engine: EngineFactory) -> None:
    one = await make_engine(inbox, lease_ttl=1.0, owner="one")
    tag = uuid.uuid4().hex
    ids = await awaiting(one, 40, tag)
    b = await start(one, BulkSpec(BulkOp.CANCEL, rate=40), tag)
    await asyncio.sleep(0.6)
    # The first server dies: its batch task stops where it is, the lease is not handed back.
    loop = one.bulks._loop
    assert loop is not None
    work = [loop, *one.bulks._working.values()]
    for task in work:
        task.cancel()
    await asyncio.gather(*work, return_exceptions=True)
    one.bulks._working.clear()
    midway = await one.bulks.get(b.id, "default")
    assert midway.status is BulkStatus.RUNNING and 0 < midway.applied < 40

    two = await make_engine(inbox, lease_ttl=1.0, owner="two")
    done = await finished(two, b.id)
    assert (done.status, done.applied, done.skipped, done.failed) == (BulkStatus.DONE, 40, 0, 0)
    for eid in ids:
        cancels = [e for e in await all_events(two, eid)
                   if e.type == EventType.STATUS and e.data["status"] == "CANCELLED"]
        assert len(cancels) == 1  # once, though some were sent again by the second


async def test_a_batch_of_another_namespace_is_not_found(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    tag = uuid.uuid4().hex
    await awaiting(engine, 1, tag)
    b = await start(engine, BulkSpec(BulkOp.CANCEL, rate=1000), tag)
    with pytest.raises(BulkNotFound):
        await engine.bulks.get(b.id, "acme")
    with pytest.raises(BulkNotFound):
        await engine.bulks.get(uuid.uuid4().hex, "default")


async def test_nothing_matching_is_done_at_once(make_engine: EngineFactory) -> None:
    engine = await make_engine(inbox)
    b = await start(engine, BulkSpec(BulkOp.CANCEL), uuid.uuid4().hex)
    assert (b.status, b.total) == (BulkStatus.DONE, 0)


async def test_a_batch_survives_a_restart(make_engine: EngineFactory) -> None:
    first = await make_engine(inbox, owner="first")
    tag = uuid.uuid4().hex
    ids = await awaiting(first, 30, tag)
    b = await start(first, BulkSpec(BulkOp.SUSPEND, reason="maintenance", rate=30), tag)
    await asyncio.sleep(0.7)
    await first.stop()  # hands the batch back: nothing of it stays in memory
    midway = await first.bulks.get(b.id, "default")
    assert midway.status is BulkStatus.RUNNING and 0 < midway.applied < 30
    second = await make_engine(inbox, owner="second")
    done = await finished(second, b.id)
    assert (done.status, done.applied, done.skipped) == (BulkStatus.DONE, 30, 0)
    assert [(await second.get(i)).status for i in ids] == [Status.SUSPENDED] * 30
