"""The connection pool a store talks through: a redis-py URL, or a Sentinel URL whose pool
follows the group's primary, with hiredis's C packer for every command; or a Redis
Cluster's client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tarry._tasks import reraise_if_cancelling

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    hiredis = None  # type: ignore[assignment]


SENTINEL_TIMEOUT = 2.0
"""Seconds for one question to one sentinel (connect, or its answer). A sentinel answers at
once; one that does not is skipped for the next, so a silent sentinel (its host gone with
no RST) cannot stall finding the primary."""


Client = aioredis.Redis | aioredis.RedisCluster


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+sentinel", "rediss+sentinel")


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+cluster", "rediss+cluster")


def make_cluster(url: str, options: dict[str, Any]) -> aioredis.RedisCluster:
    """redis-py's cluster client (it follows MOVED and ASK, and refreshes the slot map) for
    `redis+cluster://[[user]:password@]host:port[,host:port...]`: any of the nodes, from
    which it learns the rest."""
    _, hosts, _, connection = _split_url(url, 6379)
    if not hosts:
        raise ValueError("a Cluster URL reads redis+cluster://host:port[,host:port...]")
    nodes = [ClusterNode(name, port) for name, port in hosts]
    options = {k: v for k, v in options.items() if k != "health_check_interval"}
    return aioredis.RedisCluster(startup_nodes=nodes, **connection, **options)


def make_pool(url: str, options: dict[str, Any]) -> aioredis.ConnectionPool:
    """A pool for `url` (see `RedisStore`), its connections packing with hiredis."""
    pool = (sentinel_pool(url, options) if is_sentinel_url(url)
            else aioredis.ConnectionPool.from_url(url, **options))
    if hiredis is not None:
        base = pool.connection_class
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return pool


def sentinel_pool(url: str, options: dict[str, Any]) -> aioredis.ConnectionPool:
    """A pool that follows the primary of a Sentinel-managed group (redis-py's own Sentinel
    support): `redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`."""
    secure, hosts, path, connection = _split_url(url, 26379)
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError("a Sentinel URL reads redis+sentinel://host:port[,host:port...]/service")
    # The sentinels' own clients: a deadline on every answer, and no retries (redis-py's
    # default is 3 with backoff of up to 10 s): asking the next sentinel is the retry.
    asking = {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT,
              "retry": Retry(NoBackoff(), 0), **({"ssl": True} if secure else {})}
    manager = _Sentinels(hosts, sentinel_kwargs=asking,
                         **connection)  # type: ignore[no-untyped-call]
    return SentinelConnectionPool(  # type: ignore[no-untyped-call]
        service, manager, db=int(db or 0), **connection, **options)


def _split_url(url: str, default_port: int
               ) -> tuple[bool, list[tuple[str, int]], str, dict[str, Any]]:
    """A URL naming several hosts, `scheme://[[user]:password@]host:port[,host:port...][/path]`:
    (TLS or not, the hosts, the path, the connection's credentials and TLS options)."""
    scheme, _, rest = url.partition("://")
    auth, _, rest = rest.rpartition("@")
    names, _, path = rest.partition("/")
    hosts: list[tuple[str, int]] = []
    for host in names.split(",") if names else ():
        name, _, port = host.rpartition(":")
        hosts.append((name or host, int(port) if port.isdigit() else default_port))
    user, _, password = auth.partition(":") if auth else ("", "", "")
    secure = scheme.startswith("rediss")
    connection: dict[str, Any] = {**({"username": unquote(user)} if user else {}),
                                  **({"password": unquote(password)} if password else {}),
                                  **({"ssl": True} if secure else {})}
    return secure, hosts, path, connection


class _Sentinels(Sentinel):
    """redis-py's Sentinel, its discovery of the primary safe for concurrent callers.

    redis-py's moves the sentinel that answered to the front by swapping two positions it
    read before its await; discoveries run side by side (each connection that connects asks,
    and during a failover they all do), so one can undo another's swap half-way: one
    sentinel then stands twice in the list and another is gone from it, never asked again
    and never closed."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        errors: list[str] = []
        for client in list(self.sentinels):
            try:
                # By name: redis-py parses the RESP2 reply so (its type also allows a list).
                masters = cast(dict[str, dict[str, Any]], await client.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError) as exc:
                errors.append(f"{client} - {exc!r}")
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                self.sentinels.remove(client)  # to the front, by identity: no await between
                self.sentinels.insert(0, client)
                return state["ip"], int(state["port"])
        raise MasterNotFoundError(f"No master found for {service_name!r}: {', '.join(errors)}")


async def close_sentinels(pool: aioredis.ConnectionPool) -> None:
    """Close a Sentinel pool's clients of each sentinel (closing the pool leaves them)."""
    if isinstance(pool, SentinelConnectionPool):
        for client in pool.sentinel_manager.sentinels:
            await client.aclose()


ALIVE = "tarry-alive"
"""The PING message that asks a quiet notification channel whether it is still there."""


async def messages(pubsub: aioredis.client.PubSub, quiet: float
                   ) -> AsyncGenerator[dict[str, Any], None]:
    """The published messages of a subscribed `pubsub`, as they come. A channel `quiet`
    seconds without a word is sent a PING; no answer within `quiet` more, and it is taken
    for dead (RedisConnectionError). A primary gone without closing its sockets (its host
    down, a partition: no FIN or RST ever comes) leaves the connection open and mute, and
    nothing in redis-py notices (its health check writes a PING but nobody waits for the
    reply): the subscriber would stay with the old primary through a failover, deaf."""
    loop = asyncio.get_running_loop()
    heard, pinged = loop.time(), False
    while True:
        reraise_if_cancelling()
        msg = await pubsub.get_message(timeout=min(1.0, quiet))
        if msg is not None:  # a message, or the answer to our PING
            heard, pinged = loop.time(), False
            if msg.get("type") == "message":
                yield msg
            continue
        silent = loop.time() - heard
        if silent >= 2 * quiet:
            raise RedisConnectionError(f"the notification channel was silent for {silent:.0f} s")
        if silent >= quiet and not pinged:
            async with asyncio.timeout(quiet):  # a write can block too, on a full buffer
                await pubsub.ping(ALIVE)
            pinged = True


async def sharded_messages(pubsub: aioredis.cluster.ClusterPubSub
                           ) -> AsyncGenerator[dict[str, Any], None]:
    """The messages of a cluster's shard channels (SSUBSCRIBE), as they come. redis-py asks
    each node's connection in turn, each for up to the timeout given: a short one, so that
    a message on one node does not wait for the others' silence. (No liveness PING as in
    `messages`: redis-py's cluster pub/sub follows slot moves and failovers itself.)"""
    while True:
        reraise_if_cancelling()
        msg = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.01)
        if msg is None:
            await asyncio.sleep(0)  # with no subscription yet, it returns at once
        elif msg.get("type") == "smessage":
            yield msg


class _HiredisPacking:
    """Encode commands with hiredis's C packer. redis-py's asyncio connections use a
    pure-Python one, which was the largest single cost of a transition (a commit sends
    some thirty arguments)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "SCRIPT LOAD"
            args = (*args[0].split(), *args[1:])
        assert hiredis is not None
        return [hiredis.pack_command(args)]
