"""The Redis adapter of the engine's `Store` port.

Each transition is one EVALSHA of a Lua script (see `lua/`), so a transition is one round
trip and either happens whole or not at all. Redis errors become domain errors here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tarry import _json
from tarry.engine import (
    Change,
    ChangeLog,
    Commit,
    CommitOutcome,
    Committed,
    Conflict,
    CursorOutOfRange,
    EarlyChanged,
    Event,
    ExecutionExists,
    Existing,
    FieldViolation,
    InvalidArgument,
    ListFilters,
    Op,
    Status,
    Stored,
    StoreUnavailable,
    SuspendRequested,
    lua_statuses,
)
from tarry.engine.namespaces import DEFAULT, namespace_of

from . import _changes
from ._batch import NotReplicated, ScriptBatcher
from ._bulk import BulkStore
from ._connect import close_sentinels, make_pool
from ._keys import STORED, Keys, StateField
from ._migrate import backfill_pairs, backfill_waiting
from ._notify import PubSub
from ._rows import answer as _answer
from ._rows import claimed as _claimed
from ._rows import matches as _matches
from ._rows import stored_of as _stored
from ._rows import text as _s

log = logging.getLogger(__name__)
T = TypeVar("T")


def _script(name: str) -> str:
    return resources.files("tarry.store").joinpath(f"lua/{name}.lua").read_text()


# What the scripts that apply a transition themselves accept, from the engine's table.
_TAKE_OVER_FROM = lua_statuses(Op.TAKE_OVER)
_CLAIM_TIMER_FROM = lua_statuses(Op.CLAIM_TIMER)
_REQUEST_SUSPEND_FROM = lua_statuses(Op.REQUEST_SUSPEND)
_DELETE_FROM = lua_statuses(Op.DELETE)
_KEEP_EARLY_FROM = lua_statuses(Op.KEEP_EARLY)

_FIELDS = STORED
"""The state hash's fields that make a `Stored`, in `_stored`'s order."""

class RedisStore(PubSub, BulkStore):
    """State, events, timers and leases in one Redis (standalone or Sentinel-managed; see
    README for Cluster)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tarry:v1",
        events_maxlen: int = 10_000,
        changes_maxlen: int = 100_000,
        request_ttl: int = 86_400,
        max_connections: int = 64,
        socket_timeout: float = 5.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        """`url`: a redis-py URL (redis://, rediss://, unix://), or
        `redis+sentinel://host:port[,host:port...]/service[/db]` (`rediss+sentinel://` for
        TLS; a password before the hosts is the primary's) to follow the primary of a
        Sentinel-managed group through failovers."""
        self.keys = Keys(prefix)
        self._events_maxlen = events_maxlen
        self._changes_maxlen = changes_maxlen
        self._request_ttl = request_ttl
        # redis-py's pool fails at once when all its connections are busy; the semaphore
        # makes callers wait for one instead (cheaper than its BlockingConnectionPool).
        # + pub/sub, the change log's blocking reader and a spare (group commits bring
        # connections of their own). No socket
        # timeout (redis-py's default is 5 s): it would wrap every write in a task of its
        # own (asyncio.wait_for) and every read in a timer. Each exchange has one deadline
        # instead (`_call`, and the batcher's).
        options: dict[str, Any] = {"max_connections": max_connections + 3,
                                   "socket_timeout": None, "socket_connect_timeout": 2,
                                   "health_check_interval": 30}
        pool = make_pool(url, options)
        self._timeout = socket_timeout
        self._slots = asyncio.Semaphore(max_connections)
        PubSub.__init__(self)
        self._redis = aioredis.Redis.from_pool(pool)  # owns the pool: closed with the client
        # With `wait_replicas`, a commit is acknowledged only once that many replicas have
        # it (Redis's WAIT after each batch): an acknowledged transition survives a failover.
        self._commit = ScriptBatcher(self._redis, _script("commit"), timeout=socket_timeout,
                                     wait=(wait_replicas, wait_timeout))
        # Claims go the same way: a plain pipeline of a registered Script would first ask
        # Redis whether the script exists, a round trip of its own on every timer pass.
        self._claim = ScriptBatcher(self._redis, _script("claim"), timeout=socket_timeout)
        self._sreq = self._redis.register_script(_script("suspend_request"))
        self._early = self._redis.register_script(_script("early"))
        self._renew = self._redis.register_script(_script("renew"))
        self._delete = self._redis.register_script(_script("delete"))
        BulkStore.__init__(self)
        self._pairs_ready = False  # until `migrate` has made sure of the pair indexes

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def _call(self, fn: Callable[[], Awaitable[T]], *, slot: bool = True) -> T:
        """Run one Redis exchange, with Redis errors turned into domain errors. `slot`:
        take one of the connection slots (group commits have connections of their own)."""
        try:
            if not slot:
                return await fn()  # the batcher has its own deadline
            # The deadline covers the wait for a slot too: while Redis is silent, slots
            # are held to the end of their own deadlines.
            async with asyncio.timeout(self._timeout), self._slots:
                return await fn()
        except NotReplicated as exc:
            raise StoreUnavailable(
                "the state store (Redis) did not confirm the write on enough replicas in "
                "time; it may be applied: retry with the same request_id") from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable("the state store (Redis) is unreachable") from exc
        except RedisError as exc:
            log.exception("redis error")
            raise StoreUnavailable("the state store (Redis) failed the request") from exc

    async def migrate(self, batch: int = 1000) -> None:
        """Bring indexes written by earlier versions up to date (`_migrate`)."""
        await self._call(lambda: backfill_pairs(self._redis, self.keys, batch), slot=False)
        await self._call(lambda: backfill_waiting(self._redis, self.keys, batch), slot=False)
        self._pairs_ready = True

    async def change_log(self) -> ChangeLog:
        return await self._call(lambda: _changes.bounds(self._redis, self.keys.changes))

    async def changes(self, after: str, limit: int, block_ms: int = 0) -> list[Change]:
        async def read() -> list[Change]:
            return await _changes.read(self._redis, self.keys.changes, after, limit, block_ms)

        if block_ms <= 0:
            return await self._call(read)

        async def blocking() -> list[Change]:
            async with asyncio.timeout(block_ms / 1000 + self._timeout):
                return await read()

        # A blocking read holds a connection of its own (the pool's spare), not a slot.
        return await self._call(blocking, slot=False)

    async def refuse_cluster(self) -> None:
        """Raise OSError, with what to use instead, when the URL names a Redis Cluster
        node: every transition touches keys of several slots (README: Known limits)."""
        info = await self._call(lambda: self._redis.info("cluster"))
        if int(info.get("cluster_enabled", 0)):
            raise OSError(
                "REDIS_URL points at a Redis Cluster node (cluster_enabled:1), which Tarry "
                "does not support yet: use a standalone Redis, or a Sentinel-managed group "
                "(redis+sentinel://host:port,.../service)")

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def close(self) -> None:
        await self._commit.aclose()
        await self._claim.aclose()
        pool = self._redis.connection_pool
        await self._redis.aclose()
        await close_sentinels(pool)

    async def load(self, execution_id: str, request_id: str | None = None
                   ) -> tuple[Stored | None, Stored | None]:
        k = self.keys

        async def go() -> tuple[Stored | None, Stored | None]:
            if not request_id:  # the common case: one command, no pipeline around it
                h = await self._redis.hmget(k.state(execution_id), *_FIELDS)
                return (None if h[0] is None else _stored(*h)), None
            async with self._redis.pipeline(transaction=False) as p:
                p.hmget(k.state(execution_id), *_FIELDS)
                p.get(k.request(execution_id, request_id))
                h, raw_answer = await p.execute()
            stored = None if h[0] is None else _stored(*h)
            return stored, (_answer(raw_answer) if raw_answer else None)

        return await self._call(go)

    async def commit(self, c: Commit) -> CommitOutcome:
        k, ns = self.keys, namespace_of(c.execution_id)
        rid = c.request_id
        tags = ([k.by_tag(key, value, ns) for key, value in sorted(c.tags.items())]
                if c.expected_version == 0 else [])
        keys = [
            k.state(c.execution_id), k.events(c.execution_id), k.timers, k.leases, k.all(ns),
            k.by_status(c.prev_status.value, ns), k.by_status(c.status.value, ns),
            k.by_workflow(c.workflow, ns),
            k.request(c.execution_id, rid) if rid else k.state(c.execution_id),
            k.by_workflow_status(c.workflow, c.prev_status.value, ns),
            k.by_workflow_status(c.workflow, c.status.value, ns), k.expiry, k.changes,
            *tags,
            *(k.by_waiting(c.workflow, node, ns) for node in c.waiting_join),
            *(k.by_waiting(c.workflow, node, ns) for node in c.waiting_leave),
        ]
        args: list[Any] = [
            c.expected_version, c.status.value, c.doc, c.owner, c.lease, c.lease_ttl,
            int(c.check_suspend_request), int(c.clear_suspend_request), c.created_at,
            c.execution_id, c.workflow, self._events_maxlen, int(bool(rid)), self._request_ttl,
            f"{k.channel(c.execution_id)} {k.control_channel} {k.timers_channel}",
            c.expire_at, len(c.events),
            # The early Resumes: check them (not at creation), then leave or write them.
            int(c.expected_version != 0), c.early_expected or "",
            "-" if c.early_new is None else "=", c.early_new or "",
        ]
        for kind, payload in c.events:
            args += [kind, payload]
        args.append(len(c.timers_set))
        for node, due in c.timers_set:
            args += [k.timer_member(c.execution_id, node), due]
        args.append(len(c.timers_clear))
        args += [k.timer_member(c.execution_id, node) for node in c.timers_clear]
        args += [len(tags), len(c.waiting_join), _changes.entry(c) if c.changes else "",
                 self._changes_maxlen]
        res = await self._call(lambda: self._commit.call(keys, args), slot=False)
        tag = _s(res[0])
        if tag == "OK":
            return Committed(int(res[1]), int(res[2]))
        if tag == "SREQ":
            return SuspendRequested(_s(res[1]))
        if tag == "EARLY":
            return EarlyChanged(_s(res[1]) or None)
        if tag == "DUP":
            return Existing(_answer(res[1]))
        if tag == "EXISTS":
            if _s(res[7]) != c.workflow:
                raise ExecutionExists(
                    f"execution {c.execution_id!r} exists and runs workflow {_s(res[7])!r}",
                    metadata={"execution_id": c.execution_id},
                )
            return Existing(_stored(*res[1:7]))
        raise Conflict(
            f"execution {c.execution_id!r} was changed by a concurrent request; read it again",
            metadata={"execution_id": c.execution_id},
        )

    async def request_suspend(self, execution_id: str, reason: str, event: str,
                              request_id: str | None) -> Stored | None:
        k = self.keys
        keys = [k.state(execution_id), k.events(execution_id),
                k.request(execution_id, request_id) if request_id else k.state(execution_id)]
        args: list[Any] = [reason, event, self._events_maxlen,
                           f"{k.channel(execution_id)} {k.control_channel}", execution_id,
                int(bool(request_id)), self._request_ttl, _REQUEST_SUSPEND_FROM]
        res = await self._call(lambda: self._sreq(keys=keys, args=args))
        tag = _s(res[0])
        if tag == "DUP":
            return _answer(res[1])
        if tag == "OK":
            return _stored(*res[1:7])
        return None

    async def keep_early(self, execution_id: str, node: str, workflow: str, entry: str,
                         event: str, request_id: str | None) -> Stored | str:
        k, ns = self.keys, namespace_of(execution_id)
        keys = [k.state(execution_id), k.events(execution_id), k.by_waiting(workflow, node, ns),
                k.request(execution_id, request_id) if request_id else k.state(execution_id)]
        args: list[Any] = [entry, event, self._events_maxlen, k.channel(execution_id),
                           int(bool(request_id)), self._request_ttl, _KEEP_EARLY_FROM,
                           execution_id]
        res = await self._call(lambda: self._early(keys=keys, args=args))
        tag = _s(res[0])
        if tag == "DUP":
            return _answer(res[1])
        if tag == "OK":
            return _stored(*res[1:7])
        return tag if tag != "STATUS" else f"STATUS:{_s(res[1])}"

    async def claim(self, execution_id: str, owner: str, lease_ttl: int, *,
                    take_back: bool = False) -> Stored | None:
        k = self.keys
        keys = [k.state(execution_id), k.timers, k.leases]
        args: list[Any] = [execution_id, "", owner, lease_ttl, 0, int(take_back),
                           _TAKE_OVER_FROM]
        return _claimed(await self._call(lambda: self._claim.call(keys, args), slot=False))

    async def claim_timers(self, timers: Sequence[tuple[str, str]], owner: str,
                           lease_ttl: int, horizon: int) -> list[Stored | None]:
        k = self.keys
        claims = [self._claim.call([k.state(execution_id), k.timers, k.leases],
                                   [execution_id, k.timer_member(execution_id, node), owner,
                                    lease_ttl, horizon, 0, _CLAIM_TIMER_FROM])
                  for execution_id, node in timers]  # one batch: they are sent together
        return [_claimed(r) for r in await self._call(lambda: asyncio.gather(*claims),
                                                      slot=False)]

    async def due_timers(self, until: int, limit: int) -> tuple[list[tuple[str, str]], int | None]:
        k = self.keys

        async def go() -> tuple[list[tuple[str, str]], int | None]:
            async with self._redis.pipeline(transaction=False) as p:
                p.zrangebyscore(k.timers, "-inf", until, start=0, num=limit)
                p.zrangebyscore(k.timers, f"({until}", "+inf", start=0, num=1, withscores=True)
                due, after = await p.execute()
            nxt = int(after[0][1]) if after else None
            return [k.split_timer_member(_s(m)) for m in due], nxt

        return await self._call(go)

    async def expired_leases(self, now: float, limit: int) -> list[str]:
        res = await self._call(
            lambda: self._redis.zrangebyscore(self.keys.leases, "-inf", now, start=0, num=limit)
        )
        return [_s(m) for m in res]

    async def renew_leases(self, execution_ids: Sequence[str], owner: str, lease_ttl: int
                           ) -> list[str]:
        if not execution_ids:
            return []
        k = self.keys
        keys = [k.leases, *(k.state(i) for i in execution_ids)]
        args: list[str | int] = [owner, lease_ttl, *execution_ids]
        lost = await self._call(lambda: self._renew(keys=keys, args=args))
        return [_s(i) for i in lost]

    async def delete(self, execution_id: str) -> str:
        """Remove a finished execution whole: 'OK'; 'GONE' (there is none); or the status
        of one that is not finished (nothing removed)."""
        k = self.keys
        for _ in range(8):
            h = await self._call(lambda: self._redis.hmget(
                k.state(execution_id), StateField.STATUS, StateField.WORKFLOW,
                StateField.INDEXES))
            if h[0] is None:
                st, wf = "", ""
            else:
                st, wf = _s(h[0]), _s(h[1] or b"")
            ns = namespace_of(execution_id)
            keys = [k.state(execution_id), k.events(execution_id), k.expiry, k.all(ns),
                    k.by_status(st, ns), k.by_workflow(wf, ns), k.by_workflow_status(wf, st, ns),
                    k.leases, *(_s(h[2]).split() if h[2] else ())]
            args = [execution_id, st, wf, _DELETE_FROM]
            res = await self._call(lambda: self._delete(keys=keys, args=args))  # noqa: B023
            tag = _s(res[0])
            if tag != "MOVED":  # else it changed between the read and the script: again
                return _s(res[1]) if tag == "STATE" else tag
        raise Conflict(f"execution {execution_id!r} kept changing; try again",
                       metadata={"execution_id": execution_id})

    async def due_expirations(self, now: int, limit: int) -> list[str]:
        res = await self._call(
            lambda: self._redis.zrangebyscore(self.keys.expiry, "-inf", now, start=0, num=limit))
        return [_s(m) for m in res]

    async def time(self) -> float:
        seconds, micros = await self._call(self._redis.time)
        return float(seconds) + float(micros) / 1e6

    async def events(self, execution_id: str, after: int, limit: int) -> list[Event]:
        key = self.keys.events(execution_id)
        res = await self._call(
            lambda: self._redis.xrange(key, min=f"{after + 1}-0", max="+", count=limit)
        )
        out = []
        for entry_id, fields in res or ():
            assert fields is not None
            seq = int(_s(entry_id).split("-")[0])
            data = _json.loads(fields[b"d"])
            out.append(Event(seq, _s(fields[b"t"]), int(data.pop("time", 0)), data))
        if out and out[0].sequence > after + 1 and after > 0:
            raise CursorOutOfRange(
                f"events after sequence {after} are no longer kept; the oldest kept is "
                f"{out[0].sequence}",
                metadata={"oldest_sequence": str(out[0].sequence)},
            )
        return out

    async def list_executions(self, workflow: str | None, status: Status | None, limit: int,
                              cursor: str | None, namespace: str = DEFAULT,
                              filters: ListFilters | None = None
                              ) -> tuple[list[Stored], str | None]:
        k, ns = self.keys, namespace
        f = filters or ListFilters()
        # The narrowest index first: a tag's; else the (workflow, status) pair's (namespaces
        # other than the default were born with it; migrate() is for the default namespace's
        # executions from before it); else the status's or the workflow's. The other filters
        # are checked on each row read.
        if f.tags:
            key, value = min(f.tags.items())
            index = k.by_tag(key, value, ns)
        elif f.waiting_node is not None and workflow is not None:
            index = k.by_waiting(workflow, f.waiting_node, ns)
        elif status is not None and workflow is not None and (self._pairs_ready
                                                              or ns != DEFAULT):
            index = k.by_workflow_status(workflow, status.value, ns)
        elif status is not None:
            index = k.by_status(status.value, ns)
        elif workflow is not None:
            index = k.by_workflow(workflow, ns)
        else:
            index = k.all(ns)
        # Newest first. The cursor is the (score, id) of the last row given.
        max_score: str = "+inf" if f.created_to is None else f"({f.created_to}"
        min_score: str = "-inf" if f.created_from is None else str(f.created_from)
        after_id: str | None = None
        if cursor:
            score, _, after_id = cursor.partition(":")
            if not score.isdigit() or not after_id:
                raise InvalidArgument(
                    "page_token is not one this server gave out",
                    violations=[FieldViolation("page_token", "malformed")])
            max_score = score
        out: list[Stored] = []
        last: tuple[int, str] | None = None
        offset = 0
        batch_size = max(limit * 2, 50)
        while len(out) < limit:
            rows: list[Any] = await self._call(
                lambda o=offset, n=batch_size: self._redis.zrevrangebyscore(  # type: ignore[misc]
                    index, max_score, min_score, start=o, num=n, withscores=True)
            )
            if not rows:
                break
            offset += len(rows)
            ids = [(_s(m), int(s)) for m, s in rows]
            if after_id is not None:
                # Skip rows up to and including the cursor's row (same score, ids at or above).
                ids = [(i, s) for i, s in ids
                       if s < int(max_score) or i < after_id]
            stored = await self._read_many([i for i, _ in ids])
            for (i, s), (st, wf) in zip(ids, stored, strict=True):
                # Index entries can lag behind (a backfill racing a commit): check the row.
                if st is None or (workflow is not None and wf != workflow) or (
                        status is not None and st.status is not status) or (
                        f and not _matches(st, f)):
                    continue
                out.append(st)
                last = (s, i)
                if len(out) == limit:
                    break
            if len(rows) < batch_size:
                break
        next_cursor = f"{last[0]}:{last[1]}" if last and len(out) == limit else None
        return out, next_cursor

    async def _read_many(self, ids: list[str]) -> list[tuple[Stored | None, str | None]]:
        async def go() -> list[tuple[Stored | None, str | None]]:
            async with self._redis.pipeline(transaction=False) as p:
                for i in ids:
                    p.hmget(self.keys.state(i), *_FIELDS, StateField.WORKFLOW)
                res = await p.execute()
            return [(None, None) if h[0] is None else (_stored(*h[:6]), _s(h[6])) for h in res]

        return await self._call(go)
