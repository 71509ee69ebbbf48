"""Group commit: transitions of many executions share one pipelined round trip.

Under load many executions commit at the same moment. Each commit is still its own Lua
script call, applied atomically and checked on its own; they only travel together: while
one batch is on the wire, the next ones gather, so a busy server pays the client's
per-command costs (connection checkout, a socket write, a read) once per batch instead of
once per commit. An idle server sends a batch of one at once, as before.

A batch travels on a connection the batcher keeps for itself (one per batch in flight),
written and read directly: redis-py's Pipeline costs more Python per batch than the
exchange itself.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_BATCH = 128
MAX_IN_FLIGHT = 2
CLUSTER_CONCURRENCY = 16
"""On a cluster: connections of each node's pool a batcher may hold besides the others'
(one per batch in flight, and calls sent again one by one)."""


class NotReplicated(RedisTimeoutError):
    """Fewer replicas than asked for confirmed a batch in time (WAIT): its commits may be
    applied on the primary and still be lost in a failover, so none is acknowledged."""


class ScriptBatcher:
    """Calls one Lua script (by its SHA) for many callers, pipelined."""

    def __init__(self, redis: aioredis.Redis, script: str, *, timeout: float,
                 wait: tuple[int, float] = (0, 0.0)) -> None:
        self._redis = redis
        self._wait_replicas, wait_seconds = wait
        self._wait_ms = int(wait_seconds * 1000)
        self._timeout = timeout  # seconds for one batch's round trip
        self._script = script
        self._sha: str | None = None
        self._pending: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: list[AbstractConnection] = []  # connections not carrying a batch now
        self._all: list[AbstractConnection] = []
        # Calls not answered yet, by deadline (all have the same timeout: in call order),
        # and the one timer that fails those past their deadline (`_expire`).
        self._deadlines: collections.deque[tuple[float, asyncio.Future[Any]]] = (
            collections.deque())
        self._expiry: asyncio.TimerHandle | None = None

    async def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._in_flight and not self._pending:
            # Idle: no batch to join, so send this call at once from the caller's own task
            # (a task of its own would start a turn of the loop later). The round trip's
            # deadline is _pipeline's; calls that come meanwhile gather and go next.
            self._in_flight += 1
            try:
                await self._send([(keys, args, fut)])
            finally:
                self._in_flight -= 1
                if self._pending and not self._in_flight:
                    self._start_drain()
            return fut.result()
        self._pending.append((keys, args, fut))
        if self._in_flight < MAX_IN_FLIGHT:
            self._start_drain()
        # One deadline for the whole call, its wait in the queue included: behind batches
        # that run out their own time (a primary gone silent) it would wait for theirs too.
        # One timer for all the calls in flight, not one each (`asyncio.timeout` per call
        # cost about a tenth of a transition's CPU in timer handles).
        loop = asyncio.get_running_loop()
        self._deadlines.append((loop.time() + self._timeout, fut))
        if self._expiry is None:
            self._expiry = loop.call_at(self._deadlines[0][0], self._expire)
        return await fut  # past its deadline `fut` fails: if not sent yet, it never is

    def _start_drain(self) -> None:
        # The task starts on the next turn of the loop: callers of this turn join it.
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)  # a task nobody references may be collected mid-flight
        task.add_done_callback(self._tasks.discard)

    def _expire(self) -> None:
        """Fail the calls past their deadline with TimeoutError; look again at the next."""
        self._expiry = None
        now = asyncio.get_running_loop().time()
        while self._deadlines:
            deadline, fut = self._deadlines[0]
            if not fut.done() and deadline > now:
                self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)
                return
            self._deadlines.popleft()
            if not fut.done():
                fut.set_exception(TimeoutError("no answer from Redis in time"))

    async def _drain(self) -> None:
        """Send what is pending, batch after batch, until nothing is left."""
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                batch = [call for call in batch if not call[2].done()]  # not given up
                if batch:
                    await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[tuple[Sequence[Any], Sequence[Any],
                                            asyncio.Future[Any]]]) -> None:
        try:
            if self._sha is None:
                await self._load_script()
            results = await self._pipeline(batch)
            if any(isinstance(r, NoScriptError) for r in results):
                # Redis lost its script cache (restart, SCRIPT FLUSH): load it and send again.
                await self._load_script()
                results = await self._pipeline(batch)
        except BaseException as exc:  # the whole batch failed to travel
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, RedisError):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _load_script(self) -> None:
        async with asyncio.timeout(self._timeout):
            self._sha = str(await self._redis.script_load(self._script))

    async def _pipeline(self, batch: list[tuple[Sequence[Any], Sequence[Any],
                                                asyncio.Future[Any]]]) -> list[Any]:
        """Send the batch's script calls in one write and read their replies in order (a
        reply that is an error, e.g. a failed script, comes back as the exception)."""
        assert self._sha is not None
        if self._idle:
            conn = self._idle.pop()
        else:
            # Outside the pool's count; connected here, before its first send.
            conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            self._all.append(conn)
        try:
            async with asyncio.timeout(self._timeout):
                if not conn.is_connected:
                    await conn.connect()  # type: ignore[no-untyped-call]
                commands: list[tuple[Any, ...]] = [
                    ("EVALSHA", self._sha, len(keys), *keys, *args) for keys, args, _ in batch]
                if self._wait_replicas:
                    commands.append(("WAIT", self._wait_replicas, self._wait_ms))
                await conn.send_packed_command(conn.pack_commands(commands))
                results: list[Any] = []
                for _ in batch:
                    try:
                        results.append(await conn.read_response())
                    except ResponseError as err:
                        results.append(err)
                if self._wait_replicas:
                    acked = int(await conn.read_response())
                    if acked < self._wait_replicas:
                        short = NotReplicated(
                            f"{acked} of {self._wait_replicas} replicas confirmed the write "
                            f"within {self._wait_ms} ms")
                        results = [r if isinstance(r, RedisError) else short for r in results]
        except BaseException:
            await conn.disconnect(nowait=True)  # out of step with its replies: start afresh
            raise
        finally:
            self._idle.append(conn)
        return results

    async def aclose(self) -> None:
        for conn in self._all:
            await conn.disconnect()
        self._all.clear()
        self._idle.clear()


class ClusterScriptBatcher(ScriptBatcher):
    """The batcher on a Redis Cluster: a batch's calls are grouped by the node that owns
    their keys' slot (in the client's slot map), and each group is written and read on a
    connection of that node's pool, as the standalone batcher does. A call the node
    redirects (MOVED, ASK: its slot is moving), or cannot serve now (TRYAGAIN,
    CLUSTERDOWN), is sent again through redis-py's cluster client, which follows the
    redirection and refreshes its slot map. (redis-py's cluster pipeline refuses EVALSHA.)
    With `wait`, each node's pipeline ends with WAIT, as on a standalone Redis; a call sent
    again elsewhere is not acknowledged (NotReplicated: its retry, with its request id,
    gets the answer once its node has confirmed it)."""

    def __init__(self, redis: aioredis.RedisCluster, script: str, *, timeout: float,
                 wait: tuple[int, float] = (0, 0.0)) -> None:
        super().__init__(redis, script, timeout=timeout, wait=wait)  # type: ignore[arg-type]
        self._cluster = redis

    async def _load_script(self) -> None:
        async with asyncio.timeout(self._timeout):  # on every primary
            self._sha = str(await self._cluster.script_load(self._script))

    async def _pipeline(self, batch: list[tuple[Sequence[Any], Sequence[Any],
                                                asyncio.Future[Any]]]) -> list[Any]:
        assert self._sha is not None
        nodes = self._cluster.nodes_manager
        async with asyncio.timeout(self._timeout):
            if not nodes.slots_cache:
                await self._cluster.initialize()
            groups: dict[str, tuple[ClusterNode, list[int]]] = {}
            for at, (keys, _, _) in enumerate(batch):
                node = nodes.get_node_from_slot(key_slot(_encoded(keys[0])))
                groups.setdefault(node.name, (node, []))[1].append(at)
            results: list[Any] = [None] * len(batch)
            wait = (self._wait_replicas, self._wait_ms)
            await asyncio.gather(*(self._on_node(node, self._sha, ats, batch, results, wait)
                                   for node, ats in groups.values()))
            again = [at for at, r in enumerate(results)
                     if isinstance(r, (AskError, TryAgainError, ClusterDownError,
                                       RedisConnectionError))]
            redone = await asyncio.gather(
                *(self._cluster.evalsha(self._sha, len(batch[at][0]), *batch[at][0],
                                        *batch[at][1]) for at in again),
                return_exceptions=True)
        for at, r in zip(again, redone, strict=True):
            if isinstance(r, BaseException) and not isinstance(r, RedisError):
                raise r  # a Redis error is one call's answer; anything else fails all
            if self._wait_replicas and not isinstance(r, RedisError):
                r = NotReplicated("sent again to another node, without WAIT")
            results[at] = r
        return results

    @staticmethod
    async def _on_node(node: ClusterNode, sha: str, ats: list[int],
                       batch: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]],
                       results: list[Any], wait: tuple[int, int]) -> None:
        """Send the calls at `ats` to `node` in one write; their replies into `results`
        (a connection error into each: they are sent again one by one)."""
        try:
            conn = node.acquire_connection()
        except RedisError as exc:  # its pool is full: one by one, through the client
            for at in ats:
                results[at] = RedisConnectionError(str(exc))
            return
        try:
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]
            replicas, wait_ms = wait
            commands: list[tuple[Any, ...]] = [
                ("EVALSHA", sha, len(batch[at][0]), *batch[at][0], *batch[at][1])
                for at in ats]
            if replicas:
                commands.append(("WAIT", replicas, wait_ms))
            await conn.send_packed_command(conn.pack_commands(commands))
            for at in ats:
                try:
                    results[at] = await conn.read_response()
                except ResponseError as err:
                    results[at] = err
            if replicas:
                acked = int(await conn.read_response())
                if acked < replicas:
                    short = NotReplicated(f"{acked} of {replicas} replicas confirmed the "
                                          f"write within {wait_ms} ms")
                    for at in ats:
                        if not isinstance(results[at], RedisError):
                            results[at] = short
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await conn.disconnect(nowait=True)  # out of step with its replies
            for at in ats:
                if results[at] is None:
                    results[at] = RedisConnectionError(str(exc))
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            node.release(conn)


def _encoded(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()
