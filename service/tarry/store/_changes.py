"""The change log: a Redis Stream per partition of its executions' status and waiting-node
changes, written by commit.lua in the transition itself and read by WatchExecutions.

An entry's id, which Redis gives it from its own clock (`ms-n`), is its place in its
partition's log; a watcher's cursor holds one place per partition. Each stream is capped
(`MAXLEN ~`), and a cursor older than a partition's first kept entry is refused instead of
skipping changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tarry import _json
from tarry.engine import Change, ChangeLog, Commit, Status

from ._rows import text

NONE = "0-0"
"""A partition's place before its first change."""

POLL_S = 0.05
"""On a cluster, how often a blocking read asks each partition's log again."""

Client = aioredis.Redis | aioredis.RedisCluster


def entry(c: Commit) -> str:
    """The change-log entry of commit `c` (its sequence is added by the script)."""
    before = sorted((set(c.waiting_now) - set(c.waiting_join)) | set(c.waiting_leave))
    return _json.dumps({
        "id": c.execution_id, "wf": c.workflow, "ver": c.version, "st": c.status.value,
        "prev": "" if c.expected_version == 0 else c.prev_status.value,
        "wait": list(c.waiting_now), "was": before, "tags": dict(c.tags)})


def change_of(partition: int, entry_id: Any, fields: dict[Any, Any]) -> Change:
    position = text(entry_id)
    body = _json.loads(fields[b"c"] if b"c" in fields else fields["c"])
    seq = fields.get(b"s", fields.get("s", 0))
    return Change(
        partition=partition, position=position, execution_id=body["id"], workflow=body["wf"],
        version=body["ver"], status=Status(body["st"]),
        previous_status=Status(body["prev"]) if body["prev"] else None,
        waiting=tuple(body["wait"]), previous_waiting=tuple(body["was"]),
        tags=body["tags"], time_ms=int(position.partition("-")[0]), sequence=int(seq))


async def bounds(redis: Client, keys: list[str]) -> ChangeLog:
    """Where each partition's log stands, as one cursor for `last` and one for `trimmed`."""
    async with redis.pipeline(transaction=False) as p:
        for key in keys:
            p.xinfo_stream(key)
        infos = await p.execute(raise_on_error=False)
    last, trimmed = [], []
    for info in infos:
        if isinstance(info, ResponseError):  # no such key: nothing logged yet
            last.append(NONE)
            trimmed.append(NONE)
            continue
        if isinstance(info, Exception):
            raise info
        last.append(text(info["last-generated-id"]))
        if int(info.get("entries-added", 0)) <= int(info["length"]):
            trimmed.append(NONE)  # nothing removed yet
            continue
        # Trimming does not move XINFO's max-deleted-entry-id (only XDEL does), so the
        # oldest place known to miss nothing is the first entry kept: one before it may
        # have been the last removed, or not (such a watcher is refused, though it may have
        # missed nothing).
        first = info.get("first-entry")
        trimmed.append(text(first[0]) if first else last[-1])
    return ChangeLog(last=",".join(last), trimmed=",".join(trimmed))


async def read(redis: Client, keys: list[str], after: str, limit: int, block_ms: int,
               *, cluster: bool) -> list[Change]:
    """At most `limit` changes after the cursor `after`, oldest first (by time across
    partitions). `block_ms`: wait that long for one when there is none (on a cluster, by
    asking again every `POLL_S`: one XREAD cannot name keys of several slots)."""
    places = after.split(",")
    if len(places) != len(keys):
        return []  # a cursor of another layout: the caller's bounds check refuses it
    if not cluster:
        res: Any = await redis.xread(dict(zip(keys, places, strict=True)), count=limit,
                                     block=block_ms or None)
        by_key = {text(k): rows for k, rows in res or ()}
        rows = [(p, row) for p, key in enumerate(keys) for row in by_key.get(key, ())]
    else:
        loop = asyncio.get_running_loop()
        end = loop.time() + block_ms / 1000
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                for key, place in zip(keys, places, strict=True):
                    pipe.xrange(key, min=f"({place}", count=limit)
                got = await pipe.execute()
            rows = [(p, row) for p, part in enumerate(got) for row in part]
            if rows or loop.time() + POLL_S > end:
                break
            await asyncio.sleep(POLL_S)
    changes = [change_of(p, entry_id, fields) for p, (entry_id, fields) in rows]
    changes.sort(key=lambda ch: (ch.time_ms, ch.partition))
    return changes[:limit]
