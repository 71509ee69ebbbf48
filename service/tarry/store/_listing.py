"""ListExecutions of `RedisStore`: a page of one namespace's executions, newest first,
merged over the partitions' indexes."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

from tarry.engine import FieldViolation, InvalidArgument, ListFilters, Status, Stored
from tarry.engine.namespaces import DEFAULT

from ._connect import Client
from ._keys import STORED, Keys, StateField
from ._rows import matches as _matches
from ._rows import stored_of as _stored
from ._rows import text as _s


class Listing:
    """The listing half of `RedisStore` (which sets `keys`, `_redis` and `_call`)."""

    keys: Keys
    _redis: Client
    _call: Callable[..., Awaitable[Any]]

    async def list_executions(self, workflow: str | None, status: Status | None, limit: int,
                              cursor: str | None, namespace: str = DEFAULT,
                              filters: ListFilters | None = None
                              ) -> tuple[list[Stored], str | None]:
        k, ns = self.keys, namespace
        f = filters or ListFilters()

        def index(p: int) -> str:
            # The narrowest index first: a tag's; a waiting node's; the (workflow, status)
            # pair's; else the status's or the workflow's. The other filters are checked on
            # each row read.
            if f.tags:
                key, value = min(f.tags.items())
                return k.by_tag(key, value, ns, p)
            if f.waiting_node is not None and workflow is not None:
                return k.by_waiting(workflow, f.waiting_node, ns, p)
            if status is not None and workflow is not None:
                return k.by_workflow_status(workflow, status.value, ns, p)
            if status is not None:
                return k.by_status(status.value, ns, p)
            if workflow is not None:
                return k.by_workflow(workflow, ns, p)
            return k.all(ns, p)

        # Newest first: (creation ms, id) descending, merged over the partitions. The
        # cursor is the (score, id) of the last row given, so pages stay put whatever the
        # partitions hold.
        max_score: str = "+inf" if f.created_to is None else f"({f.created_to}"
        min_score: str = "-inf" if f.created_from is None else str(f.created_from)
        after: tuple[int, str] | None = None
        if cursor:
            score, _, after_id = cursor.partition(":")
            if not score.isdigit() or not after_id:
                raise InvalidArgument(
                    "page_token is not one this server gave out",
                    violations=[FieldViolation("page_token", "malformed")])
            max_score, after = score, (int(score), after_id)
        n = k.partitions
        batch = max(limit * 2, 50)
        offsets, done = [0] * n, [False] * n
        rows: list[collections.deque[tuple[int, str]]] = [collections.deque() for _ in range(n)]

        async def fetch(parts: list[int]) -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for p in parts:
                    pipe.zrevrangebyscore(index(p), max_score, min_score, start=offsets[p],
                                          num=batch, withscores=True)
                got = await pipe.execute()
            for p, part in zip(parts, got, strict=True):
                offsets[p] += len(part)
                done[p] = len(part) < batch
                rows[p].extend(r for r in ((int(sc), _s(m)) for m, sc in part)
                               if after is None or r < after)

        out: list[Stored] = []
        last: tuple[int, str] | None = None
        while len(out) < limit:
            need = [p for p in range(n) if not rows[p] and not done[p]]
            if need:
                await self._call(lambda need=need: fetch(need))
            picked: list[tuple[int, str]] = []
            # Take rows in merged order while every partition that may hold more has some
            # at hand: the next row of each is then known.
            while len(picked) < batch and not any(not rows[p] and not done[p]
                                                  for p in range(n)):
                heads = [(rows[p][0], p) for p in range(n) if rows[p]]
                if not heads:
                    break
                row, p = max(heads)
                rows[p].popleft()
                picked.append(row)
            if not picked:
                if all(done[p] and not rows[p] for p in range(n)):
                    break
                continue
            stored = await self._read_many([i for _, i in picked])
            for (sc, i), (st, wf) in zip(picked, stored, strict=True):
                # Index entries can lag behind (a commit between reads): check the row.
                if st is None or (workflow is not None and wf != workflow) or (
                        status is not None and st.status is not status) or (
                        f and not _matches(st, f)):
                    continue
                out.append(st)
                last = (sc, i)
                if len(out) == limit:
                    break
        next_cursor = f"{last[0]}:{last[1]}" if last and len(out) == limit else None
        return out, next_cursor

    async def _read_many(self, ids: list[str]) -> list[tuple[Stored | None, str | None]]:
        async def go() -> list[tuple[Stored | None, str | None]]:
            async with self._redis.pipeline(transaction=False) as p:
                for i in ids:
                    p.hmget(self.keys.state(i), *STORED, StateField.WORKFLOW)
                res = await p.execute()
            return [(None, None) if h[0] is None else (_stored(*h[:6]), _s(h[6])) for h in res]

        found: list[tuple[Stored | None, str | None]] = await self._call(go)
        return found
