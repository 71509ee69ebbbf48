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
from redis.exceptions import RedisClusterException, RedisError
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
    Op,
    Stored,
    StoreUnavailable,
    SuspendRequested,
    lua_statuses,
)
from tarry.engine.namespaces import namespace_of

from . import _changes
from ._batch import CLUSTER_CONCURRENCY, ClusterScriptBatcher, NotReplicated, ScriptBatcher
from ._bulk import BulkStore
from ._connect import Client, close_sentinels, is_cluster_url, make_cluster, make_pool
from ._keys import DEFAULT_PARTITIONS, STORED, Keys, StateField
from ._listing import Listing
from ._notify import PubSub
from ._rows import answer as _answer
from ._rows import claimed as _claimed
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

class RedisStore(PubSub, BulkStore, Listing):
    """State, events, timers and leases in Redis: standalone, Sentinel-managed, or a Redis
    Cluster (README: Deployments)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tarry:v2",
        partitions: int = DEFAULT_PARTITIONS,
        events_maxlen: int = 10_000,
        changes_maxlen: int = 100_000,
        request_ttl: int = 86_400,
        max_connections: int = 64,
        socket_timeout: float = 5.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        """`url`: a redis-py URL (redis://, rediss://, unix://);
        `redis+sentinel://host:port[,host:port...]/service[/db]` (`rediss+sentinel://` for
        TLS; a password before the hosts is the primary's) to follow the primary of a
        Sentinel-managed group through failovers; or
        `redis+cluster://host:port[,host:port...]` (`rediss+cluster://`) for a Redis Cluster.
        `partitions`: the layout's, for a prefix that has none yet (`check_layout`)."""
        self.keys = Keys(prefix, partitions)
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
        self._timeout = socket_timeout
        self._slots = asyncio.Semaphore(max_connections)
        PubSub.__init__(self)
        self.cluster = is_cluster_url(url)
        self._redis: Client
        if self.cluster:
            # The batchers' calls take connections of the pools too (not slots).
            self._redis = make_cluster(url, {**options, "max_connections": (
                max_connections + 3 + 2 * CLUSTER_CONCURRENCY)})
            self._commit: ScriptBatcher = ClusterScriptBatcher(
                self._redis, _script("commit"), timeout=socket_timeout,
                wait=(wait_replicas, wait_timeout))
            self._claim: ScriptBatcher = ClusterScriptBatcher(
                self._redis, _script("claim"), timeout=socket_timeout)
        else:
            redis = aioredis.Redis.from_pool(make_pool(url, options))  # closed with its pool
            self._redis = redis
            # With `wait_replicas`, a commit is acknowledged only once that many replicas
            # have it (Redis's WAIT after each batch): an acknowledged transition survives
            # a failover.
            self._commit = ScriptBatcher(redis, _script("commit"), timeout=socket_timeout,
                                         wait=(wait_replicas, wait_timeout))
            # Claims go the same way: a plain pipeline of a registered Script would first
            # ask Redis whether the script exists, a round trip of its own on every timer
            # pass.
            self._claim = ScriptBatcher(redis, _script("claim"), timeout=socket_timeout)
        # Scripts publish with SPUBLISH on a cluster: a channel of the partition's slot,
        # heard on that slot's node only (PUBLISH would go to every node of the cluster).
        self._publish = "SPUBLISH" if self.cluster else "PUBLISH"
        self._sreq = self._redis.register_script(_script("suspend_request"))
        self._early = self._redis.register_script(_script("early"))
        self._renew = self._redis.register_script(_script("renew"))
        self._delete = self._redis.register_script(_script("delete"))
        BulkStore.__init__(self)
        self._layout_known = False
        self._layout_lock = asyncio.Lock()

    @property
    def redis(self) -> Client:
        return self._redis

    async def _call(self, fn: Callable[[], Awaitable[T]], *, slot: bool = True) -> T:
        """Run one Redis exchange, with Redis errors turned into domain errors. `slot`:
        take one of the connection slots (group commits have connections of their own).
        The first one checks the layout (`check_layout`): no key is touched before the
        number of partitions is known."""
        if not self._layout_known:
            await self.ensure_layout()
        return await self._exchange(fn, slot=slot)

    async def ensure_layout(self) -> None:
        """`check_layout`, once; StoreUnavailable (saying why) while it cannot be."""
        async with self._layout_lock:
            if not self._layout_known:
                try:
                    await self.check_layout()
                except OSError as exc:  # refused: each call says why
                    raise StoreUnavailable(str(exc)) from exc

    async def _exchange(self, fn: Callable[[], Awaitable[T]], *, slot: bool = True) -> T:
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
        except (RedisError, RedisClusterException) as exc:
            log.exception("redis error")
            raise StoreUnavailable("the state store (Redis) failed the request") from exc

    async def check_layout(self) -> None:
        """At start: refuse a Redis that cannot hold this layout, or holds the layout
        before it; record the number of partitions (the first server to start chooses),
        or take the one recorded."""
        info = {} if self.cluster else await self._exchange(lambda: self._redis.info("cluster"))
        if int(info.get("cluster_enabled", 0)):
            raise OSError(
                "REDIS_URL points at a Redis Cluster node (cluster_enabled:1) with a plain "
                "URL: use redis+cluster://host:port[,host:port...] (or a standalone Redis, "
                "or a Sentinel-managed group: redis+sentinel://host:port,.../service)")
        old = self.keys.prefix.rsplit(":v", 1)[0] + ":v1"
        found = 0
        for key in (f"{old}:idx:all", f"{old}:timers"):  # one by one: a cluster's slots
            found += int(await self._exchange(
                lambda key=key: self._redis.exists(key)))  # type: ignore[misc]
        if old != self.keys.prefix and found:
            raise OSError(
                f"Redis holds executions of the earlier key layout ({old}:*), which this "
                f"version does not read (it uses {self.keys.prefix}:*): finish them with the "
                f"earlier version, or delete the keys {old}:* (README: Known limits)")
        meta = self.keys.meta
        await self._exchange(lambda: self._redis.hsetnx(meta, "partitions", self.keys.partitions))
        stored = int(await self._exchange(lambda: self._redis.hget(meta, "partitions")) or 0)
        if stored != self.keys.partitions:
            log.info("key prefix %s has %d partitions (recorded at its first start); "
                     "the setting (%d) applies to new prefixes only",
                     self.keys.prefix, stored, self.keys.partitions)
            self.keys = Keys(self.keys.prefix, stored)
        self._layout_known = True

    async def change_log(self) -> ChangeLog:
        k = self.keys
        keys = [k.changes(p) for p in range(k.partitions)]
        return await self._call(lambda: _changes.bounds(self._redis, keys))

    async def changes(self, after: str, limit: int, block_ms: int = 0) -> list[Change]:
        k = self.keys
        keys = [k.changes(p) for p in range(k.partitions)]

        async def read() -> list[Change]:
            return await _changes.read(self._redis, keys, after, limit, block_ms,
                                       cluster=self.cluster)

        if block_ms <= 0:
            return await self._call(read)

        async def blocking() -> list[Change]:
            async with asyncio.timeout(block_ms / 1000 + self._timeout):
                return await read()

        # A blocking read holds a connection of its own (the pool's spare), not a slot.
        return await self._call(blocking, slot=False)

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def close(self) -> None:
        await self._commit.aclose()
        await self._claim.aclose()
        if isinstance(self._redis, aioredis.RedisCluster):
            await self._redis.aclose()
            return
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
        e = k.execution(c.execution_id)
        p = e.partition
        rid = c.request_id
        tags = ([k.by_tag(key, value, ns, p) for key, value in sorted(c.tags.items())]
                if c.expected_version == 0 else [])
        keys = [
            e.state, e.events, k.timers(p), k.leases(p),
            k.all(ns, p), k.by_status(c.prev_status.value, ns, p),
            k.by_status(c.status.value, ns, p), k.by_workflow(c.workflow, ns, p),
            e.request(rid) if rid else e.state,
            k.by_workflow_status(c.workflow, c.prev_status.value, ns, p),
            k.by_workflow_status(c.workflow, c.status.value, ns, p), k.expiry(p),
            k.changes(p), *tags,
            *(k.by_waiting(c.workflow, node, ns, p) for node in c.waiting_join),
            *(k.by_waiting(c.workflow, node, ns, p) for node in c.waiting_leave),
        ]
        args: list[Any] = [
            c.expected_version, c.status.value, c.doc, c.owner, c.lease, c.lease_ttl,
            int(c.check_suspend_request), int(c.clear_suspend_request), c.created_at,
            c.execution_id, c.workflow, self._events_maxlen, int(bool(rid)), self._request_ttl,
            f"{self._publish} {e.channel} {k.control_channel(p)} "
            f"{k.timers_channel(p)}",
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
                 -(-self._changes_maxlen // k.partitions)]  # the length, shared out
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
        p = k.partition(execution_id)
        args: list[Any] = [reason, event, self._events_maxlen,
                           f"{self._publish} {k.channel(execution_id)} {k.control_channel(p)}",
                           execution_id,
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
        keys = [k.state(execution_id), k.events(execution_id),
                k.by_waiting(workflow, node, ns, k.partition(execution_id)),
                k.request(execution_id, request_id) if request_id else k.state(execution_id)]
        args: list[Any] = [entry, event, self._events_maxlen,
                           f"{self._publish} {k.channel(execution_id)}",
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
        p = k.partition(execution_id)
        keys = [k.state(execution_id), k.timers(p), k.leases(p)]
        args: list[Any] = [execution_id, "", owner, lease_ttl, 0, int(take_back),
                           _TAKE_OVER_FROM]
        return _claimed(await self._call(lambda: self._claim.call(keys, args), slot=False))

    async def claim_timers(self, timers: Sequence[tuple[str, str]], owner: str,
                           lease_ttl: int, horizon: int) -> list[Stored | None]:
        k = self.keys
        claims = [self._claim.call([k.state(execution_id), k.timers(k.partition(execution_id)),
                                    k.leases(k.partition(execution_id))],
                                   [execution_id, k.timer_member(execution_id, node), owner,
                                    lease_ttl, horizon, 0, _CLAIM_TIMER_FROM])
                  for execution_id, node in timers]  # one batch: they are sent together
        return [_claimed(r) for r in await self._call(lambda: asyncio.gather(*claims),
                                                      slot=False)]

    async def due_timers(self, until: int, limit: int) -> tuple[list[tuple[str, str]], int | None]:
        k = self.keys

        async def go() -> tuple[list[tuple[str, str]], int | None]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for p in range(k.partitions):
                    pipe.zrangebyscore(k.timers(p), "-inf", until, start=0, num=limit,
                                       withscores=True)
                    pipe.zrangebyscore(k.timers(p), f"({until}", "+inf", start=0, num=1,
                                       withscores=True)
                res = await pipe.execute()
            due = sorted((int(s), _s(m)) for rows in res[0::2] for m, s in rows)
            later = [int(rows[0][1]) for rows in res[1::2] if rows]
            # Due ones left out by `limit` come before any later one.
            nxt = due[limit][0] if len(due) > limit else min(later, default=None)
            return [k.split_timer_member(m) for _, m in due[:limit]], nxt

        return await self._call(go)

    async def _due(self, key: Callable[[int], str], until: float, limit: int) -> list[str]:
        """The members of each partition's zset `key(p)` scored up to `until`, earliest
        first, at most `limit`."""
        async def go() -> list[str]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for p in range(self.keys.partitions):
                    pipe.zrangebyscore(key(p), "-inf", until, start=0, num=limit,
                                       withscores=True)
                res = await pipe.execute()
            return [m for _, m in sorted((float(s), _s(m)) for rows in res for m, s in rows)
                    ][:limit]

        return await self._call(go)

    async def expired_leases(self, now: float, limit: int) -> list[str]:
        return await self._due(self.keys.leases, now, limit)

    async def renew_leases(self, execution_ids: Sequence[str], owner: str, lease_ttl: int
                           ) -> list[str]:
        k = self.keys
        by_partition: dict[int, list[str]] = {}
        for i in execution_ids:
            by_partition.setdefault(k.partition(i), []).append(i)

        async def renew(p: int, ids: list[str]) -> list[str]:
            keys = [k.leases(p), *(k.state(i) for i in ids)]
            args: list[str | int] = [owner, lease_ttl, *ids]
            return [_s(i) for i in await self._call(
                lambda: self._renew(keys=keys, args=args))]

        lost = await asyncio.gather(*(renew(p, ids) for p, ids in by_partition.items()))
        return [i for part in lost for i in part]

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
            ns, p = namespace_of(execution_id), k.partition(execution_id)
            keys = [k.state(execution_id), k.events(execution_id), k.expiry(p), k.all(ns, p),
                    k.by_status(st, ns, p), k.by_workflow(wf, ns, p),
                    k.by_workflow_status(wf, st, ns, p), k.leases(p),
                    *(_s(h[2]).split() if h[2] else ())]
            args = [execution_id, st, wf, _DELETE_FROM]
            res = await self._call(lambda: self._delete(keys=keys, args=args))  # noqa: B023
            tag = _s(res[0])
            if tag != "MOVED":  # else it changed between the read and the script: again
                return _s(res[1]) if tag == "STATE" else tag
        raise Conflict(f"execution {execution_id!r} kept changing; try again",
                       metadata={"execution_id": execution_id})

    async def due_expirations(self, now: int, limit: int) -> list[str]:
        return await self._due(self.keys.expiry, now, limit)

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
