"""Batches (StartBulk) in Redis: a hash per batch, the list of the executions it took, and
one sorted set of the RUNNING ones by when their lease ends (`tarry.engine._bulk` says how
they are worked through). An ended batch is kept `KEEP` seconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar

from tarry.engine import BulkState

from ._connect import Client
from ._keys import Keys
from ._rows import text

T = TypeVar("T")
KEEP = 7 * 86_400
"""Seconds a batch is kept after it ended (DONE or CANCELLED), and a request id's answer."""


def _script(name: str) -> str:
    return resources.files("tarry.store").joinpath(f"lua/{name}.lua").read_text()


class BulkStore:
    """The batch half of `RedisStore` (which sets `keys`, `_redis` and `_call`)."""

    keys: Keys
    _redis: Client
    _call: Callable[..., Awaitable[Any]]

    def __init__(self) -> None:
        self._bulk_claim = self._redis.register_script(_script("bulk_claim"))
        self._bulk_progress = self._redis.register_script(_script("bulk_progress"))
        self._bulk_cancel = self._redis.register_script(_script("bulk_cancel"))

    async def bulk_create(self, bulk_id: str, spec: str, execution_ids: Sequence[str],
                          namespace: str, request_id: str | None) -> BulkState:
        k = self.keys

        async def go() -> BulkState:
            nonlocal bulk_id
            if request_id is not None:
                key = k.bulk_request(namespace, request_id)
                if not await self._redis.set(key, bulk_id, nx=True, ex=KEEP):
                    bulk_id = text(await self._redis.get(key))
                    found = await self._load(bulk_id)
                    if found is not None:
                        return found
                    # The first request stopped before it kept its batch: keep it now.
            now_s, now_us = await self._redis.time()
            now = int(now_s) * 1000 + int(now_us) // 1000
            done = not execution_ids
            async with self._redis.pipeline(transaction=True) as p:
                for at in range(0, len(execution_ids), 1000):
                    p.rpush(k.bulk_items(bulk_id), *execution_ids[at:at + 1000])
                p.hset(k.bulk(bulk_id), mapping={
                    "spec": spec, "st": "DONE" if done else "RUNNING",
                    "total": len(execution_ids), "pos": 0, "applied": 0, "skipped": 0,
                    "failed": 0, "created": now, "updated": now, "failures": "[]"})
                if done:
                    p.expire(k.bulk(bulk_id), KEEP)
                else:
                    p.zadd(k.bulks, {bulk_id: 0})
                await p.execute()
            found = await self._load(bulk_id)
            assert found is not None
            return found

        result: BulkState = await self._call(go)
        return result

    async def bulk_for_request(self, namespace: str, request_id: str) -> BulkState | None:
        async def go() -> BulkState | None:
            known = await self._redis.get(self.keys.bulk_request(namespace, request_id))
            return None if known is None else await self._load(text(known))

        result: BulkState | None = await self._call(go)
        return result

    async def bulk_load(self, bulk_id: str) -> BulkState | None:
        result: BulkState | None = await self._call(lambda: self._load(bulk_id))
        return result

    async def _load(self, bulk_id: str) -> BulkState | None:
        h = {text(f): text(v) for f, v in (await self._redis.hgetall(self.keys.bulk(bulk_id))
                                          ).items()}
        if "spec" not in h:
            return None
        return BulkState(bulk_id, h["spec"], h["st"], int(h["total"]), int(h["pos"]),
                         int(h["applied"]), int(h["skipped"]), int(h["failed"]),
                         int(h["created"]), int(h["updated"]), h.get("failures", "[]"))

    async def bulk_items(self, bulk_id: str, start: int, count: int) -> list[str]:
        rows = await self._call(lambda: self._redis.lrange(
            self.keys.bulk_items(bulk_id), start, start + count - 1))
        return [text(r) for r in rows]

    async def bulk_claim(self, owner: str, lease_ms: int, limit: int) -> list[str]:
        k = self.keys
        prefix = k.bulk("")  # a batch's hash key up to its id
        rows = await self._call(lambda: self._bulk_claim(
            keys=[k.bulks], args=[owner, lease_ms, limit, prefix]))
        return [text(r) for r in rows]

    async def bulk_progress(self, bulk_id: str, owner: str, lease_ms: int, position: int,
                            counts: Mapping[str, int], failures: str, *, done: bool) -> bool:
        k = self.keys
        held = await self._call(lambda: self._bulk_progress(
            keys=[k.bulk(bulk_id), k.bulks, k.bulk_items(bulk_id)],
            args=[owner, lease_ms, position, counts["applied"], counts["skipped"],
                  counts["failed"], failures, int(done), bulk_id, KEEP]))
        return bool(held)

    async def bulk_cancel(self, bulk_id: str) -> BulkState | None:
        k = self.keys
        await self._call(lambda: self._bulk_cancel(
            keys=[k.bulk(bulk_id), k.bulks, k.bulk_items(bulk_id)],
            args=["cancel", bulk_id, KEEP, ""]))
        return await self.bulk_load(bulk_id)

    async def bulk_release(self, bulk_ids: Sequence[str], owner: str) -> None:
        k = self.keys
        for bulk_id in bulk_ids:
            await self._call(lambda b=bulk_id: self._bulk_cancel(
                keys=[k.bulk(b), k.bulks, k.bulk_items(b)], args=["release", b, KEEP, owner]))
