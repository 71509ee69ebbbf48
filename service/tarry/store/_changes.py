"""The change log: one Redis Stream of every execution's status and waiting-node changes,
written by commit.lua in the transition itself and read by WatchExecutions.

An entry's id, which Redis gives it from its own clock (`ms-n`), is the watchers' cursor;
the stream is capped (`MAXLEN ~`), and a cursor older than its first kept entry is refused
instead of skipping changes.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tarry import _json
from tarry.engine import Change, ChangeLog, Commit, Status

from ._rows import text

NONE = "0-0"
"""The cursor before the first change."""


def entry(c: Commit) -> str:
    """The change-log entry of commit `c` (its sequence is added by the script)."""
    before = sorted((set(c.waiting_now) - set(c.waiting_join)) | set(c.waiting_leave))
    return _json.dumps({
        "id": c.execution_id, "wf": c.workflow, "ver": c.version, "st": c.status.value,
        "prev": "" if c.expected_version == 0 else c.prev_status.value,
        "wait": list(c.waiting_now), "was": before, "tags": dict(c.tags)})


def change_of(entry_id: Any, fields: dict[Any, Any]) -> Change:
    cursor = text(entry_id)
    body = _json.loads(fields[b"c"] if b"c" in fields else fields["c"])
    seq = fields.get(b"s", fields.get("s", 0))
    return Change(
        cursor=cursor, execution_id=body["id"], workflow=body["wf"], version=body["ver"],
        status=Status(body["st"]), previous_status=Status(body["prev"]) if body["prev"] else None,
        waiting=tuple(body["wait"]), previous_waiting=tuple(body["was"]),
        tags=body["tags"], time_ms=int(cursor.partition("-")[0]), sequence=int(seq))


async def bounds(redis: aioredis.Redis, key: str) -> ChangeLog:
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError:  # no such key: nothing logged yet
        return ChangeLog(last=NONE, trimmed=NONE)
    last = text(info["last-generated-id"])
    if int(info.get("entries-added", 0)) <= int(info["length"]):
        return ChangeLog(last=last, trimmed=NONE)  # nothing removed yet
    # Trimming does not move XINFO's max-deleted-entry-id (only XDEL does), so the oldest
    # cursor known to miss nothing is the first entry kept: one before it may have been the
    # last removed, or not (such a watcher is refused, though it may have missed nothing).
    first = info.get("first-entry")
    return ChangeLog(last=last, trimmed=text(first[0]) if first else last)


async def read(redis: aioredis.Redis, key: str, after: str, limit: int, block_ms: int
               ) -> list[Change]:
    rows: Any
    if block_ms > 0:
        res: Any = await redis.xread({key: after}, count=limit, block=block_ms)
        rows = res[0][1] if res else []
    else:
        rows = await redis.xrange(key, min=f"({after}", count=limit)
    return [change_of(entry_id, fields) for entry_id, fields in rows]
