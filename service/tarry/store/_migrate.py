"""Index backfills for data written by earlier versions, run once per key prefix at start."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tarry import _json

from ._keys import Keys, StateField


async def backfill_pairs(redis: aioredis.Redis, k: Keys, batch: int) -> None:
    """Every execution into its (workflow, status) index, once (a marker key says it is
    done). Until then a listing by workflow and status reads the status index and filters.
    Only the default namespace's indexes predate the pair index."""
    if await redis.exists(k.pairs_ready):
        return
    offset = 0
    while True:
        ids = [_s(i) for i in await redis.zrange(k.all(), offset, offset + batch - 1)]
        if not ids:
            break
        offset += len(ids)
        async with redis.pipeline(transaction=False) as p:
            for i in ids:
                p.hmget(k.state(i), StateField.WORKFLOW, StateField.STATUS)
                p.zscore(k.all(), i)
            found = await p.execute()
        async with redis.pipeline(transaction=False) as p:
            for n, i in enumerate(ids):
                (wf, st), score = found[2 * n], found[2 * n + 1]
                if wf is not None and st is not None and score is not None:
                    p.zadd(k.by_workflow_status(_s(wf), _s(st)), {i: score})
            await p.execute()
    await redis.set(k.pairs_ready, "1")


async def backfill_waiting(redis: aioredis.Redis, k: Keys, batch: int) -> None:
    """Every AWAITING or SUSPENDED execution into the indexes of the wait nodes it waits
    at, once (a marker key says it is done): executions from before those indexes."""
    if await redis.exists(k.waiting_ready):
        return
    for status in ("AWAITING", "SUSPENDED"):
        offset = 0
        while True:
            rows: list[Any] = await redis.zrange(k.by_status(status), offset,
                                                 offset + batch - 1, withscores=True)
            if not rows:
                break
            offset += len(rows)
            async with redis.pipeline(transaction=False) as p:
                for member, _ in rows:
                    p.hmget(k.state(_s(member)), StateField.WORKFLOW, StateField.DOC)
                found = await p.execute()
            async with redis.pipeline(transaction=False) as p:
                for (member, score), (wf, doc) in zip(rows, found, strict=True):
                    if wf is None or doc is None:
                        continue
                    for node, wait in (_json.loads(doc).get("waits") or {}).items():
                        if wait.get("kind") == "wait":
                            p.zadd(k.by_waiting(_s(wf), node), {_s(member): score})
                await p.execute()
    await redis.set(k.waiting_ready, "1")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
