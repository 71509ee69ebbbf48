"""Tags and the richer listing: Run attaches tags; ListExecutions filters by tags, version
and creation time, from indexes, paged as before; bad tags are refused and store nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tarry.engine.namespaces import DEFAULT
from tarry.server import Server
from tarry.store import RedisStore
from tarry_client import AsyncClient, InvalidArgument, Status
from tests.integration.api.conftest import ServerFactory
from tests.integration.helpers import members


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server()


async def test_tags_are_kept_and_listed_by(server: Server) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=5) as c:
        a = await c.run("expense-approval", tags={"team": "billing", "region": "eu:west 1"},
                        wait=True)
        b = await c.run("expense-approval", tags={"team": "billing"}, wait=True)
        other = await c.run("expense-approval", tags={"team": "ops"}, wait=True)
        untagged = await c.run("expense-approval", wait=True)
        assert (await c.get(a.id)).tags == {"team": "billing", "region": "eu:west 1"}
        assert untagged.tags == {}

        async def ids(**filters: object) -> list[str]:
            page = await c.list_executions(page_size=100, **filters)  # type: ignore[arg-type]
            return [ex.id for ex in page.executions]

        assert await ids(tags={"team": "billing"}) == [b.id, a.id]  # newest first
        assert await ids(tags={"team": "billing", "region": "eu:west 1"}) == [a.id]
        assert await ids(tags={"team": "ops"}, workflow="expense-approval",
                         status=Status.AWAITING) == [other.id]
        assert await ids(tags={"team": "nobody"}) == []
        await c.cancel(b.id)
        assert await ids(tags={"team": "billing"}, status=Status.AWAITING) == [a.id]
        # Page by page with the same filters; other filters refuse the token.
        first = await c.list_executions(page_size=1, tags={"team": "billing"})
        assert [ex.id for ex in first.executions] == [b.id] and first.next_page_token
        rest = await c.list_executions(page_size=1, tags={"team": "billing"},
                                       page_token=first.next_page_token)
        assert [ex.id for ex in rest.executions] == [a.id]
        with pytest.raises(InvalidArgument):
            await c.list_executions(page_size=1, tags={"team": "ops"},
                                    page_token=first.next_page_token)
        # Deleting removes it from its tag's index too.
        await c.delete(b.id)
        assert await ids(tags={"team": "billing"}) == [a.id]
        store = server.store
        assert isinstance(store, RedisStore)
        assert await members(store, lambda p: store.keys.by_tag(
            "team", "billing", DEFAULT, p)) == {a.id.encode()}


async def test_version_and_creation_time(server: Server) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=5) as c:
        early = await c.run("expense-approval", wait=True)
        await asyncio.sleep(0.05)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.05)
        late = await c.run("expense-approval", wait=True)
        page = await c.list_executions(workflow="expense-approval", created_from=middle,
                                       page_size=100)
        assert [ex.id for ex in page.executions] == [late.id]
        page = await c.list_executions(workflow="expense-approval", created_to=middle,
                                       page_size=1000)
        assert early.id in [ex.id for ex in page.executions]
        assert late.id not in [ex.id for ex in page.executions]
        later = middle + timedelta(hours=1)
        assert (await c.list_executions(created_from=later)).executions == ()
        page = await c.list_executions(workflow="expense-approval", version="1",
                                       page_size=1000)
        assert {early.id, late.id} <= {ex.id for ex in page.executions}
        assert (await c.list_executions(workflow="expense-approval", version="9")
                ).executions == ()
        with pytest.raises(InvalidArgument) as err:
            await c.list_executions(version="1")
        assert [v.field for v in err.value.violations] == ["version"]


@pytest.mark.parametrize(("tags", "field"), [
    ({f"k{i}": "v" for i in range(17)}, "tags"),
    ({"has space": "v"}, "tags"),
    ({"-dash-first": "v"}, "tags"),
    ({"k" * 65: "v"}, "tags"),
    ({"empty": ""}, "tags.empty"),
    ({"long": "v" * 257}, "tags.long"),
])
async def test_bad_tags_are_refused_and_store_nothing(
        server: Server, tags: dict[str, str], field: str) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=5) as c:
        with pytest.raises(InvalidArgument) as err:
            await c.run("expense-approval", execution_id="tagged-1", tags=tags)
        assert [v.field for v in err.value.violations] == [field]
        assert len(err.value.message) < 400  # a bad key is quoted, never in full
        with pytest.raises(InvalidArgument):
            await c.list_executions(tags=tags)
        assert (await c.list_executions()).executions == ()


async def test_listing_by_waiting_node(server: Server) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=5) as c:
        both = await c.run("parallel-review", wait=True)
        legal_only = await c.run("parallel-review", wait=True)
        await c.resume(legal_only.id, {"approved": True}, node_id="technical-review", wait=True)
        done = await c.run("parallel-review", wait=True)
        await c.resume(done.id, {"approved": True}, node_id="technical-review", wait=True)
        await c.resume(done.id, {"approved": True}, node_id="legal-review", wait=True)
        held = await c.run("parallel-review", wait=True)
        await c.suspend(held.id, "hold")  # a suspended execution still waits there

        async def waiting_at(node: str, **filters: object) -> list[str]:
            page = await c.list_executions(workflow="parallel-review", waiting_node=node,
                                           page_size=100, **filters)  # type: ignore[arg-type]
            return [ex.id for ex in page.executions]

        assert await waiting_at("technical-review") == [held.id, both.id]
        assert await waiting_at("legal-review") == [held.id, legal_only.id, both.id]
        assert await waiting_at("legal-review", status=Status.AWAITING) == [
            legal_only.id, both.id]
        assert await waiting_at("finalize") == []
        await c.cancel(both.id)  # gone from the indexes with its waits
        assert await waiting_at("legal-review") == [held.id, legal_only.id]
        with pytest.raises(InvalidArgument) as err:
            await c.list_executions(waiting_node="legal-review")
        assert [v.field for v in err.value.violations] == ["waiting_node"]
        store = server.store
        assert isinstance(store, RedisStore)
        assert await members(store, lambda p: store.keys.by_waiting(
            "parallel-review", "legal-review", DEFAULT, p)) == {held.id.encode(),
                                                               legal_only.id.encode()}


async def test_iterating_repeats_the_filters_on_every_page(server: Server) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=5) as c:
        tagged = [await c.run("expense-approval", tags={"batch": "b1"}) for _ in range(3)]
        await c.run("expense-approval", tags={"batch": "b2"})
        found = [ex.id async for ex in c.iter_executions(page_size=1, tags={"batch": "b1"})]
        assert found == [ex.id for ex in reversed(tagged)]
