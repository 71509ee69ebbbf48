"""Requests on executions this process last left AWAITING or SUSPENDED start from what it
committed, without reading Redis; when another process changed the execution since, the
commit's version check catches it and the request is answered from what Redis holds.

"Another process" is a real one (tests/integration/peer.py, the `peer` fixture)."""

from __future__ import annotations

import pytest

from tarry.engine import (
    Engine,
    Event,
    Execution,
    NodeNotWaiting,
    Status,
    WrongState,
)
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration.conftest import PeerFactory
from tests.integration.helpers import all_events, settled
from tests.integration.peer import two_waits


class CountingStore(RedisStore):
    """A real RedisStore that counts its reads of whole executions."""

    loads = 0

    async def load(self, execution_id: str, request_id: str | None = None):  # type: ignore[no-untyped-def]
        self.loads += 1
        return await super().load(execution_id, request_id)


@pytest.fixture
async def counted(make_engine: EngineFactory) -> Engine:
    return await make_engine(two_waits, recent=2, store_class=CountingStore)


def _waiting(ex: Execution) -> list[str]:
    return [w.node for w in ex.waiting]


def _loads(engine: Engine) -> int:
    assert isinstance(engine.store, CountingStore)
    return engine.store.loads


async def test_resume_of_an_execution_left_awaiting_here_reads_nothing(counted: Engine) -> None:
    ex = await settled(counted, (await counted.run("two-waits")).id)
    assert ex.status is Status.AWAITING
    before = _loads(counted)
    await counted.resume(ex.id, "a")
    ex = await settled(counted, ex.id)
    await counted.resume(ex.id, "b")
    ex = await settled(counted, ex.id)
    assert ex.status is Status.COMPLETED and ex.result == {"first": "a", "second": "b"}
    assert _loads(counted) == before
    # And Redis holds the same: the remembered state is only a starting point.
    assert (await counted.get(ex.id)).result == {"first": "a", "second": "b"}


async def test_only_the_most_recent_are_remembered(counted: Engine) -> None:
    ids = [(await settled(counted, (await counted.run("two-waits")).id)).id for _ in range(3)]
    before = _loads(counted)
    await counted.resume(ids[0], "a")  # the oldest of three, with room for two: read
    assert _loads(counted) == before + 1
    await counted.resume(ids[2], "a")
    assert _loads(counted) == before + 1


def _finished(events: list[Event]) -> list[str]:
    return [str(e.data["node"]) for e in events if e.type == "node_finished"]


async def test_resume_after_another_process_moved_it_on(make_engine: EngineFactory,
                                                        peer: PeerFactory) -> None:
    a = await make_engine(two_waits)
    b = await peer()
    ex = await settled(a, (await a.run("two-waits")).id)
    moved = await b.resume(ex.id, "from b")
    assert moved.state["first"] == "from b"
    at_second = await b.wait(ex.id)
    assert _waiting(at_second) == ["second"] and at_second.state == {"first": "from b"}
    # A remembers the execution waiting at "first": its commit is refused, and A reads it again.
    answer = await a.resume(ex.id, "from a")
    assert answer.state == {"first": "from b", "second": "from a"}
    assert answer.version == at_second.version + 1  # applied on top of what B committed
    done = await settled(a, ex.id)
    assert done.status is Status.COMPLETED and done.result == {"first": "from b",
                                                               "second": "from a"}
    assert done == await b.get(ex.id)  # and the other process reads the same
    assert _finished(await all_events(a, ex.id)) == [
        "first", "keep-first", "second", "keep-second", "done"]


async def test_naming_the_node_another_process_moved_it_to(make_engine: EngineFactory,
                                                          peer: PeerFactory) -> None:
    a = await make_engine(two_waits)
    b = await peer()
    ex = await settled(a, (await a.run("two-waits")).id)
    await b.resume(ex.id, "from b")
    at_second = await b.wait(ex.id)
    # A remembers "first" waiting: Redis decides, both ways.
    with pytest.raises(NodeNotWaiting, match="waiting: second") as err:
        await a.resume(ex.id, "from a", node="first")
    assert err.value.metadata == {"execution_id": ex.id, "node": "first", "waiting": "second"}
    assert await a.get(ex.id) == at_second  # the refused Resume changed nothing
    await a.resume(ex.id, "from a", node="second")
    done = await settled(a, ex.id)
    assert done.status is Status.COMPLETED and done.result == {"first": "from b",
                                                               "second": "from a"}


async def test_requests_after_another_process_finished_it(make_engine: EngineFactory,
                                                          peer: PeerFactory) -> None:
    a = await make_engine(two_waits)
    b = await peer()
    ex = await settled(a, (await a.run("two-waits")).id)
    await b.cancel(ex.id, "from b")
    with pytest.raises(WrongState, match="it is CANCELLED"):
        await a.resume(ex.id, "from a")
    ex2 = await settled(a, (await a.run("two-waits")).id)
    by_b = await b.cancel(ex2.id, "from b")
    cancelled = await a.cancel(ex2.id, "from a")
    assert cancelled.cancellation is not None and cancelled.cancellation["reason"] == "from b"
    assert cancelled == by_b  # unchanged: B's cancellation stands
    ex3 = await settled(a, (await a.run("two-waits")).id)
    suspended_by_b = await b.suspend(ex3.id, "from b")
    suspended = await a.suspend(ex3.id, "from a")
    assert suspended.status is Status.SUSPENDED and suspended.suspension is not None
    assert suspended.suspension.reason == "from b"
    assert suspended == suspended_by_b


async def test_the_same_request_id_again_gives_the_first_answer(make_engine: EngineFactory
                                                                ) -> None:
    a = await make_engine(two_waits)
    ex = await settled(a, (await a.run("two-waits")).id)
    first = await a.resume(ex.id, "a", request_id="r-1")
    assert first.state == {"first": "a"}
    assert _waiting(await settled(a, ex.id)) == ["second"]  # remembered again, waiting
    before = await all_events(a, ex.id)
    again = await a.resume(ex.id, "a", request_id="r-1")
    assert again == first  # every field of the first answer
    assert await all_events(a, ex.id) == before  # and the log did not grow
    assert _waiting(await a.get(ex.id)) == ["second"]
